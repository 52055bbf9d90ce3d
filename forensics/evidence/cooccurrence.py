"""Residual co-occurrences against the surround, in the spirit of Splicebuster (Cozzolino, Poggi & Verdoliva 2015).

The third-order residual of the luma, quantised and truncated to three levels, has a distribution of four-pixel
patterns that depends on the camera, its processing and the compression, and hardly on the scene. Splicebuster
models an image's patterns and flags the windows a second model explains better; here the face tells us where the
host is: the surround's windows are the model of this photo (mean and regularised covariance of their
square-root histograms), and every neighbourhood is scored by its distance from them. A region pasted from another
capture reads as far even where its noise *level* matches.
"""

from __future__ import annotations

import numpy as np

from forensics.evidence import EvidenceResult, EvidenceSubject, register_evidence
from forensics.evidence._common import REAL_SCALE_TEXT, real_scale, surround_result

#: the inner face's median robust z of real photos: median and 99th percentile
#: (``python -m benchmarks.evidence_scales``: 300 shared training reals, JPEG q85)
Z_SCALE = (0.577, 13.22)


def _face(pixels: np.ndarray, lm: np.ndarray) -> tuple[dict, np.ndarray]:
    from detectors.inconsistency.anomaly import COOC_Z_FLOOR, Z_FULL, cooc_map, surround_z, window_px
    from detectors.inconsistency.features import region_stats
    from detectors.inconsistency.maps import compute_maps
    from detectors.inconsistency.regions import PARTS, SURROUND_RHO, face_geometry, face_regions

    mp = compute_maps(pixels)
    regions = face_regions(pixels.shape[:2], lm)
    st = region_stats(mp, regions)
    win = window_px(face_geometry(lm).eye_dist)
    z = surround_z(cooc_map(mp, regions, win), regions, signed=True, floor=COOC_Z_FLOOR)
    zc = float(np.median(z[regions.masks["core"]])) if regions.masks["core"].any() else 0.0
    finding = {
        "core_median_z": zc,
        "chi2_to_surround": {r: st[r]["cooc"] for r in ("core", "band", "skin", *PARTS)},
        "window": win,
    }
    heat = np.where(regions.rho <= SURROUND_RHO, np.clip(z, 0, None) / Z_FULL, 0.0)
    return finding, np.clip(heat, 0.0, 1.0).astype(np.float32)


def _judge(finding: dict) -> tuple[float, str]:
    zc = finding["core_median_z"]
    score = real_scale(zc, *Z_SCALE)
    if score < 0.5:
        return score, (
            f"The inner face's residual statistics fit its surround's (median z {zc:.1f}): no sign of another capture."
        )
    return score, (
        f"The inner face's residual co-occurrences lie outside its surround's (median z {zc:.1f}): consistent with "
        "a region from another camera or compression; strong retouching and very smooth skin also move them."
    )


@register_evidence(
    "cooccurrence",
    scope="file",
    label="residual co-occurrence vs surround",
    description="Splicebuster-style residual co-occurrence statistics of the face vs. its surround.",
    strength="how far the largest face's inner neighbourhoods lie from the surround's co-occurrence statistics (their "
    f"median robust z-score), on the scale of real photos: {REAL_SCALE_TEXT}",
)
def cooccurrence(subject: EvidenceSubject) -> EvidenceResult:
    return surround_result("cooccurrence", subject, _face, _judge)
