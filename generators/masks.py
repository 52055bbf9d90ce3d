"""Face-region and free-form masks for the inpainting editors (``inpaint`` GAN, the diffusion inpainter).

Masks are float tensors (N, 1, H, W) holding exactly 0 or 1 (1 = to be synthesised). They double as localisation
ground truth in the manifest, so they must be binary and reproducible from a seed: every random choice is drawn
from the ``torch.Generator`` the caller passes, on the CPU, so a seed gives the same mask on every device.

Region boxes come from the canonical 5-point face template (left eye, right eye, nose, left and right mouth
corners: the widely used ArcFace 112x112 template) placed in an aligned crop with a margin, which is how the
aligned real faces are framed (``framing="aligned"``). Measured with MTCNN on 40 FFHQ-128 thumbnails, the mean
landmarks lie within 0.02 of the template at ``margin=0.3`` (eyes y 0.475 vs 0.470, mouth y 0.736 vs 0.750).
UTKFace chips are aligned too but framed tighter and higher (eyes at y 0.30, mouth at 0.69), so they have their
own framing (``framing="utkface"``, medians of MTCNN landmarks on 80 random chips padded so the whole face is
visible; spread about 0.02). Boxes are sized with slack (fractions of the inter-ocular distance) and an optional
jitter covers the face-to-face spread. Per-image landmarks can be passed for faces framed any other way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from forensics_core.errors import UsageError

#: ArcFace 5-point template in a tight 112 px crop, normalised to [0, 1]: (x, y) for left eye, right eye, nose,
#: left mouth corner, right mouth corner.
TEMPLATE_5PT: tuple[tuple[float, float], ...] = (
    (38.2946 / 112, 51.6963 / 112),
    (73.5318 / 112, 51.5014 / 112),
    (56.0252 / 112, 71.7366 / 112),
    (41.5493 / 112, 92.3655 / 112),
    (70.7299 / 112, 92.2041 / 112),
)
DEFAULT_MARGIN = 0.3


def template_landmarks(margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    """The template's landmarks (5, 2) in [0, 1] coordinates of an aligned crop with ``margin`` around the face.

    A margin m shrinks the tight template by 1 / (1 + m) about the crop centre (the face then spans the central
    1 / (1 + m) of the crop), which matches ``align_face(..., margin=0.3)`` crops and FFHQ-style framing.
    """
    t = torch.tensor(TEMPLATE_5PT, dtype=torch.float32)
    return (t - 0.5) / (1.0 + margin) + 0.5


#: UTKFace "aligned & cropped" chips: median MTCNN landmarks (x, y in [0, 1]) over 80 random chips.
UTKFACE_5PT: tuple[tuple[float, float], ...] = (
    (0.302, 0.295),
    (0.695, 0.295),
    (0.495, 0.530),
    (0.312, 0.693),
    (0.680, 0.693),
)

#: framing name -> landmarks (5, 2) of a typical face in such a crop; a registry so a new dataset is one entry.
FRAMINGS: dict[str, Callable[[], torch.Tensor]] = {
    "aligned": lambda: template_landmarks(DEFAULT_MARGIN),
    "utkface": lambda: torch.tensor(UTKFACE_5PT, dtype=torch.float32),
}


def _point(index: int) -> property:
    """A read-only (N, 2) view of point ``index`` (in the 5-point template's order) of every face."""

    def get(self: Landmarks) -> torch.Tensor:
        return self.pts[:, index]

    return property(get)


@dataclass(frozen=True)
class Landmarks:
    """Named views of a (N, 5, 2) landmark tensor in [0, 1] coordinates, for readable box formulas."""

    pts: torch.Tensor

    left_eye = _point(0)
    right_eye = _point(1)
    nose = _point(2)
    mouth_left = _point(3)
    mouth_right = _point(4)

    @property
    def eye_distance(self) -> torch.Tensor:
        return (self.right_eye - self.left_eye).norm(dim=1)


# Region name -> function(landmarks) -> boxes (N, 4) as (x1, y1, x2, y2) in [0, 1]. A dict registry, so the
# inpainters, the CLI and the docs list the same names and a new region is one decorated function.
RegionFn = Callable[[Landmarks], torch.Tensor]
REGIONS: dict[str, RegionFn] = {}


def region(name: str) -> Callable[[RegionFn], RegionFn]:
    def deco(fn: RegionFn) -> RegionFn:
        REGIONS[name] = fn
        return fn

    return deco


@region("eyes")
def _eyes(lm: Landmarks) -> torch.Tensor:
    """Both eyes and brows' lower edge: one band, because editors usually change the pair together."""
    d = lm.eye_distance
    y = (lm.left_eye[:, 1] + lm.right_eye[:, 1]) / 2
    return torch.stack([lm.left_eye[:, 0] - 0.42 * d, y - 0.30 * d, lm.right_eye[:, 0] + 0.42 * d, y + 0.25 * d], 1)


@region("nose")
def _nose(lm: Landmarks) -> torch.Tensor:
    """From just below the eye line to under the nostrils."""
    d = lm.eye_distance
    eye_y = (lm.left_eye[:, 1] + lm.right_eye[:, 1]) / 2
    x = lm.nose[:, 0]
    return torch.stack([x - 0.32 * d, eye_y + 0.15 * d, x + 0.32 * d, lm.nose[:, 1] + 0.25 * d], 1)


@region("mouth")
def _mouth(lm: Landmarks) -> torch.Tensor:
    """Lips with a margin: corners +- a quarter eye distance, lip height about half an eye distance."""
    d = lm.eye_distance
    y = (lm.mouth_left[:, 1] + lm.mouth_right[:, 1]) / 2
    return torch.stack([lm.mouth_left[:, 0] - 0.25 * d, y - 0.25 * d, lm.mouth_right[:, 0] + 0.25 * d, y + 0.28 * d], 1)


#: what ``make_masks`` accepts: the face regions plus free-form strokes and a per-image random pick.
MASK_KINDS: tuple[str, ...] = (*REGIONS, "freeform", "random")


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, lo: float = 0.0, hi: float = 1.0):
    return lo + (hi - lo) * torch.rand(shape, generator=generator)


def framing_landmarks(framing: str) -> torch.Tensor:
    """Typical landmarks (5, 2) for a named framing; one-line error for an unknown name."""
    if framing not in FRAMINGS:
        raise UsageError(f"unknown face framing {framing!r} (choose one of {', '.join(FRAMINGS)})")
    return FRAMINGS[framing]()


def _as_landmarks(n: int, landmarks: torch.Tensor | None, framing: str) -> Landmarks:
    if landmarks is None:
        return Landmarks(framing_landmarks(framing).unsqueeze(0).expand(n, 5, 2))
    lm = torch.as_tensor(landmarks, dtype=torch.float32).cpu()
    if lm.ndim == 2:
        lm = lm.unsqueeze(0).expand(n, 5, 2)
    if lm.shape != (n, 5, 2):
        raise UsageError(f"landmarks must have shape ({n}, 5, 2) in [0, 1] crop coordinates, got {tuple(lm.shape)}")
    return Landmarks(lm)


def region_boxes(
    name: str,
    n: int,
    *,
    landmarks: torch.Tensor | None = None,
    framing: str = "aligned",
    jitter: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Boxes (n, 4) in [0, 1] for a face region; ``jitter`` randomly scales (+-jitter) and shifts (+-jitter/2 of
    the box size) each box, so a trained inpainter does not learn one exact hole position."""
    if name not in REGIONS:
        raise UsageError(f"unknown face region {name!r} (choose one of {', '.join(REGIONS)})")
    boxes = REGIONS[name](_as_landmarks(n, landmarks, framing)).clone()
    if jitter > 0:
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        s = _uniform((n,), generator, 1 - jitter, 1 + jitter)
        cx = cx + _uniform((n,), generator, -jitter / 2, jitter / 2) * w
        cy = cy + _uniform((n,), generator, -jitter / 2, jitter / 2) * h
        w, h = w * s, h * s
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    return boxes.clamp(0, 1)


def boxes_to_masks(boxes: torch.Tensor, res: int) -> torch.Tensor:
    """Rasterise (n, 4) boxes in [0, 1] to binary (n, 1, res, res) masks; pixel centres inside a box are 1.

    A box always covers at least one pixel, so a mask is never empty even at 16 px.
    """
    centres = (torch.arange(res, dtype=torch.float32) + 0.5) / res
    x1, y1, x2, y2 = (boxes[:, i, None] for i in range(4))
    inside_x = (centres[None] >= x1) & (centres[None] <= x2)  # (n, res)
    inside_y = (centres[None] >= y1) & (centres[None] <= y2)
    # Guarantee one pixel for a box thinner than a pixel: the pixel holding its centre.
    cx = ((x1 + x2) / 2 * res).long().clamp(0, res - 1)
    cy = ((y1 + y2) / 2 * res).long().clamp(0, res - 1)
    inside_x = inside_x | torch.zeros_like(inside_x).scatter_(1, cx, True)
    inside_y = inside_y | torch.zeros_like(inside_y).scatter_(1, cy, True)
    return (inside_y[:, :, None] & inside_x[:, None, :]).unsqueeze(1).float()


def freeform_masks(
    n: int,
    res: int,
    generator: torch.Generator | None = None,
    *,
    max_strokes: int = 4,
    max_vertices: int = 6,
    width: tuple[float, float] = (0.04, 0.10),
    max_step: float = 0.18,
) -> torch.Tensor:
    """Random brush strokes (DeepFill v2 style): polylines of random turning steps drawn with a round brush.

    Each image gets 1..``max_strokes`` strokes starting in the central face area; a stroke has 2..``max_vertices``
    vertices, each a random step of up to ``max_step`` (fraction of the image) in a random direction, drawn with a
    brush of ``width`` (fraction of the image). Rasterised as distance-to-segment <= radius on the pixel grid, so
    it needs no drawing library and is exact and deterministic.
    """
    centres = (torch.arange(res, dtype=torch.float32) + 0.5) / res
    gy, gx = torch.meshgrid(centres, centres, indexing="ij")
    grid = torch.stack([gx, gy], -1).reshape(-1, 2)  # (P, 2)
    out = torch.zeros(n, res * res, dtype=torch.bool)
    for i in range(n):
        n_strokes = int(torch.randint(1, max_strokes + 1, (1,), generator=generator))
        for _ in range(n_strokes):
            n_vert = int(torch.randint(2, max_vertices + 1, (1,), generator=generator))
            radius = float(_uniform((1,), generator, *width)) / 2
            p = _uniform((2,), generator, 0.25, 0.75)
            angle = float(_uniform((1,), generator, 0, 2 * math.pi))
            for _v in range(n_vert - 1):
                angle += float(_uniform((1,), generator, -math.pi / 2, math.pi / 2))
                step = float(_uniform((1,), generator, max_step / 3, max_step))
                q = (p + step * torch.tensor([math.cos(angle), math.sin(angle)])).clamp(0.05, 0.95)
                seg = q - p
                t = ((grid - p) @ seg / seg.dot(seg).clamp_min(1e-12)).clamp(0, 1)
                dist = (grid - (p + t[:, None] * seg)).norm(dim=1)
                out[i] |= dist <= max(radius, 0.5 / res)  # at least the pixels the centre line crosses
                p = q
    return out.reshape(n, 1, res, res).float()


def normalize_kind(kind: str) -> str:
    """Accept CLI spellings: ``free-form`` / ``free_form`` / ``Mouth``."""
    return kind.strip().lower().replace("-", "").replace("_", "")


def make_masks(
    kind: str,
    n: int,
    res: int,
    generator: torch.Generator | None = None,
    *,
    landmarks: torch.Tensor | None = None,
    framing: str = "aligned",
    jitter: float = 0.0,
    choices: tuple[str, ...] = (*REGIONS, "freeform"),
) -> torch.Tensor:
    """Binary masks (n, 1, res, res), 1 = region to synthesise.

    ``kind`` is a face region (``eyes``, ``nose``, ``mouth``), ``freeform`` (random strokes) or ``random`` (each
    image draws one of ``choices``; the training distribution of the inpainters).
    """
    kind = normalize_kind(kind)
    if kind not in MASK_KINDS:
        raise UsageError(f"unknown mask region {kind!r} (choose one of {', '.join(MASK_KINDS)})")
    if n <= 0:
        return torch.zeros(0, 1, res, res)
    if kind == "freeform":
        return freeform_masks(n, res, generator)
    if kind != "random":
        return boxes_to_masks(
            region_boxes(kind, n, landmarks=landmarks, framing=framing, jitter=jitter, generator=generator), res
        )
    names = pick_regions(n, generator, tuple(normalize_kind(c) for c in choices))
    masks = torch.zeros(n, 1, res, res)
    lm = landmarks if landmarks is None else torch.as_tensor(landmarks, dtype=torch.float32)
    for name in dict.fromkeys(names):
        idx = torch.tensor([i for i, m in enumerate(names) if m == name])
        sub_lm = None if lm is None else (lm if lm.ndim == 2 else lm[idx])
        masks[idx] = make_masks(name, len(idx), res, generator, landmarks=sub_lm, framing=framing, jitter=jitter)
    return masks


def pick_regions(
    n: int, generator: torch.Generator | None = None, choices: tuple[str, ...] = (*REGIONS, "freeform")
) -> list[str]:
    """Draw one mask kind per image from ``choices`` (what ``make_masks("random", ...)`` uses)."""
    bad = [c for c in choices if c not in MASK_KINDS or c == "random"]
    if bad or not choices:
        raise UsageError(f"unknown mask choices {bad or '()'} (choose from {', '.join(MASK_KINDS[:-1])})")
    return [choices[int(i)] for i in torch.randint(0, len(choices), (n,), generator=generator)]


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Pixel bounding boxes (N, 4) as (x1, y1, x2, y2), end-exclusive, of each mask's 1s (whole image if empty).

    Used to crop the local discriminator's view of the hole.
    """
    n, _, h, w = masks.shape
    m = masks.reshape(n, h, w) > 0.5
    rows, cols = m.any(2), m.any(1)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    big = torch.tensor(10**9, device=masks.device)
    y1 = torch.where(rows, ar_h, big).min(1).values
    y2 = torch.where(rows, ar_h, -big).max(1).values + 1
    x1 = torch.where(cols, ar_w, big).min(1).values
    x2 = torch.where(cols, ar_w, -big).max(1).values + 1
    empty = ~rows.any(1)
    full = torch.tensor([0, 0, w, h], device=masks.device)
    boxes = torch.stack([x1, y1, x2, y2], 1)
    return torch.where(empty[:, None], full, boxes).float()
