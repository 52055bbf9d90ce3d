"""``forensics detector eval``: score a model file on dataset dirs and report every metric with intervals.

Per-group rows (family / generator) compare that group's fakes against *all* reals of the evaluation set, which is
the question a leave-one-family-out table asks ("how well are this generator's fakes separated from real faces?").
Accuracy is measured at the model's stored presets, never at a threshold fitted on the data being evaluated.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from forensics_core.errors import DataError, UsageError

log = logging.getLogger(__name__)


#: ``--group-by`` value -> field of :class:`detectors.data.Item`
GROUP_BY = {"family": "group", "generator": "generator", "dataset": "dataset"}


@dataclass
class EvalResult:
    model: str
    model_sha256: str
    datasets: list[str]
    n_scored: int
    n_failed: int
    overall: dict[str, Any]
    by_group: dict[str, dict[str, Any]] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    images_per_s: float = 0.0
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_items(
    model: Any, items: list, batch: int = 64, progress: bool = False, history: Any = None, delivery: Any = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Logits for items (decode -> [source-store items: one fixed ``history`` for all, or each item's own history
    drawn from ``delivery`` seeded as :func:`detectors.data.eval_array` seeds it] -> face crop as scan takes it
    -> model); undecodable files are skipped and reported, never fatal."""
    from tqdm.auto import tqdm

    from detectors.data import ByteCache, face_view

    spec = model.preprocess
    cache = ByteCache(items)
    logits = np.full(len(items), np.nan)
    failures: list[str] = []
    for start in tqdm(range(0, len(items), batch), disable=not progress, desc="scoring", leave=False):
        idx, faces = [], []
        for i in range(start, min(start + batch, len(items))):
            try:
                rng = np.random.default_rng((seed, 7, i)) if delivery is not None else None
                img = cache.image(i)
                faces.append(
                    face_view(img, items[i], spec.size, spec.margin, rng, delivery, history, spec.crop, spec.edge)
                )
                idx.append(i)
            except DataError as exc:
                failures.append(str(exc))
        if faces:
            logits[idx] = model.logits(faces)
    ok = ~np.isnan(logits)
    return logits, ok, failures


@dataclass
class Recalibration:
    """What :func:`recalibrate` fitted: the calibrator, the presets (held when ``hold_table`` is set) and how
    many reals they rest on."""

    calibrator: Any
    thresholds: dict[str, float]
    hold_table: dict[str, Any]
    n_real: int


def recorded_delivery(card: dict[str, Any]) -> Any:
    """The delivery distribution a model was trained / validated with (its card's ``training.delivery``)."""
    from detectors.augment import DeliveryConfig

    recorded = card.get("training", {}).get("delivery") or "none"
    return DeliveryConfig.preset(recorded["preset"] if isinstance(recorded, dict) else recorded)


def check_fit_splits(splits: tuple[str, ...], command: str) -> None:
    """Refuse held-out splits (:data:`detectors.data.HELD_OUT_SPLITS`) as data to fit calibration or fusion on.

    Why: ``crossval`` / ``test`` rows are the numbers a model is reported on; thresholds or a fused reference fitted
    on them would make those numbers in-sample. ``--split`` accepts any manifest split, so the rule is enforced here
    rather than left to the reader of the help text."""
    from detectors.data import HELD_OUT_SPLITS

    bad = [s for s in splits if s in HELD_OUT_SPLITS]
    if bad:
        raise UsageError(
            f"detector {command} --split {bad[0]}: held-out test rows ({' / '.join(HELD_OUT_SPLITS)}) are never used "
            "for calibration or fusion; fit on val (the default) or train rows"
        )


def recalibrate(model: Any, items: list, method: str, hold: bool = True, delivery: Any = None) -> Recalibration:
    """Fit calibration and threshold presets of ``model`` on held-out ``items``; source-store items get the
    validation histories drawn from ``delivery``, and with ``hold`` the FPR presets are held under every common
    re-delivery of the reals (:data:`detectors.calibration.HOLD_UNDER`), for each real source on its own too."""
    from detectors.calibration import fit_calibrator, held_real_logits, hold_presets, threshold_presets

    z, ok, _ = score_items(model, items, delivery=delivery)
    y = np.array([it.y for it in items])[ok]
    cal = fit_calibrator(method, z[ok], y)
    thr = threshold_presets(cal.predict_proba(z[ok]), y)
    table: dict[str, Any] = {}
    if hold:
        held, sources = held_real_logits(items, lambda reals, chain: score_items(model, reals, history=chain)[0])
        if held:
            probs = {name: cal.predict_proba(v) for name, v in held.items()}
            thr, table = hold_presets(thr, probs, sources)
    return Recalibration(cal, thr, table, int((y == 0).sum()))


def evaluate_model(
    model: Any,
    dirs: list[str],
    splits: tuple[str, ...] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    batch: int = 64,
    progress: bool = False,
    group_by: str = "family",
) -> EvalResult:
    """Score every item of ``dirs`` (optionally only ``splits``); per-group rows group fakes by ``group_by``
    (``family``, ``generator`` or ``dataset``: generator separates two sets of one family, e.g. the project's own
    stylegan2 from thispersondoesnotexist's)."""
    from detectors.data import check_both_classes, crop_policy_gap, load_items
    from detectors.metrics import evaluate_scores

    if group_by not in GROUP_BY:
        raise UsageError(f"--group-by must be one of {', '.join(GROUP_BY)}, got {group_by!r}")
    items, _ = load_items(dirs, "eval", splits=splits)
    check_both_classes(items, ", ".join(dirs))
    if gap := crop_policy_gap(items, model.preprocess.crop):
        log.warning("%s: %s", ", ".join(dirs), gap)
    t0 = time.perf_counter()
    logits, ok, failures = score_items(model, items, batch, progress)
    dt = time.perf_counter() - t0
    items = [it for it, k in zip(items, ok) if k]
    z = logits[ok]
    y = np.array([it.y for it in items])
    check_both_classes(items, ", ".join(dirs) + " (after skipping unreadable files)")
    p = model.calibrator.predict_proba(z)
    overall = evaluate_scores(y, z, p, model.thresholds, n_boot=n_boot, seed=seed).to_dict()
    groups: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        if it.y == 1:
            groups[getattr(it, GROUP_BY[group_by])].append(i)
    reals = np.flatnonzero(y == 0)
    by_group = {}
    for g, idx in sorted(groups.items()):
        sel = np.concatenate([reals, np.asarray(idx)])
        by_group[g] = evaluate_scores(
            y[sel], z[sel], p[sel], model.thresholds, n_boot=n_boot, seed=seed
        ).to_dict()
    return EvalResult(
        model=model.name,
        model_sha256=model.sha256,
        datasets=list(dirs),
        n_scored=int(len(items)),
        n_failed=len(failures),
        overall=overall,
        by_group=by_group,
        thresholds=dict(model.thresholds),
        images_per_s=len(items) / max(dt, 1e-9),
        failures=failures[:20],
    )


def format_report(res: EvalResult) -> str:
    """A compact, human-readable table; every interval says the n (real/fake) it rests on, and TPR at 0.1% FPR is
    printed only with enough reals to place that threshold."""
    from detectors.metrics import MIN_REALS_FPR01

    def ci(d: dict, k: str) -> str:
        c = d.get("ci", {}).get(k)
        return f" [{c[0]:.3f}, {c[1]:.3f}] (n={d['n_real']}/{d['n_fake']})" if c else ""

    o = res.overall
    tpr01 = (f"{o['tpr_at_fpr01']:.4f}" if o["n_real"] >= MIN_REALS_FPR01
             else f"-  (needs >= {MIN_REALS_FPR01} reals, have {o['n_real']})")
    lines = [
        f"model {res.model} ({res.model_sha256[:12]}) on {', '.join(res.datasets)}",
        f"  scored {res.n_scored} ({o['n_real']} real, {o['n_fake']} fake), failed {res.n_failed}, "
        f"{res.images_per_s:.0f} images/s",
        f"  AUC        {o['auc']:.4f}{ci(o, 'auc')}",
        f"  AP         {o['ap']:.4f}{ci(o, 'ap')}",
        f"  EER        {o['eer']:.4f}{ci(o, 'eer')}",
        f"  TPR@1%FPR  {o['tpr_at_fpr1']:.4f}{ci(o, 'tpr_at_fpr1')}",
        f"  TPR@0.1%   {tpr01}",
        f"  ECE        {o['ece']:.4f}{ci(o, 'ece')}",
        f"  Brier      {o['brier']:.4f}{ci(o, 'brier')}",
    ]
    for name, t in res.thresholds.items():
        lines.append(
            f"  @{name:<8} (p >= {t:.4f}): accuracy {o['accuracy'].get(name, float('nan')):.4f}, "
            f"balanced accuracy {o['balanced_accuracy'].get(name, float('nan')):.4f}"
        )
    if res.by_group:
        lines.append("  per fake family / generator (vs all reals):")
        for g, d in res.by_group.items():
            lines.append(
                f"    {g:<28} AUC {d['auc']:.4f}{ci(d, 'auc')}  TPR@1%FPR {d['tpr_at_fpr1']:.4f}"
            )
    return "\n".join(lines)
