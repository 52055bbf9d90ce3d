"""Differences between two benchmark runs, with bootstrap intervals on the difference itself.

Two intervals that overlap do not mean "no difference", and two that do not overlap overstate it; what matters is the
interval of ``metric(B) - metric(A)``. When both runs scored the same items (same content hashes, the usual case: two
detectors or two versions on one benchmark file) the bootstrap is *paired*: each replicate resamples items once and
evaluates both runs on that resample, which removes the item-difficulty variance both share. Otherwise the two runs
are resampled independently. Resampling is stratified by class, as for every interval in the toolkit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.metrics import average_precision, brier, ece, eer, roc_auc, tpr_at_fpr
from forensics_core.errors import DataError

METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "auc": roc_auc,
    "ap": average_precision,
    "eer": lambda y, p: eer(y, p)[0],
    "tpr_at_fpr1": lambda y, p: tpr_at_fpr(y, p, 0.01),
    "ece": ece,
    "brier": brier,
}


@dataclass
class Difference:
    cell: str
    level: str
    metric: str
    a: float
    b: float
    diff: float
    lo: float
    hi: float
    paired: bool
    n: str = ""  # real/fake items the interval resamples (A's; "A vs B" when the runs scored different sets)

    @property
    def significant(self) -> bool:
        return self.lo > 0 or self.hi < 0


def load_cells(run_dir: str | Path) -> dict[tuple[str, str], dict]:
    d = Path(run_dir) / "cells"
    if not d.is_dir():
        raise DataError(f"{run_dir}: no cells/ folder (not a benchmark run folder)")
    out = {}
    for f in sorted(d.glob("*.json")):
        c = json.loads(f.read_text(encoding="utf-8"))
        out[(c["id"], c["level"])] = c
    return out


def _strata(y: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(y == c) for c in (0, 1) if (y == c).any()]


def _resample(rng: np.random.Generator, strata: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([rng.choice(s, size=s.size, replace=True) for s in strata])


def diff_cell(a: dict, b: dict, metric: str, n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> Difference:
    fn = METRICS[metric]
    ya, pa = np.asarray(a["y"]), np.asarray(a["p"])
    yb, pb = np.asarray(b["y"]), np.asarray(b["p"])
    va, vb = fn(ya, pa), fn(yb, pb)
    rng = np.random.default_rng(seed)
    paired = a["keys"] == b["keys"]
    if not paired and set(a["keys"]) == set(b["keys"]):  # same items in another order: align B to A
        pos = {k: i for i, k in enumerate(b["keys"])}
        order = np.array([pos[k] for k in a["keys"]])
        yb, pb, paired = yb[order], pb[order], True
    sa, sb = _strata(ya), _strata(yb)
    d = np.empty(n_boot)
    for i in range(n_boot):
        ia = _resample(rng, sa)
        ib = ia if paired else _resample(rng, sb)
        d[i] = fn(yb[ib], pb[ib]) - fn(ya[ia], pa[ia])
    alpha = 1 - ci
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    na, nb = (f"{int((y == 0).sum())}/{int(y.sum())}" for y in (ya, yb))
    n = na if na == nb else f"{na} vs {nb}"
    return Difference(a["id"], a["level"], metric, va, vb, vb - va, float(lo), float(hi), paired, n)


def compare_runs(
    run_a: str | Path, run_b: str | Path, metrics: list[str], n_boot: int = 1000, seed: int = 0
) -> tuple[list[Difference], list[str]]:
    """Differences for every cell present in both runs; also returns the cell ids found in only one of them."""
    ca, cb = load_cells(run_a), load_cells(run_b)
    common = [k for k in ca if k in cb]
    if not common:
        raise DataError(f"{run_a} and {run_b} share no cells (different benchmark files or detector labels?)")
    out = []
    for key in common:
        for m in metrics:
            try:
                out.append(diff_cell(ca[key], cb[key], m, n_boot=n_boot, seed=seed))
            except ValueError:  # a cell with one class only: no metric to compare
                continue
    only = sorted(f"{i} ({lvl})" for i, lvl in set(ca) ^ set(cb))
    return out, only


def to_table(diffs: list[Difference]) -> str:
    lines = ["| cell | level | metric | A | B | B - A [95% CI] | n real/fake | paired |",
             "|---|---|---|---|---|---|---|---|"]
    for d in diffs:
        mark = " *" if d.significant else ""
        lines.append(
            f"| {d.cell} | {d.level} | {d.metric} | {d.a:.4f} | {d.b:.4f} | "
            f"{d.diff:+.4f} [{d.lo:+.4f}, {d.hi:+.4f}]{mark} | {d.n} | {'yes' if d.paired else 'no'} |"
        )
    return "\n".join(lines)


def to_json(diffs: list[Difference]) -> list[dict]:
    return [{**asdict(d), "significant": d.significant} for d in diffs]
