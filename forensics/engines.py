"""Execution engines for ``forensics scan``: one ``Scanner`` (:mod:`forensics.scanning.scanner`), several places.

* ``local``: this process. Decoding and file evidence run in a thread pool (``--workers``; OpenCV, Pillow and
  NumPy release the GIL), face detection and the model forward are batched over ``--batch`` files on the
  chosen ``--device`` (GPU when present with ``--device auto``).
* ``ray``: a Ray Data job over a manifest of paths. Every Ray actor builds its own Scanner (model + face detector
  loaded once per actor) and scans a batch of paths; the driver streams the records back in input order and
  writes the same JSONL as the local engine. With no ``--address`` a local Ray instance is started; with
  ``--address ray://head:10001`` (or ``auto``) the job runs on a cluster whose nodes can read the same paths
  (shared filesystem) and have the toolkit installed. See ``docs/scan.md``.

Engines are registered in :data:`ENGINES` (plugins: entry-point group ``forensics.engines``) so the CLI's
``--engine`` choices come from the registry.
"""

from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

from forensics_core.errors import UsageError
from forensics_core.inputs import InputItem
from forensics_core.registry import Registry

log = logging.getLogger(__name__)


class Engine(ABC):
    """Runs a scan: ``Engine(model=..., config=ScanConfig, **options).run(items) -> Iterator[FileResult]``."""

    def __init__(self, model: Any, config: Any, **options: Any) -> None:
        self.model = model
        self.config = config
        self.options = options

    @abstractmethod
    def run(self, items: Iterable[InputItem]) -> Iterator[Any]:
        """Yield one FileResult per item, in input order."""


ENGINES: Registry[type[Engine]] = Registry("scan engine", "forensics.engines", ("forensics.engines",))


@ENGINES.register("local", description="this process: thread pool for decoding/evidence, batched model forward")
class LocalEngine(Engine):
    def __init__(self, model: Any, config: Any, **options: Any) -> None:
        super().__init__(model, config, **options)
        if options.get("address"):
            raise UsageError("--address only applies to --engine ray")
        from forensics.scanning.scanner import Scanner

        self.scanner = Scanner(model, config)  # load the model before the first file, so a bad model fails fast

    def run(self, items: Iterable[InputItem]) -> Iterator[Any]:
        return self.scanner.scan_items(items)


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
class RayEngine(Engine):
    """The scale-out engine. Options: ``address`` (None = local instance), ``actors`` (parallel Scanners)."""

    def __init__(self, model: Any, config: Any, **options: Any) -> None:
        super().__init__(model, config, **options)
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("--engine ray needs Ray: pip install 'deepfake-forensics[ray]'") from None
        self.model_path = self._model_path(model)
        # Validate model + threshold in the driver so a typo fails before a cluster job is submitted.
        from forensics.scanning.config import resolve_model
        from forensics_core.thresholds import ThresholdPolicy

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
        raise UsageError("--engine ray needs a model path or 'default' (actors load the model themselves)")

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
        from forensics.scanning.results import FileResult, duplicate_result

        todo = [it for it in items if it.error is None and it.duplicate_of is None]
        rows = [
            {"seq": i, "path": it.path, "sha256": it.sha256, "size_bytes": it.size_bytes} for i, it in enumerate(todo)
        ]
        records = iter(self._dataset(rows).iter_rows()) if rows else iter(())
        first_by_sha: dict[str, Any] = {}
        # Items the driver already decided (listing errors, duplicates) are resolved here, in input order.
        for it in items:
            if it.error is not None:
                yield FileResult(
                    path=it.path, status="error", error=it.error, error_type=it.error_type or "InputError",
                    model=dict(self.model_info), threshold=dict(self.threshold),
                )  # fmt: skip
            elif it.duplicate_of is not None:
                yield duplicate_result(it, first_by_sha.get(it.sha256), self.model_info, self.threshold)
            else:
                row = next(records)
                res = FileResult.from_dict(json.loads(row["record"]))
                if res.path != it.path:  # preserve_order guarantees this; fail loudly rather than mislabel files
                    raise RuntimeError(f"ray engine returned {res.path} where {it.path} was expected")
                if res.status == "ok":
                    first_by_sha[res.sha256] = res
                yield res


def get_engine(name: str) -> type[Engine]:
    return ENGINES.get(name).obj
