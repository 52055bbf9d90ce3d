"""Noise level and residual spectrum of the face against its own surround.

A face pasted from another capture keeps that capture's sensor noise and resolution: after resampling (swap
pipelines render the face smaller and enlarge it), denoising or a soft blend, its noise floor and the finest band
of its residual spectrum fall below the surround's; a sharpened or noisier donor lies above. Unlike ``noise``
(face box against everything else), this compares the inner face with the ring around it, measures the noise
on the flatter pixels only (texture and edges leak into any residual) and adds the spectrum's shape (finest
difference-of-Gaussian band over the next), which separates "smoother" from "resampled".
"""

from __future__ import annotations

import math

import numpy as np

from forensics.evidence import EvidenceResult, EvidenceSubject, register_evidence
from forensics.evidence._common import REAL_SCALE_TEXT, real_scale, surround_result

#: |log noise ratio| and |spectrum-slope difference| of real photos: median and 99th percentile
#: (``python -m benchmarks.evidence_scales``: 300 shared training reals, JPEG q85)
NOISE_SCALE, SLOPE_SCALE = (0.303, 2.209), (0.137, 0.963)


def _face(pixels: np.ndarray, lm: np.ndarray) -> tuple[dict, np.ndarray]:
    from detectors.inconsistency.anomaly import (
        MIN_REFERENCE_PX,
        Z_FULL,
        noise_level_map,
        spectrum_map,
        surround_z,
        window_px,
    )
    from detectors.inconsistency.features import region_stats
    from detectors.inconsistency.maps import compute_maps
    from detectors.inconsistency.regions import PARTS, SURROUND_RHO, face_geometry, face_regions

    mp = compute_maps(pixels)
    regions = face_regions(pixels.shape[:2], lm)
    st = region_stats(mp, regions)
    win = window_px(face_geometry(lm).eye_dist)
    zn = surround_z(noise_level_map(mp, win), regions)  # (z-maps fall back to band + surround alike)
    zs = surround_z(spectrum_map(mp, win), regions)
    heat = np.where(regions.rho <= SURROUND_RHO, np.maximum(zn, zs) / Z_FULL, 0.0)
    ref = "surround" if st["surround"]["n"] >= MIN_REFERENCE_PX else "band"  # a face filling the photo
    core, sur = st["core"], st[ref]
    finding = {
        "reference": ref,
        "noise_ratio": math.exp(core["noise"] - sur["noise"]),
        "slope_difference": (core["e1"] - core["e2"]) - (sur["e1"] - sur["e2"]),
        "part_noise_ratio": {p: math.exp(st[p]["noise"] - st["skin"]["noise"]) for p in PARTS},
        "window": win,
    }
    return finding, np.clip(heat, 0.0, 1.0).astype(np.float32)


def _judge(finding: dict) -> tuple[float, str]:
    r, s = finding["noise_ratio"], finding["slope_difference"]
    noise = abs(math.log(r)) if r and math.isfinite(r) else None
    score = max(real_scale(noise, *NOISE_SCALE), real_scale(abs(s), *SLOPE_SCALE))
    if score < 0.5:
        return score, (
            f"Inner face and surround share a noise level ({r:.2f}x) and spectrum shape ({s:+.2f}): no noise "
            "inconsistency seen."
        )
    if r < 1 or s < 0:
        return score, (
            f"The inner face is smoother than its surround (noise {r:.2f}x, finest-band slope {s:+.2f}): consistent "
            "with a face resampled, denoised or softly blended before it was pasted; retouching, make-up and depth "
            "of field also cause this."
        )
    return score, (
        f"The inner face carries more fine residual than its surround (noise {r:.2f}x, slope {s:+.2f}): "
        "consistent with a sharpened or noisier donor face; a sharp face before a blurred background also "
        "causes this."
    )


@register_evidence(
    "surround-noise",
    scope="file",
    label="noise level vs surround",
    description="Noise level and residual spectrum of the inner face vs. its surround.",
    strength="the larger of the largest face's |log noise ratio| and |spectrum-slope difference| against its "
    f"surround, each on the scale of real photos: {REAL_SCALE_TEXT}",
)
def surround_noise(subject: EvidenceSubject) -> EvidenceResult:
    return surround_result("surround-noise", subject, _face, _judge)
