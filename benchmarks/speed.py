"""Speed and memory of a model, measured inside the benchmark run that produced its accuracy numbers.

Why in the same run: a throughput number taken on another day, machine or batch size cannot be put next to an AUC.
What is timed is ``Model.predict_proba`` on already-decoded faces (preprocessing + forward + calibration); decoding
and face detection are the scan pipeline's cost and are reported by ``forensics scan``, not here.

- ``images_per_s``: ``n_images`` faces in batches of ``batch`` after one warm-up batch.
- ``ms_p50`` / ``ms_p95``: per-image latency at batch size 1 over ``latency_samples`` calls (what an interactive
  user waits for one face).
- ``peak_rss_mb``: the process's peak resident memory so far (``getrusage``), an upper bound that includes data.
- ``gpu_peak_mb``: ``torch.cuda.max_memory_allocated`` during the timing, when the model runs on CUDA.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from forensics_core.sysinfo import environment, peak_rss_mb

__all__ = ["Scorer", "SpeedResult", "environment", "measure_speed", "peak_rss_mb"]


class Scorer(Protocol):
    def predict_proba(self, faces: list[np.ndarray]) -> np.ndarray: ...


@dataclass
class SpeedResult:
    device: str
    batch: int
    n_images: int
    images_per_s: float
    ms_p50: float
    ms_p95: float
    peak_rss_mb: float
    gpu_peak_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure_speed(
    model: Scorer, faces: list[np.ndarray], device: str, batch: int = 32, latency_samples: int = 32
) -> SpeedResult:
    """Time ``model.predict_proba`` on ``faces`` (see the module docstring for what each number means)."""
    if not faces:
        raise ValueError("measure_speed needs at least one face")
    gpu = device.startswith("cuda")
    if gpu:
        import torch

        torch.cuda.reset_peak_memory_stats()
    batch = max(1, min(batch, len(faces)))
    model.predict_proba(faces[:batch])  # warm-up: allocations, cuDNN autotune, lazy imports
    _sync(device)
    t0 = time.perf_counter()
    for i in range(0, len(faces), batch):
        model.predict_proba(faces[i : i + batch])
    _sync(device)
    elapsed = time.perf_counter() - t0
    lat: list[float] = []
    for k in range(max(1, latency_samples)):
        f = faces[k % len(faces)]
        t = time.perf_counter()
        model.predict_proba([f])
        _sync(device)
        lat.append((time.perf_counter() - t) * 1000.0)
    gpu_mb = None
    if gpu:
        import torch

        gpu_mb = torch.cuda.max_memory_allocated() / 2**20
    return SpeedResult(
        device=device,
        batch=batch,
        n_images=len(faces),
        images_per_s=len(faces) / elapsed if elapsed > 0 else float("inf"),
        ms_p50=float(np.percentile(lat, 50)),
        ms_p95=float(np.percentile(lat, 95)),
        peak_rss_mb=peak_rss_mb(),
        gpu_peak_mb=gpu_mb,
    )
