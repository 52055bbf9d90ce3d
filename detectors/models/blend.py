"""``blend``: detects face-swap / reenactment blending boundaries, trained with self-blended images (SBI).

Shiohara & Yamasaki (CVPR 2022): blend a slightly transformed copy of a *real* face into itself through a soft
face-shaped mask. The pseudo-fake carries the generic traces of face swapping (a colour / sharpness mismatch and a
blending boundary) without any generator's fingerprint, so the detector needs only real faces and generalises to
unseen manipulation methods. Inputs are aligned crops, so the landmark convex hull is the canonical 5-point
template (eyes, nose, mouth corners) scaled by the crop margin, jittered per sample; an ellipse is used with
probability ``ellipse_p``. Edges are softened with a random Gaussian blur.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from detectors.base import CompactCNNDetector, DetectorConfig
from detectors.registry import register_detector

# ArcFace-style 5-point template on a 112 px crop (left eye, right eye, nose, left mouth, right mouth)
TEMPLATE_112 = np.array(
    [[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]], dtype=np.float32
)


def template_points(margin: float) -> np.ndarray:
    """The 5 template landmarks in [0, 1] crop coordinates for an aligned crop with ``margin`` context."""
    p = TEMPLATE_112 / 112.0
    return (p - 0.5) / (1.0 + margin) + 0.5


def _hull_mask(points: np.ndarray, size: int, grow: float) -> np.ndarray:
    import cv2

    c = points.mean(axis=0)
    pts = (c + (points - c) * grow) * size
    # extend upwards to cover the forehead, as the full 68-point hull would
    top = pts[:2].copy()
    top[:, 1] -= (pts[3:, 1].mean() - pts[:2, 1].mean()) * 0.9
    hull = cv2.convexHull(np.concatenate([pts, top]).astype(np.float32)).astype(np.int32)
    m = np.zeros((size, size), np.float32)
    cv2.fillConvexPoly(m, hull, 1.0)
    return m


def _ellipse_mask(size: int, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return (((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0).astype(np.float32)


def random_blend_mask(
    size: int, margin: float, rng: np.random.Generator, ellipse_p: float = 0.3, points: np.ndarray | None = None
) -> np.ndarray:
    """A soft face mask in [0, 1] (size, size). ``points``: the face's 5 landmarks in [0, 1] crop coordinates when
    known (a face larger or off the template); the template's for ``margin`` otherwise."""
    import cv2

    if rng.random() < ellipse_p:
        if points is None:
            cx, cy, ax, ay = 0.5, 0.55, rng.uniform(0.22, 0.34), rng.uniform(0.28, 0.4)
        else:  # the same ellipse in units of the face's size relative to the template's
            tpl = template_points(margin)
            k = float(np.hypot(*(points[1] - points[0])) / np.hypot(*(tpl[1] - tpl[0])))
            cx, cy = points.mean(0) + (np.array([0.5, 0.55]) - tpl.mean(0)) * k
            ax, ay = rng.uniform(0.22, 0.34) * k, rng.uniform(0.28, 0.4) * k
        m = _ellipse_mask(size, cx + rng.normal(0, 0.02), cy + rng.normal(0, 0.02), ax, ay)
    else:
        base = template_points(margin) if points is None else np.asarray(points, np.float32)
        pts = base + rng.normal(0, 0.01, (5, 2)).astype(np.float32)
        m = _hull_mask(pts, size, grow=rng.uniform(1.1, 1.6))
    k = int(size * rng.uniform(0.05, 0.2)) | 1
    m = cv2.GaussianBlur(m, (k, k), 0)
    if m.max() > 0:
        m = m / m.max()
    return m * rng.uniform(0.5, 1.0) if rng.random() < 0.25 else m


def random_part_mask(
    size: int, margin: float, rng: np.random.Generator, parts: tuple[bool, ...] | None = None,
    points: np.ndarray | None = None,
):  # fmt: skip
    """A soft mask over a random non-empty subset of the eyes, the nose and the mouth (``parts``: which of left
    eye, right eye, nose, mouth; drawn when None): what a feature splice replaces (CIPLAB-style eye / nose / mouth
    edits), where :func:`random_blend_mask` covers what a face swap replaces. ``points``: the face's landmarks in
    [0, 1] crop coordinates (the template's for ``margin`` when None). Returns ``(mask, parts)``."""
    import cv2

    if parts is None:
        parts = tuple(bool(b) for b in rng.random(4) < 0.5)
        if not any(parts):
            parts = tuple(i == int(rng.integers(4)) for i in range(4))
    base = template_points(margin) if points is None else np.asarray(points, np.float64)
    p = (base + rng.normal(0, 0.008, (5, 2))) * size
    eye_d = float(np.hypot(*(p[1] - p[0])))
    m = np.zeros((size, size), np.float32)
    centres = [p[0], p[1], (p[2] + (p[0] + p[1]) / 2) / 2 + [0, 0.1 * eye_d], (p[3] + p[4]) / 2]
    axes = [(0.38, 0.24), (0.38, 0.24), (0.26, 0.42), (0.55, 0.3)]
    for on, c, (ax, ay) in zip(parts, centres, axes):
        if on:
            grow = rng.uniform(0.85, 1.3)
            axes_px = (max(1, int(ax * eye_d * grow)), max(1, int(ay * eye_d * grow)))
            cv2.ellipse(m, (int(round(c[0])), int(round(c[1]))), axes_px, 0.0, 0.0, 360.0, 1.0, -1)
    k = int(eye_d * rng.uniform(0.15, 0.45)) | 1
    m = cv2.GaussianBlur(m, (k, k), 0)
    return (m / m.max() if m.max() > 0 else m), parts


def self_blend(
    x: torch.Tensor,
    margin: float,
    rng: np.random.Generator,
    ellipse_p: float = 0.3,
    masks: np.ndarray | None = None,
    source: torch.Tensor | None = None,
    jitter: float | np.ndarray = 1.0,
) -> torch.Tensor:
    """Self-blended images from a batch of normalised real faces ``(N, 3, S, S)``.

    ``masks`` ``(N, S, S)`` in [0, 1] replace the drawn face masks (e.g. :func:`random_part_mask`); ``source`` (same
    shape as ``x``) is the donor blended in instead of each face itself: another photo's face, with its own
    history (a swap rather than a self-blend); ``jitter`` (a number, or one per face) scales the colour / contrast
    jitter (0: a donor already colour-matched to its target keeps its colour). Without them, the random stream is
    the one ``blend`` trained on."""
    n, _, s, _ = x.shape
    # source: colour / contrast jitter plus a small affine warp of the same face
    j = np.broadcast_to(np.asarray(jitter, np.float32), (n,)).reshape(n, 1, 1, 1)
    gain = torch.from_numpy((1.0 + (rng.uniform(0.9, 1.1, (n, 3, 1, 1)) - 1.0) * j).astype(np.float32)).to(x)
    bias = torch.from_numpy((rng.uniform(-0.08, 0.08, (n, 3, 1, 1)) * j).astype(np.float32)).to(x)
    src = (x if source is None else source) * gain + bias
    theta = torch.zeros(n, 2, 3)
    scale = torch.from_numpy(rng.uniform(0.95, 1.05, n).astype(np.float32))
    rot = torch.from_numpy(rng.uniform(-0.05, 0.05, n).astype(np.float32))
    theta[:, 0, 0] = scale * torch.cos(rot)
    theta[:, 0, 1] = -scale * torch.sin(rot)
    theta[:, 1, 0] = scale * torch.sin(rot)
    theta[:, 1, 1] = scale * torch.cos(rot)
    theta[:, :, 2] = torch.from_numpy(rng.uniform(-0.03, 0.03, (n, 2)).astype(np.float32))
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    src = F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if rng.random() < 0.5:  # sharpness mismatch: blur the source a little
        src = F.avg_pool2d(src, 3, stride=1, padding=1, count_include_pad=False)
    if masks is None:
        masks = np.stack([random_blend_mask(s, margin, rng, ellipse_p) for _ in range(n)])
    m = torch.from_numpy(np.asarray(masks, np.float32)[:, None]).to(x)
    return m * src + (1 - m) * x


@dataclass
class BlendConfig(DetectorConfig):
    widths: tuple[int, ...] = (24, 48, 96, 192)
    ellipse_p: float = 0.3
    use_fakes: bool = True
    dropout: float = 0.2


@register_detector(
    "blend",
    description="Self-blended-image detector for swap/reenactment boundaries (reals only).",
    tags=("blending", "image", "video"),
)
class BlendDetector(CompactCNNDetector):
    Config = BlendConfig
    needs_fakes = False

    def __init__(self, cfg: BlendConfig) -> None:
        super().__init__(cfg, in_channels=3)
        self._rng = np.random.default_rng(cfg.seed)

    def validation_views(self, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Val reals plus one fixed self-blend of each (seeded), and the labelled fakes only when they are
        training positives too (``use_fakes``): without this, a blending detector would be early-stopped and
        calibrated on how well it happens to rank GAN faces."""
        reals = x[y == 0]
        if not len(reals):
            return x, y
        t = torch.from_numpy(reals).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        rng = np.random.default_rng((seed, 5))
        blends = torch.cat([self_blend(c, self.cfg.margin, rng, self.cfg.ellipse_p) for c in t.split(256)])
        blends = ((blends + 1.0) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        parts, labels = [reals, blends], [np.zeros(len(reals), y.dtype), np.ones(len(reals), y.dtype)]
        if self.cfg.use_fakes:
            parts.append(x[y == 1])
            labels.append(y[y == 1])
        return np.concatenate(parts), np.concatenate(labels)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Reals (y=0) plus their self-blends (y=1); labelled fakes are kept as extra positives if ``use_fakes``."""
        real = x[y == 0]
        parts, labels = [real], [torch.zeros(real.shape[0], device=x.device)]
        if real.shape[0]:
            parts.append(self_blend(real, self.cfg.margin, self._rng, self.cfg.ellipse_p))
            labels.append(torch.ones(real.shape[0], device=x.device))
        if self.cfg.use_fakes:
            fake = x[y == 1]
            parts.append(fake)
            labels.append(torch.ones(fake.shape[0], device=x.device))
        xb, yb = torch.cat(parts), torch.cat(labels)
        z = self(xb)
        loss = F.binary_cross_entropy_with_logits(z.float(), yb)
        return loss, {"bce": float(loss.detach()), "n_blend": float(real.shape[0])}
