"""``warp``: training-free expression transfer by dense motion.

The driving clip's face is aligned to the canonical crop in every frame, and the dense optical flow from its
first frame to frame t (its expression and residual head motion, with identity factored out because both
frames show the same person) is applied to the target's aligned face, which is then blended back into the target
frame. Cheap enough for tests, it leaves blending seams and warping blur but no upsampling trace: exactly the
kind of manipulation that upsampling-artifact detectors miss.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from generators.video.blend import BlendConfig, face_mask, paste_back
from generators.video.tracks import FaceTrack, warp_to_crop


@dataclass(frozen=True)
class WarpConfig:
    size: int = 256
    margin: float = 0.3
    strength: float = 1.0  # scales the transferred motion; 0 gives back the target untouched (inside the mask)
    smooth: float = 3.0  # Gaussian sigma (px) applied to the flow so warps stay piecewise smooth
    blend: BlendConfig = BlendConfig()


def backward_flow(reference: np.ndarray, current: np.ndarray, smooth: float) -> np.ndarray:
    """Flow ``g`` with ``reference(p + g(p)) ~= current(p)``: the map that warps a neutral face into ``current``."""
    a = cv2.cvtColor(current, cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(reference, cv2.COLOR_RGB2GRAY)
    flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 3, 5, 1.1, 0)
    if smooth > 0:
        flow = cv2.GaussianBlur(flow, (0, 0), smooth)
    return flow


def apply_flow(image: np.ndarray, flow: np.ndarray, weight: np.ndarray | float = 1.0) -> np.ndarray:
    h, w = image.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    f = flow * (weight[..., None] if isinstance(weight, np.ndarray) else weight)
    return cv2.remap(image, gx + f[..., 0], gy + f[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warp_frames(
    target: list[np.ndarray],
    target_track: FaceTrack,
    driving: list[np.ndarray],
    driving_track: FaceTrack,
    cfg: WarpConfig = WarpConfig(),
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Return (fake frames, manipulation masks) for ``min(len(target), len(driving))`` frames."""
    from forensics_core.faces.crops import canonical_landmarks

    n = min(len(target), len(driving))
    s = cfg.size
    mask = face_mask(s, canonical_landmarks(s, cfg.margin))
    # motion fades out towards the mask edge so the warped face meets the untouched frame without a tear
    weight = cv2.GaussianBlur(mask, (0, 0), s * 0.04) * cfg.strength
    ref = warp_to_crop(driving[0], driving_track.matrices[0], s)
    out, masks = [], []
    for i in range(n):
        cur = warp_to_crop(driving[i], driving_track.matrices[i], s)
        flow = backward_flow(ref, cur, cfg.smooth)
        face = warp_to_crop(target[i], target_track.matrices[i], s)
        fake = apply_flow(face, flow, weight)
        frame, m = paste_back(target[i], fake, mask, target_track.matrices[i], cfg.blend)
        out.append(frame)
        masks.append(m)
    return out, masks
