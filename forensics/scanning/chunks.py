"""The chunk scheduler's parts: per-file deadlines, the worker pool that can abandon a stuck decode, the loaded
file of a chunk, and the iterators that cut inputs into chunks and video frames into batches."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import numpy as np

from forensics_core.errors import ForensicsError
from forensics_core.inputs import InputItem


class ScanTimeoutError(ForensicsError):
    """A file's work exceeded ``--timeout``; reported per file like any other error."""


class Deadline:
    """Wall-clock budget of one file; ``check`` raises :class:`ScanTimeoutError` once it is spent."""

    def __init__(self, path: str, seconds: float | None, start: float | None = None) -> None:
        self.path = path
        self.seconds = seconds
        self.end = None if seconds is None else (time.monotonic() if start is None else start) + seconds

    def remaining(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    def pause_since(self, t: float) -> None:
        """Do not count the time since ``t`` (monotonic): the file sat decoded while other files of its chunk (or
        of the chunk before it) were loaded or scored; that wait is not its own work."""
        if self.end is not None:
            self.end += max(0.0, time.monotonic() - t)

    def expired(self) -> bool:
        return self.end is not None and time.monotonic() > self.end

    def error(self, what: str = "") -> ScanTimeoutError:
        return ScanTimeoutError(f"{self.path}: timed out after {self.seconds:g} s{(' ' + what) if what else ''}")

    def check(self, what: str = "") -> None:
        if self.expired():
            raise self.error(what)

    def wait(self, pool: WorkerPool, fut: Future, what: str) -> Any:
        """``fut``'s result within the remaining budget; past it the task is abandoned and the file times out."""
        try:
            return fut.result(timeout=self.remaining())
        except FutureTimeout:
            pool.abandon(fut)
            raise self.error(what) from None


class WorkerPool:
    """Daemon worker threads whose stuck members are written off and replaced, so no file can stall a scan.

    A decoder blocked in C code (a slow FFmpeg demux, a read from a stalled mount) cannot be interrupted from
    Python. ``concurrent.futures.ThreadPoolExecutor`` would keep such a thread forever: ``workers`` stuck files
    then starve every later file, and its shutdown (and the interpreter's exit hook) joins the stuck thread, so
    the scan never ends. Here :meth:`abandon` writes a timed-out task off: a fresh thread takes its place at
    once, the old one retires if its task ever returns, and all threads are daemons that process exit does not
    wait for. (A subprocess per file would make tasks killable, at the price of a model and face detector per
    process and of batching; the deadline is enforced at every stage instead, see :class:`Scanner`.)
    """

    def __init__(self, workers: int, name: str = "scan") -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._name = name
        self._abandoned_futures: set[Future] = set()
        self._threads: list[threading.Thread] = []
        self._running: dict[threading.Thread, Future] = {}
        self.abandoned = 0
        for _ in range(workers):
            self._spawn()

    @property
    def started(self) -> int:
        """Worker threads started so far (the first ``workers`` plus one per abandoned task)."""
        return len(self._threads)

    def _spawn(self) -> None:
        t = threading.Thread(target=self._work, name=f"{self._name}_{self.started + 1}", daemon=True)
        self._threads.append(t)
        t.start()

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            fut, fn, args = job
            if not fut.set_running_or_notify_cancel():
                continue
            self._running[threading.current_thread()] = fut
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - delivered to the waiting caller, like concurrent.futures
                fut.set_exception(exc)
            with self._lock:
                if fut in self._abandoned_futures:  # a replacement took this thread's place: retire
                    self._abandoned_futures.discard(fut)
                    return

    def submit(self, fn: Any, *args: Any) -> Future:
        fut: Future = Future()
        self._queue.put((fut, fn, args))
        return fut

    def abandon(self, fut: Future) -> None:
        """Stop waiting for ``fut``: a queued task is cancelled, a running one gets its thread replaced."""
        with self._lock:
            if fut.cancel() or fut.done():
                return
            self._abandoned_futures.add(fut)
            self.abandoned += 1
            self._spawn()

    def shutdown(self, wait_s: float = 10.0) -> None:
        """Let the workers exit and wait for them, at most ``wait_s`` in all (a stuck one is a daemon and dies
        with the process). Why wait at all: a worker that is still returning from OpenCV / torch code while the
        interpreter finalises races the C++ libraries' static destructors, and the process aborts ("terminate
        called without an active exception", exit -6: measured in about one scan in four under CPU load)."""
        for _ in range(self.started):
            self._queue.put(None)
        deadline = time.monotonic() + wait_s
        with self._lock:
            stuck = {t for t, f in self._running.items() if f in self._abandoned_futures}
        for t in self._threads:
            if t not in stuck:
                t.join(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


@dataclass
class Loaded:
    item: InputItem
    kind: str = ""
    pixels: np.ndarray | None = None
    det_image: np.ndarray | None = None
    det_scale: float = 1.0
    info: Any = None
    load_ms: float = 0.0
    error: BaseException | None = None
    work_scale: float = 1.0
    deadline: Deadline | None = None  # the file's --timeout budget, started when its load began
    loaded_at: float = 0.0  # monotonic time its load finished (waiting after that is not charged to it)


def decoded_in(pool: WorkerPool, frames: Iterator[Any], deadline: Deadline) -> Iterator[Any]:
    """``frames`` with every ``next`` (demux + decode, where a hostile video spends its time) run in a worker and
    bounded by the file's deadline, so a decoder stuck inside FFmpeg is abandoned instead of stalling the scan."""
    end = object()
    while True:
        frame = deadline.wait(pool, pool.submit(next, frames, end), "while decoding video frames")
        if frame is end:
            return
        yield frame
