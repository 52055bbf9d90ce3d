"""The scan as a Python API: :func:`scan` over files, folders or globs, and the names documented with it.

``docs/scan.md``, ``docs/scan-output.md`` and ``docs/serve.md`` document ``forensics.pipeline`` as the public
entry (``forensics.pipeline.scan``, ``FileResult``, ``ScanConfig``, ``Scanner``), so user code imports from here;
the work lives in :mod:`forensics.scanning` (results schema, config, chunk scheduler, image and video scanning,
the Scanner). Code inside the repository imports those modules directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from forensics.scanning.config import DEFAULT_MODEL_DIR, ScanConfig, resolve_model
from forensics.scanning.results import SCHEMA_VERSION, FaceResult, FileResult, TrackResult
from forensics.scanning.scanner import Scanner
from forensics_core.inputs import InputExpander, InputItem

__all__ = [
    "DEFAULT_MODEL_DIR", "SCHEMA_VERSION", "FaceResult", "FileResult", "ScanConfig", "Scanner", "TrackResult",
    "resolve_model", "scan", "skip_done",
]


def scan(
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    model: Any = "default",
    *,
    engine: str = "local",
    follow_symlinks: bool = ScanConfig.follow_symlinks,
    skip: set[tuple[str, str]] | None = None,
    **config: Any,
) -> Iterator[FileResult]:
    """Scan files, folders or globs; yields one :class:`FileResult` per file (lazily, in input order).

    ``model`` is a loaded ``detectors.modelfile.Model``, a model-file path, or ``'default'`` (the shipped model).
    ``config`` takes any :class:`ScanConfig` field, e.g. ``threshold='fpr1'``, ``evidence='none'``, ``batch=32``.
    ``skip`` holds ``(path, sha256)`` pairs already scanned (what ``--resume`` uses).

    Example::

        from forensics import scan
        for r in scan(["photos/"], threshold="fpr1", evidence="none"):
            print(r.path, r.verdict, r.fake_probability)
    """
    from forensics.engines import get_engine

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    cfg = ScanConfig(follow_symlinks=follow_symlinks, **config)
    items: Iterable[InputItem] = InputExpander(
        [str(p) for p in inputs], follow_symlinks=follow_symlinks, timeout_s=cfg.timeout_s
    )
    if skip:
        items = skip_done(items, skip)
    return get_engine(engine)(model=model, config=cfg).run(items)


def skip_done(items: Iterable[InputItem], skip: set[tuple[str, str]]) -> Iterator[InputItem]:
    """Drop items whose (path, sha256) is already in a results file; a new copy of a skipped file is scanned."""
    skipped: set[str] = set()
    for it in items:
        if (it.path, it.sha256) in skip:
            skipped.add(it.path)
            continue
        if it.duplicate_of in skipped:
            it.duplicate_of = None  # its first copy is not part of this run: scan this one for real
        yield it
