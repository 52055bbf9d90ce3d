"""What scores become: flag rates of reals, AUC of a fake/real pair with its intervals, precision at realistic
prevalences, and the summary a ``transfer-val`` result is judged and selected by.

Pure functions of score arrays and result dictionaries (no file, no model): the protocols compute them, the reports
and the selection rules read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.metrics import bootstrap_ci, roc_auc
from forensics_core.errors import DataError

N_BOOT = 1000
PREVALENCES = (0.01, 0.10, 0.50)


@dataclass
class RealVariant:
    """Reals under one delivery: how far they drift toward 'fake' and how many get flagged."""

    variant: str
    n: int
    n_unscored: int
    median_p: float
    median_shift: float
    flagged: dict[str, float] = field(default_factory=dict)


@dataclass
class Pair:
    """Fakes vs reals, both under the same delivery (or a named external pair)."""

    name: str
    n_real: int
    n_fake: int
    auc: float
    auc_ci: tuple[float, float]
    n_boot: int
    reals_flagged_fpr1: float
    tpr_fpr1: float
    precision_fpr1: dict[str, float | None] = field(default_factory=dict)
    #: exact (Clopper-Pearson) 95 % bounds of the two rates: 0 flagged reals of 400 is not a 0 % false-positive
    #: rate but one below 0.92 %, and precision at a low prevalence rests on that upper bound
    reals_flagged_fpr1_ci: tuple[float, float] = (0.0, 1.0)
    tpr_fpr1_ci: tuple[float, float] = (0.0, 1.0)
    #: precision at each prevalence from the bounds (worst: lowest TPR with highest FPR; best: the reverse)
    precision_fpr1_range: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)


def pair_metrics(name: str, p_real: np.ndarray, p_fake: np.ndarray, t_fpr1: float) -> Pair:
    """AUC (stratified bootstrap interval) and what the ``fpr1`` policy does on this pair."""
    p_real, p_fake = p_real[~np.isnan(p_real)], p_fake[~np.isnan(p_fake)]
    if not p_real.size or not p_fake.size:
        raise DataError(f"{name}: no scored reals or fakes")
    y = np.r_[np.zeros(p_real.size), np.ones(p_fake.size)]
    s = np.r_[p_real, p_fake]
    from detectors.metrics import clopper_pearson

    k_fp, k_tp = int(np.sum(p_real >= t_fpr1)), int(np.sum(p_fake >= t_fpr1))
    fpr, tpr = k_fp / p_real.size, k_tp / p_fake.size
    fpr_ci, tpr_ci = clopper_pearson(k_fp, p_real.size), clopper_pearson(k_tp, p_fake.size)
    prec = {f"{pi:g}": _precision(pi, tpr, fpr) for pi in PREVALENCES}
    prec_range = {f"{pi:g}": (_precision(pi, tpr_ci[0], fpr_ci[1]), _precision(pi, tpr_ci[1], fpr_ci[0]))
                  for pi in PREVALENCES}
    return Pair(
        name, int(p_real.size), int(p_fake.size), roc_auc(y, s), bootstrap_ci(roc_auc, y, s, n_boot=N_BOOT),
        N_BOOT, fpr, tpr, prec, fpr_ci, tpr_ci, prec_range,
    )


def _precision(prevalence: float, tpr: float, fpr: float) -> float | None:
    """Share of flagged files that are fake when ``prevalence`` of the stream is fake (None: nothing flagged)."""
    denom = prevalence * tpr + (1 - prevalence) * fpr
    return None if denom == 0 else round(prevalence * tpr / denom, 4)


def flag_rates(p_real: np.ndarray, thresholds: dict[str, float]) -> dict[str, float]:
    """Share of scored reals each preset flags, ``balanced`` included: the default policy needs its measured rate on
    reals the model never saw as much as the ``fpr*`` presets do (their promise holds only on validation reals)."""
    return {k: float(np.mean(p_real >= t)) for k, t in sorted(thresholds.items())}


def reals_summary(p_real: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    """What every table of reals reports: how many were scored (NaN: no score), their median P(fake) and the share
    each policy flags."""
    ok = p_real[~np.isnan(p_real)]
    return {"n": int(ok.size), "n_unscored": int(np.isnan(p_real).sum()), "median_p": float(np.median(ok)),
            "flagged": flag_rates(ok, thresholds)}


def real_variants(scores: dict[str, np.ndarray], thresholds: dict[str, float]) -> list[RealVariant]:
    raw = np.nanmedian(scores["raw"])
    out = []
    for v, p in scores.items():
        s = reals_summary(p, thresholds)
        out.append(RealVariant(v, s["n"], s["n_unscored"], s["median_p"], float(s["median_p"] - raw), s["flagged"]))
    return out


def transfer_val_summary(tv: dict[str, Any]) -> dict[str, Any]:
    """The numbers a transfer_val result is judged and selected by: every cell's AUC, the worst cell, the mean, the
    worst matched cell at native size / centre 75 % / 0.25x, the SD cross-source pair and the real flag rates."""
    cells = {(p["group"], p["variant"]): p["auc"] for p in tv["pairs"]}
    matched = {k: v for k, v in cells.items() if k[0] in tv["matched"]}

    def worst(variants: tuple[str, ...], keys: dict) -> float:
        return min(v for (_, var), v in keys.items() if var in variants)

    quarter = tuple(v for v in tv["variants"] if v.startswith("down0.25"))
    sd = {k: v for k, v in cells.items() if k[0] in tv["cross_source"]}
    return {
        "worst_cell": min(cells.values()), "worst_cell_name": " ".join(min(cells, key=cells.get)),
        "mean_auc": float(np.mean(list(cells.values()))),
        "worst_matched_raw": worst(("raw",), matched), "worst_matched_centre75": worst(("centre75",), matched),
        "worst_matched_quarter": worst(quarter, matched), "worst_sd": min(sd.values()) if sd else float("nan"),
        "sd_raw": cells.get((tv["cross_source"][0], "raw"), float("nan")) if tv["cross_source"] else float("nan"),
        "worst_real_flag_fpr1": max(r["flagged"]["fpr1"] for r in tv["reals"]),
    }
