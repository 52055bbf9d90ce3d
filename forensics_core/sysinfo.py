"""Process and machine facts that several layers report: peak memory, the environment and the commit behind a
number.

Core, not ``benchmarks``: the generator suite and the benchmark runner both record them, and the generator layer
must not import the benchmark layer. ``benchmarks.speed`` re-exports ``environment`` and ``peak_rss_mb``.
"""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from forensics_core.config import REPO_ROOT

__all__ = ["environment", "git_describe", "load_average", "peak_rss_mb", "usable_cpus"]


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, e.g. under ``taskset`` or a
    container's cpuset), else every logical CPU: how many scanner processes can run at once."""
    import os

    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def load_average() -> list[float] | None:
    """The 1 / 5 / 15-minute load averages, or ``None`` where the OS has none (Windows): on a shared machine a
    speed number means little without how busy the machine already was."""
    import os

    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def environment() -> dict[str, Any]:
    """What a reader needs to compare two speed numbers: CPU, GPU, thread count, library versions, and the load
    average when it was taken (call it when a run starts). The one place that collects these facts."""
    import os

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_avg": load_average(),
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


def git_describe(repo: str | Path | None = None) -> str:
    """``git describe --always --dirty --abbrev=7`` of the checkout the code runs from (``REPO_ROOT``; an installed
    wheel has no ``.git`` there): the commit a result was made with, ``-dirty`` when tracked files differed from it
    (then the result may not be reproducible from the commit alone).

    ``"unknown"`` when there is no checkout (an installed package), no git, or git refuses (a repository owned by
    another user): a run record says so rather than guessing. One helper for every benchmark and run record.
    """
    root = Path(repo) if repo is not None else REPO_ROOT
    if not (root / ".git").exists():  # never describe an unrelated repository that happens to enclose the package
        return "unknown"
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], cwd=root, capture_output=True,
                             text=True, check=True, timeout=30).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out or "unknown"
