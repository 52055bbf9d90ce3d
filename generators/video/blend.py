"""Blending a synthesised face back into a frame: the step that leaves the seams video detectors look for.

Face-swap and reenactment pipelines produce a face crop in the canonical (aligned) frame; it has to be warped
back through the inverse alignment, colour-matched to the target skin and composited through a soft mask. The
mask returned here is also the per-frame manipulation ground truth written next to each fake video.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class BlendConfig:
    """``mode``: ``soft`` (feathered alpha) or ``poisson`` (cv2.seamlessClone). ``feather`` is a fraction of the
    face size used as the Gaussian edge width; ``color`` enables Reinhard colour transfer in LAB space."""

    mode: str = "soft"
    feather: float = 0.08
    color: bool = True


def face_mask(size: int, landmarks: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """A float mask (size x size, 0..1) of the inner face in the aligned frame.

    An ellipse centred between eyes and mouth, sized from the 5 landmarks, covers brows to chin and cheek to cheek
    without the hairline or ears, where swaps fail first.
    """
    lm = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
    eyes = lm[:2].mean(0)
    mouth = lm[3:].mean(0)
    centre = (eyes + mouth) / 2 + np.array([0.0, 0.1]) * np.linalg.norm(mouth - eyes)
    eye_dist = float(np.linalg.norm(lm[1] - lm[0]))
    face_h = float(np.linalg.norm(mouth - eyes))
    axes = (max(1, int(eye_dist * 1.05 * scale)), max(1, int(face_h * 1.6 * scale)))
    angle = float(np.degrees(np.arctan2(lm[1, 1] - lm[0, 1], lm[1, 0] - lm[0, 0])))
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(mask, (int(centre[0]), int(centre[1])), axes, angle, 0, 360, 1.0, -1)
    return mask


def feather(mask: np.ndarray, width: float) -> np.ndarray:
    """Erode then blur so the soft edge stays inside the hard mask (no halo outside the face)."""
    k = max(1, int(width))
    eroded = cv2.erode(mask, np.ones((k, k), np.uint8))
    sigma = max(0.5, width / 2)
    return np.clip(cv2.GaussianBlur(eroded, (0, 0), sigma), 0.0, 1.0)


def color_transfer(src: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Match mean and std of ``src`` to ``ref`` inside ``mask`` in LAB space (Reinhard et al.)."""
    m = mask > 0.5
    if m.sum() < 16:
        return src
    s = cv2.cvtColor(src, cv2.COLOR_RGB2LAB).astype(np.float32)
    r = cv2.cvtColor(ref, cv2.COLOR_RGB2LAB).astype(np.float32)
    s_mean, s_std = s[m].mean(0), s[m].std(0) + 1e-3
    r_mean, r_std = r[m].mean(0), r[m].std(0) + 1e-3
    out = (s - s_mean) / s_std * r_std + r_mean
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def paste_back(
    frame: np.ndarray, face: np.ndarray, mask: np.ndarray, matrix: np.ndarray, cfg: BlendConfig = BlendConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """Composite the aligned ``face`` into ``frame``; ``matrix`` maps frame -> aligned coordinates (2x3).

    Returns the new frame and the binary manipulation mask in frame coordinates (uint8, 255 = manipulated).
    """
    h, w = frame.shape[:2]
    inv = cv2.invertAffineTransform(matrix)
    face_f = cv2.warpAffine(face, inv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mask_f = cv2.warpAffine(mask.astype(np.float32), inv, (w, h), flags=cv2.INTER_LINEAR)
    hard = (mask_f > 0.5).astype(np.uint8) * 255
    if cfg.color:
        face_f = color_transfer(face_f, frame, mask_f)
    if cfg.mode == "poisson" and hard.any():
        ys, xs = np.nonzero(hard)
        centre = (int((xs.min() + xs.max()) / 2), int((ys.min() + ys.max()) / 2))
        try:
            # a copy: OpenCV's seamlessClone erodes the mask it is given in place, and ``hard`` is the ground truth
            out = cv2.seamlessClone(face_f, frame, hard.copy(), centre, cv2.NORMAL_CLONE)
            return out, hard
        except cv2.error:  # mask touching the border: fall back to feathering
            pass
    scale = float(np.sqrt(max(1, int(hard.sum() // 255))))
    alpha = feather(mask_f, cfg.feather * scale)[..., None]
    out = (face_f.astype(np.float32) * alpha + frame.astype(np.float32) * (1 - alpha)).round()
    return out.clip(0, 255).astype(np.uint8), hard
