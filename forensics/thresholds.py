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

from forensics.errors import ModelFileError, UsageError

#: FPR each ``fpr*`` preset promises
PRESET_FPR = {"fpr1": 0.01, "fpr01": 0.001}
#: every named policy a model file may store, in the order they are listed to users
THRESHOLD_POLICIES = ("balanced", *PRESET_FPR)
#: the policy a scan or the server uses unless told otherwise
DEFAULT_POLICY = "balanced"
#: what a model file without stored thresholds gets
FALLBACK_THRESHOLDS = {"balanced": 0.5}

VERDICT_FLAGGED = "flagged"
VERDICT_CLEAR = "not_flagged"


@dataclass
class ThresholdPolicy:
    """Which threshold turned probabilities into verdicts: a named policy of the model file, or a number."""

    policy: str
    value: float

    @classmethod
    def resolve(cls, spec: str | float, thresholds: dict[str, float]) -> ThresholdPolicy:
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            value, name = float(spec), "custom"
        elif isinstance(spec, str) and spec in THRESHOLD_POLICIES:
            if spec not in thresholds:
                known = ", ".join(sorted(thresholds)) or "none"
                raise ModelFileError(f"model has no '{spec}' threshold (has: {known})")
            return cls(spec, float(thresholds[spec]))
        else:
            try:
                value, name = float(spec), "custom"
            except (TypeError, ValueError):
                raise UsageError(
                    f"--threshold {spec!r}: use one of {', '.join(THRESHOLD_POLICIES)} or a probability in [0, 1]"
                ) from None
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"--threshold {value}: a probability threshold must lie in [0, 1]")
        return cls(name, value)

    def verdict(self, p: float | None) -> str | None:
        if p is None:
            return None
        return VERDICT_FLAGGED if p >= self.value else VERDICT_CLEAR
