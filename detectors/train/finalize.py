"""The end of a run: calibrate on one half of validation, pick threshold presets on the reals, measure on the other
half and write the model file with its card (what data, which families, which delivery trained it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from detectors.train.options import TrainOptions


def stratified_halves(y: np.ndarray) -> np.ndarray:
    """Boolean mask of half A: every other item *within each class*, so both halves keep both classes."""
    mask = np.zeros(len(y), dtype=bool)
    for c in (0, 1):
        idx = np.flatnonzero(y == c)
        mask[idx[::2]] = True
    return mask


def finalize_model(
    out: Path,
    det: Any,
    val_s: np.ndarray,
    val_y: np.ndarray,
    half_a: np.ndarray,
    opts: TrainOptions,
    train_src: list,
    val_src: list,
    run_info: dict[str, Any],
    n_train: int,
    held: dict[str, np.ndarray] | None = None,
    held_sources: dict[str, np.ndarray] | None = None,
) -> Path:
    """Calibrate on val half A; threshold presets on every val real (a preset's tail needs all the reals there
    are: see :func:`detectors.calibration.preset_support`), held under every delivery of ``held`` (val reals'
    logits re-delivered each way: :func:`detectors.calibration.held_real_logits`), for each source of
    ``held_sources`` (per delivery, aligned with ``held``) on its own too;
    metrics on half B; write the model file."""
    from detectors.calibration import fit_calibrator, hold_presets, preset_support, threshold_presets
    from detectors.metrics import MIN_BOOT, evaluate_scores
    from detectors.modelfile import save_model

    cal = fit_calibrator(opts.calibration, val_s[half_a], val_y[half_a])
    thresholds = threshold_presets(cal.predict_proba(val_s), val_y)
    hold_table: dict[str, Any] = {}
    if held:
        probs = {k: cal.predict_proba(v) for k, v in held.items()}
        thresholds, hold_table = hold_presets(thresholds, probs, held_sources)
    metrics: dict[str, Any] = {}
    b = ~half_a
    if 0 < val_y[b].sum() < b.sum():
        rep = evaluate_scores(
            val_y[b], val_s[b], cal.predict_proba(val_s[b]), thresholds, n_boot=MIN_BOOT, seed=opts.seed
        )
        metrics["val_heldout_half"] = rep.to_dict()
    training = {
        "detector": opts.detector,
        "datasets": [dataclasses.asdict(s) for s in train_src],
        "val_datasets": [dataclasses.asdict(s) for s in val_src],
        "families": sorted({f for s in train_src for f in s.families}),
        "exclude_families": opts.exclude_families,
        "exclude_generators": opts.exclude_generators,
        **({"group_weights": opts.group_weights} if opts.group_weights else {}),
        "n_train": n_train,
        "n_val": int(len(val_y)),
        "augment": opts.augment,
        "match_res": opts.match_res,
        "delivery": _delivery_record(opts.delivery),
        "framing": _framing_record(opts.framing),
        "calibration_split": "calibration on the even-indexed half of val, threshold presets on all val reals, "
        "metrics on the odd half (its preset accuracies are therefore in-sample)"
        + ("; every val image with one fixed delivery history" if opts.delivery != "none" else "")
        + ("; FPR presets held under every common delivery of the val reals (threshold_hold)" if hold_table else ""),
        **({"threshold_hold": hold_table} if hold_table else {}),
        "options": {k: v for k, v in asdict(opts).items() if k not in ("detector_cfg",)},
        **run_info,
    }
    return save_model(
        out,
        det,
        cal,
        thresholds,
        training=training,
        metrics=metrics,
        licence=opts.licence,
        fp16=opts.fp16,
        threshold_support=preset_support(int((val_y == 0).sum())),
        name=opts.model_name or opts.detector,
        description=_describe(opts.detector),
    )


def _delivery_record(preset: str) -> dict[str, Any]:
    """The delivery distribution as the model card states it (preset name and every probability / range)."""
    from detectors.augment import DeliveryConfig

    cfg = DeliveryConfig.preset(preset)
    return {"preset": preset, **(asdict(cfg) if cfg is not None else {})}


def _framing_record(preset: str) -> dict[str, Any]:
    """The framing distribution as the model card states it."""
    from detectors.augment import FramingConfig

    cfg = FramingConfig.preset(preset)
    return {"preset": preset, **(asdict(cfg) if cfg is not None else {})}


def _describe(name: str) -> str:
    from detectors.registry import DETECTORS

    return DETECTORS.get(name).description
