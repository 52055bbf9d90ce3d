"""The dataset format every part of the toolkit reads and writes.

A dataset is a directory of media plus ``manifest.jsonl``: one JSON object per item. Generators write it, the
importer converts foreign sets into it, detectors train on it and benchmarks score it. Paths are relative to the
dataset directory so a dataset can be moved or archived whole. ``parent`` carries provenance (the sha256 of the
real image an edit was made from, or of the source clip a video was driven by). See ``docs/datasets.md``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from forensics_core.errors import DataError
from forensics_core.plumbing import Closing

MANIFEST = "manifest.jsonl"
SCHEMA_VERSION = 1
LABELS = ("real", "fake")
SPLITS = ("train", "val", "test", "crossval", "")


@dataclass(kw_only=True)
class Provenance:
    """The tags that say where an item came from and how it was made: written once here for the manifest row and
    for the importer's item that becomes one (``forensics_core.importers.ImportItem``), so a new tag reaches both and
    :meth:`provenance` carries it across. Keyword-only, so each class keeps its own positional fields first."""

    generator: str = ""
    family: str = ""
    upsampler: str = ""
    method: str = ""
    source: str = ""
    split: str = ""
    licence: str = ""

    def provenance(self) -> dict[str, str]:
        """The tags as keyword arguments for another :class:`Provenance` (an import item -> its manifest row)."""
        return {f.name: getattr(self, f.name) for f in fields(Provenance)}


@dataclass
class ManifestRow(Provenance):
    """One item of a dataset. Unknown keys found in a manifest are kept in ``extra`` (forward compatible)."""

    path: str
    label: str
    sha256: str = ""
    parent: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise DataError(f"manifest row {self.path!r}: label must be one of {LABELS}, got {self.label!r}")

    def to_json(self) -> str:
        d = asdict(self)
        extra = d.pop("extra")
        d.update({k: v for k, v in extra.items() if k not in d})
        return json.dumps(d, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ManifestRow:
        known = {f.name for f in fields(cls)} - {"extra"}
        core = {k: ("" if d[k] is None else d[k]) for k in known if k in d}
        if "path" not in core or "label" not in core:
            raise DataError(f"manifest row lacks path or label: {json.dumps(d)[:120]}")
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(**core, extra=extra)

    @property
    def y(self) -> int:
        """1 for fake, 0 for real: the convention of every metric in the toolkit."""
        return int(self.label == "fake")


def manifest_path(root: str | os.PathLike[str]) -> Path:
    return Path(root) / MANIFEST


def read_manifest(root: str | os.PathLike[str]) -> list[ManifestRow]:
    """Read ``root/manifest.jsonl``; raise :class:`DataError` naming the file and line on any problem."""
    mp = manifest_path(root)
    if not Path(root).is_dir():
        raise DataError(f"{root}: dataset directory does not exist")
    if not mp.is_file():
        raise DataError(f"{root}: no {MANIFEST} (not a dataset directory; see docs/datasets.md)")
    rows: list[ManifestRow] = []
    with open(mp, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(ManifestRow.from_dict(json.loads(line)))
            except json.JSONDecodeError as exc:
                if i > 1 and not f.readline():  # a torn last line from a killed writer: ignore it
                    break
                raise DataError(f"{mp}:{i}: invalid JSON ({exc.msg})") from None
    return rows


class ManifestWriter(Closing):
    """Append rows to a manifest, flushing each line so a killed run loses at most the row being written.

    ``done`` holds the paths already present, which makes writers resumable: callers skip work whose output
    path is in ``done``.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = manifest_path(self.root)
        self.done: set[str] = set()
        if self.path.exists():
            self._repair_tail()
            self.done = {r.path for r in read_manifest(self.root)}
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the writer's lifetime

    def _repair_tail(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(cut)

    def write(self, row: ManifestRow) -> None:
        self._fh.write(row.to_json() + "\n")
        self._fh.flush()
        self.done.add(row.path)

    def close(self) -> None:
        self._fh.close()


def write_manifest(root: str | os.PathLike[str], rows: Iterable[ManifestRow]) -> Path:
    """Write a whole manifest at once (atomic replace)."""
    mp = manifest_path(root)
    tmp = mp.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(r.to_json() + "\n")
    os.replace(tmp, mp)
    return mp


def sort_manifest(root: str | os.PathLike[str]) -> Path:
    """Rewrite a manifest in path order. Why: parallel writers append rows as they finish, so two runs of the same
    import would write the same rows in different orders, and the manifest sha256 a model card records could not
    tell a rebuilt dataset from a different one."""
    rows = read_manifest(root)
    if [r.path for r in rows] == sorted(r.path for r in rows):
        return manifest_path(root)
    return write_manifest(root, sorted(rows, key=lambda r: r.path))


def iter_items(root: str | os.PathLike[str], split: str | None = None) -> Iterator[tuple[Path, ManifestRow]]:
    """Yield ``(absolute_path, row)`` for rows of ``split`` (all rows when None)."""
    base = Path(root)
    for r in read_manifest(root):
        if split is None or r.split == split:
            yield base / r.path, r


@dataclass
class DatasetInfo:
    n: int
    by_label: dict[str, int]
    by_family: dict[str, int]
    by_split: dict[str, int]
    by_method: dict[str, int]
    by_source: dict[str, int]


def summarize(rows: list[ManifestRow]) -> DatasetInfo:
    def count(key: str) -> dict[str, int]:
        return dict(sorted(Counter(getattr(r, key) or "-" for r in rows).items()))

    return DatasetInfo(
        n=len(rows),
        by_label=count("label"),
        by_family=count("family"),
        by_split=count("split"),
        by_method=count("method"),
        by_source=count("source"),
    )
