"""Scanner worker processes behind one bounded job queue: the part of ``forensics serve`` that does the scanning.

Why processes, not threads or uvicorn workers:

* a hostile file can hang a native decoder (Pillow, FFmpeg) or crash it outright. A thread stuck in C code cannot
  be stopped and a segfault ends the whole process; a worker *process* can be killed at its deadline and replaced
  while the HTTP front keeps answering;
* each worker holds one :class:`~forensics.scanning.scanner.Scanner` (model + face detector loaded once) and scans
  the jobs it takes as one chunk through ``Scanner.scan_items``: the same batched detection and forward pass as
  ``forensics scan``, so the service reuses the scan orchestration instead of a second pipeline;
* the front process (uvicorn + Starlette) never imports torch: it parses requests, spools uploads, admits jobs and
  streams answers.

Every job is **answered exactly once**. :meth:`Job.resolve` is the only way to answer and it refuses a second
call, so a late result of a worker that was already given up on is dropped, never sent. When a worker dies
(crash, ``kill -9``) its unanswered jobs go back to the *front* of the queue and are retried one at a time (so a
file that crashes the scanner is isolated); a job that has crashed :data:`MAX_CRASHES` workers is answered with
an error. When a job's deadline passes, its worker is killed (a hung decoder cannot be interrupted otherwise),
the late job is answered ``timeout`` and the other jobs of its chunk are retried one at a time. The supervisor
thread of each worker slot starts a replacement at once.

Messages between processes are JSON over a private pipe (``send_bytes``), not pickles.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

log = logging.getLogger(__name__)

MAX_CRASHES = 2  # a job that was in flight in this many dead workers is answered with an error
READY_TIMEOUT_S = 600.0  # how long a new worker may take to load the model and the face detector (torch too if spawned)
RESPAWN_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # waits before restarting a worker that failed to start
#: what the fork server imports once, before it forks any worker: importing torch is ~2-2.5 s of one core here and
#: building the Scanner after it 0.2 s, so workers forked with torch loaded are up in a fraction of a second (a
#: replacement after a crash too) instead of each paying the import on a machine whose cores they share
PRELOAD = ("torch", "cv2", "forensics.scanning.scanner", "forensics.serve.pool")

# outcome causes; the HTTP layer maps them to status codes and the metrics label errors with them
OK, BAD_FILE, TIMEOUT, WORKER_CRASH, SHUTTING_DOWN = "ok", "bad_file", "timeout", "worker_crash", "shutting_down"


class QueueFullError(Exception):
    """Admitting these jobs would exceed the queue bound; ``retry_after`` is a hint in whole seconds."""

    def __init__(self, retry_after: int, pending: int, capacity: int) -> None:
        super().__init__(f"queue full ({pending} of {capacity} jobs pending)")
        self.retry_after = retry_after


class PoolClosedError(Exception):
    """The service is shutting down and admits no new jobs."""


@dataclass
class Outcome:
    """A job's answer: the scan record (``scan --jsonl`` schema) and why it ended (``cause``)."""

    cause: str
    record: dict[str, Any]


@dataclass(eq=False)
class Job:
    """One file to scan. ``path`` is what the worker opens, ``name`` what the record calls it.

    ``deadline`` is a ``time.monotonic()`` value; ``resolve`` may be called from any thread and answers once.
    """

    path: str
    name: str
    deadline: float
    request_id: str = ""
    sha256: str = ""
    size_bytes: int = 0
    crashes: int = 0
    isolate: bool = False  # retried alone (after a crash or a timeout kill) so a poison file hurts no other job
    future: asyncio.Future | None = field(default=None, repr=False)
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _answered: bool = field(default=False, repr=False)
    _on_answer: Callable[[Job, Outcome], None] | None = field(default=None, repr=False)

    @property
    def answered(self) -> bool:
        return self._answered

    def resolve(self, outcome: Outcome) -> bool:
        """Answer the job; False (and nothing happens) when it was answered already."""
        with self._lock:
            if self._answered:
                return False
            self._answered = True
        if self._on_answer is not None:
            self._on_answer(self, outcome)
        if self.future is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(_set_result, self.future, outcome)
        return True

    def error(self, cause: str, error_type: str, message: str) -> bool:
        """Answer with an error record shaped like a per-file error of ``scan``."""
        return self.resolve(Outcome(cause, error_record(self.name, error_type, message, self.sha256, self.size_bytes)))


def _set_result(fut: asyncio.Future, outcome: Outcome) -> None:
    if not fut.done():
        fut.set_result(outcome)


def error_record(name: str, error_type: str, message: str, sha256: str = "", size_bytes: int = 0) -> dict[str, Any]:
    """A ``status: error`` record for failures that happen outside a worker's scanner (timeouts, crashes)."""
    from forensics.scanning.results import FileResult

    msg = message if message.startswith(name) else f"{name}: {message}"
    res = FileResult(path=name, sha256=sha256, size_bytes=size_bytes, status="error", error=msg, error_type=error_type)
    return res.to_dict()


@dataclass
class WorkerOptions:
    """What a worker process needs to build its Scanner; JSON-able because it crosses the process boundary."""

    model: str = "default"
    scan: dict[str, Any] = field(default_factory=dict)  # ScanConfig fields
    max_file_bytes: int = 32 * 1024 * 1024  # server-side paths: refused before hashing when larger
    log_level: str = "info"
    json_logs: bool = True  # the workers log like the front: their stderr is the same stream


@dataclass
class _Slot:
    index: int
    state: str = "starting"  # starting | ready | busy | failed | stopped
    pid: int | None = None
    restarts: int = 0
    error: str | None = None  # why the last start failed (shown by /readyz)
    proc: Any = None
    conn: Connection | None = None


class ScanPool:
    """N supervised scanner processes fed from one bounded FIFO of :class:`Job`.

    ``capacity`` bounds the jobs admitted and not yet answered (waiting *and* in flight): a burst beyond it is
    refused at the door (HTTP 429) instead of growing memory and latency without limit. A request's jobs are
    admitted all together or not at all. ``batch`` is the most jobs one worker scans as one chunk; a worker takes
    its fair share of what is waiting, so a queue of 8 with 2 idle workers gives each 4.
    """

    def __init__(
        self,
        options: WorkerOptions,
        workers: int = 1,
        capacity: int = 64,
        batch: int = 16,
        on_answer: Callable[[Job, Outcome], None] | None = None,
        on_restart: Callable[[int], None] | None = None,
    ) -> None:
        if workers < 1 or capacity < 1 or batch < 1:
            raise ValueError("workers, capacity and batch must be >= 1")
        self.options = options
        self.capacity = capacity
        self.batch = batch
        self.slots = [_Slot(i) for i in range(workers)]
        self.model_card: dict[str, Any] | None = None
        self._on_answer = on_answer
        self._on_restart = on_restart
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._pending = 0  # admitted and not answered
        self._idle = 0  # supervisors waiting for work
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._job_seconds = 0.5  # moving average of worker seconds per job (for Retry-After)
        self._ctx = worker_context()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        prestart_workers()  # from the caller's thread (the main one, usually): Ctrl-C cannot reach its imports
        for slot in self.slots:
            t = threading.Thread(target=self._supervise, args=(slot,), name=f"scan-worker-{slot.index}", daemon=True)
            t.start()
            self._threads.append(t)

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, answer the waiting ones ``shutting_down``, stop the workers (killing stragglers)."""
        with self._cond:
            self._closing = True
            waiting = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in waiting:
            job.error(SHUTTING_DOWN, "ServiceUnavailable", "the service is shutting down")
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, end - time.monotonic()))
        for slot in self.slots:
            _kill(slot.proc)

    # -- state -------------------------------------------------------------------------------------------------
    @property
    def ready_workers(self) -> int:
        return sum(s.state in ("ready", "busy") for s in self.slots)

    @property
    def start_error(self) -> str | None:
        """Why no worker is up, when every slot's last start failed (a slot's ``error`` is cleared once its worker
        is ready); None while a worker is up or none has failed yet. The supervisors keep retrying: a caller that
        waits for answers uses this to stop waiting."""
        if self.ready_workers or not all(s.error for s in self.slots):
            return None
        return self.slots[0].error

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return max(0, self._pending - len(self._queue))  # a job answered while queued (timeout) still sits there

    def worker_states(self) -> list[dict[str, Any]]:
        return [{"index": s.index, "state": s.state, "pid": s.pid, "restarts": s.restarts, "error": s.error}
                for s in self.slots]  # fmt: skip

    def retry_after(self) -> int:
        """Seconds until the backlog has likely drained: a hint for 429 answers (1 to 60)."""
        per_worker = self._pending * self._job_seconds / max(1, self.ready_workers)
        return int(min(60, max(1, math.ceil(per_worker))))

    # -- admission ---------------------------------------------------------------------------------------------
    def submit(self, jobs: list[Job]) -> None:
        """Admit all ``jobs`` or raise :class:`QueueFullError` / :class:`PoolClosedError` (none admitted)."""
        with self._cond:
            if self._closing:
                raise PoolClosedError("the service is shutting down")
            if self._pending + len(jobs) > self.capacity:
                raise QueueFullError(self.retry_after(), self._pending, self.capacity)
            for job in jobs:
                job._on_answer = self._answered
            self._pending += len(jobs)
            self._queue.extend(jobs)
            self._cond.notify_all()

    def _answered(self, job: Job, outcome: Outcome) -> None:
        with self._cond:
            self._pending -= 1
        if self._on_answer is not None:
            self._on_answer(job, outcome)

    def _requeue(self, jobs: list[Job]) -> None:
        """Put unanswered jobs of a dead worker back at the front, in their order (they were admitted already)."""
        with self._cond:
            closing = self._closing
            if not closing:
                self._queue.extendleft(reversed([j for j in jobs if not j.answered]))
                self._cond.notify_all()
        if closing:  # no worker will take them any more
            for job in jobs:
                job.error(SHUTTING_DOWN, "ServiceUnavailable", "the service is shutting down")

    def _take(self) -> list[Job]:
        """Block until there is work; return this worker's share (a retried job always travels alone)."""
        with self._cond:
            self._idle += 1
            try:
                while not self._queue and not self._closing:
                    self._cond.wait(0.5)
                if self._closing:
                    return []
                first = self._queue.popleft()
                if first.isolate:
                    return [first]
                share = max(1, math.ceil((len(self._queue) + 1) / max(1, self._idle)))
                out = [first]
                while self._queue and len(out) < min(self.batch, share) and not self._queue[0].isolate:
                    out.append(self._queue.popleft())
                return out
            finally:
                self._idle -= 1

    # -- supervision -------------------------------------------------------------------------------------------
    def _supervise(self, slot: _Slot) -> None:
        failures = 0
        while not self._closing:
            if not self._spawn(slot):
                slot.state = "failed"
                failures += 1
                time.sleep(RESPAWN_BACKOFF_S[min(failures, len(RESPAWN_BACKOFF_S)) - 1])
                continue
            failures = 0
            alive = True
            while alive and not self._closing:
                jobs = self._take()
                alive = not jobs or self._run(slot, jobs)
            if alive:  # closing: let the worker finish and exit on its own
                break
            _kill(slot.proc)  # it died or was killed at a deadline: start a replacement
            slot.restarts += 1
            if self._on_restart is not None:
                self._on_restart(slot.index)
        self._stop(slot)

    def _spawn(self, slot: _Slot) -> bool:
        slot.state = "starting"
        parent, child = self._ctx.Pipe(duplex=True)
        opts = json.dumps(asdict(self.options))
        # the fork server was started with the environment of its day: a worker takes this process's own, as a
        # spawned one would (settings exported after the server started; multiprocessing passes the folder itself)
        args = (child, opts, dict(os.environ))
        proc = self._ctx.Process(target=worker_main, args=args, name=f"forensics-scan-{slot.index}")
        proc.daemon = True  # a front that exits for any reason takes its workers with it
        try:
            proc.start()
        except (OSError, EOFError) as exc:  # the fork server's socket gone (a temp cleaner), or the server died
            child.close()
            parent.close()
            slot.error = f"could not start a process: {type(exc).__name__}: {exc}"
            log.error("scan worker %d %s", slot.index, slot.error)
            return False
        child.close()
        slot.proc, slot.conn, slot.pid = proc, parent, proc.pid
        end = time.monotonic() + READY_TIMEOUT_S
        while not self._closing and time.monotonic() < end:
            ready = wait([parent, proc.sentinel], timeout=0.5)
            if not ready:
                continue
            try:
                msg = json.loads(parent.recv_bytes())
            except (EOFError, OSError, ValueError):
                proc.join(1.0)
                slot.error = f"died while starting ({_exit_desc(proc)})"
                log.error("scan worker %d (pid %s) %s", slot.index, proc.pid, slot.error)
                return False
            if msg.get("op") == "ready":
                if self.model_card is None:
                    self.model_card = msg.get("model")
                slot.state, slot.error = "ready", None
                log.info("scan worker %d ready (pid %s, model loaded in %.1f s)", slot.index, proc.pid,
                         msg.get("load_s", 0.0))  # fmt: skip
                return True
            slot.error = str(msg.get("error", msg))
            log.error("scan worker %d could not start: %s", slot.index, slot.error)
            _kill(proc)
            return False
        if not self._closing:
            slot.error = f"model not loaded after {READY_TIMEOUT_S:g} s"
        _kill(proc)
        return False

    def _run(self, slot: _Slot, jobs: list[Job]) -> bool:
        """Send ``jobs`` to the slot's worker and answer them as records come back; False when the worker is gone."""
        now = time.monotonic()
        live: dict[str, Job] = {}
        for k, job in enumerate(jobs):
            if job.answered:  # e.g. the HTTP side gave up on it while it waited
                continue
            if job.deadline <= now:
                job.error(TIMEOUT, "ScanTimeoutError", "timed out while waiting in the queue")
                continue
            live[str(k)] = job
        if not live:
            return True
        slot.state = "busy"
        msg = {"op": "scan", "jobs": [
            {"id": k, "path": j.path, "name": j.name, "sha256": j.sha256, "size_bytes": j.size_bytes}
            for k, j in live.items()
        ]}  # fmt: skip
        t0 = time.monotonic()
        n_live = len(live)
        try:
            slot.conn.send_bytes(json.dumps(msg).encode("utf-8"))
        except OSError:
            return self._dead(slot, list(live.values()))
        while live:
            left = min(j.deadline for j in live.values()) - time.monotonic()
            if left <= 0:
                return self._timed_out(slot, live)
            ready = wait([slot.conn, slot.proc.sentinel], timeout=min(left, 1.0))
            if self._closing and not ready:
                continue
            if slot.conn in ready:
                try:
                    reply = json.loads(slot.conn.recv_bytes())
                except (EOFError, OSError, ValueError):
                    return self._dead(slot, list(live.values()))
                job = live.pop(str(reply.get("id")), None)
                if job is not None:
                    rec = reply["record"]
                    job.resolve(Outcome(OK if rec.get("status") == "ok" else BAD_FILE, rec))
            elif slot.proc.sentinel in ready:
                return self._dead(slot, list(live.values()))
        self._job_seconds = 0.8 * self._job_seconds + 0.2 * (time.monotonic() - t0) / n_live
        slot.state = "ready"
        return True

    def _dead(self, slot: _Slot, jobs: list[Job]) -> bool:
        slot.proc.join(1.0)
        why = _exit_desc(slot.proc)
        log.error("scan worker %d (pid %s) died (%s) with %d unanswered jobs", slot.index, slot.pid, why, len(jobs),
                  extra={"request_ids": sorted({j.request_id for j in jobs})})  # fmt: skip
        retry = []
        for job in jobs:
            job.crashes += 1
            if job.crashes >= MAX_CRASHES:
                job.error(WORKER_CRASH, "WorkerCrashError",
                          f"the scanner process died {job.crashes} times while scanning this file ({why})")  # fmt: skip
            else:
                job.isolate = True
                retry.append(job)
        self._requeue(retry)
        slot.state = "starting"
        return False

    def _timed_out(self, slot: _Slot, live: dict[str, Job]) -> bool:
        _kill(slot.proc)
        now = time.monotonic()
        retry = []
        for job in live.values():
            if job.deadline <= now:
                job.error(TIMEOUT, "ScanTimeoutError", "timed out while scanning (the worker was restarted)")
            else:
                job.isolate = True
                retry.append(job)
        log.warning("scan worker %d (pid %s) killed at a job deadline; %d jobs of its chunk retried alone",
                    slot.index, slot.pid, len(retry),
                    extra={"request_ids": sorted({j.request_id for j in live.values()})})  # fmt: skip
        self._requeue(retry)
        slot.state = "starting"
        return False

    def _stop(self, slot: _Slot) -> None:
        if slot.conn is not None and slot.proc is not None and slot.proc.is_alive():
            try:
                slot.conn.send_bytes(b'{"op": "stop"}')
                slot.proc.join(5.0)
            except OSError:
                pass
        _kill(slot.proc)
        slot.state = "stopped"


def _kill(proc: Any) -> None:
    if proc is not None and proc.is_alive():
        proc.kill()
        proc.join(5.0)


def _exit_desc(proc: Any) -> str:
    code = proc.exitcode
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# ---------------------------------------------------------------------------------------------------------------
# the worker process
# ---------------------------------------------------------------------------------------------------------------
def worker_context() -> Any:
    """How scanner processes start: forked from a fork server that has imported :data:`PRELOAD` on Linux, spawned
    elsewhere (Windows has no fork server; on macOS system frameworks that torch loads are not safe to fork, which
    is why Python spawns there by default). Never a plain fork of the caller: that would copy the front's threads
    and event loop (and a driver's torch thread pools) into the child."""
    if not sys.platform.startswith("linux") or "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))  # read once, when the server starts
    return ctx


def prestart_workers() -> None:
    """Start the fork server now, so its torch import runs beside the caller's own start-up (model load, file
    listing) instead of after it. Returns at once; the first worker forked waits for the import to finish.

    From the main thread the server starts with SIGINT ignored (it survives the exec): Python's fork server
    imports :data:`PRELOAD` before it ignores SIGINT itself, so a Ctrl-C in those seconds printed its traceback;
    the driver handles Ctrl-C and stops the workers."""
    ctx = worker_context()
    if ctx.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


def worker_main(conn: Connection, options_json: str, env: dict[str, str] | None = None) -> None:
    """Entry point of a scanner process: load the Scanner once, then scan chunks until told to stop.

    ``env``: the starting process's environment (a forked worker has the fork server's; what the preloaded
    modules read when they were imported, such as OpenMP's variables, stays as it was then).
    Per-file failures come back as ``status: error`` records (``Scanner.scan_items`` never raises for a file);
    an exception outside a file (a bug) is reported for each job of the chunk and the worker carries on.
    """
    from forensics.serve.logs import configure_logging

    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the front stops us
    opts = json.loads(options_json)
    configure_logging(opts.get("log_level", "info"), opts.get("json_logs", True))
    t0 = time.perf_counter()
    try:
        from forensics.scanning.config import ScanConfig
        from forensics.scanning.scanner import Scanner

        scanner = Scanner(opts["model"], ScanConfig(**opts["scan"]))
    except Exception as exc:  # noqa: BLE001 - reported to the supervisor as one line, then this process ends
        with contextlib.suppress(ConnectionError, EOFError):  # nobody left to tell
            conn.send_bytes(json.dumps({"op": "fatal", "error": f"{type(exc).__name__}: {exc}"}).encode("utf-8"))
        return
    card = model_summary(scanner)
    try:
        conn.send_bytes(json.dumps({"op": "ready", "model": card, "load_s": time.perf_counter() - t0}).encode())
    except (ConnectionError, EOFError):
        return  # the front went away while the model loaded
    while True:
        try:
            msg = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the front is gone
        if msg.get("op") != "scan":
            return
        try:
            _scan_chunk(conn, scanner, msg["jobs"], int(opts.get("max_file_bytes") or 0))
        except (ConnectionError, EOFError):
            return  # the front went away mid-chunk (killed): nobody is left to answer


def _scan_chunk(conn: Connection, scanner: Any, jobs: list[dict[str, Any]], max_file_bytes: int) -> None:
    items = [_input_item(j, max_file_bytes) for j in jobs]
    sent: set[str] = set()
    try:
        for job, res in zip(jobs, scanner.scan_items(items)):  # one record per item, in order
            rec = _renamed(res.to_dict(), job["path"], job["name"])
            conn.send_bytes(json.dumps({"id": job["id"], "record": rec}).encode("utf-8"))
            sent.add(job["id"])
    except (ConnectionError, EOFError):
        raise  # the pipe to the front, not the scan
    except Exception as exc:  # noqa: BLE001 - a scanner bug must not end the worker; every job still gets a record
        log.exception("scan chunk failed")
        for job, item in zip(jobs, items):
            if job["id"] not in sent:
                msg = " ".join(f"{type(exc).__name__}: {exc}".split())
                rec = error_record(job["name"], type(exc).__name__, msg, item.sha256, item.size_bytes)
                conn.send_bytes(json.dumps({"id": job["id"], "record": rec}).encode("utf-8"))


def _input_item(job: dict[str, Any], max_file_bytes: int) -> Any:
    from forensics_core.hashing import hash_file
    from forensics_core.inputs import InputItem

    path = job["path"]
    try:
        size = os.stat(path).st_size
        if max_file_bytes and size > max_file_bytes:
            return InputItem(path, size_bytes=size, error_type="MediaTooLargeError",
                             error=f"{path}: file is {size} bytes, over the {max_file_bytes}-byte limit")  # fmt: skip
        if job.get("sha256"):  # hashed already while a server-side folder was listed
            return InputItem(path, sha256=job["sha256"], size_bytes=size)
        digest, size = hash_file(path, untrusted=True)
    except OSError as exc:
        return InputItem(path, error=f"{path}: read error ({exc.strerror or exc})", error_type="UnreadableMediaError")
    return InputItem(path, sha256=digest, size_bytes=size)


def _renamed(rec: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    """The record under the name the client knows (an upload's spool path is a server detail)."""
    if path != name:
        rec["path"] = name
        if rec.get("error"):
            rec["error"] = rec["error"].replace(path, name)
    return rec


def model_summary(scanner: Any) -> dict[str, Any]:
    """What ``GET /v1/model`` shows: the card's identity, preprocessing, calibration, thresholds (with the number of
    validation reals each rests on and whether its false-positive rate is estimable: a client choosing ``fpr01``
    must be able to see that it is not) and training."""
    model = scanner.model
    card = dict(getattr(model, "card", {}) or {})
    training = card.get("training") or {}
    datasets = training.get("datasets") or []
    return {
        "name": str(model.name),
        "sha256": str(model.sha256),
        "detector": card.get("detector"),
        "description": card.get("description"),
        "parameters": card.get("parameters"),
        "created": card.get("created"),
        "licence": card.get("licence"),
        "preprocess": card.get("preprocess"),
        "calibration": {"kind": (card.get("calibration") or {}).get("kind")},
        "thresholds": dict(model.thresholds),
        "threshold_rule": card.get("threshold_rule"),
        "threshold_support": dict(card.get("threshold_support") or {}),
        "active_threshold": {"policy": scanner.policy.policy, "value": scanner.policy.value},
        "training": {
            "families": sorted({f for d in datasets for f in (d.get("families") or [])}),
            "n_images": sum(int(d.get("n") or 0) for d in datasets),
        },
        "face_detector": scanner.config.face_detector,
    }
