"""Benchmark files (YAML or TOML) -> validated dataclasses.

A benchmark file is data: which protocol, which datasets, which detectors, which perturbations, which metric
settings. Everything is checked here, before any model is loaded or trained, so a typo costs a one-line error
instead of an hour of training: unknown protocol / detector / perturbation, a dataset directory that is missing or
has no manifest, an unknown option. (Empty classes are found when the protocol plans its cells, also before work.)

Example (``benchmarks/configs/tiny.yaml`` is the smallest complete one)::

    name: loo-gan
    protocol: leave-one-family-out
    datasets: [{path: /work/scratch/gan/suite}]
    detectors: [npr, {name: spectrum}, {model: forensics/assets/models/default, label: default}]
    train: {epochs: 2, batch: 64, res: 64}
    metrics: {bootstrap: 1000, presets: [balanced, fpr1, fpr01]}
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from forensics_core.dataset import ManifestRow, read_manifest
from forensics_core.errors import DataError, ForensicsError, UsageError
from forensics_core.thresholds import THRESHOLD_POLICIES, policy_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: TOML benchmark files need 3.11+ (YAML works everywhere)
    tomllib = None  # type: ignore[assignment]


class BenchConfigError(UsageError):
    """A benchmark file is invalid; the message starts with the file name."""


@dataclass
class DatasetRef:
    """A dataset directory plus an optional row filter (``where: {split: crossval, source: [a, b]}``).

    ``build`` is the documented command that makes the folder; the errors for a missing folder (or an unset variable
    in its path) quote it, so a reader of a shared benchmark file is told how to get its data, not only that it is
    absent."""

    path: Path
    name: str = ""
    where: dict[str, list[str]] = field(default_factory=dict)
    rows: list[ManifestRow] = field(default_factory=list, repr=False)
    build: str = ""

    def matches(self, row: ManifestRow) -> bool:
        for key, allowed in self.where.items():
            value = getattr(row, key, None) if key != "extra" else None
            if value is None:
                value = row.extra.get(key, "")
            if str(value) not in allowed:
                return False
        return True

    def selected(self) -> list[ManifestRow]:
        return [r for r in self.rows if self.matches(r)]


@dataclass
class DetectorSpec:
    """One detector under test: a registered name (trained per cell by training protocols) and/or a model file.

    ``label`` is what reports show; it defaults to the name or the model's folder name.
    """

    label: str
    name: str = ""
    model: str = ""
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricsConfig:
    presets: list[str] = field(default_factory=lambda: list(THRESHOLD_POLICIES))
    bootstrap: int = 1000
    ci: float = 0.95
    seed: int = 0
    ece_bins: int = 15


@dataclass
class SpeedConfig:
    """The timing pass made in every run: ``n_images`` items at ``batch``, plus a batch-1 latency sample."""

    n_images: int = 64
    batch: int = 32
    latency_samples: int = 32


@dataclass
class BenchConfig:
    name: str
    protocol: str
    source: Path
    datasets: list[DatasetRef]
    detectors: list[DetectorSpec]
    perturbations: list[str] = field(default_factory=lambda: ["none"])
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "val": "val", "test": "test"})
    auto_split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    train: dict[str, Any] = field(default_factory=dict)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    batch_size: int = 64
    options: Any = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


TOP_KEYS = {f.name for f in fields(BenchConfig)} - {"source", "raw"}


def _err(src: Path, msg: str) -> BenchConfigError:
    return BenchConfigError(f"{src}: {msg}")


def _dataclass_from(cls: type, data: Any, src: Path, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise _err(src, f"'{where}' must be a mapping")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise _err(src, f"unknown key(s) in '{where}': {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise _err(src, f"'{where}': {exc}") from None


def load_text(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchConfigError(f"{path}: cannot read benchmark file ({exc.strerror})") from None
    is_toml = path.suffix.lower() == ".toml"
    if is_toml and tomllib is None:
        raise BenchConfigError(f"{path}: TOML benchmark files need Python 3.11+; use YAML")
    try:
        data = tomllib.loads(text) if is_toml else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BenchConfigError(f"{path}: not valid YAML ({first})") from None
    except ValueError as exc:  # tomllib.TOMLDecodeError
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BenchConfigError(f"{path}: not valid TOML ({first})") from None
    if not isinstance(data, dict):
        raise BenchConfigError(f"{path}: a benchmark file must be a mapping at the top level")
    return data


_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _unset_variables(value: str) -> list[str]:
    """Names of the ``$VAR`` / ``${VAR}`` in ``value`` that the environment does not set (``expandvars`` would
    leave them in the path as literal text, and the error would name a folder called ``$VAR``)."""
    return [a or b for a, b in _VARIABLE.findall(value) if (a or b) not in os.environ]


def _how_to_build(build: str) -> str:
    return f"; build it with: {build}" if build else ""


def _expand(value: str, src: Path) -> Path:
    """Environment variables and ``~`` expand; relative paths are relative to the working directory, then the file."""
    p = Path(os.path.expanduser(os.path.expandvars(value)))
    if p.is_absolute() or p.exists():
        return p
    alt = src.parent / p
    return alt if alt.exists() else p


def _entries(data: Any, src: Path, section: str, example: str, shorthand: str) -> Iterator[dict[str, Any]]:
    """The entries of a list section that must not be empty (checked now): one entry may stand without the list,
    and a bare string is short for ``{shorthand: string}``; each entry comes as a new dict when the caller reaches
    it, so the first bad entry is the one reported."""
    if not data:
        raise _err(src, f"no {section}: add '{section}: {example}'")
    return ({shorthand: d} if isinstance(d, str) else dict(d) for d in (data if isinstance(data, list) else [data]))


def _datasets(data: Any, src: Path, check_paths: bool = True) -> list[DatasetRef]:
    out: list[DatasetRef] = []
    for i, d in enumerate(_entries(data, src, "datasets", "[{path: DIR}]", "path")):
        unknown = set(d) - {"path", "name", "where", "build"}
        if unknown or "path" not in d:
            raise _err(src, f"datasets[{i}]: needs 'path' (optional 'name', 'where', 'build'); got {sorted(d)}")
        path = _expand(str(d["path"]), src)
        where = {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in (d.get("where") or {}).items()}
        build = " ".join(str(d.get("build") or "").split())
        name = str(d.get("name") or path.name)
        if not check_paths:
            out.append(DatasetRef(path=path, name=name, where=where, build=build))
            continue
        unset = _unset_variables(str(d["path"]))
        if unset and not path.is_dir():
            then = f" and build the data there: {build}" if build else " (the folder that holds the data)"
            raise _err(src, f"datasets[{i}]: ${unset[0]} is not set, so the path {d['path']} names no folder; set "
                       f"{unset[0]} to your work folder{then}")
        if not path.is_dir():
            raise _err(src, f"datasets[{i}]: dataset directory {path} does not exist{_how_to_build(build)}")
        try:
            rows = read_manifest(path)
        except DataError as exc:
            raise _err(src, f"datasets[{i}]: {exc}") from None
        ref = DatasetRef(path=path, name=name, where=where, rows=rows, build=build)
        if not ref.selected():
            raise _err(src, f"datasets[{i}] ({path}): no rows match where={where}")
        out.append(ref)
    return out


def _detectors(data: Any, src: Path, needs_name: bool, check_paths: bool = True) -> list[DetectorSpec]:
    entries = _entries(data, src, "detectors", "[NAME or {model: PATH}]", "name")
    from detectors.registry import DETECTORS

    specs: list[DetectorSpec] = []
    for i, d in enumerate(entries):
        unknown = set(d) - {"name", "model", "label", "train"}
        if unknown:
            raise _err(src, f"detectors[{i}]: unknown key(s) {sorted(unknown)} (known: name, model, label, train)")
        name, model = str(d.get("name") or ""), str(d.get("model") or "")
        if needs_name and not name:
            raise _err(src, f"detectors[{i}]: this protocol trains per cell and needs a registered 'name'")
        if not needs_name and not model:
            if not name:
                raise _err(src, f"detectors[{i}]: needs 'model' (a model file or folder) or 'name'")
            model, name = name, ""  # a bare string in a scoring protocol names a model ("default")
        if name:
            try:
                DETECTORS.get(name)
            except ForensicsError as exc:
                raise _err(src, f"detectors[{i}]: {exc}") from None
        _check_train_keys(d.get("train") or {}, src, f"detectors[{i}].train")
        if model and check_paths:
            model = _check_model(model, src, i)
        label = str(d.get("label") or name or Path(model).name.removesuffix(".safetensors").removesuffix(".json"))
        specs.append(DetectorSpec(label=label, name=name, model=model, train=dict(d.get("train") or {})))
    labels = [s.label for s in specs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise _err(src, f"detector label(s) used twice: {', '.join(dup)} (set 'label')")
    return specs


def _check_train_keys(budget: dict[str, Any], src: Path, where: str) -> None:
    """The per-cell training budget must name :class:`detectors.train.options.TrainOptions` fields the benchmark
    leaves free."""
    from benchmarks.runner import RESERVED_TRAIN_KEYS
    from detectors.train.options import TrainOptions

    allowed = {f.name for f in fields(TrainOptions)} - RESERVED_TRAIN_KEYS
    bad = sorted(set(budget) - allowed)
    if bad:
        known = ", ".join(sorted(allowed))
        raise _err(src, f"'{where}': unknown training option(s) {', '.join(bad)} (allowed: {known})")


def _check_model(model: str, src: Path, i: int) -> str:
    """A model is a path that exists, or the name of a shipped / installed model (``default``)."""
    from detectors.modelfile import resolve_model_dir

    p = _expand(model, src)
    if p.exists():
        return str(p)
    if unset := _unset_variables(model):
        raise _err(src, f"detectors[{i}]: ${unset[0]} is not set, so the model path {model} names no file; set "
                   f"{unset[0]} to the folder that holds it")
    try:
        resolve_model_dir(model)
    except ForensicsError as exc:
        raise _err(src, f"detectors[{i}]: {exc}") from None
    return model


def _presets(presets: Any, src: Path) -> list[str]:
    """``metrics.presets`` -> canonical policy names (any case, as ``--threshold``); an unknown name is refused
    instead of silently dropping its accuracy columns."""
    names = []
    for p in presets if isinstance(presets, list) else [presets]:
        name = policy_name(str(p))
        if name is None:
            raise _err(src, f"metrics.presets: unknown policy {p!r} (known: {', '.join(THRESHOLD_POLICIES)}, any case)")
        names.append(name)
    return list(dict.fromkeys(names))


def load_config(path: str | os.PathLike[str], check_paths: bool = True) -> BenchConfig:
    """Read and fully validate a benchmark file; raise :class:`BenchConfigError` (one line) on the first problem.

    ``check_paths=False`` validates everything but the existence of datasets and model files (used to check the
    shipped benchmark files on machines that do not hold the data).
    """
    from benchmarks.perturbations import expand_grid, parse_perturbation
    from benchmarks.protocols import PROTOCOLS

    src = Path(path)
    data = load_text(src)
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise _err(src, f"unknown top-level key(s): {', '.join(unknown)} (known: {', '.join(sorted(TOP_KEYS))})")
    if "protocol" not in data:
        raise _err(src, f"missing 'protocol' (one of: {', '.join(PROTOCOLS.names())})")
    try:
        proto = PROTOCOLS.get(str(data["protocol"]))
    except ForensicsError as exc:
        raise _err(src, str(exc)) from None
    options = _dataclass_from(proto.obj.Options, data.get("options"), src, "options")

    pert_spec = data.get("perturbations", ["none"])
    perts = expand_grid(pert_spec) if isinstance(pert_spec, dict) else list(pert_spec or ["none"])
    keys: list[str] = []
    for p in perts:
        try:
            keys.append(parse_perturbation(p).key)
        except ForensicsError as exc:
            raise _err(src, str(exc)) from None
    if "none" not in keys and proto.obj.needs_clean:
        keys.insert(0, "none")

    _check_train_keys(data.get("train") or {}, src, "train")
    splits = {"train": "train", "val": "val", "test": "test"}
    splits.update({str(k): str(v) for k, v in (data.get("splits") or {}).items()})
    cfg = BenchConfig(
        name=str(data.get("name") or src.stem),
        protocol=proto.name,
        source=src,
        detectors=_detectors(data.get("detectors"), src, needs_name=proto.obj.trains, check_paths=check_paths),
        datasets=_datasets(data.get("datasets"), src, check_paths=check_paths),
        perturbations=list(dict.fromkeys(keys)),
        splits=splits,
        auto_split=tuple(data.get("auto_split", (0.7, 0.1, 0.2))),
        train=dict(data.get("train") or {}),
        metrics=_dataclass_from(MetricsConfig, data.get("metrics"), src, "metrics"),
        speed=_dataclass_from(SpeedConfig, data.get("speed"), src, "speed"),
        batch_size=int(data.get("batch_size", 64)),
        options=options,
        raw=data,
    )
    cfg.metrics.presets = _presets(cfg.metrics.presets, src)
    if len(cfg.auto_split) != 3 or abs(sum(cfg.auto_split) - 1) > 1e-6:
        raise _err(src, f"auto_split must be three fractions summing to 1, got {list(cfg.auto_split)}")
    return cfg
