"""Detector heatmap (Grad-CAM): which parts of the face drove the model's score.

The heatmap comes from the model itself (``Model.explain``), so it explains *this detector's* decision, not the
ground truth: a hot mouth region means the detector found its cues there, which an analyst can then inspect.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forensics.evidence import EvidenceResult, register_evidence

REGIONS = ("eyes and forehead", "nose and cheeks", "mouth and chin")


@register_evidence(
    "gradcam",
    scope="face",
    label="detector heatmap (Grad-CAM)",
    description="Detector heatmap (Grad-CAM) over each scored face.",
    strength="no number: the map shows where on the face the detector's score came from (bright = more), scaled "
    "per face; it explains the model, it does not locate a manipulation",
)
def gradcam(face: np.ndarray, model: Any) -> EvidenceResult:
    heat = np.asarray(model.explain(face), dtype=np.float32)
    if heat.ndim != 2 or heat.size == 0:
        raise ValueError(f"model.explain returned shape {heat.shape}, expected HxW")
    heat = np.clip(np.nan_to_num(heat), 0.0, 1.0)
    h, w = heat.shape
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    thirds = [float(heat[i * h // 3 : (i + 1) * h // 3].mean()) for i in range(3)]
    region = REGIONS[int(np.argmax(thirds))]
    total = float(heat.sum()) or 1.0
    top = np.sort(heat.ravel())[::-1][: max(1, heat.size // 10)]
    details = {
        "peak_xy": [float(x / max(w - 1, 1)), float(y / max(h - 1, 1))],
        "mean": float(heat.mean()),
        "top10_share": float(top.sum() / total),
        "band_means": {r: t for r, t in zip(REGIONS, thirds)},
    }
    summary = f"The detector's evidence concentrates on the {region} (explains the model's score, not ground truth)."
    return EvidenceResult("gradcam", "face", None, summary, details, heat)
