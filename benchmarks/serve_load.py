"""Load benchmark of ``forensics serve``: throughput, latency percentiles, error mix and peak RSS on loopback, the
ratio to ``forensics scan`` on the same files, and a soak run in which a scanner process is killed mid-way.

What it does, all bounded (``--requests`` requests, ``--max-seconds`` per phase, ``--client-timeout`` per request):

1. builds the file set: ``--good`` face images (the shared FFHQ and TPDNE StyleGAN2 crossval faces when present,
   never copied into the repo; else generated crops of scikit-image's astronaut) plus hostile files written to a
   temp dir (text renamed .jpg, truncated PNG, a PNG declaring 900 MP, a ZIP renamed .jpg, an upload over the
   size limit), about ``--hostile`` of the mix;
2. scans the same unique files with ``forensics scan --jsonl -`` (``--threads = workers x threads``) and takes its
   steady rate: records after the first chunk / time from the first chunk to the last record (model loading
   excluded, as the service's is);
3. starts ``forensics serve`` on a free loopback port, waits for ``/readyz``, and sends ``--requests`` raw-body
   uploads from ``--concurrency`` keep-alive connections (a minimal asyncio HTTP/1.1 client: the load generator
   must not eat the CPU it measures), cycling through the files; an upload over the limit is sent with
   ``Expect: 100-continue`` like curl does, so the 413 comes before the body;
4. checks every answer: the ``X-Request-ID`` echoes the request's, and a record's ``sha256`` is the sha256 of
   the bytes sent (an answer given to the wrong request would show here); counts status codes and causes;
5. with ``--kill-after F``, SIGKILLs one scanner process after a fraction F of the requests and asserts that every
   request still got exactly one answer and that the server answered exactly as many files as it admitted.

Peak RSS is the largest sum of VmRSS over the server and its scanner processes, sampled every 0.2 s (Linux /proc).

Example::

    python -m benchmarks.serve_load --requests 2000 --concurrency 16 --workers 1 --name w1
    python -m benchmarks.serve_load --requests 1000 --concurrency 16 --workers 2 --kill-after 0.3 --name soak-w2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.record import RunRecord, command_line, model_ref, start_record
from core.config import shared_data_dir
from core.hashing import sha256_bytes

RESULTS = Path(__file__).parent / "results" / "serve"
UPLOAD_MB = 1.0  # --max-upload-mb of the server under test: the oversize hostile file is 1.5x this


# ---------------------------------------------------------------------------------------------------------------
# the file set
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Sample:
    name: str
    data: bytes
    kind: str  # 'good' or the hostile kind
    sha256: str = ""
    path: str = ""  # on disk, for the `forensics scan` baseline

    def __post_init__(self) -> None:
        self.sha256 = sha256_bytes(self.data)


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width x height``: the decompression-bomb guard must refuse it unread."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def good_files(n: int) -> list[Sample]:
    data = shared_data_dir()
    paths: list[Path] = []
    if data is not None:
        real = sorted((data / "real_faces" / "ffhq128_bhunakit" / "crossval").glob("*.png"))
        fake = sorted((data / "gan_faces" / "tpdne-stylegan2_bhunakit" / "crossval").glob("*.jpg"))
        for a, b in zip(real, fake):
            paths += [a, b]
    if len(paths) >= n:
        return [Sample(p.name, p.read_bytes(), "good") for p in paths[:n]]
    import io

    from PIL import Image
    from skimage import data as skdata

    img = skdata.astronaut()
    out = []
    rng = np.random.default_rng(0)
    for i in range(n):  # distinct 160 px crops around the face
        y, x = rng.integers(0, 40), rng.integers(100, 160)
        buf = io.BytesIO()
        Image.fromarray(img[y : y + 220, x : x + 220]).resize((160, 160)).save(buf, format="PNG")
        out.append(Sample(f"astronaut-{i}.png", buf.getvalue(), "good"))
    return out


def hostile_files(n: int, good: list[Sample]) -> list[Sample]:
    """``n`` hostile uploads, five kinds in turn, each unique (so the scan baseline cannot dedupe them)."""
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        kind = ("text", "truncated", "bomb", "zip", "oversize")[i % 5]
        if kind == "text":
            data = f"not a picture {i}\n".encode()
        elif kind == "truncated":
            src = good[i % len(good)].data
            data = src[: len(src) // 3] + bytes([i % 256])
        elif kind == "bomb":
            data = _png_declaring(30000 + i, 30000)
        elif kind == "zip":
            data = b"PK\x03\x04" + rng.bytes(512)
        else:
            data = rng.bytes(int(UPLOAD_MB * 1.5 * 1024 * 1024))
        out.append(Sample(f"hostile-{kind}-{i}.jpg", data, kind))
    return out


def interleave(good: list[Sample], hostile: list[Sample]) -> list[Sample]:
    """Hostile files spread evenly through the good ones (the mix is the same in any window of requests)."""
    out: list[Sample] = []
    step = max(1, len(good) // max(1, len(hostile)))
    h = iter(hostile)
    for i, g in enumerate(good):
        out.append(g)
        if (i + 1) % step == 0:
            nxt = next(h, None)
            if nxt is not None:
                out.append(nxt)
    out.extend(h)
    return out


# ---------------------------------------------------------------------------------------------------------------
# the `forensics scan` baseline
# ---------------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------------
# the server under test
# ---------------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------------
# the client
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Answer:
    index: int
    status: int  # 0 = no answer (connection error or client timeout)
    latency_s: float
    cause: str = ""
    problem: str = ""  # a wrong request id or sha256: an answer that belongs to another request


class Conn:
    """One keep-alive HTTP/1.1 connection; reconnects after the server closes it (e.g. after a 413)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def _head(self) -> tuple[int, dict[str, str]]:
        assert self.reader is not None
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        await self._open()
        assert self.reader is not None and self.writer is not None
        expect = len(body) > 1024 * 1024  # as curl: ask before sending a large body
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}",
                "Content-Type: application/octet-stream", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
        if expect:
            head.append("Expect: 100-continue")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if not expect:
            self.writer.write(body)
        await self.writer.drain()
        status, hdrs = await self._head()
        if status == 100:
            self.writer.write(body)
            await self.writer.drain()
            status, hdrs = await self._head()
        n = int(hdrs.get("content-length", "0"))
        data = await self.reader.readexactly(n) if n else b""
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, data


async def run_load(port: int, files: list[Sample], n: int, concurrency: int, client_timeout: float,
                   max_seconds: float, on_progress: Any = None) -> tuple[list[Answer], float]:  # fmt: skip
    answers: list[Answer] = []
    counter = iter(range(n))
    end = time.monotonic() + max_seconds

    async def one(conn: Conn, i: int) -> Answer:
        f = files[i % len(files)]
        rid = f"bench-{i}"
        t0 = time.perf_counter()
        try:
            status, hdrs, body = await asyncio.wait_for(
                conn.post(f"/v1/scan?filename={f.name}", f.data, {"X-Request-ID": rid}), client_timeout
            )
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            conn.close()
            return Answer(i, 0, time.perf_counter() - t0, problem=f"no answer: {type(exc).__name__}")
        dt = time.perf_counter() - t0
        a = Answer(i, status, dt)
        if hdrs.get("x-request-id") != rid:
            a.problem = f"request id {hdrs.get('x-request-id')!r} != {rid!r}"
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            doc = {}
        if status in (200, 422):
            if doc.get("sha256") != f.sha256:
                a.problem = "record sha256 is not the sha256 of the upload"
            a.cause = "ok" if status == 200 else str(doc.get("error_type"))
        else:
            a.cause = str(doc.get("cause", status))
        return a

    async def client() -> None:
        conn = Conn(port)
        for i in counter:
            if time.monotonic() > end:
                break
            a = await one(conn, i)
            answers.append(a)
            if on_progress is not None:
                on_progress(len(answers))
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return answers, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------------------------
# a run
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    name: str
    command: str
    git_commit: str
    machine: dict[str, Any]
    config: dict[str, Any]
    files: dict[str, int]
    model: dict[str, str] = field(default_factory=dict)  # what both the scan baseline and the service ran
    started: str = ""  # UTC, from the run record (files before the record have none)
    environment: dict[str, Any] = field(default_factory=dict)  # the record's full environment; ``machine`` is its
    # summary under the keys the committed results use
    requests: int = 0
    answered: int = 0
    wall_s: float = 0.0
    throughput_rps: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    status_codes: dict[str, int] = field(default_factory=dict)
    error_mix: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    scan_baseline: list[dict[str, Any]] = field(default_factory=list)
    ratio_vs_scan: float = 0.0
    cpu_ms_per_request: float = 0.0  # front + scanner processes, during the load phase
    front_cpu_ms_per_request: float = 0.0  # the HTTP front alone (uvicorn + Starlette + spooling)
    cpu_ratio_vs_scan: float = 0.0  # scan CPU ms per file / service CPU ms per request (> 1: the service is leaner)
    server_counters: dict[str, float] = field(default_factory=dict)
    soak: dict[str, Any] = field(default_factory=dict)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return float(np.percentile(np.asarray(values) * 1000, q))


def _default_model() -> dict[str, str]:
    """Name and weights hash of the model the server and the scan baseline load (the shipped default): a load
    number means little without the model it was measured with (the face stage and test-time views change it)."""
    from detectors.modelfile import read_card, resolve_model_dir

    ref = model_ref(read_card(resolve_model_dir("default")))
    return {"name": ref.name, "sha256": ref.weights_sha256}


def machine_summary(rec: RunRecord) -> dict[str, Any]:
    """The record's environment under the keys ``LoadReport.machine`` has always had (committed results read so)."""
    env = rec.environment
    return {"cpus": env.get("cpu_count"), "platform": env.get("platform"), "python": env.get("python"),
            "load_avg_at_start": env.get("load_avg") or []}


def run(args: argparse.Namespace) -> LoadReport:
    good = good_files(args.good)
    hostile = hostile_files(round(args.good * args.hostile / (1 - args.hostile)), good)
    files = interleave(good, hostile)
    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    for i, f in enumerate(files):
        f.path = str(work / f"{i:05d}-{f.name}")
        Path(f.path).write_bytes(f.data)
    rec = start_record(command_line("benchmarks.serve_load"))
    rep = LoadReport(
        name=args.name, command=rec.command, git_commit=rec.commit, machine=machine_summary(rec),
        config={k: v for k, v in vars(args).items() if k not in ("out",)},
        files={"unique": len(files), "good": len(good), **Counter(f.kind for f in hostile)},
        model=_default_model(), started=rec.started, environment=rec.environment,
    )  # fmt: skip
    scan_threads = args.workers * args.threads
    if not args.skip_scan:
        print(f"scan baseline over {len(files)} files ...", file=sys.stderr)
        rep.scan_baseline.append(scan_baseline(files, scan_threads, args.max_seconds))
    srv = ServerProcess(args.workers, args.threads, args.queue, work / "serve.log")
    rep.config["server_command"] = "forensics " + " ".join(srv.cmd[3:])
    sampler = RssSampler(srv.proc.pid)
    try:
        state = srv.wait_ready(workers=args.workers)
        sampler.start()
        victim = state["workers"][0]["pid"]
        kill_at = int(args.requests * args.kill_after) if args.kill_after else -1
        killed: dict[str, Any] = {}

        def progress(done: int) -> None:
            if done == kill_at and not killed:
                os.kill(victim, signal.SIGKILL)
                killed.update({"pid": victim, "after_answers": done, "t": time.monotonic()})

        print(f"load: {args.requests} requests, {args.concurrency} connections ...", file=sys.stderr)
        procs = [srv.proc.pid, *_children(srv.proc.pid)]
        cpu0 = sum(_cpu_s(p) for p in procs)
        front_cpu0 = _cpu_s(srv.proc.pid)
        answers, wall = asyncio.run(run_load(srv.port, files, args.requests, args.concurrency, args.client_timeout,
                                             args.max_seconds, progress))  # fmt: skip
        cpu_used = sum(_cpu_s(p) for p in procs) - cpu0  # a killed worker's share is lost (soak runs only)
        front_cpu = _cpu_s(srv.proc.pid) - front_cpu0
        if killed:
            after = srv.wait_ready(workers=args.workers)
            killed["workers_after"] = [w["pid"] for w in after["workers"]]
            killed["restarts"] = sum(w["restarts"] for w in after["workers"])
        counters = srv.metrics()
    finally:
        sampler.stop()
        rc = srv.stop()
    lat = [a.latency_s for a in answers if a.status]
    rep.requests = args.requests
    rep.answered = sum(1 for a in answers if a.status)
    rep.wall_s = round(wall, 2)
    rep.throughput_rps = round(rep.answered / wall, 2) if wall else 0.0
    rep.latency_ms = {"p50": round(_pct(lat, 50), 1), "p95": round(_pct(lat, 95), 1), "p99": round(_pct(lat, 99), 1),
                      "mean": round(statistics.fmean(lat) * 1000, 1) if lat else 0.0,
                      "max": round(max(lat) * 1000, 1) if lat else 0.0}  # fmt: skip
    rep.status_codes = dict(sorted(Counter(str(a.status) for a in answers).items()))
    rep.error_mix = dict(sorted(Counter(a.cause for a in answers if a.cause != "ok").items()))
    rep.problems = [f"request {a.index}: {a.problem}" for a in answers if a.problem][:50]
    rep.peak_rss_mb = {"total": round(sampler.peak_total_kb / 1024, 1), "front": round(sampler.peak_front_kb / 1024, 1),
                       "largest_worker": round(sampler.peak_worker_kb / 1024, 1)}  # fmt: skip
    admitted = sum(1 for a in answers if a.status not in (0, 413, 429, 401, 400))
    files_answered = sum(v for k, v in counters.items() if k.startswith("forensics_serve_files_total"))
    rep.cpu_ms_per_request = round(1000 * cpu_used / max(1, rep.answered), 2)
    rep.front_cpu_ms_per_request = round(1000 * front_cpu / max(1, rep.answered), 2)
    rep.server_counters = {
        "files_answered": files_answered,
        "worker_restarts": counters.get("forensics_serve_worker_restarts_total", 0.0),
        "exit_code": rc,
    }
    if not args.skip_scan:
        print("scan baseline again (the machine is shared: take the mean) ...", file=sys.stderr)
        rep.scan_baseline.append(scan_baseline(files, scan_threads, args.max_seconds))
        base = statistics.fmean(b["files_per_s"] for b in rep.scan_baseline)
        rep.ratio_vs_scan = round(rep.throughput_rps / base, 3) if base else 0.0
        base_cpu = statistics.fmean(b["cpu_ms_per_file"] for b in rep.scan_baseline)
        rep.cpu_ratio_vs_scan = round(base_cpu / rep.cpu_ms_per_request, 3) if rep.cpu_ms_per_request else 0.0
    ids = [a.index for a in answers]
    rep.soak = {
        "killed": killed,
        "requests_without_answer": sum(1 for a in answers if a.status == 0),
        "duplicate_answers": len(ids) - len(set(ids)),
        "mismatched_answers": len(rep.problems),
        "admitted": admitted,
        "server_files_answered": files_answered,
        "every_admitted_request_answered_once": bool(
            len(answers) == args.requests and len(set(ids)) == len(ids) and not rep.problems
            and files_answered == admitted
        ),
    }  # fmt: skip
    for f in files:
        Path(f.path).unlink(missing_ok=True)
    (work / "serve.log").unlink(missing_ok=True)
    work.rmdir()
    return rep


def header_lines(rep: LoadReport) -> list[str]:
    """What was run, at which commit, with which model, on what machine: the lines that make a number traceable."""
    return [
        f"# forensics serve load: {rep.name}",
        "",
        f"`{rep.command}` at commit `{rep.git_commit[:12]}`; server: `{rep.config.get('server_command')}`; model "
        f"`{rep.model.get('name', '?')}` (weights sha256 `{rep.model.get('sha256', '')[:16]}`).",
        f"Machine: {rep.machine['cpus']} CPUs ({rep.machine['platform']}), load average at start "
        f"{', '.join(f'{x:.1f}' for x in rep.machine['load_avg_at_start'])} (shared with other jobs).",
    ]


def write_report(rep: LoadReport, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{rep.name}.json").write_text(json.dumps(asdict(rep), indent=2) + "\n")
    base = " / ".join(f"{b['files_per_s']:.1f}" for b in rep.scan_baseline) or "not run"
    cpu_base = " / ".join(f"{b['cpu_ms_per_file']:.1f}" for b in rep.scan_baseline) or "not run"
    ratio = f"{rep.ratio_vs_scan:.2f}x" if rep.scan_baseline else "not run"
    if rep.soak.get("killed"):  # the killed worker's CPU is lost and its replacement's is not sampled
        cpu = f"{cpu_base} / n/a (a worker was killed); front alone {rep.front_cpu_ms_per_request:.1f} ms"
    else:
        cpu = (f"{cpu_base} / {rep.cpu_ms_per_request:.1f} ms ({rep.cpu_ratio_vs_scan:.2f}x); front alone "
               f"{rep.front_cpu_ms_per_request:.1f} ms")  # fmt: skip
    lines = [
        *header_lines(rep),
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| requests / answered | {rep.requests} / {rep.answered} |",
        f"| unique files (good + hostile) | {rep.files['unique']} ({rep.files['good']} good) |",
        f"| connections | {rep.config['concurrency']} |",
        f"| throughput | {rep.throughput_rps:.1f} requests/s over {rep.wall_s:.1f} s |",
        f"| latency p50 / p95 / p99 | {rep.latency_ms['p50']:.0f} / {rep.latency_ms['p95']:.0f} / "
        f"{rep.latency_ms['p99']:.0f} ms (max {rep.latency_ms['max']:.0f}) |",
        f"| status codes | {', '.join(f'{k}: {v}' for k, v in rep.status_codes.items())} |",
        f"| error mix | {', '.join(f'{k}: {v}' for k, v in rep.error_mix.items()) or 'none'} |",
        f"| peak RSS (front + workers / front / largest worker) | {rep.peak_rss_mb['total']:.0f} / "
        f"{rep.peak_rss_mb['front']:.0f} / {rep.peak_rss_mb['largest_worker']:.0f} MB |",
        f"| `forensics scan` steady files/s (before / after) | {base} |",
        f"| ratio service / scan (throughput, mean of the scan runs) | {ratio} |",
        f"| CPU per file: scan / service (front + workers) | {cpu} |",
        f"| worker restarts counted by the server | {rep.server_counters['worker_restarts']:.0f} |",
        f"| worker killed | {rep.soak['killed'] or 'no'} |",
        f"| unanswered / duplicated / mismatched answers | {rep.soak['requests_without_answer']} / "
        f"{rep.soak['duplicate_answers']} / {rep.soak['mismatched_answers']} |",
        f"| admitted requests / files the server answered | {rep.soak['admitted']} / "
        f"{rep.soak['server_files_answered']:.0f} |",
        f"| every admitted request answered exactly once | {rep.soak['every_admitted_request_answered_once']} |",
        "",
    ]
    (out / f"{rep.name}.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="requests to send (the run stops there)")
    ap.add_argument("--concurrency", type=int, default=16, help="keep-alive connections sending in parallel")
    ap.add_argument("--workers", type=int, default=1, help="forensics serve --workers")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker (scan gets workers x threads)")
    ap.add_argument("--queue", type=int, default=128, help="forensics serve --queue")
    ap.add_argument("--good", type=int, default=400, help="distinct good face images")
    ap.add_argument("--hostile", type=float, default=0.1, help="fraction of hostile files in the mix")
    ap.add_argument("--kill-after", type=float, default=0.0, help="SIGKILL a worker after this fraction of answers")
    ap.add_argument("--client-timeout", type=float, default=120.0, help="seconds a request may take")
    ap.add_argument("--max-seconds", type=float, default=900.0, help="wall-clock bound of each phase")
    ap.add_argument("--skip-scan", action="store_true", help="no forensics scan baseline")
    ap.add_argument("--name", default="load", help="results file stem")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = ap.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or not 0 <= args.hostile < 1 or not 0 <= args.kill_after < 1:
        ap.error("--requests and --concurrency >= 1; --hostile and --kill-after in [0, 1)")
    rep = run(args)
    write_report(rep, args.out)
    print((args.out / f"{rep.name}.md").read_text())
    return 0 if rep.soak["every_admitted_request_answered_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
