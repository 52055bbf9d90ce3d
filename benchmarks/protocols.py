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
- ``leave-one-group-out``: the same, but V is a *group* of families that share a component
  (:func:`generators.registry.family_groups`: ldm decodes through ae-recon's autoencoder, sdedit and ldm-inpaint
  run ldm's UNet...). Holding out ldm by name while ae-recon trains tests the shared decoder, not generalisation.
- ``cross-dataset``: score model files on other sets, one test set per dataset entry (or, with ``pool: true``, one
  pooled set split by ``group_by``). ``relation`` says what the set is to the models' training data:
  ``same-source`` (default: a held-out split of a scrape they trained on, e.g. the shared StyleGAN2 / FFHQ
  crossval) or ``external`` (a source they never saw); reports and the leaderboard print it.
- ``robustness``: score model files under each perturbation of a grid (JPEG quality, downscale, ...).
- ``video``: score clips frame by frame; report frame-level and clip-level (aggregated) metrics, by manipulation
  method and by CRF.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from benchmarks.config import BenchConfig, DatasetRef, DetectorSpec
from forensics_core.dataset import ManifestRow
from forensics_core.errors import DataError
from forensics_core.hashing import LEGACY_DENOMINATOR, hash_split
from forensics_core.registry import Registry


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
            from forensics_core.hashing import sha256_file

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
    #: > 0: reals are shrunk to this native size (the fakes' own) before the face crop; see ScoringProtocol
    match_res: int = 0


@dataclass
class Plan:
    cells: list[Cell]
    jobs: list[TrainJob] = field(default_factory=list)


@dataclass
class Column:
    """One leaderboard column a protocol contributes: ``header`` and, per detector row, the cell text."""

    header: str
    values: dict[str, str]


class Protocol:
    """Base class. ``trains``: detectors are registry names trained per cell; otherwise they are model files.
    ``needs_clean``: the unperturbed reference is always scored (curves start from it)."""

    name: ClassVar[str] = ""  # set by :func:`register_protocol`
    trains: ClassVar[bool] = False
    needs_clean: ClassVar[bool] = True

    @dataclass
    class Options:
        pass

    def plan(self, cfg: BenchConfig) -> Plan:
        raise NotImplementedError

    def leaderboard(self, results: dict[str, Any], run: str) -> list[Column]:
        """The README leaderboard columns this protocol's ``results.json`` supplies (``run``: its folder name).
        Rows are keyed by :func:`row_label`, so a number always names the exact model it came from."""
        return []

    def score_cell(self, state: Any, cell: Cell, pool: Any) -> list[Any] | None:
        """The runner's scores of ``cell`` (``benchmarks.runner.CellScores``) for protocols that measure something
        other than P(fake) per item (``localisation``: maps against masks); None: the runner's image / video
        scoring."""
        return None

    def cell_metrics(self, scores: dict[str, Any], thresholds: dict[str, float], m: Any) -> dict[str, Any] | None:
        """The metrics of one cell from its saved scores (``y``, ``p``, ``extra``, ``level`` as ``cells/*.json``
        holds them), for protocols with their own scoring; None: the classification metrics
        (``benchmarks.report``)."""
        return None


def row_label(results: dict[str, Any], cell: dict[str, Any]) -> str:
    """A leaderboard row name: the detector label plus the exact model (weights sha256, first 12 hex) for model
    files; trained-per-cell detectors have one model per cell and say so instead."""
    if results.get("protocol") in PROTOCOLS and PROTOCOLS.get(results["protocol"]).obj.trains:
        return f"{cell['detector']} (trained per cell)"
    sha = str(cell.get("model_sha256") or "")[:12]
    return f"{cell['detector']} `{sha}`" if sha else cell["detector"]


def fmt_interval(m: dict[str, Any], name: str, n: str = "") -> str:
    """``0.958 [0.950, 0.966]`` plus ``(n=real/fake)`` when given: no interval is printed without its n."""
    v = m.get(name)
    if v is None or v != v:
        return "-"
    ci = (m.get("ci") or {}).get(name)
    s = f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{v:.3f}"
    return f"{s} (n={n})" if ci and n else s


def fmt_value(m: dict[str, Any], name: str) -> str:
    """The bare value (no interval), for columns that quote a point estimate only."""
    v = m.get(name)
    return "-" if v is None or v != v else f"{v:.3f}"


#: cell-group keys that describe how a test set was made (held-out group members, resolution matching) rather than
#: select a subset of it
DESCRIPTIVE_KEYS = frozenset({"key", "families", "components", "reals_matched_to"})


def whole_set(c: dict[str, Any]) -> bool:
    """A scoring cell over a whole dataset entry (not a ``group_by`` subset)."""
    return set(c["group"]) - DESCRIPTIVE_KEYS == {"dataset"}


def clean_cell(c: dict[str, Any]) -> bool:
    """A ``results.json`` cell with metrics, scored without perturbation: what headline columns quote."""
    return bool(c.get("metrics")) and c["perturbation"] == "none"


#: Modules holding more built-in protocols, imported on the registry's first lookup: a new protocol is one module
#: (its class, its ``@register_protocol`` line, its ``leaderboard`` columns) plus its name here. The protocols below
#: live in this module because they share its helpers.
BUILTIN_MODULES: tuple[str, ...] = ("benchmarks.video_protocol", "benchmarks.localisation_protocol")

PROTOCOLS: Registry[type[Protocol]] = Registry(
    "benchmark protocol", entry_point_group="forensics.protocols", builtin_modules=BUILTIN_MODULES
)


def register_protocol(name: str, description: str = ""):
    """Register a :class:`Protocol` subclass under ``name``; the class sets ``name`` from here (one place)."""
    add = PROTOCOLS.register(name, description=description)

    def deco(cls: type[Protocol]) -> type[Protocol]:
        cls.name = name
        return add(cls)

    return deco


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.get(name).obj()


# -- helpers shared by the protocols --------------------------------------------------------------------------


def split_of(row: ManifestRow, cfg: BenchConfig) -> str:
    """The row's split, or a stable hash-based one (``auto_split`` fractions) for datasets written without splits.

    Hashing the content hash (or path) keeps the assignment identical across runs and machines.
    """
    if row.split:
        return row.split
    tr, va, te = cfg.auto_split
    shares = {"train": tr, "val": va, "test": te}
    return cfg.splits[hash_split(row.sha256 or row.path, shares, denominator=LEGACY_DENOMINATOR)]


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


def groups_by(items: list[Item], key: str | Callable[[Item], str]) -> dict[str, list[Item]]:
    """One test set per value of ``key`` (a field name, or a function of the item) among the fakes. Reals join a
    group when they carry the same value (e.g. a CRF both classes were encoded at); reals whose value no fake has
    (none, or ``family: real`` as the importer writes) join every group."""
    value = key if callable(key) else (lambda i: field_of(i, key))
    values = sorted({value(i) for i in items if i.y == 1} - {""})
    out: dict[str, list[Item]] = {}
    for v in values:
        fakes = [i for i in items if i.y == 1 and value(i) == v]
        reals_same = [i for i in items if i.y == 0 and value(i) == v]
        reals = reals_same or [i for i in items if i.y == 0 and value(i) not in values]
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
    """Hold out one value at a time. Subclasses change what a value is by overriding :meth:`value_of` (and
    :meth:`prepare`, which sees every item first); everything else (filtering, test sets, cells) is shared."""

    trains = True
    key: ClassVar[str] = "family"

    @dataclass
    class Options:
        holdout: list[str] = field(default_factory=list)  # subset of values to hold out (default: all)
        matrix: bool = True  # also score each model on every other value's test set
        #: test reals shrunk to the tested fakes' native size before the crop (see ScoringProtocol); pair it with
        #: ``train: {match_res: true}`` so resolution is no tell in training either
        match_res: bool = False

    def prepare(self, items: list[Item]) -> None:
        """Called with every train / val / test item before planning (a hook for values that depend on the data)."""

    def value_of(self, item: Item) -> str:
        """The value an item is held out by: here the ``key`` field."""
        return field_of(item, self.key)

    def describe(self, value: str) -> dict[str, str]:
        """Extra labels a cell held out on ``value`` carries into reports (none here)."""
        return {}

    def leaderboard(self, results: dict[str, Any], run: str) -> list[Column]:
        """Mean held-out AUC (the diagonal: each model on the one value it never saw), with how many values."""
        by: dict[str, list[float]] = {}
        for c in results.get("cells", []):
            g = c["group"]
            if clean_cell(c) and g.get("held_out") == g.get("tested"):
                by.setdefault(row_label(results, c), []).append(c["metrics"]["auc"])
        cols: dict[int, Column] = {}
        for row, aucs in by.items():
            n = len(aucs)
            col = cols.setdefault(n, Column(f"held-out {self.key} AUC, mean of {n} ({run})", {}))
            col.values[row] = f"{sum(aucs) / n:.3f}"
        return list(cols.values())

    def plan(self, cfg: BenchConfig) -> Plan:
        opts = cfg.options
        train_all, val_all, test_all = (items_for(cfg, r) for r in ("train", "val", "test"))
        self.prepare(train_all + val_all + test_all)
        values = sorted({self.value_of(i) for i in train_all + test_all if i.y == 1} - {""})
        if len(values) < 2:
            raise BenchPlanError(f"{cfg.source}: leave-one-{self.key}-out needs >= 2 {self.key} values, got {values}")
        unknown = sorted(set(opts.holdout) - set(values))
        if unknown:
            raise BenchPlanError(f"{cfg.source}: options.holdout {unknown} not among the {self.key}s {values}")
        test_groups = groups_by(test_all, self.value_of)
        jobs: list[TrainJob] = []
        cells: list[Cell] = []
        for held in opts.holdout or values:
            train = [i for i in train_all if self.value_of(i) != held or i.y == 0]
            val = [i for i in val_all if self.value_of(i) != held or i.y == 0]
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
                    side = matched_side(test_groups[tested]) if opts.match_res else 0
                    for pert in cfg.perturbations:
                        cells.append(
                            Cell(
                                id=cell_id(det.label, f"without-{held}", f"on-{tested}", pert),
                                detector=det.label,
                                model=job,
                                items=test_groups[tested],
                                perturbation=pert,
                                group={"held_out": held, "tested": tested, "key": self.key, **self.describe(held)},
                                match_res=side,
                            )
                        )
        return Plan(cells=cells, jobs=jobs)


@register_protocol("leave-one-family-out", "train on all generator families but one, test on the held-out one")
class LeaveOneFamilyOut(LeaveOneOut):
    key = "family"


@register_protocol("leave-one-upsampler-out", "train on all upsampler types but one, test on the held-out one")
class LeaveOneUpsamplerOut(LeaveOneOut):
    key = "upsampler"


@register_protocol(
    "leave-one-group-out", "hold out every family of a group that shares a component (autoencoder, UNet, masks)"
)
class LeaveOneGroupOut(LeaveOneOut):
    """Leave-one-family-out over *groups*: families that share a component (declared with
    ``register_generator(..., components=...)``) are held out together, so no sibling with the same decoder, trunk
    or mask code trains while one of them is tested. A group's value is its families joined by ``+``; reals
    (``family: real``) hold no group and join every training and test set; an unregistered family is its own group.
    """

    key = "group"

    def __init__(self, components: dict[str, set[str]] | None = None) -> None:
        self.components = components  # None: the generator registry's declarations
        self._group_of: dict[str, str] = {}
        self._components_of: dict[str, str] = {}

    def prepare(self, items: list[Item]) -> None:
        from generators.registry import family_components, family_groups

        comps = family_components() if self.components is None else self.components
        families = {field_of(i, "family") for i in items if i.y == 1} - {""}
        self._group_of, self._components_of = {}, {}
        for members in family_groups(families, comps):
            label = "+".join(members)
            shared = sorted(set().union(*(comps.get(f, set()) for f in members)))
            self._components_of[label] = ", ".join(shared)
            self._group_of.update(dict.fromkeys(members, label))

    def value_of(self, item: Item) -> str:
        fam = field_of(item, "family")
        return self._group_of.get(fam, fam)

    def describe(self, value: str) -> dict[str, str]:
        return {"families": value.replace("+", ", "), "components": self._components_of.get(value, "")}


# -- scoring protocols -------------------------------------------------------------------------------------------


def native_size(item: Item) -> int:
    """The item's source size before import (``src_width`` / ``src_height``, else a sampler's ``res``); 0 unknown."""
    from detectors.data import native_of

    return native_of(item.row)


def matched_side(items: list[Item]) -> int:
    """The most common native size among the fakes of a test set (0 when none records one)."""
    sizes = [native_size(i) for i in items if i.y == 1]
    sizes = [s for s in sizes if s > 0]
    return max(sorted(set(sizes)), key=sizes.count) if sizes else 0


class ScoringProtocol(Protocol):
    """Model files scored on each dataset entry (one test set each), optionally split further by ``group_by``.

    ``pool: true`` makes all dataset entries one test set (named after the benchmark) before ``group_by``: how the
    fakes of one set meet the reals of another (suite fakes by family against the FFHQ crossval reals).
    ``match_res: true`` shrinks each real to its test set's fake native size (area down, bilinear back, as
    ``detector train --match-res`` does) before the face crop, so a 64 px generator's softness is no tell: the
    sanity check that a detector which never saw a fake scores near 0.5."""

    @dataclass
    class Options:
        group_by: list[str] = field(default_factory=list)
        pool: bool = False
        match_res: bool = False

    level: ClassVar[str] = "image"
    role: ClassVar[str | None] = "test"

    def test_sets(self, cfg: BenchConfig) -> list[tuple[dict[str, str], list[Item]]]:
        opts = cfg.options
        named = [(ds.name, _items(ds, cfg, self.role)) for ds in cfg.datasets]
        if getattr(opts, "pool", False):
            named = [(cfg.name, [i for _, items in named for i in items])]
        sets: list[tuple[dict[str, str], list[Item]]] = []
        for name, items in named:
            require_both(items, cfg, f"dataset '{name}'")
            sets.append(({"dataset": name}, items))
            for key in opts.group_by:
                for value, sub in groups_by(items, key).items():
                    require_both(sub, cfg, f"dataset '{name}' {key}={value}")
                    sets.append(({"dataset": name, key: value}, sub))
        return sets

    def plan(self, cfg: BenchConfig) -> Plan:
        cells: list[Cell] = []
        sets = self.test_sets(cfg)
        match = getattr(cfg.options, "match_res", False)
        for det in cfg.detectors:
            for group, items in sets:
                side = matched_side(items) if match else 0
                if match and not side:
                    raise BenchPlanError(f"{cfg.source}: match_res: no fake of {group} records its native size")
                for pert in cfg.perturbations:
                    parts = [f"{k}={v}" for k, v in group.items() if k != "dataset"]
                    cells.append(
                        Cell(
                            id=cell_id(det.label, group["dataset"], *parts, pert),
                            detector=det.label,
                            model=det.model,
                            items=items,
                            perturbation=pert,
                            group={**group, **({"reals_matched_to": f"{side}px"} if side else {})},
                            level=self.level,
                            match_res=side,
                        )
                    )
        return Plan(cells=cells)


#: what a test set is to the models' training data, as reports and the leaderboard word it
RELATIONS = {
    "same-source": "same-source held-out",  # a held-out split of a scrape the models trained on
    "external": "external",  # a source none of the models saw
}


@register_protocol("cross-dataset", "score model files on other sets (same-source held-out or external)")
class CrossDataset(ScoringProtocol):
    """Sets are used whole (select rows with ``where``, e.g. ``split: crossval``). ``relation`` defaults to
    ``same-source``: a result is only called external when its benchmark file says so."""

    role = None

    @dataclass
    class Options(ScoringProtocol.Options):
        relation: str = "same-source"

        def __post_init__(self) -> None:
            if self.relation not in RELATIONS:
                raise ValueError(f"relation must be one of {', '.join(RELATIONS)}, got {self.relation!r}")

    @staticmethod
    def relation(results: dict[str, Any]) -> str:
        opts = (results.get("config") or {}).get("options") or {}
        return RELATIONS[opts.get("relation", "same-source")]

    def leaderboard(self, results: dict[str, Any], run: str) -> list[Column]:
        """AUC (interval and n), TPR at 1% FPR and ECE on the first whole test set, clean, labelled by relation."""
        cells = [c for c in results.get("cells", []) if clean_cell(c) and whole_set(c)]
        if not cells:
            return []
        ds, rel = cells[0]["group"]["dataset"], self.relation(results)
        matched = cells[0]["group"].get("reals_matched_to")
        auc = Column(f"{ds} AUC, {rel}{f', reals matched to {matched}' if matched else ''} ({run})", {})
        tpr, ece = Column(f"{ds} TPR@1%FPR ({run})", {}), Column(f"{ds} ECE ({run})", {})
        for c in cells:
            if c["group"]["dataset"] != ds:
                continue
            m, row = c["metrics"], row_label(results, c)
            auc.values[row] = fmt_interval(m, "auc", f"{c['n_real']}/{c['n_fake']}")
            tpr.values[row] = fmt_value(m, "tpr_at_fpr1")
            ece.values[row] = fmt_value(m, "ece")
        return [auc, tpr, ece]


@register_protocol("robustness", "score model files under a perturbation grid (JPEG, resize, blur, crop, chains)")
class Robustness(ScoringProtocol):
    """``reference``: the perturbation the headline numbers start from. ``none`` for sets normalised at import;
    ``jpeg(q=90)`` for a ``--store source`` set, whose raw crops keep each source's own compression (JPEG fakes,
    PNG reals: a tell), so the grid lists ``jpeg(q=90)>jpeg(q=50)`` etc. and the leaderboard quotes those."""

    @dataclass
    class Options(ScoringProtocol.Options):
        reference: str = "none"

    #: perturbations the leaderboard shows, with their column text
    headline: ClassVar[tuple[tuple[str, str], ...]] = (
        ("jpeg(q=50)", "AUC after JPEG q50"),
        ("downscale(s=0.5)", "AUC after downscale 0.5"),
    )

    def leaderboard(self, results: dict[str, Any], run: str) -> list[Column]:
        from benchmarks.perturbations import parse_perturbation

        ref = ((results.get("config") or {}).get("options") or {}).get("reference", "none")
        cols = []
        for step, text in self.headline:
            pert = step if ref == "none" else parse_perturbation(f"{ref}>{step}").key
            col = Column(f"{text}{'' if ref == 'none' else f' from {ref}'} ({run})", {})
            for c in results.get("cells", []):
                if c["perturbation"] == pert and c.get("metrics") and whole_set(c):
                    col.values.setdefault(row_label(results, c), fmt_value(c["metrics"], "auc"))
            cols += [col] if col.values else []
        return cols
