"""``cgan``: a class-conditional GAN on face attributes (gender, age group, race) with a projection discriminator.

Ideas from Miyato & Koyama, "cGANs with Projection Discriminator" (2018) and the SNGAN / BigGAN line:
- G is conditioned through *conditional batch norm*: each attribute value owns a learned gain and bias per channel,
  summed over the three attributes, so the label changes the statistics of every layer, not just the input.
- D is unconditional features phi(x) plus a *projection* term sum_a <embed_a(y_a), phi(x)>, which is the
  log-likelihood-ratio form of a conditional discriminator. phi comes from a DCGAN-style strided trunk with batch
  norm (``d_arch="strided"``, the default) or from SNGAN's spectrally normalised residual blocks (``"resnet"``,
  with ``d_norm="spectral"`` and ``loss="hinge"``); the second one gave G an almost flat critic on a CPU budget.
- Unknown labels (-1, e.g. FFHQ faces with no UTKFace name) map to a dedicated "unknown" embedding in G and
  contribute nothing to D's projection, so unlabelled faces still train the unconditional part. A small label
  dropout (``label_dropout``) trains that "unknown" path on labelled data as well.

Upsampler: plain **bilinear** x2 followed by a 3x3 conv (tag ``bilinear``). resgan uses nearest, stylegan2 a
zero-insert + [1,3,3,1] FIR filter, dcgan/cyclegan transposed convs: bilinear interpolation without a dedicated
low-pass filter leaves its own (softer than nearest, more aliased than FIR) spectrum, so the suite covers one more
upsampling trace and leave-one-upsampler-out has one more held-out group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from forensics_core.errors import UsageError
from generators.base import ATTRIBUTES, Batch, GenConfig, GeneratorFamily, Samples, random_condition
from generators.layers import (
    LOSSES,
    GanState,
    channels_per_level,
    choose,
    d_norm,
    flag_on_any_rank,
    frozen,
    kw,
    lazy_r1_step,
    optimizer_step,
    requires_grad,
)
from generators.registry import register_generator

ATTR_NAMES: tuple[str, ...] = tuple(ATTRIBUTES)


def check_resolution(family: GeneratorFamily, res: int) -> None:
    """One-line error for a resolution the architecture does not support (shared by the editing families)."""
    if res not in family.resolutions:
        raise UsageError(f"{family.name}: resolution {res} not supported (choose one of {family.resolutions})")


def need_labels(family_name: str, cond: torch.Tensor | None) -> torch.Tensor:
    """Families that learn from attributes cannot train on a batch without them: say how to provide them."""
    if cond is None:
        raise UsageError(
            f"{family_name} needs attribute labels (UTKFace manifest or file names age_gender_race_*.jpg); "
            "this dataset has none"
        )
    return cond


class LabelStarvation:
    """Counts consecutive batches without usable labels and fails after ``limit`` of them.

    A mixed dataset (UTKFace + unlabelled FFHQ) may hand over an unlabelled batch now and then, which is fine; a
    dataset with no labels at all would otherwise train for hours without ever learning the condition.
    """

    def __init__(self, family_name: str, limit: int) -> None:
        self.family_name, self.limit, self.count = family_name, limit, 0

    def update(self, starved: bool, what: str) -> None:
        self.count = self.count + 1 if starved else 0
        if self.limit and self.count >= self.limit:
            raise UsageError(
                f"{self.family_name} needs attribute labels (UTKFace manifest or file names): {self.count} batches in "
                f"a row had {what}"
            )


def _age_bucket(value: str) -> str | None:
    """Map a plain age ('25') to its bucket ('20-29'), so ``age=25`` works as well as ``age=20-29``."""
    if not value.isdigit():
        return None
    age = int(value)
    buckets = ATTRIBUTES["age"]
    return buckets[min(age // 10, len(buckets) - 1)]


def parse_condition(condition: str | dict[str, Any] | None) -> dict[str, str]:
    """Validate a condition given as ``{"gender": "female"}`` or ``"gender=female,age=20-29"``.

    Returns canonical ``{attribute: value}``; unknown attributes or values raise a one-line UsageError that lists
    the valid choices.
    """
    if condition is None or condition == "" or condition == {}:
        return {}
    if isinstance(condition, str):
        pairs: dict[str, Any] = {}
        for part in condition.split(","):
            key, sep, val = part.partition("=")
            if not sep or not key.strip() or not val.strip():
                raise UsageError(f"bad condition {part!r}: expected attribute=value, e.g. gender=female,age=20-29")
            pairs[key.strip()] = val.strip()
        condition = pairs
    out: dict[str, str] = {}
    for key, val in condition.items():
        if key not in ATTRIBUTES:
            raise UsageError(f"unknown condition attribute {key!r} (choose one of {', '.join(ATTRIBUTES)})")
        sval = str(val).strip().lower()
        if key == "age" and sval not in ATTRIBUTES["age"]:
            sval = _age_bucket(sval) or sval
        if sval not in ATTRIBUTES[key]:
            raise UsageError(f"unknown {key} value {val!r} (choose one of {', '.join(ATTRIBUTES[key])})")
        out[key] = sval
    return out


class AttributeEmbedding(nn.Module):
    """Sum of one embedding per attribute; index len(values) is the 'unknown' entry (label -1)."""

    def __init__(self, dim: int, init: float = 0.0, norm: str = "none") -> None:
        super().__init__()
        self.tables = nn.ModuleList()
        for values in ATTRIBUTES.values():
            emb = nn.Embedding(len(values) + 1, dim)
            nn.init.normal_(emb.weight, init, 0.02)
            self.tables.append(d_norm(norm)(emb))

    def forward(self, cond: torch.Tensor, mask_unknown: bool = False) -> torch.Tensor:
        total = 0
        for j, table in enumerate(self.tables):
            known = cond[:, j] >= 0
            idx = torch.where(known, cond[:, j], torch.full_like(cond[:, j], table.num_embeddings - 1))
            e = table(idx)
            total = total + (e * known[:, None] if mask_unknown else e)
        return total


class ConditionalBatchNorm(nn.Module):
    """BN without affine parameters, then a per-sample gain and bias from the attribute embeddings."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(ch, affine=False)
        self.gain = AttributeEmbedding(ch)
        self.bias = AttributeEmbedding(ch)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * (1 + self.gain(cond))[:, :, None, None] + self.bias(cond)[:, :, None, None]


class GBlock(nn.Module):
    """CBN-ReLU-bilinear x2-conv-CBN-ReLU-conv, with a bilinear + 3x3 shortcut.

    A 1x1 shortcut would carry the bilinearly upsampled 4x4 map straight to the output; on a CPU budget G stayed
    stuck drawing those smooth blocks ("box" samples, loss_d at 2.0 for 700 steps), as resgan did.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = ConditionalBatchNorm(cin), ConditionalBatchNorm(cout)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 3, 1, 1)

    @staticmethod
    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.up(F.relu(self.bn1(x, cond))))
        h = self.conv2(F.relu(self.bn2(h, cond)))
        return h + self.skip(self.up(x))


class Generator(nn.Module):
    def __init__(self, res: int, z_dim: int, ch: int, ch_max: int) -> None:
        super().__init__()
        widths = channels_per_level(res, ch, ch_max)
        self.z_dim, self.c0 = z_dim, widths[0]
        self.fc = nn.Linear(z_dim, widths[0] * 16)
        self.blocks = nn.ModuleList(GBlock(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out_bn = nn.BatchNorm2d(widths[-1])
        self.out = nn.Conv2d(widths[-1], 3, 3, 1, 1)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.c0, 4, 4)
        for block in self.blocks:
            h = block(h, cond)
        return torch.tanh(self.out(F.relu(self.out_bn(h))))


class DBlock(nn.Module):
    """SN conv-LReLU-conv then 2x2 average pool, with a pooled 1x1 shortcut (optimised first block: no pre-act)."""

    def __init__(self, cin: int, cout: int, first: bool = False, norm: str = "spectral") -> None:
        super().__init__()
        wrap = d_norm(norm)
        self.first = first
        self.conv1 = wrap(nn.Conv2d(cin, cout, 3, 1, 1))
        self.conv2 = wrap(nn.Conv2d(cout, cout, 3, 1, 1))
        self.skip = wrap(nn.Conv2d(cin, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.leaky_relu(x, 0.2)
        h = self.conv2(F.leaky_relu(self.conv1(h), 0.2))
        return F.avg_pool2d(h, 2) + self.skip(F.avg_pool2d(x, 2))


class ProjectionDiscriminator(nn.Module):
    """phi(x) by SN residual blocks down to 4x4 and sum pooling; logit = psi(phi) + sum_a <embed_a(y_a), phi>.

    Called with ``cond=None`` (e.g. by a detector reusing it) it returns the unconditional term only.
    """

    def __init__(self, res: int, ch: int, ch_max: int, norm: str = "spectral") -> None:
        super().__init__()
        widths = channels_per_level(res, ch, ch_max)[::-1]  # res -> 4 px
        self.blocks = nn.ModuleList(
            DBlock(3 if i == 0 else widths[i - 1], widths[i], first=i == 0, norm=norm) for i in range(len(widths) - 1)
        )
        self.feat_dim = widths[-2]
        self.linear = d_norm(norm)(nn.Linear(self.feat_dim, 1))
        self.embed = AttributeEmbedding(self.feat_dim, norm=norm)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for block in self.blocks:
            h = block(h)
        return F.leaky_relu(h, 0.2).sum((2, 3))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.features(x)
        out = self.linear(phi).squeeze(1)
        if cond is not None:
            out = out + (self.embed(cond, mask_unknown=True) * phi).sum(1)
        return out


class StridedProjectionDiscriminator(ProjectionDiscriminator):
    """DCGAN's discriminator body (k4s2 convs, batch norm, LeakyReLU) under the same projection head.

    phi(x) is the flattened 4x4 map, so the head sees *where* features are, not only their sum. The trunk is the
    one that trains to faces fastest on a CPU budget here (dcgan: face rate 1.0 in 8 minutes); per-batch BN
    statistics (real and fake batches pass separately) give D an early signal that the residual SN critic
    lacked: that one stayed at D(real) ~= D(fake) while G tracked it (measured, see docs/generators.md).
    """

    def __init__(self, res: int, ch: int, ch_max: int, norm: str = "none") -> None:
        nn.Module.__init__(self)
        c = channels_per_level(res, ch, ch_max)[::-1]
        layers: list[nn.Module] = [nn.Conv2d(3, c[1], 4, 2, 1), nn.LeakyReLU(0.2)]
        for i in range(1, len(c) - 1):
            layers += [nn.Conv2d(c[i], c[i + 1], 4, 2, 1, bias=False), nn.BatchNorm2d(c[i + 1]), nn.LeakyReLU(0.2)]
        self.trunk = nn.Sequential(*layers)
        self.feat_dim = c[-1] * 16
        self.linear = d_norm(norm)(nn.Linear(self.feat_dim, 1))
        self.embed = AttributeEmbedding(self.feat_dim, norm=norm)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x).flatten(1)


#: name -> projection discriminator class; ``d_arch`` picks one
D_ARCHS: dict[str, type[ProjectionDiscriminator]] = {
    "resnet": ProjectionDiscriminator,
    "strided": StridedProjectionDiscriminator,
}


def build_projection_d(cfg: CGANConfig) -> ProjectionDiscriminator:
    return choose(D_ARCHS, cfg.d_arch, "d_arch", "cgan")(cfg.res, cfg.ch, cfg.ch_max, cfg.d_norm)


@dataclass
class CGANConfig(GenConfig):
    z_dim: int = 128
    ch: int = 32
    ch_max: int = 256
    lr: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_dis: int = 1  # D steps per G step
    label_dropout: float = 0.1  # fraction of labels replaced by 'unknown' during training
    ema_decay: float = 0.999
    max_unlabelled_batches: int = 50  # fail after this many label-free batches in a row (0 = never)
    # D: the strided BN trunk with non-saturating loss trains to faces on a CPU budget; "resnet" + "spectral" +
    # "hinge" (+ beta1 0, beta2 0.9) is the SNGAN-style projection D, which stayed flat there (docs/generators.md)
    d_arch: str = "strided"  # key of D_ARCHS
    d_norm: str = "none"  # key of generators.layers.D_NORMS
    loss: str = "nonsat"  # key of generators.layers.LOSSES
    r1_gamma: float = 0.0  # R1 on reals (lazy, every r1_every steps); pair with d_norm=none
    r1_every: int = 16
    # learning-rate multiplier for G's conditional-BN gain / bias tables: at the base rate they had moved ~0.02 from
    # their initialisation after 1,361 steps, and every condition row of the grid drew the same face
    cond_lr_mul: float = 1.0


@register_generator(
    "cgan",
    upsampler="bilinear",
    kind="conditional",
    description="class-conditional GAN on gender/age/race: conditional BN, projection D, non-saturating loss",
    # d_arch="strided" (the default) is DCGAN's discriminator body under the projection head; the check_* helpers
    # cyclegan / inpaint / srgan import from here only validate inputs
    components=("dcgan-discriminator",),
)
class CGAN(GanState, GeneratorFamily):
    """Class-conditional face GAN; ``sample(..., condition={"gender": "female", "age": "20-29"})``.

    Attributes not named in the condition are drawn uniformly per image; the full condition used for each image
    is recorded in its ``meta["condition"]`` (the manifest's provenance).
    """

    Config = CGANConfig
    presets = {
        "16": {"res": 16, "ch": 32, "ch_max": 128, "batch": 32},
        "32": {"res": 32, "ch": 32, "ch_max": 256, "batch": 32},
        "64": {"res": 64, "ch": 32, "ch_max": 256, "batch": 32},
        "128": {"res": 128, "ch": 32, "ch_max": 256, "batch": 16},
    }

    def __init__(self, cfg: CGANConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(cfg, device)
        check_resolution(self, cfg.res)
        self.init_gan_state(
            Generator(cfg.res, cfg.z_dim, cfg.ch, cfg.ch_max),
            build_projection_d(cfg),
            cfg.lr, cfg.lr_d, (cfg.beta1, cfg.beta2),
        )
        if cfg.cond_lr_mul != 1.0:
            cond = [p for n, p in self.G.named_parameters() if ".tables." in n]
            rest = [p for n, p in self.G.named_parameters() if ".tables." not in n]
            self.opt_G = torch.optim.Adam(
                [{"params": rest}, {"params": cond, "lr": cfg.lr * cfg.cond_lr_mul}], lr=cfg.lr,
                betas=(cfg.beta1, cfg.beta2),
            )
        self.starvation = LabelStarvation(self.name, cfg.max_unlabelled_batches)
        self.d_loss_fn, self.g_loss_fn = choose(LOSSES, cfg.loss, "loss", self.name)

    def _drop_labels(self, cond: torch.Tensor) -> torch.Tensor:
        if self.cfg.label_dropout <= 0:
            return cond
        drop = torch.rand(cond.shape) < self.cfg.label_dropout
        return torch.where(drop.to(cond.device), torch.full_like(cond, -1), cond)

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        cfg = self.cfg
        cond = need_labels(self.name, batch.cond).to(self.device).long()
        self.starvation.update(flag_on_any_rank(bool((cond < 0).all()), self.device), "no known gender, age or race")
        real = batch.image.to(self.device)
        n = real.shape[0]
        out: dict[str, float] = {}
        requires_grad(self.D, True)
        for _ in range(cfg.n_dis):
            c_real = self._drop_labels(cond)
            # Fakes get labels from the real batch's distribution (with the same dropout), so D cannot tell fakes
            # by an unusual label mix.
            c_fake = self._drop_labels(cond[torch.randperm(n, device=cond.device)])
            with torch.no_grad():
                fake = self.G(torch.randn(n, cfg.z_dim, device=self.device), c_fake)
            loss_d = self.d_loss_fn(self.D(real, c_real), self.D(fake, c_fake))
            optimizer_step(self.opt_D, loss_d)
        out["loss_d"] = float(loss_d.detach())
        r1 = lazy_r1_step(lambda x: self.D(x, cond), real, self.opt_D, cfg.r1_gamma, cfg.r1_every, step)
        if r1 is not None:
            out["r1"] = r1
        with frozen(self.D):
            c_fake = self._drop_labels(cond[torch.randperm(n, device=cond.device)])
            loss_g = self.g_loss_fn(self.D(self.G(torch.randn(n, cfg.z_dim, device=self.device), c_fake), c_fake))
            self.generator_update(loss_g, step)
        out["loss_g"] = float(loss_g.detach())
        out["known_labels"] = float((cond >= 0).float().mean())
        return out

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, **kwargs: Any) -> Samples:
        """``condition`` (dict or ``"gender=female,age=20-29"``) fixes attributes; ``truncation`` scales z."""
        fixed = parse_condition(kwargs.get("condition"))
        psi = float(kw(kwargs, "truncation", 1.0))
        z = torch.randn(n, self.cfg.z_dim, generator=generator) * psi
        cond = random_condition(n, generator).cpu()
        for key, val in fixed.items():
            cond[:, ATTR_NAMES.index(key)] = ATTRIBUTES[key].index(val)
        images = self.G_ema(z.to(self.device), cond.to(self.device)).clamp(-1, 1).float()
        meta = [
            {
                "condition": {a: ATTRIBUTES[a][int(c[j])] for j, a in enumerate(ATTR_NAMES)},
                "condition_fixed": sorted(fixed),
                "truncation": psi,
            }
            for c in cond
        ]
        return Samples(images=images, meta=meta)
