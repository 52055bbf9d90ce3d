"""Re-export of :mod:`detectors.metrics`, where the metric functions live (the layer that computes them first).

Kept so ``from benchmarks.metrics import ...`` in benchmark code, notebooks and older scripts goes on working; new
code below ``benchmarks`` imports ``detectors.metrics``.
"""

from __future__ import annotations

from detectors.metrics import *  # noqa: F403 - the public names, listed in __all__ below
from detectors.metrics import MIN_BOOT, MIN_REALS_FPR01
from detectors.metrics import __all__ as _metric_names

__all__ = [*_metric_names, "MIN_BOOT", "MIN_REALS_FPR01"]
