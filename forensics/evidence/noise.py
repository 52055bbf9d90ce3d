"""Noise residual: what is left after removing image content with a median filter.

Camera sensors leave a fairly uniform noise floor over a photo; generated or pasted faces are often smoother (or
noisier, when upsampled) than the surrounding real image. The analysis maps local residual energy and compares
the faces with the background.
"""

from __future__ import annotations

import numpy as np

from forensics.evidence import EvidenceResult, EvidenceSubject, register_evidence
from forensics.evidence._common import contrast_strength, limit_size, normalise, ratio_score, region_contrast, to_gray

WINDOW = 15  # local statistics window, px: big enough for a stable estimate, small enough to localise a face


@register_evidence(
    "noise",
    scope="file",
    label="noise residual",
    description="Noise residual energy map, face vs. background.",
    strength=contrast_strength("the noise residual"),
)
def noise(subject: EvidenceSubject) -> EvidenceResult:
    import cv2  # here, not at import: registering the analysis (for --help) must stay light

    pixels, boxes, scale = limit_size(subject.pixels, subject.face_boxes)
    gray = to_gray(pixels)
    denoised = cv2.medianBlur(np.clip(gray, 0, 255).astype(np.uint8), 3).astype(np.float32)
    residual = gray - denoised
    local_std = np.sqrt(np.maximum(cv2.blur(residual * residual, (WINDOW, WINDOW)), 0.0))
    inside, outside, ratio = region_contrast(local_std, boxes)
    details = {
        "residual_std": float(residual.std()),
        "face_residual": inside,
        "background_residual": outside,
        "face_to_background": ratio,
        "window": WINDOW,
        "analysis_scale": scale,
    }
    if ratio is None:
        summary = f"Residual noise std {residual.std():.2f} (no face/background split to compare)."
    elif ratio < 1 / 1.5:
        summary = (
            f"Faces carry less sensor-like noise than the background ({ratio:.2f}x): consistent with a smoothed, "
            "generated or pasted face; shallow depth of field and skin retouching also cause this."
        )
    elif ratio > 1.5:
        summary = (
            f"Faces carry more high-frequency residual than the background ({ratio:.2f}x): consistent with "
            "upsampling or sharpening applied to the face region."
        )
    else:
        summary = f"Noise level of faces and background agree ({ratio:.2f}x): no noise inconsistency seen."
    return EvidenceResult("noise", "file", ratio_score(ratio), summary, details, normalise(local_std))
