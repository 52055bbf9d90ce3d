"""Sample quality without downloaded weights: a feature network the project trains itself, and the metrics on it.

FID needs Inception weights, which cannot be downloaded here, so every metric runs in the feature space of
``FeatNet``: a small CNN trained once (``python -m generators.metrics --train-featnet``) on real faces to tell
which degradation, if any, was applied to a face (none, blur, noise, JPEG, nearest / zero-insertion upsampling,
colour shift, patch shuffle, cutout). That objective makes its features sensitive to both face structure and to
low-level generator traces, which is what a distance between image sets should see. The file
``generators/assets/featnet.safetensors`` records its version and the hash of its training data in its header.

Metrics:
- KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel, averaged over subsets;
- precision / recall (Kynkaanniemi et al. 2019) and coverage (Naeem et al. 2020) from k-NN balls;
- C2ST: accuracy of a logistic regression telling real from generated features on a held-out split
  (0.5 = indistinguishable);
- diversity: mean pairwise feature distance of a sample set (tracked during training to warn of mode collapse).
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from forensics_core.errors import ModelFileError

if TYPE_CHECKING:
    from forensics_core.faces.detectors import FaceDetector

log = logging.getLogger(__name__)

FEATNET_PATH = Path(__file__).resolve().parent / "assets" / "featnet.safetensors"
FEATNET_VERSION = "1"
FEAT_RES = 64
DEGRADATIONS = ("none", "blur", "noise", "jpeg", "nearest-up", "zero-insert-up", "colour", "patch-shuffle", "cutout")


class FeatNet(nn.Module):
    """4 strided conv stages -> global average pool -> 256-d features; a linear head only for training."""

    def __init__(self, width: int = 32, n_classes: int = len(DEGRADATIONS)) -> None:
        super().__init__()
        c = [3, width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [
                nn.Conv2d(c[i], c[i + 1], 3, 2 if i else 1, 1), nn.GroupNorm(8, c[i + 1]), nn.SiLU(),
                nn.Conv2d(c[i + 1], c[i + 1], 3, 2 if i else 1, 1), nn.GroupNorm(8, c[i + 1]), nn.SiLU(),
            ]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c[-1], n_classes)
        self.dim = c[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != FEAT_RES:
            x = F.interpolate(x, size=(FEAT_RES, FEAT_RES), mode="bilinear", align_corners=False, antialias=True)
        return self.body(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---------------------------------------------------------------------------------------------------------------
# Degradations used as the self-supervised training signal
# ---------------------------------------------------------------------------------------------------------------


def _jpeg(x: torch.Tensor, q: int) -> torch.Tensor:
    from PIL import Image

    from generators.data import to_tensor, to_uint8

    out = []
    for px in to_uint8(x):
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, "JPEG", quality=q)
        buf.seek(0)
        out.append(to_tensor(np.asarray(Image.open(buf).convert("RGB"))))
    return torch.stack(out)


def degrade(x: torch.Tensor, kind: int, g: torch.Generator) -> torch.Tensor:
    """Apply degradation ``DEGRADATIONS[kind]`` to a batch in [-1, 1]."""
    name = DEGRADATIONS[kind]
    n, c, h, w = x.shape
    if name == "none":
        return x
    if name == "blur":
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        k = torch.outer(k, k) / 256
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k[None, None].repeat(c, 1, 1, 1), groups=c)
    if name == "noise":
        return (x + torch.randn(x.shape, generator=g) * 0.08).clamp(-1, 1)
    if name == "jpeg":
        return _jpeg(x, int(torch.randint(10, 40, (), generator=g)))
    if name == "nearest-up":
        return F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    if name == "zero-insert-up":
        small = F.avg_pool2d(x, 2)
        up = torch.zeros_like(x)
        up[:, :, ::2, ::2] = small * 4
        k = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]) / 4  # bilinear-ish, leaves a grid
        return F.conv2d(F.pad(up, (1, 1, 1, 1), mode="reflect"), k[None, None].repeat(c, 1, 1, 1), groups=c)
    if name == "colour":
        shift = (torch.rand(n, c, 1, 1, generator=g) - 0.5) * 0.6
        return (x + shift).clamp(-1, 1)
    if name == "patch-shuffle":
        p = h // 4
        patches = x.unfold(2, p, p).unfold(3, p, p).reshape(n, c, 16, p, p)
        perm = torch.randperm(16, generator=g)
        patches = patches[:, :, perm].reshape(n, c, 4, 4, p, p).permute(0, 1, 2, 4, 3, 5)
        return patches.reshape(n, c, h, w)
    if name == "cutout":
        out = x.clone()
        s = h // 3
        i, j = (int(v) for v in torch.randint(0, h - s, (2,), generator=g))
        out[:, :, i : i + s, j : j + s] = 0
        return out
    raise ValueError(name)


# ---------------------------------------------------------------------------------------------------------------
# Training / loading the feature network
# ---------------------------------------------------------------------------------------------------------------


def train_featnet(
    data_dirs: Sequence[str], steps: int = 600, batch: int = 48, limit: int = 4000, seed: int = 0,
    out: Path = FEATNET_PATH,
) -> dict[str, str]:
    """Train FeatNet on real faces (degradation classification) and save it with its provenance header."""
    from safetensors.torch import save_file

    from generators.data import BatchLoader, FaceImages, data_hash, discover

    torch.manual_seed(seed)
    items = discover(data_dirs)
    items = [items[i] for i in np.random.default_rng(seed).permutation(len(items))[:limit]]
    loader = BatchLoader(FaceImages(items, FEAT_RES), batch, seed=seed)
    net = FeatNet()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    k = len(DEGRADATIONS)
    t0, acc = time.time(), 0.0
    for step in range(steps):
        x = next(loader).image
        groups = x.chunk(k)
        xs, ys = [], []
        for i, part in enumerate(groups):
            kind = (i + step) % k
            xs.append(degrade(part, kind, g))
            ys.append(torch.full((part.shape[0],), kind))
        xb, yb = torch.cat(xs), torch.cat(ys)
        logits = net(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        acc = 0.9 * acc + 0.1 * float((logits.argmax(1) == yb).float().mean())
        if step % 50 == 0 or step == steps - 1:
            dt = time.time() - t0
            log.warning("featnet step %d/%d loss %.3f acc(ema) %.3f %.0fs", step, steps, loss.item(), acc, dt)
    meta = {
        "version": FEATNET_VERSION,
        "objective": "degradation classification: " + ",".join(DEGRADATIONS),
        "data": ",".join(str(Path(d).name) for d in data_dirs),
        "data_hash": data_hash(items),
        "n_images": str(len(items)),
        "steps": str(steps),
        "train_accuracy_ema": f"{acc:.3f}",
        "res": str(FEAT_RES),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, out, metadata=meta)
    return meta


_FEATNET: FeatNet | None = None


def load_featnet(path: Path = FEATNET_PATH, required: bool = True) -> FeatNet | None:
    """The shipped feature network (cached); None when absent and not ``required``."""
    global _FEATNET
    if _FEATNET is not None and path == FEATNET_PATH:
        return _FEATNET
    if not path.is_file():
        if required:
            raise ModelFileError(
                f"{path}: feature network missing; train it with python -m generators.metrics --train-featnet DATA"
            )
        return None
    from safetensors.torch import load_file

    with torch.random.fork_rng(devices=[]):  # weight init draws from the global RNG; callers may be training
        net = FeatNet()
    net.load_state_dict(load_file(path))
    net.eval().requires_grad_(False)
    if path == FEATNET_PATH:
        _FEATNET = net
    return net


@torch.no_grad()
def features(images: torch.Tensor, net: FeatNet | None = None, batch: int = 128) -> np.ndarray:
    """(N, D) float64 features of NCHW images in [-1, 1]."""
    net = net or load_featnet()
    assert net is not None
    out = [net.features(images[i : i + batch].float().cpu()) for i in range(0, len(images), batch)]
    return torch.cat(out).double().numpy()


# ---------------------------------------------------------------------------------------------------------------
# Metrics on feature sets
# ---------------------------------------------------------------------------------------------------------------


def kid(
    real: np.ndarray, fake: np.ndarray, subsets: int = 20, subset_size: int = 500, seed: int = 0
) -> tuple[float, float]:
    """Kernel Inception-style Distance: unbiased MMD^2, kernel (x.y/d + 1)^3; returns (mean, std) over subsets."""
    rng = np.random.default_rng(seed)
    d = real.shape[1]
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    vals = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        vals.append(mmd - 2 * kxy.mean())
    return float(np.mean(vals)), float(np.std(vals))


def _pdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    return np.sqrt(np.maximum(d, 0))


def _radii(x: np.ndarray, k: int) -> np.ndarray:
    d = _pdist(x, x)
    return np.sort(d, axis=1)[:, k]  # column 0 is the point itself


def precision_recall_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Manifold precision / recall from k-NN balls, plus coverage (robust to outliers among the fakes)."""
    k = min(k, len(real) - 1, len(fake) - 1)
    rr, rf = _radii(real, k), _radii(fake, k)
    d = _pdist(real, fake)  # (R, F)
    precision = float((d <= rr[:, None]).any(0).mean())
    recall = float((d <= rf[None, :]).any(1).mean())
    coverage = float((d.min(1) <= rr).mean())
    return {"precision": precision, "recall": recall, "coverage": coverage}


def c2st_accuracy(real: np.ndarray, fake: np.ndarray, seed: int = 0) -> float:
    """Held-out accuracy of a logistic regression separating real from fake features (0.5 = indistinguishable)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = min(len(real), len(fake))
    x = np.concatenate([real[:n], fake[:n]])
    y = np.concatenate([np.zeros(n), np.ones(n)])
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.5, random_state=seed, stratify=y)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    clf.fit(xtr, ytr)
    return float(clf.score(xte, yte))


def diversity(images: torch.Tensor, net: FeatNet | None = None) -> float:
    """Mean pairwise L2 distance between unit-normalised features (pixels at 16 px when no FeatNet is shipped)."""
    net = net or load_featnet(required=False)
    if net is not None:
        f = torch.from_numpy(features(images, net))
    else:
        f = F.adaptive_avg_pool2d(images.float().cpu(), 16).flatten(1).double()
    f = F.normalize(f, dim=1)
    n = len(f)
    if n < 2:
        return 0.0
    d = torch.cdist(f, f)
    return float(d.sum() / (n * (n - 1)))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [-1, 1] (peak 1 after mapping to [0, 1])."""
    mse = ((a - b) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004: Gaussian 11x11 window, K1 = 0.01, K2 = 0.03) on [0, 1] intensities,
    averaged over channels and valid window positions (the convention of scikit-image's ``gaussian_weights``)."""
    x, y = (a + 1) / 2, (b + 1) / 2
    c = x.shape[1]
    g = torch.exp(-((torch.arange(window, dtype=x.dtype) - window // 2) ** 2) / (2 * sigma**2))
    g = (g / g.sum()).to(x.device)
    k = (g[:, None] * g[None, :]).expand(c, 1, window, window)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, k, groups=c)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx**2
    vy = blur(y * y) - my**2
    cxy = blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def face_rate(
    images: torch.Tensor, size: int = 128, min_prob: float = 0.9, max_n: int = 200,
    detector: FaceDetector | None = None,
) -> float:
    """Fraction of images in which MTCNN (the Foundation face detector) finds a face with probability >= ``min_prob``.

    A quality measure that does not depend on the project's feature network: blobs and mode-collapsed textures get
    no face, blurry but face-shaped samples do (real aligned faces of the shared data: 99.7 %). Images are resized
    to ``size`` first, since MTCNN's smallest face is 20 px. ``detector`` reuses one already built."""
    from forensics_core.faces.detectors import get_face_detector
    from generators.data import to_uint8

    x = images[:max_n].float()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    det = detector or get_face_detector("mtcnn", device="cpu", min_prob=min_prob)
    found = det.detect(list(to_uint8(x)))
    return round(sum(bool(f) for f in found) / max(len(found), 1), 4)


@dataclass
class EvalResult:
    generator: str
    n: int
    kid: float
    kid_std: float
    precision: float
    recall: float
    coverage: float
    c2st_accuracy: float
    diversity: float
    diversity_real: float
    featnet: str
    seconds: float
    #: sampling throughput of the generator alone (no metric time), on the evaluation device
    sample_img_per_s: float = 0.0
    #: edit kinds only: mean PSNR (dB) / SSIM of output vs input face (autoencoder reconstruction quality,
    #: or how much of the real face an edit keeps)
    psnr: float | None = None
    ssim: float | None = None
    #: MTCNN face-detection rate on the samples (see :func:`face_rate`); the real faces' rate for comparison
    face_rate: float | None = None
    face_rate_real: float | None = None

    def to_dict(self) -> dict[str, float | str | int]:
        return asdict(self)


def compare(real: torch.Tensor, fake: torch.Tensor, generator: str = "", t0: float | None = None) -> EvalResult:
    """All metrics between two image sets (NCHW in [-1, 1])."""
    t0 = t0 or time.time()
    net = load_featnet()
    fr, ff = features(real, net), features(fake, net)
    k_mean, k_std = kid(fr, ff)
    prc = precision_recall_coverage(fr, ff)
    return EvalResult(
        generator=generator, n=len(fake), kid=k_mean, kid_std=k_std, **prc, c2st_accuracy=c2st_accuracy(fr, ff),
        diversity=diversity(fake, net), diversity_real=diversity(real, net), featnet=featnet_id(),
        seconds=round(time.time() - t0, 2),
    )


def featnet_id() -> str:
    from safetensors import safe_open

    with safe_open(str(FEATNET_PATH), "pt") as f:
        meta = f.metadata() or {}
    return f"featnet-v{meta.get('version', '?')}-{meta.get('data_hash', '')[:12]}"


def evaluate(run: str, real_dirs: Sequence[str], n: int = 500, seed: int = 0, device: str = "cpu") -> EvalResult:
    """Sample ``n`` images from a run / reference model and compare them with ``n`` real faces."""
    from generators.base import INPUT_KINDS
    from generators.checkpoints import load_run
    from generators.data import FaceImages, discover

    t0 = time.time()
    fam = load_run(run, device=device)
    items = discover(real_dirs, include_held_out=True)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(items))[: 2 * n] if fam.kind in INPUT_KINDS else rng.permutation(len(items))[:n]
    ds = FaceImages([items[i] for i in pick], fam.cfg.res)
    real = torch.stack([ds[i][0] for i in range(min(n, len(ds)))])
    fakes, inputs = [], []
    g = torch.Generator().manual_seed(seed)
    bs, sample_s = 50, 0.0
    with torch.no_grad():
        for s in range(0, n, bs):
            k = min(bs, n - s)
            kwargs = {}
            if fam.kind in INPUT_KINDS:  # edit faces that are not in the real comparison set
                src = [ds[(len(real) + s + j) % len(ds)][0] for j in range(k)]
                inputs.append(torch.stack(src))
                kwargs["inputs"] = inputs[-1].to(fam.device)
            t1 = time.perf_counter()
            fakes.append(fam.sample(k, g, **kwargs).images.float().cpu())
            sample_s += time.perf_counter() - t1
    fake = torch.cat(fakes)
    if fake.shape[-1] != real.shape[-1]:
        fake = F.interpolate(fake, size=real.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
    result = compare(real, fake, generator=getattr(fam, "generator_name", run), t0=t0)
    result.sample_img_per_s = round(n / max(sample_s, 1e-9), 2)
    from forensics_core.faces.detectors import get_face_detector

    mtcnn = get_face_detector("mtcnn", device="cpu", min_prob=0.9)  # one detector for both sets
    result.face_rate, result.face_rate_real = face_rate(fake, detector=mtcnn), face_rate(real, detector=mtcnn)
    if inputs:
        src = torch.cat(inputs)
        out = fake if src.shape[-1] == fake.shape[-1] else F.interpolate(
            fake, size=src.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
        result.psnr = round(float(psnr(out, src).mean()), 3)
        result.ssim = round(float(ssim(out, src).mean()), 4)
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Train the project's feature network used by the generator metrics.")
    p.add_argument("--train-featnet", nargs="+", metavar="DATA", required=True, help="real-face dirs")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--limit", type=int, default=4000)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    print(json.dumps(train_featnet(a.train_featnet, steps=a.steps, limit=a.limit), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
