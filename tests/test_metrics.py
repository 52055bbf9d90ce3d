"""detectors.metrics (through its re-export benchmarks.metrics) against hand-computed cases and against
scikit-learn on random data with ties."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import metrics as M


def test_auc_with_ties_hand_computed():
    # pairs (fake, real): (.5,.1)=1 (.5,.5)=.5 (.9,.1)=1 (.9,.5)=1 -> 3.5 / 4
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(0.875)
    assert M.roc_auc([0, 1], [0.3, 0.3]) == pytest.approx(0.5)
    assert M.roc_auc([0, 0, 1], [0.9, 0.8, 0.1]) == pytest.approx(0.0)


def test_auc_and_ap_match_sklearn_with_ties(rng):
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = rng.integers(0, 2, 500)
    s = np.round(rng.normal(size=500) + y, 1)  # rounding creates many ties
    assert M.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert M.average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_average_precision_hand_computed():
    # ranks: fake (P=1, R=.5), real, fake (P=2/3, R=1) -> .5*1 + .5*2/3
    assert M.average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(0.5 + 1 / 3)


Y8 = [0, 0, 0, 0, 1, 1, 1, 1]
S8 = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]


def test_eer_hand_computed():
    rate, thr = M.eer(Y8, S8)  # at s >= 0.6: FPR 1/4, TPR 3/4 -> FNR 1/4
    assert rate == pytest.approx(0.25)
    assert thr == pytest.approx(0.6)


def test_eer_on_a_roc_point():
    # ROC: (0,0) (0,.5) (.5,.5) (.5,1) (1,1): FPR = FNR = .5 at the point (.5, .5)
    rate, _ = M.eer([0, 0, 1, 1], [0.2, 0.6, 0.4, 0.8])
    assert rate == pytest.approx(0.5)


def test_tpr_at_fpr_hand_computed():
    assert M.tpr_at_fpr(Y8, S8, 0.01) == pytest.approx(0.75)
    assert M.tpr_at_fpr(Y8, S8, 0.25) == pytest.approx(1.0)
    assert M.tpr_at_fpr(Y8, S8, 0.0) == pytest.approx(0.75)


def test_threshold_at_fpr_flags_at_most_the_budget():
    reals = np.arange(100) / 100.0
    t = M.threshold_at_fpr(reals, 0.01)
    assert (reals >= t).sum() == 1 and t > 0.98
    assert (reals >= M.threshold_at_fpr(reals, 0.001)).sum() == 0


def test_ece_hand_computed():
    # bin [.1,.2): p .1, y .5 -> .4 * 2/4; bin [.9,1]: p .9, y 1 -> .1 * 2/4
    assert M.ece([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9], n_bins=10) == pytest.approx(0.25)
    assert M.ece([0, 1], [0.0, 1.0]) == pytest.approx(0.0)


def test_brier_and_accuracies():
    y, p = [0, 1, 1, 0], [0.2, 0.7, 0.4, 0.6]
    assert M.brier(y, p) == pytest.approx((0.04 + 0.09 + 0.36 + 0.36) / 4)
    assert M.accuracy_at(y, p, 0.5) == pytest.approx(0.5)
    assert M.balanced_accuracy_at([0, 0, 0, 1], [0.1, 0.2, 0.6, 0.9], 0.5) == pytest.approx((1 + 2 / 3) / 2)


def test_bootstrap_ci_is_seeded_stratified_and_brackets_estimate(rng):
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + y
    a = M.bootstrap_ci(M.roc_auc, y, s, n_boot=200, seed=3)
    b = M.bootstrap_ci(M.roc_auc, y, s, n_boot=200, seed=3)
    assert a == b
    assert a[0] < M.roc_auc(y, s) < a[1]


def test_evaluate_scores_and_errors():
    rep = M.evaluate_scores(Y8, S8, np.array(S8), {"balanced": 0.5}, n_boot=50)
    assert rep.auc == pytest.approx(M.roc_auc(Y8, S8))
    assert rep.accuracy["balanced"] == pytest.approx(M.accuracy_at(Y8, S8, 0.5))
    assert set(rep.ci) >= {"auc", "ece"}
    with pytest.raises(ValueError, match="both classes"):
        M.roc_auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        M.roc_auc([0, 1], [0.1, float("nan")])


def test_clopper_pearson_exact_bounds():
    # 0 of 400 reals flagged: the upper bound solves (1 - p)^400 = 0.025, i.e. 1 - 0.025^(1/400) = 0.00918
    lo, hi = M.clopper_pearson(0, 400)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 400), rel=1e-9) and hi == pytest.approx(0.0092, abs=1e-4)
    # k = n mirrors it: lower bound 0.025^(1/n), upper exactly 1
    lo, hi = M.clopper_pearson(400, 400)
    assert lo == pytest.approx(0.025 ** (1 / 400), rel=1e-9) and hi == 1.0
    assert M.clopper_pearson(1, 1) == (pytest.approx(0.025), 1.0)
    # R's binom.test(5, 100)$conf.int: 0.01643188 0.11283491
    lo, hi = M.clopper_pearson(5, 100)
    assert lo == pytest.approx(0.01643188, abs=1e-8) and hi == pytest.approx(0.11283491, abs=1e-8)
    # a wider alpha gives a narrower interval, still around k / n
    lo90, hi90 = M.clopper_pearson(5, 100, alpha=0.10)
    assert lo < lo90 < 0.05 < hi90 < hi


@pytest.mark.parametrize(
    ("k", "n", "alpha", "match"),
    [
        (0, 0, 0.05, "at least one trial"),
        (5, 4, 0.05, "outside"),
        (-1, 4, 0.05, "outside"),
        (1, 4, 0.0, "alpha"),
        (1.5, 4, 0.05, "whole counts"),
    ],
)
def test_clopper_pearson_refuses_impossible_counts(k, n, alpha, match):
    with pytest.raises(ValueError, match=match):
        M.clopper_pearson(k, n, alpha)
