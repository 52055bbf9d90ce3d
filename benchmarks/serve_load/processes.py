"""The processes the benchmark starts and measures: ``forensics serve`` under test (:class:`ServerProcess`),
the ``forensics scan`` baseline over the same files (:func:`scan_baseline`), and their RSS and CPU read from
``/proc`` (Linux), so the load generator's own cost never counts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.serve_load.files import UPLOAD_MB, Sample


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_s(pid: int) -> float:
    """user + system CPU seconds of a live process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


class RssSampler(threading.Thread):
    """Peak of (server + scanner processes) RSS, and of the front alone, sampled every ``every`` seconds."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak_total_kb = self.peak_front_kb = self.peak_worker_kb = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.every):
            front = _rss_kb(self.pid)
            workers = [_rss_kb(c) for c in _children(self.pid)]
            self.peak_front_kb = max(self.peak_front_kb, front)
            self.peak_worker_kb = max([self.peak_worker_kb, *workers])
            self.peak_total_kb = max(self.peak_total_kb, front + sum(workers))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(2)


class ServerProcess:
    def __init__(self, workers: int, threads: int, queue: int, log: Path) -> None:
        self.port = _free_port()
        self.cmd = [sys.executable, "-m", "cli", "serve", "--port", str(self.port), "--workers", str(workers),
                    "--threads", str(threads), "--device", "cpu", "--queue", str(queue), "--max-upload-mb",
                    str(UPLOAD_MB), "--timeout", "60", "--log-level", "warning"]  # fmt: skip
        self.log = log
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(self.cmd, stdout=fh, stderr=subprocess.STDOUT)

    def get(self, path: str) -> tuple[int, bytes]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 300.0, workers: int = 1) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                status, body = self.get("/readyz")
                state = json.loads(body)
                if status == 200 and sum(w["state"] in ("ready", "busy") for w in state["workers"]) >= workers:
                    return state
            except (OSError, ValueError):
                pass
            time.sleep(0.25)
        raise RuntimeError("server not ready in time")

    def metrics(self) -> dict[str, float]:
        _, body = self.get("/metrics")
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line.startswith("forensics_serve_") and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def scan_baseline(files: list[Sample], threads: int, max_seconds: float) -> dict[str, Any]:
    """Steady files/s of ``forensics scan`` over the same files (model loading and the first chunk excluded)."""
    cmd = [sys.executable, "-m", "cli", "-q", "scan", "-", "--jsonl", "-", "--no-table", "--device", "cpu",
           "--threads", str(threads), "--evidence", "none"]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("".join(f.path + "\n" for f in files))
    proc.stdin.close()
    stamps: list[float] = []
    cpu: list[float] = []  # the scan's CPU seconds when each record arrived
    timer = threading.Timer(max_seconds, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            if line.strip():
                stamps.append(time.monotonic())
                cpu.append(_cpu_s(proc.pid))
    finally:
        timer.cancel()
        proc.wait()
    wall = time.monotonic() - t0
    first = stamps[0] if stamps else t0
    n_first = sum(1 for s in stamps if s - first < 0.05)  # the first chunk arrives as one burst
    steady_n = len(stamps) - n_first
    steady_s = (stamps[-1] - first) if stamps else 0.0
    last_cpu = max(cpu) if cpu else 0.0
    steady_cpu = last_cpu - cpu[n_first - 1] if n_first else 0.0
    return {
        "command": " ".join(cmd[1:]),
        "files": len(stamps),
        "wall_s": round(wall, 2),
        "files_per_s_with_startup": round(len(stamps) / wall, 2) if wall else 0.0,
        "files_per_s": round(steady_n / steady_s, 2) if steady_s > 0 else 0.0,
        "cpu_ms_per_file": round(1000 * steady_cpu / steady_n, 2) if steady_n else 0.0,
        "exit_code": proc.returncode,
    }
