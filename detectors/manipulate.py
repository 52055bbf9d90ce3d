"""The project's own swaps and splices, made from real face crops: training positives, validation, and (with their
masks) localisation ground truth.

A face swap or splice pastes a region from another capture into a photo: the region brings its own camera noise,
resolution, colour and compression history, and the blend leaves a boundary. This module makes such edits from
reals alone, through the blending of :mod:`detectors.models.blend` (SBI, Shiohara & Yamasaki 2022):

- the **donor** is the face itself (a self-blend, ``1 - p_cross``) or another real of the batch (a cross-blend:
  another person, another photo), given a history of its own (:func:`detectors.augment.random_delivery`: JPEG,
  resampling, blur, noise), a resolution loss (face generators and 3D swap pipelines render the face smaller and
  enlarge it), a blur or a sharpening, and either its low frequencies replaced by the target's (harmonised:
  colour and shading continuous, only texture, noise and compression differ, as after gradient-domain blending)
  or its colour pulled towards the target's (what swap tools' colour correction does);
- the **mask** is a face mask (:func:`detectors.models.blend.random_blend_mask`: what swaps replace) or eyes /
  nose / mouth (:func:`detectors.models.blend.random_part_mask`: what splices replace);
- after the edit the **whole crop** gets one more delivery history, and so does every real it is compared with
  (:func:`deliver_crop`, drawn from one distribution for both classes): the photo is uploaded after it was
  edited, and a history applied to one class only would be a label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ManipulationConfig:
    """Probabilities and ranges of one edit (see the module docstring)."""

    p_cross: float = 0.5
    p_parts: float = 0.35
    ellipse_p: float = 0.3
    p_donor_history: float = 0.6
    p_donor_resample: float = 0.65
    donor_scale: tuple[float, float] = (0.25, 0.9)
    p_donor_blur: float = 0.25
    donor_blur: tuple[float, float] = (0.3, 1.5)
    p_donor_sharpen: float = 0.15
    p_colour_match: float = 0.5
    #: share of edits whose donor's low frequencies (colour, shading: a Gaussian low-pass of ``harmonise_sigma``
    #: of the crop size) are replaced by the target's inside the mask, so only texture, noise and compression
    #: differ: what the gradient-domain blending and colour transfer of swap tools leave (their colour jitter off)
    p_harmonise: float = 0.4
    harmonise_sigma: tuple[float, float] = (0.03, 0.08)
    #: the delivery preset (:data:`detectors.augment.DELIVERY_PRESETS`) of the donor's own history and of the
    #: history every crop gets after the edit (``none``: no history after the edit)
    delivery: str = "mixed"
    #: place the masks on each crop's located face (:func:`detectors.inconsistency.locate.locate_landmarks`), not on the
    #: crop template: a tightly framed photo's face fills more of the crop
    locate: bool = True


def _rng_ops(rng: np.random.Generator, preset: str, side: int):
    from detectors.augment import DeliveryConfig, random_delivery

    cfg = DeliveryConfig.preset(preset)
    return [] if cfg is None else random_delivery(rng, cfg, side=side)


def deliver_crop(img: np.ndarray, rng: np.random.Generator, preset: str = "mixed") -> np.ndarray:
    """One random delivery history (:func:`detectors.augment.random_delivery`) applied to a crop, brought back to
    its size the way a scan's crop would be (area down, cubic up)."""
    from detectors.augment import deliver
    from forensics_core.degrade import resize_to

    side = img.shape[0]
    out, _ = deliver(img, None, _rng_ops(rng, preset, side))
    return out if out.shape[:2] == img.shape[:2] else resize_to(out, side)


def _donor(img: np.ndarray, rng: np.random.Generator, cfg: ManipulationConfig) -> np.ndarray:
    """The donor face's own history: resolution loss, blur or sharpening, and a delivery of its own."""
    import cv2

    from forensics_core import degrade as D

    out = img
    if rng.random() < cfg.p_donor_resample:
        interp = str(rng.choice(["area", "bilinear", "bicubic"]))
        back = str(rng.choice(["bilinear", "bicubic"]))
        out = D.rescale(out, scale=float(rng.uniform(*cfg.donor_scale)), interp=interp, back=back)
    r = rng.random()
    if r < cfg.p_donor_blur:
        out = D.blur(out, sigma=float(rng.uniform(*cfg.donor_blur)))
    elif r < cfg.p_donor_blur + cfg.p_donor_sharpen:
        soft = cv2.GaussianBlur(out.astype(np.float32), (0, 0), float(rng.uniform(0.8, 2.0)))
        amount = float(rng.uniform(0.3, 1.2))
        out = np.clip(out + amount * (out - soft), 0, 255).astype(np.uint8)
    if rng.random() < cfg.p_donor_history:
        out = deliver_crop(out, rng, cfg.delivery)
    return out


def _colour_match(donor: np.ndarray, target: np.ndarray, mask: np.ndarray, strength: float) -> np.ndarray:
    """Move the donor's mean colour inside ``mask`` ``strength`` of the way to the target's."""
    w = mask[..., None] > 0.5
    if w.sum() < 16:
        return donor
    d = donor.astype(np.float32)
    shift = (target.astype(np.float32) * w).sum((0, 1)) / w.sum() - (d * w).sum((0, 1)) / w.sum()
    return np.clip(d + strength * shift, 0, 255).astype(np.uint8)


def _harmonise(donor: np.ndarray, target: np.ndarray, sigma: float) -> np.ndarray:
    """The donor's detail on the target's low frequencies: ``donor - G(donor) + G(target)``."""
    import cv2

    d, t = donor.astype(np.float32), target.astype(np.float32)
    low = lambda a: cv2.GaussianBlur(a, (0, 0), sigma)  # noqa: E731
    return np.clip(d - low(d) + low(t), 0, 255).astype(np.uint8)


def manipulate(
    reals: np.ndarray, margin: float, rng: np.random.Generator, cfg: ManipulationConfig | None = None,
    landmarks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Edited copies of real crops ``(N, S, S, 3)`` uint8 cut for ``margin``: returns the edits (uint8, no
    delivery after the edit yet), their blend masks ``(N, S, S)`` in [0, 1] and each edit's kind (``self-face``,
    ``cross-face``, ``self-parts``, ``cross-parts``). ``landmarks`` ``(N, 5, 2)`` in crop pixels place each mask on
    its face (:func:`detectors.inconsistency.locate.locate_landmarks`); None: at the crop template."""
    import torch

    from detectors.models.blend import random_blend_mask, random_part_mask, self_blend

    cfg = cfg or ManipulationConfig()
    n, s = reals.shape[0], reals.shape[1]
    if n == 0:
        return reals.copy(), np.zeros((0, s, s), np.float32), []
    cross = rng.random(n) < cfg.p_cross
    if n < 2:
        cross[:] = False
    perm = (np.arange(n) + rng.integers(1, max(n, 2))) % n  # a derangement: nobody is their own donor
    parts = rng.random(n) < cfg.p_parts
    pts = [None] * n if landmarks is None else [np.asarray(lm, np.float64) / s for lm in landmarks]
    masks = np.stack([
        random_part_mask(s, margin, rng, points=q)[0] if p else random_blend_mask(s, margin, rng, cfg.ellipse_p, q)
        for p, q in zip(parts, pts)
    ])  # fmt: skip
    donors = np.empty_like(reals)
    jitter = np.ones(n, np.float32)
    for i in range(n):
        d = reals[perm[i]] if cross[i] else reals[i]
        d = _donor(d, rng, cfg)
        if rng.random() < cfg.p_harmonise:
            d = _harmonise(d, reals[i], float(rng.uniform(*cfg.harmonise_sigma)) * s)
            jitter[i] = 0.0
        elif rng.random() < cfg.p_colour_match:
            d = _colour_match(d, reals[i], masks[i], float(rng.uniform(0.5, 1.0)))
        donors[i] = d
    to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # noqa: E731
    out = self_blend(to_t(reals), margin, rng, cfg.ellipse_p, masks=masks, source=to_t(donors), jitter=jitter)
    out_u8 = ((out + 1.0) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    kinds = [f"{'cross' if c else 'self'}-{'parts' if p else 'face'}" for c, p in zip(cross, parts)]
    return out_u8, masks.astype(np.float32), kinds


def labelled_views(
    reals: np.ndarray, margin: float, rng: np.random.Generator, cfg: ManipulationConfig | None = None, views: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``views`` rounds of (every real, one edit of every real), each crop then given its own delivery after the
    edit (:func:`deliver_crop`, one distribution for both classes): images ``(2 * views * N, S, S, 3)`` and labels
    (0 real, 1 edited)."""
    from detectors.inconsistency.locate import locate_landmarks

    cfg = cfg or ManipulationConfig()
    landmarks = np.stack([locate_landmarks(im, margin)[0] for im in reals]) if cfg.locate and len(reals) else None
    xs, ys = [], []
    for _ in range(views):
        fakes, _, _ = manipulate(reals, margin, rng, cfg, landmarks)
        for batch, label in ((reals, 0), (fakes, 1)):
            xs.append(np.stack([deliver_crop(im, rng, cfg.delivery) for im in batch]))
            ys.append(np.full(len(batch), label, np.int64))
    return np.concatenate(xs), np.concatenate(ys)
