"""Run a benchmark: plan -> (train) -> score through the cache -> metrics -> results on disk.

The run directory holds everything a report or a comparison needs, so ``bench report`` and ``bench compare`` never
recompute scores::

    OUT/config.yaml       the benchmark file as given (a run is reproducible from it alone)
    OUT/run.json          command, commit (``-dirty`` if the tree differed), environment, the weights sha256 of
                          every model scored, start/end, cache hits/misses, errors
    OUT/scores.sqlite     the score cache (unless --cache points elsewhere)
    OUT/models/KEY/       models trained by leave-one-out protocols (reused by --resume)
    OUT/data/KEY/         the manifest views they were trained on (absolute paths, nothing copied)
    OUT/cells/ID.json     per cell: item keys, labels and scores (what paired comparisons resample)
    OUT/results.json      metrics with intervals, curves, speed (written by benchmarks.report)

Resuming: every score is committed to the cache per batch, and trained models are kept, so a killed run started
again with ``--resume`` redoes only what is missing. Thresholds come from the model file's presets, never from the
test set.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.cache import ScoreCache
from benchmarks.config import BenchConfig, load_config
from benchmarks.perturbations import Perturbation, parse_perturbation
from benchmarks.protocols import Cell, Item, Plan, TrainJob, get_protocol
from forensics_core.dataset import ManifestRow, write_manifest
from forensics_core.errors import ForensicsError, UsageError
from forensics_core.hashing import sha256_text

log = logging.getLogger(__name__)
RESULTS_VERSION = 1


@dataclass
class RunOptions:
    out: Path
    device: str = "auto"
    workers: int = 2
    resume: bool = False
    cache: Path | None = None
    progress: bool = True
    command: str = ""


@dataclass
class CellScores:
    """What scoring one cell produced; ``level`` is ``image``, ``frame`` or ``clip``."""

    cell: Cell
    level: str
    keys: list[str]
    y: np.ndarray
    p: np.ndarray
    errors: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # per-score clip key for frame-level scores
    #: more per-item values of protocols with their own scoring (``localisation``: IoU, the prior's AUC), by name
    extra: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class RunState:
    cfg: BenchConfig
    plan: Plan
    opts: RunOptions
    cache: ScoreCache
    device: str
    models: dict[str, Any] = field(default_factory=dict)
    model_hashes: dict[str, str] = field(default_factory=dict)
    model_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    computed: int = 0


# -- loading items ------------------------------------------------------------------------------------------------


def load_face(path: Path) -> np.ndarray:
    """Decode one dataset image to HxWx3 uint8 RGB through the toolkit's hardened loader (size limits, EXIF)."""
    from forensics_core.media import load_image

    return load_image(path).pixels


def _progress(it, total: int, desc: str, enabled: bool):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)


# -- models --------------------------------------------------------------------------------------------------------


def _load_model(ref: str, device: str):
    from detectors.modelfile import load_model

    return load_model(ref, device=device)


def _view_dataset(root: Path, items: list[Item], split: str) -> Path:
    """A dataset directory whose manifest points at the original files (absolute paths): nothing is copied.

    Rows get ``split`` explicitly, so rows the benchmark assigned by hash (``auto_split``) train as planned.
    """
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for it in items:
        d = {**it.row.__dict__, "path": str(it.path.resolve()), "split": split}
        extra = d.pop("extra")
        rows.append(ManifestRow(**d, extra=extra))
    write_manifest(root, rows)
    return root


def _trained_model_path(root: Path) -> Path | None:
    """The model folder of a finished training run under ``root`` (``root/NNNNN-name/model``), None if unfinished."""
    if not root.is_dir():
        return None
    for cand in sorted(root.glob("*/model"), reverse=True):
        if (cand / "model.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    return None


#: TrainOptions fields the benchmark sets itself; a benchmark file's ``train:`` budget may set the others.
RESERVED_TRAIN_KEYS = frozenset({"detector", "data", "val", "out", "device", "resume", "progress", "families",
                                 "exclude_families"})


def train_job(job: TrainJob, cfg: BenchConfig, out: Path, device: str, resume: bool) -> Path:
    """Train one leave-one-out cell through the detectors' training API, or reuse a finished one."""
    from detectors.train.loop import train
    from detectors.train.options import TrainOptions

    run_dir = out / "models" / job.key
    done = _trained_model_path(run_dir)
    if done is not None:
        log.info("reusing trained model %s", done)
        return done
    if run_dir.exists():  # a killed training: start that cell again (its scores were never cached)
        shutil.rmtree(run_dir)
    data = _view_dataset(out / "data" / job.key / "train", job.train, "train")
    val = _view_dataset(out / "data" / job.key / "val", job.val, "val")
    budget = {**cfg.train, **job.detector.train}
    topts = TrainOptions(detector=job.detector.name, data=[str(data)], val=[str(val)], out=str(run_dir),
                         device=device, progress=False, **budget)
    train(topts)
    found = _trained_model_path(run_dir)
    if found is None:
        raise UsageError(f"training {job.key} finished without a model file in {run_dir}")
    return found


def resolve_models(state: RunState) -> None:
    """Load every model the plan needs (training leave-one-out cells first); record hash and thresholds."""
    refs: dict[str, str] = {}
    for i, job in enumerate(state.plan.jobs, 1):
        log.info("training %s (%d/%d)", job.key, i, len(state.plan.jobs))
        refs[job.key] = str(train_job(job, state.cfg, state.opts.out, state.device, state.opts.resume))
    for cell in state.plan.cells:
        ref = refs[cell.model.key] if isinstance(cell.model, TrainJob) else cell.model
        key = cell.model.key if isinstance(cell.model, TrainJob) else ref
        if key in state.models:
            continue
        model = _load_model(ref, state.device)
        state.models[key] = model
        state.model_hashes[key] = model_hash(model)
        state.model_info[key] = {
            "ref": ref,
            "name": getattr(model, "name", ""),
            "sha256": model.sha256,
            "cache_key": state.model_hashes[key],
            "thresholds": dict(model.thresholds),
            "preprocess": _preprocess_dict(model),
        }


def model_hash(model: Any) -> str:
    """The cache's model key: the weights' sha256 *and* what turns logits into P(fake) and faces into tensors.

    ``Model.sha256`` covers the weights only; a model recalibrated or given another input size keeps its weights,
    and must not be served the scores of its former self.
    """
    card = getattr(model, "card", {}) or {}
    extra = json.dumps({"calibration": card.get("calibration"), "preprocess": card.get("preprocess")}, sort_keys=True)
    return sha256_text(f"{model.sha256}:{extra}")


def _preprocess_dict(model: Any) -> dict[str, Any]:
    pp = getattr(model, "preprocess", None)
    return pp.to_dict() if hasattr(pp, "to_dict") else {}


def model_key(cell: Cell) -> str:
    return cell.model.key if isinstance(cell.model, TrainJob) else cell.model


# -- scoring -----------------------------------------------------------------------------------------------------


def _batches(seq: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _hashable(items: list[Item]) -> tuple[list[Item], list[str]]:
    """Items whose content hash is known or computable; a missing or unreadable file is an error, not a crash."""
    ok: list[Item] = []
    errors: list[str] = []
    for it in items:
        try:
            it.key  # noqa: B018 - computes and stores the hash when the manifest lacks it
            ok.append(it)
        except OSError as exc:
            errors.append(f"{it.path}: {exc.strerror or exc}")
    return ok, errors


def detector_input(
    item: Item, img: np.ndarray, size: int, margin: float, match_res: int = 0, crop: str = "align",
    edge: str = "clamp",
) -> np.ndarray:
    """The face a detector is scored on, made by :func:`detectors.data.face_view` like training and ``scan`` make
    it: a ``--store source`` row (uncropped region + landmarks) is aligned at ``size``; an already-aligned row is
    resized. With ``match_res`` > 0 a real is first shrunk to that native size and brought back (resolution
    matching, before the crop as a platform would resample the file)."""
    from detectors.augment import match_real_resolution
    from detectors.data import face_view, item_from_row

    ditem = item_from_row(item.path, item.row, item.dataset)
    if match_res and item.y == 0:
        img, ditem = match_real_resolution(img, ditem, match_res, crop)
    return face_view(img, ditem, size, margin, crop=crop, edge=edge)


def _prepare(
    item: Item, pert: Perturbation, pp: Any, match_res: int
) -> tuple[str, np.ndarray | None, str]:
    """Load, crop, perturb. The perturbation goes on the crop, so a grid means the same on source-stored and
    aligned datasets (and the committed robustness curves of aligned sets stay comparable)."""
    try:
        face = detector_input(item, load_face(item.path), pp.size, pp.margin, match_res, pp.crop, pp.edge)
        return item.key, pert(face), ""
    except (ForensicsError, OSError, ValueError) as exc:  # one bad item never stops a batch
        return item.key, None, f"{item.path}: {exc}"


def score_tag(cell: Cell, pert: Perturbation) -> str:
    """The cache's perturbation column: the perturbation, plus the resolution matching that changes the reals."""
    return f"{pert.key}|reals@{cell.match_res}px" if cell.match_res else pert.key


def score_images(state: RunState, cell: Cell, pool: ThreadPoolExecutor) -> CellScores:
    """Scores for ``cell.items`` from the cache, computing (and committing per batch) only the missing ones."""
    model = state.models[model_key(cell)]
    mhash = state.model_hashes[model_key(cell)]
    pert = parse_perturbation(cell.perturbation)
    tag = score_tag(cell, pert)
    pp = model.preprocess
    items, errors = _hashable(cell.items)
    cached = state.cache.get_many(mhash, [it.key for it in items], tag)
    todo = [it for it in items if it.key not in cached]
    bs = state.cfg.batch_size
    for batch in _progress(_batches(todo, bs), (len(todo) + bs - 1) // bs, cell.id, state.opts.progress and bool(todo)):
        prepared = list(pool.map(lambda it: _prepare(it, pert, pp, cell.match_res), batch))
        good = [(k, img) for k, img, err in prepared if img is not None]
        errors += [err for _, img, err in prepared if img is None]
        if not good:
            continue
        probs = np.asarray(model.predict_proba([img for _, img in good]), dtype=np.float64).ravel()
        state.cache.put_many(mhash, tag, zip([k for k, _ in good], probs.tolist()))
        cached.update(zip([k for k, _ in good], probs.tolist()))
        state.computed += len(good)
    kept = [it for it in items if it.key in cached]
    return CellScores(
        cell=cell,
        level="image",
        keys=[it.key for it in kept],
        y=np.array([it.y for it in kept], dtype=np.int64),
        p=np.array([cached[it.key] for it in kept], dtype=np.float64),
        errors=errors,
    )


AGGREGATES: dict[str, Callable[[np.ndarray, float], float]] = {
    "mean": lambda s, k: float(np.mean(s)),
    "median": lambda s, k: float(np.median(s)),
    "max": lambda s, k: float(np.max(s)),
    "topk": lambda s, k: float(np.mean(np.sort(s)[::-1][: max(1, int(np.ceil(k * s.size)))])),
}


def _frames(item: Item, every: int, max_frames: int, crop: Callable[[np.ndarray], np.ndarray]) -> list[np.ndarray]:
    from forensics_core.media import iter_frames

    out: list[np.ndarray] = []
    for fr in iter_frames(item.path, every=every):
        out.append(crop(fr.pixels))
        if len(out) >= max_frames:
            break
    return out


def _face_cropper(model: Any, faces: str, device: str) -> Callable[[np.ndarray], np.ndarray]:
    """Video frames are whole frames: crop the face the way the model expects (largest detected face, aligned), or
    the centre square when no detector is configured or no face is found."""
    from forensics_core.faces.crops import crop_faces
    from forensics_core.faces.detectors import get_face_detector

    pp = model.preprocess
    if not faces:
        return lambda img: crop_faces(img, [], pp)[0].pixels
    det = get_face_detector(faces, device=device)

    def crop(img: np.ndarray) -> np.ndarray:
        found = det.detect([img])[0]
        best = [max(found, key=lambda f: f.prob)] if found else []
        # align_approx: the video benchmark (faces: opencv) has always aligned on estimated landmarks
        return crop_faces(img, best, pp, align_approx=True)[0].pixels

    return crop


def score_video(state: RunState, cell: Cell, pool: ThreadPoolExecutor) -> list[CellScores]:
    """Frame scores (cached per frame, with the number of frames scored per clip) and clip scores aggregated."""
    opts = state.cfg.options
    model = state.models[model_key(cell)]
    mhash = state.model_hashes[model_key(cell)]
    pert = parse_perturbation(cell.perturbation)
    tag = f"{pert.key}@every={opts.every},max={opts.max_frames},faces={getattr(opts, 'faces', '')}"
    crop = _face_cropper(model, getattr(opts, "faces", ""), state.device)
    frame_keys: list[str] = []
    frame_y: list[int] = []
    frame_p: list[float] = []
    frame_clip: list[str] = []
    clip_keys: list[str] = []
    clip_y: list[int] = []
    clip_p: list[float] = []
    agg = AGGREGATES[opts.aggregate]
    items, errors = _hashable(cell.items)
    for item in _progress(items, len(items), cell.id, state.opts.progress):
        try:
            clip = item.key
            n = state.cache.get_many(mhash, [f"{clip}#n"], tag).get(f"{clip}#n")
            keys = [f"{clip}#f{i}" for i in range(int(n))] if n is not None else []
            got = state.cache.get_many(mhash, keys, tag) if keys else {}
            if n is None or len(got) < len(keys):
                frames = [pert(f) for f in _frames(item, opts.every, opts.max_frames, crop)]
                if not frames:
                    raise UsageError("no frames decoded")
                probs = np.asarray(model.predict_proba(frames), dtype=np.float64).ravel().tolist()
                keys = [f"{clip}#f{i}" for i in range(len(probs))]
                got = dict(zip(keys, probs))
                state.cache.put_many(mhash, tag, [*got.items(), (f"{clip}#n", float(len(probs)))])
                state.computed += len(probs)
        except (ForensicsError, OSError, ValueError) as exc:
            errors.append(f"{item.path}: {exc}")
            continue
        scores = np.array([got[k] for k in keys])
        frame_keys += keys
        frame_y += [item.y] * len(keys)
        frame_p += scores.tolist()
        frame_clip += [clip] * len(keys)
        clip_keys.append(clip)
        clip_y.append(item.y)
        clip_p.append(agg(scores, opts.topk))
    frame = CellScores(cell, "frame", frame_keys, np.array(frame_y), np.array(frame_p), errors, frame_clip)
    clip = CellScores(cell, "clip", clip_keys, np.array(clip_y), np.array(clip_p), errors)
    return [frame, clip]


# -- speed -------------------------------------------------------------------------------------------------------


def measure(state: RunState) -> dict[str, dict[str, Any]]:
    """One timing pass per detector (on its first model and first cell's items), in this run, on this device."""
    from benchmarks.speed import measure_speed

    out: dict[str, dict[str, Any]] = {}
    sc = state.cfg.speed
    for cell in state.plan.cells:
        if cell.detector in out or sc.n_images <= 0:
            continue
        model = state.models[model_key(cell)]
        faces: list[np.ndarray] = []
        for it in cell.items:
            if len(faces) >= sc.n_images:
                break
            try:
                pp = model.preprocess
                img = None
                if cell.level in ("image", "pixel"):
                    img = detector_input(it, load_face(it.path), pp.size, pp.margin, crop=pp.crop, edge=pp.edge)
                if img is None:
                    crop = _face_cropper(model, getattr(state.cfg.options, "faces", ""), state.device)
                    img = next(iter(_frames(it, 1, 1, crop)), None)
                if img is not None:
                    faces.append(img)
            except (ForensicsError, OSError, ValueError):
                continue
        if faces:
            res = measure_speed(model, faces, state.device, batch=sc.batch, latency_samples=sc.latency_samples)
            out[cell.detector] = res.to_dict()
    return out


# -- the run -----------------------------------------------------------------------------------------------------


def _prepare_out(cfg: BenchConfig, opts: RunOptions) -> None:
    out = opts.out
    if out.exists() and any(out.iterdir()) and not opts.resume:
        raise UsageError(f"--out {out}: already holds a run; pass --resume to continue it or choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / "cells").mkdir(exist_ok=True)
    shutil.copyfile(cfg.source, out / ("config" + cfg.source.suffix.lower()))


def _device_name(spec: str) -> str:
    from forensics_core.config import resolve_device

    return str(resolve_device(spec))


def run(config_path: str | Path, opts: RunOptions) -> dict[str, Any]:
    """Run (or resume) a benchmark and write its run directory; returns the results dictionary."""
    from benchmarks.record import start_record
    from benchmarks.report import build_results, write_report

    cfg = load_config(config_path)
    protocol = get_protocol(cfg.protocol)
    plan = protocol.plan(cfg)  # every check that can fail on the data happens before any work
    device = _device_name(opts.device)
    _prepare_out(cfg, opts)
    t0 = time.time()
    rec = start_record(opts.command)  # at the start: the code that scores is the code of this moment
    cache = ScoreCache(opts.cache or opts.out / "scores.sqlite")
    state = RunState(cfg=cfg, plan=plan, opts=opts, cache=cache, device=device)
    try:
        resolve_models(state)
        speed = measure(state)
        scored: list[CellScores] = []
        with ThreadPoolExecutor(max_workers=max(1, opts.workers)) as pool:
            for cell in _progress(plan.cells, len(plan.cells), "cells", opts.progress):
                parts = protocol.score_cell(state, cell, pool)
                if parts is None and cell.level == "video":
                    parts = score_video(state, cell, pool)
                elif parts is None:
                    parts = [score_images(state, cell, pool)]
                for cs in parts:
                    _write_cell(opts.out, cs)
                    state.errors += cs.errors
                scored += parts
        run_info = {
            "command": opts.command,
            "commit": rec.commit,
            "config": str(cfg.source),
            "device": device,
            "workers": opts.workers,
            "started": rec.started,
            "seconds": round(time.time() - t0, 2),
            "environment": rec.environment,
            "models": {key: {"name": info["name"], "weights_sha256": info["sha256"]}
                       for key, info in state.model_info.items()},
            "cache": {"path": str(cache.path), "hits": cache.hits, "misses": cache.misses, "computed": state.computed},
            "errors": sorted(set(state.errors))[:200],
            "n_errors": len(set(state.errors)),
        }
        (opts.out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n", encoding="utf-8")
        results = build_results(cfg, scored, state.model_info, speed, run_info)
        write_report(opts.out, results)
        return results
    finally:
        cache.close()


def _write_cell(out: Path, cs: CellScores) -> None:
    # readable and filesystem-safe, with a hash of the exact id so two ids never share a file
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", cs.cell.id)[:150]
    digest = sha256_text(f"{cs.cell.id}|{cs.level}")[:10]
    name = f"{safe}__{cs.level}__{digest}.json"
    data = {
        "id": cs.cell.id,
        "level": cs.level,
        "detector": cs.cell.detector,
        "perturbation": cs.cell.perturbation,
        "group": cs.cell.group,
        "keys": cs.keys,
        "y": cs.y.astype(int).tolist(),
        "p": cs.p.tolist(),
        **({"extra": cs.extra} if cs.extra else {}),
    }
    (out / "cells" / name).write_text(json.dumps(data) + "\n", encoding="utf-8")
