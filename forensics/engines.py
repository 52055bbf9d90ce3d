"""Execution engines for ``forensics scan``: one ``Scanner`` (:mod:`forensics.scanning.scanner`), several places.

* ``local``: this process. Decoding and file evidence run in a thread pool (``--workers``; OpenCV, Pillow and
  NumPy release the GIL), face detection and the model forward are batched over ``--batch`` files on the
  chosen ``--device`` (GPU when present with ``--device auto``).
* ``processes``: this machine, ``--actors`` scanner processes (default one per CPU core), each with its own
  Scanner and ``cores / processes`` torch threads, fed chunks of ``--batch`` files by the supervised pool of
  ``forensics serve`` (:class:`forensics.serve.pool.ScanPool`: a process that crashes on a file is replaced and
  the file retried alone, then reported as an error). Why: MTCNN's and the detector's small convolutions use a
  second torch thread poorly (1.46x on two cores), two single-thread processes nearly twice (issue #34); the
  records are the local engine's, in input order, without the images an HTML report embeds.
* ``ray``: a Ray Data job over a manifest of paths. Every Ray actor builds its own Scanner (model + face detector
  loaded once per actor) and scans a batch of paths; the driver streams the records back in input order and
  writes the same JSONL as the local engine. With no ``--address`` a local Ray instance is started; with
  ``--address ray://head:10001`` (or ``auto``) the job runs on a cluster whose nodes can read the same paths
  (shared filesystem) and have the toolkit installed. See ``docs/scan.md``.

Engines are registered in :data:`ENGINES` (plugins: entry-point group ``forensics.engines``) so the CLI's
``--engine`` choices come from the registry.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import math
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any, ClassVar

from forensics_core.errors import UsageError
from forensics_core.inputs import InputItem
from forensics_core.plumbing import Closing
from forensics_core.registry import Registry
from forensics_core.sysinfo import usable_cpus

log = logging.getLogger(__name__)


class Engine(Closing, ABC):
    """Runs a scan: ``Engine(model=..., config=ScanConfig, **options).run(items) -> Iterator[FileResult]``.

    ``options``: ``address`` / ``actors`` (the CLI's), ``streamed`` (the inputs are paths read from stdin as they
    arrive). ``keeps_images``: records keep the decoded face crops an HTML report embeds."""

    keeps_images: ClassVar[bool] = False

    def __init__(self, model: Any, config: Any, **options: Any) -> None:
        self.model = model
        self.config = config
        self.options = options

    @abstractmethod
    def run(self, items: Iterable[InputItem]) -> Iterator[Any]:
        """Yield one FileResult per item, in input order."""

    def close(self) -> None:
        """Release what :meth:`run` started and kept for the next call (worker processes); idempotent."""
        return None


ENGINES: Registry[type[Engine]] = Registry("scan engine", "forensics.engines", ("forensics.engines",))


@ENGINES.register("local", description="this process: thread pool for decoding/evidence, batched model forward")
class LocalEngine(Engine):
    keeps_images = True

    def __init__(self, model: Any, config: Any, **options: Any) -> None:
        super().__init__(model, config, **options)
        if options.get("address"):
            raise UsageError("--address only applies to --engine ray")
        from forensics.scanning.scanner import Scanner

        self.scanner = Scanner(model, config)  # load the model before the first file, so a bad model fails fast

    def run(self, items: Iterable[InputItem]) -> Iterator[Any]:
        return self.scanner.scan_items(items)


def _driver_result(
    item: InputItem, first: bytes | None, model_info: dict[str, str], threshold: dict[str, Any]
) -> Any:
    """The record of an item the driver decides without a scanner: a listing error, or a byte-identical copy of an
    earlier file (``first``: that file's :func:`~forensics.scanning.results.compact` record, None if it failed)."""
    from forensics.scanning.results import duplicate_result, listing_error_result, uncompact

    if item.error is not None:
        res = listing_error_result(item)
        res.model, res.threshold = dict(model_info), dict(threshold)
        return res
    return duplicate_result(item, uncompact(first), model_info, threshold)


class _DriverEngine(Engine):
    """An engine whose Scanners live in other processes. The driver resolves the model and threshold itself (a
    typo fails before any worker starts; the records it writes for listing errors and duplicates carry them) and
    hands the workers a model *path*: each loads its own copy."""

    def __init__(self, model: Any, config: Any, **options: Any) -> None:
        super().__init__(model, config, **options)
        from forensics.scanning.config import resolve_model
        from forensics_core.thresholds import ThresholdPolicy

        self.model_path = self._model_path(model)
        m = resolve_model(model, "cpu")
        policy = ThresholdPolicy.resolve(config.threshold, dict(getattr(m, "thresholds", {})))
        self.model_info = {"name": str(m.name), "sha256": str(m.sha256)}
        self.threshold = {"policy": policy.policy, "value": policy.value}

    @staticmethod
    def _model_path(model: Any) -> str:
        if isinstance(model, (str, os.PathLike)):
            return str(model)
        for attr in ("path", "source", "file"):
            p = getattr(model, attr, None)
            if p:
                return str(p)
        raise UsageError("--engine ray / processes needs a model path or 'default' (workers load the model themselves)")

    def _stamped(self, res: Any) -> Any:
        """A worker's record with the model and threshold every record names (a crash record has none)."""
        res.model = res.model or dict(self.model_info)
        res.threshold = res.threshold or dict(self.threshold)
        return res


@ENGINES.register("processes", description="this machine, --actors scanner processes (default: one per CPU core)")
class ProcessEngine(_DriverEngine):
    """``--actors`` supervised scanner processes (:class:`forensics.serve.pool.ScanPool`), started by the first
    :meth:`run` and kept until :meth:`close`. Records stream back in input order; at most ``window`` files are in
    flight, so memory stays bounded whatever the number of inputs."""

    def __init__(self, model: Any, config: Any, **options: Any) -> None:
        if options.get("address"):
            raise UsageError("--address only applies to --engine ray")
        from forensics.serve.pool import prestart_workers

        prestart_workers()  # the workers' torch import runs beside the driver's model load below
        super().__init__(model, config, **options)
        actors = options.get("actors")
        if actors is not None and int(actors) < 1:
            raise UsageError(f"--actors must be >= 1, got {actors}")
        self.processes = int(actors) if actors is not None else usable_cpus()
        # A worker takes up to ``take`` files at once and scans them in chunks of ``--batch``, decoding the next
        # chunk while it detects on this one (the local engine's prefetch); a worker given one chunk at a time
        # would decode and compute in turn. ``window``: two such takes per process in flight.
        self.take = 4 * max(1, config.batch)
        self.window = 2 * self.processes * self.take
        self._pool: Any = None
        self._answers: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()

    def _worker_options(self) -> Any:
        from forensics.serve.pool import WorkerOptions

        cfg = dict(asdict(self.config))
        cfg["keep_images"] = False  # records cross the process boundary as JSON
        cfg["threads"] = self.config.threads or max(1, usable_cpus() // self.processes)
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
        return WorkerOptions(model=self.model_path, scan=cfg, max_file_bytes=0, log_level=level, json_logs=False)

    def _answered(self, job: Any, outcome: Any) -> None:
        with self._cond:
            self._answers[id(job)] = outcome.record
            self._cond.notify_all()

    def _start(self) -> Any:
        if self._pool is None:
            from forensics.serve.pool import ScanPool

            self._pool = ScanPool(self._worker_options(), workers=self.processes, capacity=self.window,
                                  batch=self.take, on_answer=self._answered)  # fmt: skip
            self._pool.start()
        return self._pool

    def _wait(self, job: Any) -> dict[str, Any]:
        """The record of ``job``, once a worker has answered it. Raises when no worker process can start (the
        supervisor keeps retrying; a run would otherwise wait for ever)."""
        with self._cond:
            while id(job) not in self._answers:
                self._cond.wait(0.5)
                why = self._pool.start_error
                if id(job) not in self._answers and why:
                    raise UsageError(f"no scanner process could start: {why}")
            return self._answers.pop(id(job))

    def run(self, items: Iterable[InputItem]) -> Iterator[Any]:
        from forensics.scanning.results import FileResult, compact
        from forensics.serve.pool import Job

        batch = max(1, self.config.batch)
        pending: collections.deque[tuple[InputItem, Any]] = collections.deque()
        unsent: list[Any] = []  # jobs go to the pool a chunk at a time: a worker scans what it takes as one batch
        done: dict[str, bytes] = {}  # sha256 -> compact record of the first copy (for its duplicates)
        in_flight = 0

        def head() -> Any:
            nonlocal in_flight
            item, job = pending.popleft()
            if job is None:
                return _driver_result(item, done.get(item.sha256), self.model_info, self.threshold)
            if unsent:  # about to wait for an answer: every job must be with the pool first
                self._start().submit(unsent)
                unsent.clear()
            in_flight -= 1
            res = self._stamped(FileResult.from_dict(self._wait(job)))
            if res.status == "ok" and res.sha256:
                done[res.sha256] = compact(res)
            return res

        for item in items:
            job = None
            if item.error is None and item.duplicate_of is None:
                while in_flight >= self.window:
                    yield head()
                job = Job(path=item.path, name=item.path, deadline=math.inf, sha256=item.sha256,
                          size_bytes=item.size_bytes)  # fmt: skip
                unsent.append(job)
                in_flight += 1
                if len(unsent) >= batch:
                    self._start().submit(unsent)  # the workers start with the first chunk: no files, no processes
                    unsent.clear()
            pending.append((item, job))
            while pending and (pending[0][1] is None or id(pending[0][1]) in self._answers):
                yield head()
        while pending:
            yield head()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


@ENGINES.register("auto", description="local for short, GPU, streamed or --report scans; processes for long CPU ones")
class AutoEngine(Engine):
    """The CLI's default: the local engine, or ``processes`` once a scan lists :attr:`min_files` files on a CPU
    with two or more cores. Why a threshold: the workers take ~2.7 s until their first files are scanned (the fork
    server's torch import, then model and face detector in each) and then scan 1.16-1.33x the local engine's
    images/s on two cores (``benchmarks/results/scan.md``), so they pay from several hundred files on. A scan that
    may move loads nothing before its inputs are listed (the model and threshold are checked torch-free first), so a
    short one never starts the fork server; with ``--device auto`` on a GPU machine a scan of 1000+ files starts it
    before the device is known (the import overlaps the driver's) and then stays local. ``scanner`` is None until
    :meth:`run` has chosen, except for the scans that never move (their local engine loads at once). The local
    engine stays for GPU scans (one process feeds the device), HTML reports (they embed face crops that records
    crossing a process boundary do not carry) and paths read from stdin (the peek would hold the first records
    back until that many paths arrived). Cores: :func:`~forensics_core.sysinfo.usable_cpus` (the affinity mask, not
    the machine's)."""

    #: files listed before the scan moves to worker processes
    min_files: int = 1000
    keeps_images = True  # a --report scan stays local

    def __init__(self, model: Any, config: Any, **options: Any) -> None:
        super().__init__(model, config, **options)
        self.chosen: Engine | None = None
        if self._may_move():
            from forensics.scanning.config import check_model

            check_model(model, config.threshold)  # torch-free: a typo fails now; the engine is built by run()
        else:
            self.chosen = LocalEngine(model, config, **options)  # the model loads now: a bad model fails fast

    @property
    def scanner(self) -> Any:
        """The local engine's Scanner (a ``--report`` scan reads its model before the first file)."""
        return getattr(self.chosen, "scanner", None)

    def _may_move(self) -> bool:
        """What is known before anything loads: a CPU-capable scan whose records may cross a process boundary."""
        return (
            not str(self.config.device).startswith(("cuda", "mps"))
            and usable_cpus() >= 2
            and not self.config.keep_images
            and not self.options.get("streamed")
        )

    def _choose(self, listed: int) -> Engine:
        if listed < self.min_files:
            return LocalEngine(self.model, self.config, **self.options)
        from forensics.serve.pool import prestart_workers
        from forensics_core.config import resolve_device

        prestart_workers()  # the workers' torch import runs on the other core while this process imports its own
        if resolve_device(self.config.device).type != "cpu":
            return LocalEngine(self.model, self.config, **self.options)  # one process feeds the device
        log.info("engine auto: %d+ files on %d CPU cores -> processes", listed, usable_cpus())
        return ProcessEngine(self.model, self.config, **self.options)

    def run(self, items: Iterable[InputItem]) -> Iterator[Any]:
        rest = iter(items)
        if self.chosen is None:
            head = list(itertools.islice(rest, self.min_files))
            self.chosen = self._choose(len(head))
            rest = itertools.chain(head, rest)
        return self.chosen.run(rest)

    def close(self) -> None:
        if self.chosen is not None:
            self.chosen.close()


class _RayScanBatch:
    """Ray Data callable class: one Scanner per actor, one batch of manifest rows per call."""

    def __init__(self, model_path: str, config: dict[str, Any]) -> None:
        import torch

        from forensics.scanning.config import ScanConfig
        from forensics.scanning.scanner import Scanner

        config.setdefault("threads", 1)  # one actor per CPU: more intra-op threads would oversubscribe the node
        torch.set_num_threads(int(config["threads"]))
        self.scanner = Scanner(model_path, ScanConfig(**config))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        items = [
            InputItem(path=str(p), sha256=str(s), size_bytes=int(n))
            for p, s, n in zip(batch["path"], batch["sha256"], batch["size_bytes"])
        ]
        records = [json.dumps(r.to_dict(), ensure_ascii=False) for r in self.scanner.scan_items(items)]
        return {"seq": np.asarray(batch["seq"]), "record": np.asarray(records, dtype=object)}


@ENGINES.register("ray", description="Ray Data job over a manifest of paths (local Ray or --address cluster)")
class RayEngine(_DriverEngine):
    """The scale-out engine. Options: ``address`` (None = local instance), ``actors`` (parallel Scanners)."""

    def __init__(self, model: Any, config: Any, **options: Any) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("--engine ray needs Ray: pip install 'deepfake-forensics[ray]'") from None
        super().__init__(model, config, **options)  # model + threshold checked before a cluster job is submitted

    def run(self, items: Iterable[InputItem]) -> Iterator[Any]:
        import ray

        started = False
        if not ray.is_initialized():
            address = self.options.get("address")
            kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["include_dashboard"] = False
                if self.options.get("num_cpus"):
                    kwargs["num_cpus"] = int(self.options["num_cpus"])
            ray.init(**kwargs)
            started = True
        try:
            yield from self._run(list(items))
        finally:
            if started:
                ray.shutdown()

    def _dataset(self, rows: list[dict[str, Any]]) -> Any:
        """The Ray Data pipeline: manifest rows -> actor pool of Scanners -> one JSON record per row.

        The manifest travels through Ray's object store (``from_items``), not a file, so a remote cluster needs
        no shared scratch space for it, only read access to the media paths themselves.
        """
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # records come back in manifest order: stream them as they come
        cfg = dict(asdict(self.config))
        cfg["keep_images"] = False  # records cross process boundaries as JSON
        cfg["threads"] = self.config.threads or 1
        return ray.data.from_items(rows).map_batches(
            _RayScanBatch,
            fn_constructor_kwargs={"model_path": self.model_path, "config": cfg},
            batch_size=max(1, self.config.batch),
            batch_format="numpy",
            concurrency=max(1, int(self.options.get("actors", 1))),
            num_cpus=float(self.options.get("actor_cpus", 1)),
            num_gpus=float(self.options.get("actor_gpus", 1 if str(self.config.device).startswith("cuda") else 0)),
        )

    def _run(self, items: list[InputItem]) -> Iterator[Any]:
        from forensics.scanning.results import FileResult, compact

        todo = [it for it in items if it.error is None and it.duplicate_of is None]
        rows = [
            {"seq": i, "path": it.path, "sha256": it.sha256, "size_bytes": it.size_bytes} for i, it in enumerate(todo)
        ]
        records = iter(self._dataset(rows).iter_rows()) if rows else iter(())
        done: dict[str, bytes] = {}
        # Items the driver already decided (listing errors, duplicates) are resolved here, in input order.
        for it in items:
            if it.error is not None or it.duplicate_of is not None:
                yield _driver_result(it, done.get(it.sha256), self.model_info, self.threshold)
                continue
            row = next(records)
            res = FileResult.from_dict(json.loads(row["record"]))
            if res.path != it.path:  # preserve_order guarantees this; fail loudly rather than mislabel files
                raise RuntimeError(f"ray engine returned {res.path} where {it.path} was expected")
            if res.status == "ok":
                done[res.sha256] = compact(res)
            yield res


def get_engine(name: str) -> type[Engine]:
    return ENGINES.get(name).obj
