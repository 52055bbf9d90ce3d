"""Detection metrics in pure numpy, shared by detector training, ``forensics detector eval`` and the benchmarks.

They live in ``detectors`` because detectors compute them first (training, calibration, eval); ``benchmarks.metrics``
re-exports them so the layers keep importing downwards.

Conventions (every function): ``y`` is 1 for fake and 0 for real; ``s`` is a score where larger means "more
likely fake" (a logit or a probability); ``p`` is a calibrated probability P(fake) in [0, 1]. A sample is
*flagged* when ``p >= threshold``. Metrics that need both classes raise :class:`ValueError` when one is missing,
because a silent 0.5 would look like a result.

Why hand-written instead of sklearn: the definitions are part of what we publish (ties, the EER interpolation,
the conservative TPR@FPR operating point, equal-width ECE bins), so they are written out and tested against
hand-computed cases in ``tests/test_metrics.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = [
    "MetricReport",
    "accuracy_at",
    "average_precision",
    "balanced_accuracy_at",
    "bootstrap_ci",
    "brier",
    "clopper_pearson",
    "ece",
    "eer",
    "evaluate_scores",
    "roc_auc",
    "roc_curve",
    "threshold_at_fpr",
    "tpr_at_fpr",
]


def _check(y: np.ndarray, s: np.ndarray, both: bool = True) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.int64).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length ({y.size} vs {s.size})")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if both and (y.sum() == 0 or y.sum() == y.size):
        raise ValueError("metric needs both classes (real and fake) present")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf")
    return y, s


def _midranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks where tied values share the mean of the ranks they span."""
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    # boundaries of runs of equal values
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], s.size]
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney U statistic: P(s_fake > s_real) + 0.5 P(tie)."""
    y, s = _check(y, s)
    r = _midranks(s)
    n1 = int(y.sum())
    n0 = y.size - n1
    u = r[y == 1].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def roc_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` at every distinct score, descending; the first point is (0, 0) at +inf.

    Tied scores form one operating point (they cannot be separated by any threshold).
    """
    y, s = _check(y, s)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]
    tp = np.cumsum(y_sorted)[last_of_run]
    fp = (last_of_run + 1) - tp
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (y.size - y.sum())]
    thr = np.r_[np.inf, s_sorted[last_of_run]]
    return fpr, tpr, thr


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """AP = sum over distinct thresholds of (R_k - R_{k-1}) P_k (step-wise, no interpolation; sklearn's definition)."""
    y, s = _check(y, s)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]
    tp = np.cumsum(y_sorted)[last_of_run].astype(np.float64)
    predicted = last_of_run + 1.0
    precision = tp / predicted
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def eer(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold: where FPR = FNR, linearly interpolated between ROC points.

    Returns ``(eer, threshold)``; the threshold is interpolated between the two bracketing scores (or the
    score itself when the crossing lands on a point), so "flag when s >= threshold" gives about the EER.
    """
    fpr, tpr, thr = roc_curve(y, s)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # increases from -1 (at +inf) to +1
    i = int(np.flatnonzero(diff >= 0)[0])
    if diff[i] == 0 or i == 0:
        t = thr[i] if np.isfinite(thr[i]) else thr[1]
        return float(fpr[i]), float(t)
    # interpolate on the segment between points i-1 (diff<0) and i (diff>=0)
    a = -diff[i - 1] / (diff[i] - diff[i - 1])
    rate = fpr[i - 1] + a * (fpr[i] - fpr[i - 1])
    t_hi = thr[i - 1] if np.isfinite(thr[i - 1]) else thr[i]
    t = t_hi + a * (thr[i] - t_hi)
    return float(rate), float(t)


def tpr_at_fpr(y: np.ndarray, s: np.ndarray, fpr: float = 0.01) -> float:
    """The highest TPR among ROC operating points whose FPR is <= ``fpr`` (conservative: no interpolation)."""
    f, t, _ = roc_curve(y, s)
    ok = f <= fpr + 1e-12
    return float(t[ok].max())


def threshold_at_fpr(real_scores: np.ndarray, fpr: float) -> float:
    """Smallest threshold such that at most ``fpr`` of ``real_scores`` satisfy ``score >= threshold``.

    Used for the ``fpr1`` / ``fpr01`` presets: picked on validation reals, never on the test set. With fewer than
    ``1/fpr`` reals the threshold is just above the largest real score (0 false positives on val).
    """
    r = np.sort(np.asarray(real_scores, dtype=np.float64).ravel())
    if r.size == 0:
        raise ValueError("threshold_at_fpr needs at least one real score")
    k = int(np.floor(fpr * r.size))  # number of reals allowed at or above the threshold
    # threshold must exceed r[-(k+1)] (the (k+1)-th largest), so that only k reals can reach it
    pivot = r[r.size - k - 1]
    return float(np.nextafter(pivot, np.inf))


def accuracy_at(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """Accuracy of "flag as fake when p >= threshold"."""
    y, p = _check(y, p, both=False)
    return float(np.mean((p >= threshold).astype(np.int64) == y))


def balanced_accuracy_at(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """Mean of TPR and TNR at ``threshold`` (insensitive to class balance)."""
    y, p = _check(y, p)
    pred = p >= threshold
    tpr = pred[y == 1].mean()
    tnr = (~pred[y == 0]).mean()
    return float((tpr + tnr) / 2.0)


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of P(fake) with ``n_bins`` equal-width bins on [0, 1].

    ``sum_b |mean(y in b) - mean(p in b)| * n_b / N``; p == 1.0 falls in the last bin.
    """
    y, p = _check(y, p, both=False)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("ECE needs probabilities in [0, 1]")
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            total += abs(y[m].mean() - p[m].mean()) * m.sum()
    return float(total / y.size)


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of P(fake) against the 0/1 label."""
    y, p = _check(y, p, both=False)
    return float(np.mean((p - y) ** 2))


def bootstrap_ci(
    fn: Callable[[np.ndarray, np.ndarray], float],
    y: np.ndarray,
    s: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    stratified: bool = True,
) -> tuple[float, float]:
    """Percentile bootstrap ``(lo, hi)`` interval of ``fn(y, s)``.

    Stratified by class (reals and fakes resampled separately) so every replicate keeps the class counts and
    AUC is always defined; seeded so reports are reproducible.
    """
    y, s = _check(y, s, both=False)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in (0, 1)] if stratified else [np.arange(y.size)]
    groups = [g for g in groups if g.size]
    vals = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=g.size, replace=True) for g in groups])
        vals[b] = fn(y[idx], s[idx])
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided ``1 - alpha`` interval ``(lo, hi)`` for a binomial rate: ``k`` events in
    ``n`` trials, e.g. reals flagged among the reals a false-positive rate rests on.

    Why exact and not the bootstrap: a flag rate near 0 is exactly where resampling fails (0 of 400 flagged
    resamples to 0 every time and gives the interval [0, 0]); the beta quantiles give the upper bound a reader can
    rely on (0 of 400: below 0.92 % at 95 %). It is conservative: coverage is at least ``1 - alpha`` for every rate.
    """
    from scipy.stats import beta

    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise ValueError(f"clopper_pearson: k and n must be whole counts, got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n < 1:
        raise ValueError(f"clopper_pearson: n={n}: a rate needs at least one trial (no trials, no interval)")
    if not 0 <= k <= n:
        raise ValueError(f"clopper_pearson: k={k} events outside 0..n={n}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"clopper_pearson: alpha={alpha} must lie in (0, 1)")
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


#: Reports print TPR at 0.1% FPR only with at least this many reals: below it the threshold sits on the top one or
#: two real scores and the number is noise. (The value is still computed and stored.)
MIN_REALS_FPR01 = 1000
#: Fewest bootstrap resamples behind an interval the project reports; fewer (fast tests) is marked in reports
MIN_BOOT = 1000


@dataclass
class MetricReport:
    """All headline metrics of one score set; ``ci`` maps metric name -> (lo, hi) 95% bootstrap interval from
    ``n_boot`` stratified resamples of the ``n_real`` / ``n_fake`` items."""

    n_real: int
    n_fake: int
    auc: float
    ap: float
    eer: float
    tpr_at_fpr1: float
    tpr_at_fpr01: float
    ece: float | None = None
    brier: float | None = None
    accuracy: dict[str, float] = field(default_factory=dict)
    balanced_accuracy: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    n_boot: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_scores(
    y: np.ndarray,
    s: np.ndarray,
    p: np.ndarray | None = None,
    thresholds: dict[str, float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> MetricReport:
    """Every metric at once. ``s`` ranks (logits are fine); ``p`` (calibrated P(fake)) enables ECE, Brier and
    accuracies at the model's preset ``thresholds``. ``n_boot=0`` skips the intervals."""
    y, s = _check(y, s)
    rep = MetricReport(
        n_real=int((y == 0).sum()),
        n_fake=int(y.sum()),
        auc=roc_auc(y, s),
        ap=average_precision(y, s),
        eer=eer(y, s)[0],
        tpr_at_fpr1=tpr_at_fpr(y, s, 0.01),
        tpr_at_fpr01=tpr_at_fpr(y, s, 0.001),
        n_boot=n_boot,
    )
    ranked: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "auc": roc_auc,
        "ap": average_precision,
        "eer": lambda a, b: eer(a, b)[0],
        "tpr_at_fpr1": lambda a, b: tpr_at_fpr(a, b, 0.01),
    }
    if n_boot:
        rep.ci = {k: bootstrap_ci(f, y, s, n_boot=n_boot, seed=seed) for k, f in ranked.items()}
    if p is not None:
        _, p = _check(y, p)
        rep.ece = ece(y, p)
        rep.brier = brier(y, p)
        for name, t in (thresholds or {}).items():
            rep.accuracy[name] = accuracy_at(y, p, t)
            rep.balanced_accuracy[name] = balanced_accuracy_at(y, p, t)
        if n_boot:
            rep.ci["ece"] = bootstrap_ci(ece, y, p, n_boot=n_boot, seed=seed)
            rep.ci["brier"] = bootstrap_ci(brier, y, p, n_boot=n_boot, seed=seed)
    return rep
