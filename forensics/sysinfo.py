"""Process and machine facts that several layers report: peak memory and the environment behind a number.

Core, not ``benchmarks``: the generator suite and the benchmark runner both record them, and the generator layer
must not import the benchmark layer. ``benchmarks.speed`` re-exports both names.
"""

from __future__ import annotations

import platform
import resource
import sys
from typing import Any

__all__ = ["environment", "peak_rss_mb"]


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def environment() -> dict[str, Any]:
    """What a reader needs to compare two speed numbers: CPU, GPU, thread count, library versions."""
    import os

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
        env["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is a hard dependency; keep the report writable anyway
        env["torch"] = None
    try:
        from importlib.metadata import version

        env["deepfake_forensics"] = version("deepfake-forensics")
    except Exception:
        env["deepfake_forensics"] = None
    return env
