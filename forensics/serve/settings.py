"""Settings of ``forensics serve``: one dataclass, mapped 1:1 onto the command's options."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any

from forensics.scanning.config import ScanConfig
from forensics_core.errors import UsageError

MiB = 1024 * 1024


@dataclass
class ServeSettings:
    """Every knob of the service. Limits default to what a moderation upload path needs, not what scan allows;
    the knobs it shares with a scan (batch, threshold, device, face detector) default to :class:`ScanConfig`'s.

    ``max_pixels`` is lower than ``scan``'s 80 MP because a service decodes many files at once; ``timeout_s`` is a
    request's whole budget (queue wait + scan); ``queue`` bounds the jobs admitted and not yet answered.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    model: str = "default"
    workers: int = 1  # scanner processes (one model copy each)
    threads: int = 1  # torch threads per scanner process
    queue: int = 128
    batch: int = ScanConfig.batch  # most jobs one worker scans as one chunk
    timeout_s: float = 30.0
    max_upload_bytes: int = 32 * MiB  # a request body (one upload, or all files of a batch upload)
    max_pixels: int = 40_000_000
    max_batch_files: int = 64
    root: str | None = None  # server-side paths allowed under this folder; None = uploads only
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    threshold: str | float | None = ScanConfig.threshold  # None: the model's default policy
    evidence: str = "none"
    device: str = ScanConfig.device
    face_detector: str = ScanConfig.face_detector
    log_level: str = "info"
    json_logs: bool = True

    def __post_init__(self) -> None:
        for name in ("workers", "threads", "queue", "batch", "max_upload_bytes", "max_pixels", "max_batch_files"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be >= 1")
        if self.timeout_s <= 0:
            raise UsageError(f"--timeout {self.timeout_s}: must be > 0")
        if self.max_batch_files > self.queue:
            raise UsageError(f"--max-batch-files {self.max_batch_files} exceeds --queue {self.queue}: such a batch "
                             "could never be admitted")  # fmt: skip
        if self.root is not None:
            if not os.path.isdir(self.root):
                raise UsageError(f"--root {self.root}: not a directory")
            self.root = os.path.realpath(self.root)

    @property
    def scan_config(self) -> dict[str, Any]:
        """The :class:`forensics.scanning.config.ScanConfig` fields every worker scans with."""
        return {
            "threshold": self.threshold,
            "evidence": self.evidence,
            "device": self.device,
            "batch": self.batch,
            "timeout_s": self.timeout_s,
            "face_detector": self.face_detector,
            "max_pixels": self.max_pixels,
            "max_bytes": self.max_upload_bytes,
            "threads": self.threads,
        }

    def limits(self) -> dict[str, Any]:
        """The limits as ``GET /v1/model`` reports them (clients size their uploads by these)."""
        return {
            "max_upload_bytes": self.max_upload_bytes,
            "max_pixels": self.max_pixels,
            "max_batch_files": self.max_batch_files,
            "timeout_s": self.timeout_s,
            "queue": self.queue,
            "server_paths": self.root is not None,
        }


def read_api_keys(path: str) -> tuple[str, ...]:
    """Keys from a file, one per line (``#`` comments and blank lines ignored); refuses an empty file.

    A key file readable by other users is refused: the keys are the only thing that guards the service.
    """
    try:
        st = os.stat(path)
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise UsageError(f"--api-key-file {path}: {exc.strerror or exc}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"--api-key-file {path}: readable by group or others; chmod 600 it")
    keys = tuple(k.strip() for k in lines if k.strip() and not k.strip().startswith("#"))
    if not keys:
        raise UsageError(f"--api-key-file {path}: no key in the file")
    if any(len(k) < 16 for k in keys):
        raise UsageError(f"--api-key-file {path}: keys must be at least 16 characters")
    return keys
