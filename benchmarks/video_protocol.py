"""The ``video`` benchmark protocol: clips scored frame by frame, by manipulation method and CRF.

A built-in protocol in its own module: its class and ``@register_protocol`` line here, its module name in
:data:`benchmarks.protocols.BUILTIN_MODULES`. Planning is :class:`~benchmarks.protocols.ScoringProtocol`'s (cells at
``level = "video"``); the runner scores each clip's frames and aggregates them (``benchmarks.runner.score_video``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.protocols import ScoringProtocol, register_protocol


@register_protocol("video", "frame-level and clip-level scores of model files on videos, by method and CRF")
class VideoProtocol(ScoringProtocol):
    level = "video"
    role = None

    @dataclass
    class Options:
        group_by: list[str] = field(default_factory=lambda: ["method", "crf"])
        every: int = 5  # score every N-th frame
        max_frames: int = 64  # per clip
        aggregate: str = "mean"  # clip score from frame scores: mean | median | max | topk
        topk: float = 0.25  # fraction of frames averaged by 'topk'
        faces: str = ""  # face detector used to crop frames ("opencv", "mtcnn"); "" = centre square
        #: also score each clip by its face track's temporal consistency (``detectors.temporal``): levels
        #: ``flicker`` (the face-vs-surround contrasts' frame-to-frame change over the surround's own) and ``drift``
        #: (the inner face's appearance decorrelation over the surround's); ratios, so their cells report AUC only
        temporal: bool = False

    def score_cell(self, state: Any, cell: Any, pool: Any) -> list[Any] | None:
        """Frame and clip scores (the runner's), plus the temporal levels when ``options.temporal``."""
        if not state.cfg.options.temporal:
            return None
        from benchmarks.perturbations import parse_perturbation
        from benchmarks.runner import CellScores, _face_cropper, _frames, _hashable, model_key, score_video
        from detectors.temporal import track_consistency
        from forensics_core.errors import ForensicsError

        parts = score_video(state, cell, pool)
        opts = state.cfg.options
        model = state.models[model_key(cell)]
        pert = parse_perturbation(cell.perturbation)
        crop = _face_cropper(model, opts.faces, state.device)
        items, errors = _hashable(cell.items)
        keys, y, flicker, drift = [], [], [], []
        for item in items:
            try:
                frames = [pert(f) for f in _frames(item, opts.every, opts.max_frames, crop)]
            except (ForensicsError, OSError, ValueError) as exc:
                errors.append(f"{item.path}: {exc}")
                continue
            tc = track_consistency(frames, model.preprocess.margin)
            keys.append(item.key)
            y.append(item.y)
            flicker.append(tc.boundary_flicker)
            drift.append(tc.appearance_drift)
        for level, values in (("flicker", flicker), ("drift", drift)):
            parts.append(CellScores(cell, level, list(keys), np.asarray(y, np.int64), np.asarray(values), errors))
        return parts

    def cell_metrics(self, scores: dict[str, Any], thresholds: dict[str, float], m: Any) -> dict[str, Any] | None:
        """Temporal levels are ratios, not probabilities: AUC with its bootstrap interval, nothing calibrated."""
        if scores.get("level") not in ("flicker", "drift"):
            return None
        from benchmarks.metrics import bootstrap_ci, roc_auc

        y, p = np.asarray(scores["y"]), np.asarray(scores["p"], np.float64)
        if y.min() == y.max():
            return {"note": "one class only"}
        out: dict[str, Any] = {"auc": roc_auc(y, p), "ci": {}}
        if m.bootstrap:
            out["ci"]["auc"] = list(bootstrap_ci(roc_auc, y, p, n_boot=m.bootstrap, seed=m.seed, alpha=1 - m.ci))
        return out
