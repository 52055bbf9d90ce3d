"""Prometheus metrics of ``forensics serve`` (text format at ``GET /metrics``).

Counters and histograms come from ``prometheus_client`` on a registry of the app's own (two apps in one process,
as in the tests, never clash). Gauges that describe the present (queue depth, workers ready, images per second)
are read from the pool when scraped, so they are never stale. Names and labels are listed in ``docs/serve.md``.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "ServeMetrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
RATE_WINDOW_S = 60.0


class ServeMetrics:
    """The service's instruments; ``pool`` (a :class:`forensics.serve.pool.ScanPool`) feeds the live gauges."""

    def __init__(self, pool: Any = None) -> None:
        self.pool = pool
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("forensics_serve_requests", "HTTP requests answered, by endpoint and status code.",
                                ["endpoint", "code"], registry=r)  # fmt: skip
        self.errors = Counter("forensics_serve_errors", "Requests answered with an error, by cause.", ["cause"],
                              registry=r)  # fmt: skip
        self.latency = Histogram("forensics_serve_request_duration_seconds",
                                 "Time from request start to the last byte of the answer.", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.files = Counter("forensics_serve_files", "Files answered by the scanner pool, by outcome cause.",
                             ["cause"], registry=r)  # fmt: skip
        self.file_errors = Counter("forensics_serve_file_errors", "Per-file error records, by error type.",
                                   ["error_type"], registry=r)  # fmt: skip
        # why: the flag rate of live traffic is the one number that drifts when uploads stop looking like the
        # model's validation data (a new phone pipeline, a new generator); rate(flagged) / rate(all) per policy
        self.verdicts = Counter("forensics_serve_verdicts", "Files scored, by threshold policy and verdict (flagged / "
                                "not_flagged): watch the flag rate for drift.", ["policy", "verdict"],
                                registry=r)  # fmt: skip
        self.restarts = Counter("forensics_serve_worker_restarts", "Scanner processes replaced after a crash or a "
                                "deadline kill.", registry=r)  # fmt: skip
        self.queue_depth = Gauge("forensics_serve_queue_depth", "Jobs admitted and waiting for a worker.", registry=r)
        self.in_flight = Gauge("forensics_serve_jobs_in_flight", "Jobs being scanned by a worker.", registry=r)
        self.capacity = Gauge("forensics_serve_queue_capacity", "Most jobs admitted at once (429 beyond).",
                              registry=r)  # fmt: skip
        self.workers_ready = Gauge("forensics_serve_workers_ready", "Scanner processes with the model loaded.",
                                   registry=r)  # fmt: skip
        self.images_per_s = Gauge("forensics_serve_images_per_second",
                                  f"Files answered per second over the last {RATE_WINDOW_S:g} s.", registry=r)
        self._done: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def file_answered(self, cause: str, record: dict[str, Any]) -> None:
        """Called from the pool's threads for every answered job with its scan record (``scan --jsonl`` schema)."""
        self.files.labels(cause).inc()
        if record.get("error_type"):
            self.file_errors.labels(record["error_type"]).inc()
        if record.get("verdict"):  # error records have none: they are counted above
            policy = (record.get("threshold") or {}).get("policy") or "unknown"
            self.verdicts.labels(policy, record["verdict"]).inc()
        now = time.monotonic()
        with self._lock:
            self._done.append(now)
            while self._done and self._done[0] < now - RATE_WINDOW_S:
                self._done.popleft()

    def rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._done and self._done[0] < now - RATE_WINDOW_S:
                self._done.popleft()
            n = len(self._done)
        return n / max(1e-9, min(RATE_WINDOW_S, now - self._started))

    def render(self) -> bytes:
        if self.pool is not None:
            self.queue_depth.set(self.pool.waiting)
            self.in_flight.set(self.pool.in_flight)
            self.capacity.set(self.pool.capacity)
            self.workers_ready.set(self.pool.ready_workers)
        self.images_per_s.set(round(self.rate(), 3))
        return generate_latest(self.registry)
