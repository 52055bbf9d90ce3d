"""Threshold policies: the preset names, the false-positive rate each promises, and turning a policy into a number.

A model file stores one threshold per preset (``thresholds`` in ``model.json``, fitted by
:func:`detectors.calibration.threshold_presets`); a scan picks one by name or passes a probability. The table and
the resolution live here, in the core layer, so calibration (``detectors``), the model-file contract, the scan,
the server and the benchmarks all read the same names.

- ``balanced``: the equal-error-rate point on the model's validation data.
- ``fpr1`` / ``fpr01``: the lowest threshold that flags at most 1 % / 0.1 % of validation reals.
"""

from __future__ import annotations

from dataclasses import dataclass

from forensics_core.errors import ModelFileError, UsageError

#: FPR each ``fpr*`` preset promises
PRESET_FPR = {"fpr1": 0.01, "fpr01": 0.001}
#: every named policy a model file may store, in the order they are listed to users
THRESHOLD_POLICIES = ("balanced", *PRESET_FPR)
#: the policy a scan or the server uses unless told otherwise: the first of these the model file stores. Why
#: ``fpr1`` and not ``balanced`` (chosen 2026-12-07 by the flag rates in benchmarks/results/policies/v14): on real
#: photos from sources absent from training, the shipped v14 flagged 18.7 % of the FFHQ-512 reals under
#: ``balanced`` (its equal-error point sits where a fifth of unseen real photos score) against 1.3 % under
#: ``fpr1``; a default that flags one genuine upload in five is no use to a moderation queue or an analyst.
#: ``balanced`` remains the default only for model files without an ``fpr1`` threshold (plugins, old files).
DEFAULT_POLICIES = ("fpr1", "balanced")
DEFAULT_POLICY = DEFAULT_POLICIES[0]
#: what a model file without stored thresholds gets
FALLBACK_THRESHOLDS = {"balanced": 0.5}

VERDICT_FLAGGED = "flagged"
VERDICT_CLEAR = "not_flagged"


def policy_name(spec: str) -> str | None:
    """The canonical name of the policy ``spec`` names, in any case (``FPR1`` -> ``fpr1``); None if it names none.

    Why case-insensitive: the names are shown upper-case in places (click's metavars, reports, tickets) and a user
    who types what they read must not get a refusal; the canonical lower-case name is what records and cards carry.
    """
    key = spec.strip().lower()
    return key if key in THRESHOLD_POLICIES else None


def parse_threshold(spec: str | float | None) -> str | float | None:
    """A ``--threshold`` value -> a canonical policy name or a probability in [0, 1] (None stays None: the model's
    default policy, :data:`DEFAULT_POLICIES`); anything else is a one-line :class:`UsageError` that lists the valid
    names. Every place that reads a policy from a user (the scan and serve options, ``ScanConfig``, benchmark
    files) goes through here, so they accept and refuse the same spellings."""
    if spec is None:
        return None
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        value = float(spec)
    elif isinstance(spec, str) and (name := policy_name(spec)) is not None:
        return name
    else:
        try:
            value = float(spec)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise UsageError(
                f"--threshold {spec!r}: not a policy; use one of {', '.join(THRESHOLD_POLICIES)} (any case) or a "
                "probability in [0, 1]"
            ) from None
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"--threshold {value}: a probability threshold must lie in [0, 1]")
    return value


@dataclass
class ThresholdPolicy:
    """Which threshold turned probabilities into verdicts: a named policy of the model file, or a number."""

    policy: str
    value: float

    @classmethod
    def resolve(cls, spec: str | float | None, thresholds: dict[str, float]) -> ThresholdPolicy:
        """``spec`` (a policy name in any case, a probability, or None for the model's default policy) -> the
        policy and its number for this model. A policy asked for by name never falls back to another one."""
        if spec is None:
            name = next((p for p in DEFAULT_POLICIES if p in thresholds), None)
            if name is None:
                known = ", ".join(sorted(thresholds)) or "none"
                raise ModelFileError(f"model has no default threshold ({' or '.join(DEFAULT_POLICIES)}; has: "
                                     f"{known}): pass --threshold")
            return cls(name, float(thresholds[name]))
        parsed = parse_threshold(spec)
        if isinstance(parsed, float):
            return cls("custom", parsed)
        if parsed not in thresholds:
            known = ", ".join(sorted(thresholds)) or "none"
            raise ModelFileError(f"model has no '{parsed}' threshold (has: {known})")
        return cls(parsed, float(thresholds[parsed]))

    def verdict(self, p: float | None) -> str | None:
        if p is None:
            return None
        return VERDICT_FLAGGED if p >= self.value else VERDICT_CLEAR
