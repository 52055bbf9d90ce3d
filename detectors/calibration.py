"""Turning detector logits into probabilities that mean what they say, and threshold presets users can pick.

Calibrators follow the scikit-learn contract (``fit(logits, y)`` returns self; learned attributes end in ``_``)
and serialise to a small dict stored in ``model.json`` (no pickles). They are fitted on a held-out split
(``val``), never on training data nor on test data.

- ``temperature``: p = sigmoid(z / T) (Guo et al. 2017). One parameter, keeps the ranking, cannot overfit much:
  the default.
- ``platt``: p = sigmoid(a z + b): also fixes a shifted decision boundary (class-prior shift between train/val).
- ``isotonic``: monotone piecewise-linear map; most flexible, needs a few hundred val items, creates ties.
- ``none``: the raw sigmoid.

Threshold presets (on the *calibrated* probability; a face is flagged when ``p >= threshold``):

- ``balanced``: the equal-error-rate point on val (FPR = FNR), i.e. the policy that treats both error kinds alike
  irrespective of class balance; after good calibration on balanced val data it sits near 0.5.
- ``fpr1`` / ``fpr01``: the lowest threshold that flags at most 1% / 0.1% of val reals (moderation policies).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from detectors.metrics import eer, threshold_at_fpr
from forensics_core.errors import ModelFileError
from forensics_core.registry import Registry
from forensics_core.thresholds import PRESET_FPR  # the preset table (one copy, shared with the scan)

CALIBRATORS: Registry[type[Calibrator]] = Registry("calibrator")


def register_calibrator(name: str):
    """Register a :class:`Calibrator` subclass under ``name``, the ``kind`` its ``model.json`` entry carries; the
    class's ``kind`` is set from here (one place), and :func:`calibrator_from_dict` finds its ``from_dict``."""
    add = CALIBRATORS.register(name)

    def deco(cls: type[Calibrator]) -> type[Calibrator]:
        cls.kind = name
        return add(cls)

    return deco


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


class Calibrator:
    """Base: subclasses implement ``fit`` and ``predict_proba`` (returning P(fake), shape (N,))."""

    kind: ClassVar[str] = ""  # set by :func:`register_calibrator`

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> Calibrator:
        """A fitted calibrator from its ``model.json`` entry less ``kind`` (the inverse of :meth:`params`); a
        missing or ill-typed field raises KeyError / TypeError / ValueError."""
        return cls()

    def fit(self, logits: np.ndarray, y: np.ndarray) -> Calibrator:  # pragma: no cover - interface
        raise NotImplementedError

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.params()}


@register_calibrator("none")
class Identity(Calibrator):
    def fit(self, logits: np.ndarray, y: np.ndarray) -> Identity:
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        return _sigmoid(np.asarray(logits, dtype=np.float64))


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    # numerically stable binary cross-entropy on logits
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


@register_calibrator("temperature")
class TemperatureScaling(Calibrator):
    """p = sigmoid(z / T), T chosen by minimising the validation negative log-likelihood (bounded 1-D search)."""

    def __init__(self, temperature: float | None = None) -> None:
        self.temperature = temperature

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> TemperatureScaling:
        cal = cls()
        cal.temperature_ = float(params["temperature"])
        return cal

    def fit(self, logits: np.ndarray, y: np.ndarray) -> TemperatureScaling:
        from scipy.optimize import minimize_scalar

        z = np.asarray(logits, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        res = minimize_scalar(lambda lt: _nll(z / np.exp(lt), y), bounds=(-5.0, 5.0), method="bounded")
        self.temperature_ = float(np.exp(res.x))
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        t = getattr(self, "temperature_", self.temperature or 1.0)
        return _sigmoid(np.asarray(logits, dtype=np.float64) / t)

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature_}


@register_calibrator("platt")
class PlattScaling(Calibrator):
    """p = sigmoid(a z + b) fitted by maximum likelihood (logistic regression on the logit)."""

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> PlattScaling:
        cal = cls()
        cal.a_, cal.b_ = float(params["a"]), float(params["b"])
        return cal

    def fit(self, logits: np.ndarray, y: np.ndarray) -> PlattScaling:
        from scipy.optimize import minimize

        z = np.asarray(logits, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        res = minimize(lambda ab: _nll(ab[0] * z + ab[1], y), x0=np.array([1.0, 0.0]), method="L-BFGS-B")
        self.a_, self.b_ = float(res.x[0]), float(res.x[1])
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        return _sigmoid(self.a_ * np.asarray(logits, dtype=np.float64) + self.b_)

    def params(self) -> dict[str, Any]:
        return {"a": self.a_, "b": self.b_}


@register_calibrator("isotonic")
class IsotonicCalibrator(Calibrator):
    """Monotone map from logit to probability (scikit-learn ``IsotonicRegression``), stored as knots."""

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> IsotonicCalibrator:
        cal = cls()
        cal.x_, cal.y_ = np.asarray(params["x"], float), np.asarray(params["y"], float)
        return cal

    def fit(self, logits: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(np.asarray(logits, float), y)
        self.x_ = np.asarray(iso.X_thresholds_, dtype=np.float64)
        self.y_ = np.asarray(iso.y_thresholds_, dtype=np.float64)
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(logits, dtype=np.float64), self.x_, self.y_)

    def params(self) -> dict[str, Any]:
        return {"x": self.x_.tolist(), "y": self.y_.tolist()}


def calibrator_from_dict(d: dict[str, Any] | None) -> Calibrator:
    """Rebuild a fitted calibrator from its ``model.json`` entry."""
    d = dict(d or {"kind": "none"})
    kind = d.pop("kind", "none")
    try:
        cls = CALIBRATORS.get(kind).obj
    except KeyError as exc:
        raise ModelFileError(f"model.json: {exc}") from None
    try:
        return cls.from_dict(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"model.json: calibration '{kind}' is malformed ({exc})") from None


def fit_calibrator(kind: str, logits: np.ndarray, y: np.ndarray) -> Calibrator:
    """A new calibrator of the registered ``kind`` fitted on held-out ``logits`` / labels ``y``."""
    return CALIBRATORS.get(kind).obj().fit(logits, y)


def calibrator_names() -> list[str]:
    """The registered calibrators for a CLI choice: in registration order, the uncalibrated ``none`` last."""
    names = CALIBRATORS.names(sort=False)
    return [n for n in names if n != "none"] + [n for n in names if n == "none"]


#: reals a preset's tail must hold before its FPR counts as estimated: with k reals above the threshold the FPR's
#: relative standard error is about 1 / sqrt(k), so 10 keeps it near 30 % (``fpr01`` then needs 10,000 reals;
#: with 468 it would rest on the single highest real score)
MIN_TAIL = 10


def preset_support(n_real: int) -> dict[str, dict[str, Any]]:
    """For each ``fpr*`` preset: how many reals it was fitted on, how many lie above it, and whether that is enough
    (:data:`MIN_TAIL`). Stored in ``model.json`` so ``scan`` and the model card can flag a preset that promises
    more than its data can show."""
    return {
        name: {
            "fpr": f, "n_real": int(n_real), "reals_above": round(n_real * f, 1), "estimable": n_real * f >= MIN_TAIL
        }
        for name, f in PRESET_FPR.items()
    }


def threshold_presets(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """``balanced`` / ``fpr1`` / ``fpr01`` on calibrated val probabilities ``p`` (see the module docstring)."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y).astype(int)
    reals = p[y == 0]
    out = {name: threshold_at_fpr(reals, f) for name, f in PRESET_FPR.items()}
    out["balanced"] = float(min(max(eer(y, p)[1], 0.0), 1.0)) if 0 < y.sum() < y.size else 0.5
    return {k: float(min(v, 1.0)) for k, v in out.items()}


#: the deliveries every FPR preset must hold under: the ways a face photo commonly reaches a scanner (as stored,
#: re-saved as a JPEG at high / medium / low quality, halved by a platform, halved and re-saved). Why: a preset
#: fitted on reals with *mixed* histories promises 1 % on average over histories, while a moderation pipeline
#: meets one history at a time (all uploads re-encoded at q75, say). Held presets take, per preset, the highest
#: threshold any of these re-deliveries of the validation reals needs.
HOLD_UNDER: dict[str, str] = {
    "raw": "none",
    "jpeg90": "jpeg:q=90",
    "jpeg75": "jpeg:q=75",
    "jpeg50": "jpeg:q=50",
    "half": "resize:scale=0.5",
    "half-jpeg75": "resize:scale=0.5|jpeg:q=75",
}


#: a real source (UTKFace, FFHQ, ...) with at least this many validation reals must keep each FPR preset on its
#: own, not only pooled with the others. Why: pooled, an easy large source hides a hard small one (the easy one
#: takes the whole false-positive budget); a user scanning one population needs the promise for that population.
HOLD_MIN_SOURCE = 100


def held_real_logits(items: list, score: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The held pass: logits of the ``source``-store reals of ``items`` re-delivered each way of
    :data:`HOLD_UNDER`, and each scored real's source (its sampling group), per delivery; what
    :func:`hold_presets` takes once calibrated. ``score(reals, chain)`` returns one logit per real; a NaN (a
    file ``detector calibrate``'s scorer skipped as undecodable; training's views raise instead) is dropped with
    its source. Empty when no real is stored as a source: an aligned crop cannot be re-delivered the way a scanned
    file is. Why one function: training and ``detector calibrate`` must hold the same presets the same way."""
    from forensics_core.degrade import parse_chain

    reals = [it for it in items if it.y == 0 and it.store == "source"]
    if not reals:
        return {}, {}
    groups = np.array([it.group for it in reals])
    held: dict[str, np.ndarray] = {}
    sources: dict[str, np.ndarray] = {}
    for name, chain in HOLD_UNDER.items():
        z = np.asarray(score(reals, parse_chain(chain)), dtype=np.float64)
        ok = ~np.isnan(z)
        held[name], sources[name] = z[ok], groups[ok]
    return held, sources


def _source_name(group: str) -> str:
    return str(group).rstrip("/").rsplit("/", 1)[-1] or str(group)


def hold_presets(
    thresholds: dict[str, float], held: dict[str, np.ndarray], sources: dict[str, np.ndarray] | None = None,
    min_source: int = HOLD_MIN_SOURCE,
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """Raise each FPR preset of ``thresholds`` to the highest threshold that keeps the validation reals'
    flag rate at the preset's FPR under every delivery in ``held`` (calibrated P(fake) of the same reals,
    re-delivered each way) and, with ``sources`` (each real's source, aligned with ``held``), for every source
    with at least ``min_source`` reals on its own as well. ``balanced`` is left alone (it is an accuracy
    trade-off, not a promise about reals).

    Returns the new presets and, per preset, every delivery's own threshold (the highest over its sources) and
    which delivery (and source) set it (``mixed``: the validation reals' own histories already needed the
    highest), for the model card."""
    out = dict(thresholds)
    table: dict[str, dict[str, Any]] = {}
    for name, f in PRESET_FPR.items():
        per: dict[str, float] = {}
        by: dict[str, str | None] = {}
        n_by: dict[str, int] = {}
        for v, p in held.items():
            if not len(p):
                continue
            groups: dict[str | None, np.ndarray] = {None: p}  # None: the pooled reals
            if sources is not None:
                src = np.asarray(sources[v])
                names, counts = np.unique(src, return_counts=True)
                groups |= {str(s): p[src == s] for s, c in zip(names, counts) if c >= min_source}
            at = {g: float(min(threshold_at_fpr(q, f), 1.0)) for g, q in groups.items()}
            g = max(at, key=lambda k: at[k])
            by[v], per[v], n_by[v] = g, at[g], len(groups[g])
        if not per:
            continue
        worst = max(per, key=lambda v: per[v])
        src_note = "" if by[worst] is None else f" ({_source_name(by[worst])})"
        held_by = worst + src_note if per[worst] > thresholds[name] else "mixed"
        # n_real: the reals the binding threshold rests on (one source's own count when a source set it)
        n_bind = n_by[worst] if held_by != "mixed" else int(len(held[worst]))
        out[name] = max(thresholds[name], per[worst])
        table[name] = {"mixed": thresholds[name], **per, "held_by": held_by, "n_real": int(n_bind)}
    return out, table
