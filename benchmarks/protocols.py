"""Benchmark protocols as data: each one turns a validated :class:`~benchmarks.config.BenchConfig` into a plan.

A :class:`Plan` is the whole benchmark written out before any work: the training jobs (for protocols that train a
detector per cell) and the scoring cells (which model, which test items, which perturbation, which group labels).
Planning is also where empty classes are found ("held-out family 'x' has no fake test items"), so a bad benchmark
fails in a second with one line instead of after an hour of training.

Built-in protocols (``forensics bench run --help`` lists them; third parties add more through the entry-point group
``forensics.protocols``):

- ``leave-one-family-out`` / ``leave-one-upsampler-out``: for every value V of the key, train each detector on all
  fakes whose key != V (plus the reals) and test it on the fakes with key == V (plus the test reals). With
  ``options.matrix: true`` every such model is also scored on every other value's test set, which gives the
  trained-without x tested-on heatmap (the diagonal is the held-out number).
- ``cross-dataset``: score model files (trained on the internal suite) on external sets, one test set per dataset
  entry, e.g. the shared StyleGAN2 crossval fakes against the FFHQ crossval reals.
- ``robustness``: score model files under each perturbation of a grid (JPEG quality, downscale, ...).
- ``video``: score clips frame by frame; report frame-level and clip-level (aggregated) metrics, by manipulation
  method and by CRF.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from benchmarks.config import BenchConfig, DatasetRef, DetectorSpec
from forensics.dataset import ManifestRow
from forensics.errors import DataError
from forensics.registry import Registry


class BenchPlanError(DataError):
    """The benchmark is valid syntactically but cannot be run on this data (an empty class, an empty cell)."""


@dataclass
class Item:
    """One test or training item; ``key`` is its content hash (the cache key), filled lazily if the manifest
    lacks it."""

    path: Path
    y: int
    row: ManifestRow
    dataset: str

    @property
    def key(self) -> str:
        if not self.row.sha256:
            from forensics.dataset import sha256_file

            self.row.sha256 = sha256_file(self.path)
        return self.row.sha256


@dataclass
class TrainJob:
    """Train ``detector`` on ``train`` (early-stopped / calibrated on ``val``): one model per cell of a LOO matrix."""

    key: str
    detector: DetectorSpec
    train: list[Item]
    val: list[Item]
    held_out: str


@dataclass
class Cell:
    """Score one model on ``items`` under one perturbation. ``group`` labels the cell in reports."""

    id: str
    detector: str
    model: str | TrainJob
    items: list[Item]
    perturbation: str
    group: dict[str, str] = field(default_factory=dict)
    level: str = "image"  # "image" or "video" (frame + clip metrics)


@dataclass
class Plan:
    cells: list[Cell]
    jobs: list[TrainJob] = field(default_factory=list)


class Protocol:
    """Base class. ``trains``: detectors are registry names trained per cell; otherwise they are model files.
    ``needs_clean``: the unperturbed reference is always scored (curves start from it)."""

    trains: ClassVar[bool] = False
    needs_clean: ClassVar[bool] = True

    @dataclass
    class Options:
        pass

    def plan(self, cfg: BenchConfig) -> Plan:
        raise NotImplementedError


PROTOCOLS: Registry[type[Protocol]] = Registry("benchmark protocol", entry_point_group="forensics.protocols")


def register_protocol(name: str, description: str = ""):
    return PROTOCOLS.register(name, description=description)


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.get(name).obj()


# -- helpers shared by the protocols --------------------------------------------------------------------------


def split_of(row: ManifestRow, cfg: BenchConfig) -> str:
    """The row's split, or a stable hash-based one (``auto_split`` fractions) for datasets written without splits.

    Hashing the content hash (or path) keeps the assignment identical across runs and machines.
    """
    if row.split:
        return row.split
    h = int(hashlib.sha256((row.sha256 or row.path).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    tr, va, _ = cfg.auto_split
    return cfg.splits["train"] if h < tr else cfg.splits["val"] if h < tr + va else cfg.splits["test"]


def items_for(cfg: BenchConfig, role: str | None) -> list[Item]:
    """Items of every dataset for ``role`` (train/val/test); a dataset's own ``where.split`` overrides the role."""
    out: list[Item] = []
    for ds in cfg.datasets:
        out.extend(_items(ds, cfg, role))
    return out


def _items(ds: DatasetRef, cfg: BenchConfig, role: str | None) -> list[Item]:
    want = None if role is None or "split" in ds.where else cfg.splits.get(role, role)
    return [
        Item(ds.path / r.path, r.y, r, ds.name)
        for r in ds.selected()
        if want is None or split_of(r, cfg) == want
    ]


def field_of(item: Item, key: str) -> str:
    v = getattr(item.row, key, None)
    if v is None:
        v = item.row.extra.get(key, "")
    return "" if v is None else str(v)


def groups_by(items: list[Item], key: str) -> dict[str, list[Item]]:
    """One test set per value of ``key`` among the fakes. Reals join a group when they carry the same value
    (e.g. a CRF both classes were encoded at); reals whose value no fake has (none, or ``family: real`` as the
    importer writes) join every group."""
    values = sorted({field_of(i, key) for i in items if i.y == 1} - {""})
    out: dict[str, list[Item]] = {}
    for v in values:
        fakes = [i for i in items if i.y == 1 and field_of(i, key) == v]
        reals_same = [i for i in items if i.y == 0 and field_of(i, key) == v]
        reals = reals_same or [i for i in items if i.y == 0 and field_of(i, key) not in values]
        out[v] = fakes + reals
    return out


def require_both(items: list[Item], cfg: BenchConfig, what: str) -> None:
    n_fake = sum(i.y for i in items)
    n_real = len(items) - n_fake
    if not n_fake or not n_real:
        missing = "fake" if not n_fake else "real"
        raise BenchPlanError(f"{cfg.source}: {what} has no {missing} items ({n_real} real, {n_fake} fake)")


def cell_id(*parts: str) -> str:
    return "/".join(p.replace("/", "_") for p in parts if p)


# -- leave-one-out ---------------------------------------------------------------------------------------------


class LeaveOneOut(Protocol):
    trains = True
    key: ClassVar[str] = "family"

    @dataclass
    class Options:
        holdout: list[str] = field(default_factory=list)  # subset of values to hold out (default: all)
        matrix: bool = True  # also score each model on every other value's test set

    def plan(self, cfg: BenchConfig) -> Plan:
        opts = cfg.options
        train_all, val_all, test_all = (items_for(cfg, r) for r in ("train", "val", "test"))
        values = sorted({field_of(i, self.key) for i in train_all + test_all if i.y == 1} - {""})
        if len(values) < 2:
            raise BenchPlanError(f"{cfg.source}: leave-one-{self.key}-out needs >= 2 {self.key} values, got {values}")
        unknown = sorted(set(opts.holdout) - set(values))
        if unknown:
            raise BenchPlanError(f"{cfg.source}: options.holdout {unknown} not among the {self.key}s {values}")
        test_groups = groups_by(test_all, self.key)
        jobs: list[TrainJob] = []
        cells: list[Cell] = []
        for held in opts.holdout or values:
            train = [i for i in train_all if field_of(i, self.key) != held or i.y == 0]
            val = [i for i in val_all if field_of(i, self.key) != held or i.y == 0]
            require_both(train, cfg, f"training set without {self.key} '{held}'")
            require_both(val, cfg, f"validation set without {self.key} '{held}'")
            if held not in test_groups:
                raise BenchPlanError(f"{cfg.source}: held-out {self.key} '{held}' has no fake test items")
            for det in cfg.detectors:
                job = TrainJob(cell_id(det.label, f"without-{held}"), det, train, val, held)
                jobs.append(job)
                targets = list(test_groups) if opts.matrix else [held]
                for tested in targets:
                    require_both(test_groups[tested], cfg, f"test set of {self.key} '{tested}'")
                    for pert in cfg.perturbations:
                        cells.append(
                            Cell(
                                id=cell_id(det.label, f"without-{held}", f"on-{tested}", pert),
                                detector=det.label,
                                model=job,
                                items=test_groups[tested],
                                perturbation=pert,
                                group={"held_out": held, "tested": tested, "key": self.key},
                            )
                        )
        return Plan(cells=cells, jobs=jobs)


@register_protocol("leave-one-family-out", "train on all generator families but one, test on the held-out one")
class LeaveOneFamilyOut(LeaveOneOut):
    key = "family"


@register_protocol("leave-one-upsampler-out", "train on all upsampler types but one, test on the held-out one")
class LeaveOneUpsamplerOut(LeaveOneOut):
    key = "upsampler"


# -- scoring protocols -------------------------------------------------------------------------------------------


class ScoringProtocol(Protocol):
    """Model files scored on each dataset entry (one test set each), optionally split further by ``group_by``."""

    @dataclass
    class Options:
        group_by: list[str] = field(default_factory=list)

    level: ClassVar[str] = "image"
    role: ClassVar[str | None] = "test"

    def plan(self, cfg: BenchConfig) -> Plan:
        cells: list[Cell] = []
        sets: list[tuple[dict[str, str], list[Item]]] = []
        for ds in cfg.datasets:
            items = _items(ds, cfg, self.role)
            require_both(items, cfg, f"dataset '{ds.name}'")
            sets.append(({"dataset": ds.name}, items))
            for key in cfg.options.group_by:
                for value, sub in groups_by(items, key).items():
                    require_both(sub, cfg, f"dataset '{ds.name}' {key}={value}")
                    sets.append(({"dataset": ds.name, key: value}, sub))
        for det in cfg.detectors:
            for group, items in sets:
                for pert in cfg.perturbations:
                    parts = [f"{k}={v}" for k, v in group.items() if k != "dataset"]
                    cells.append(
                        Cell(
                            id=cell_id(det.label, group["dataset"], *parts, pert),
                            detector=det.label,
                            model=det.model,
                            items=items,
                            perturbation=pert,
                            group=dict(group),
                            level=self.level,
                        )
                    )
        return Plan(cells=cells)


@register_protocol("cross-dataset", "score suite-trained model files on external sets (e.g. StyleGAN2 vs FFHQ)")
class CrossDataset(ScoringProtocol):
    role = None  # external sets are used whole (select rows with 'where', e.g. split: crossval)


@register_protocol("robustness", "score model files under a perturbation grid (JPEG, resize, blur, crop, chains)")
class Robustness(ScoringProtocol):
    pass


@register_protocol("video", "frame-level and clip-level scores of model files on videos, by method and CRF")
class VideoProtocol(ScoringProtocol):
    level = "video"
    role = None

    @dataclass
    class Options:
        group_by: list[str] = field(default_factory=lambda: ["method", "crf"])
        every: int = 5  # score every N-th frame
        max_frames: int = 64  # per clip
        aggregate: str = "mean"  # clip score from frame scores: mean | median | max | topk
        topk: float = 0.25  # fraction of frames averaged by 'topk'
        faces: str = ""  # face detector used to crop frames ("opencv", "mtcnn"); "" = centre square
