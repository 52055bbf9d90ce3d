"""The scan pipeline: media -> faces -> aligned crops -> calibrated P(fake) -> verdicts, evidence and timings.

``forensics scan`` and the Python API (``from forensics import scan``) both run :class:`Scanner`. The flow for
a chunk of ``batch`` files (see ``docs/scan.md``)::

    load (thread pool, per-file deadline)       images decoded, videos only probed
      -> detect faces (one batched call per chunk; images downscaled to ``detect_max_side`` for detection)
      -> crop by the model's PreprocessSpec (5-point alignment or centre crop; whole-image fallback + ``no_face``)
      -> one batched model forward over every crop of the chunk
      -> evidence (file analyses in the thread pool, per-face Grad-CAM in the caller's thread)
      -> FileResult per file, in input order

While a chunk is detected and scored, the next chunk is already being loaded, so decoding hides behind the
model. Videos are streamed frame batch by frame batch (``forensics.media.iter_frames``) with a face tracker,
so memory is bounded by ``batch`` frames whatever the length of the clip.

**Aggregation** (documented in ``docs/scan-output.md``): an image's probability is the maximum over its faces (one
fake face makes a fake image). A video track's probability is the mean of the top half of its per-frame
probabilities (robust to a few glitchy frames, yet a manipulation present in half the frames dominates); the
file's probability is the maximum over tracks seen in at least ``min_track_faces`` sampled frames (tracks
shorter than that are spurious detections unless no longer track exists).

**Verdicts** are evidence, not proof: ``flagged`` means the calibrated probability reached the chosen threshold
policy's value (e.g. ``fpr1`` = the model's threshold for a 1% false-positive rate on its calibration set).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from forensics.config import ASSETS_DIR
from forensics.errors import ForensicsError, ModelFileError, UsageError
from forensics.evidence import EvidenceResult, EvidenceSubject, resolve_evidence, run_face_evidence, run_file_evidence
from forensics.faces import crop_faces
from forensics.inputs import InputExpander, InputItem
from forensics.thresholds import DEFAULT_POLICY, VERDICT_CLEAR, VERDICT_FLAGGED, ThresholdPolicy

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1.0"
THUMB_SIDE = 256
FALLBACK_VIDEO_CROPS = 8  # whole-frame crops kept for a video in which no face is ever found


class ScanTimeoutError(ForensicsError):
    """A file's work exceeded ``--timeout``; reported per file like any other error."""


# ---------------------------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------------------------
def warn_unsupported_preset(policy: str, card: dict[str, Any]) -> bool:
    """Warn (once per scan) when the chosen preset promises a false-positive rate its model's validation reals
    cannot show (``threshold_support`` in model.json, :func:`detectors.calibration.preset_support`); True if so."""
    sup = (card.get("threshold_support") or {}).get(policy)
    if not sup or sup.get("estimable", True):
        return False
    log.warning(
        "threshold '%s' of model '%s' rests on %d validation reals (about %.1f above it): its %g %% false-positive "
        "rate is not estimated; expect more flags, or use a numeric --threshold measured on your own reals",
        policy, card.get("name", "?"), sup.get("n_real", 0), sup.get("reals_above", 0), 100 * sup.get("fpr", 0),
    )
    return True


@dataclass
class FaceResult:
    """One scored face: a detection in an image or in one sampled video frame (or the whole-image fallback)."""

    index: int
    box: list[float]  # x1, y1, x2, y2 in pixels of the decoded image / frame
    frame: int  # 0 for images; the decoded frame index for videos
    time_s: float
    track: int  # face track id (images: one per face)
    fake_probability: float
    verdict: str
    detection_prob: float | None = None  # None for the whole-image fallback
    aligned: bool = True  # False: centre crop (model policy, approximate landmarks, or fallback)
    no_face: bool = False  # True: no face was found; this is a centre crop of the whole image / frame
    evidence: list[EvidenceResult] = field(default_factory=list)
    crop: np.ndarray | None = field(default=None, repr=False, compare=False)  # report only, never serialised

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "box": [round(float(v), 2) for v in self.box],
            "frame": int(self.frame),
            "time_s": round(float(self.time_s), 4),
            "track": int(self.track),
            "fake_probability": round(float(self.fake_probability), 6),
            "verdict": self.verdict,
            "detection_prob": None if self.detection_prob is None else round(float(self.detection_prob), 5),
            "aligned": bool(self.aligned),
            "no_face": bool(self.no_face),
            "evidence": [e.to_dict() for e in self.evidence],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaceResult:
        return cls(
            index=d["index"], box=list(d["box"]), frame=d["frame"], time_s=d.get("time_s", 0.0), track=d["track"],
            fake_probability=d["fake_probability"], verdict=d["verdict"], detection_prob=d.get("detection_prob"),
            aligned=d.get("aligned", True), no_face=d.get("no_face", False),
            evidence=[EvidenceResult.from_dict(e) for e in d.get("evidence", [])],
        )  # fmt: skip


@dataclass
class TrackResult:
    """A face followed across sampled frames of a video, with its aggregated probability."""

    track: int
    n_faces: int
    first_frame: int
    last_frame: int
    fake_probability: float
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fake_probability"] = round(float(self.fake_probability), 6)
        return d


@dataclass
class FileResult:
    """Everything ``scan`` knows about one input file; ``to_dict`` is one line of ``--jsonl`` (schema 1.0)."""

    path: str
    sha256: str = ""
    status: str = "ok"  # 'ok' | 'error'
    error: str | None = None
    error_type: str | None = None
    media_type: str | None = None  # 'image' | 'video'
    size_bytes: int = 0
    width: int | None = None
    height: int | None = None
    fake_probability: float | None = None
    verdict: str | None = None
    no_face: bool = False
    faces: list[FaceResult] = field(default_factory=list)
    tracks: list[TrackResult] = field(default_factory=list)
    frames_sampled: int = 0
    duplicate_of: str | None = None
    aggregation: str = ""
    model: dict[str, str] = field(default_factory=dict)
    threshold: dict[str, Any] = field(default_factory=dict)
    evidence: list[EvidenceResult] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION
    thumbnail: np.ndarray | None = field(default=None, repr=False, compare=False)  # report only

    @property
    def flagged(self) -> bool:
        return self.verdict == VERDICT_FLAGGED

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "path": self.path,
            "sha256": self.sha256,
            "status": self.status,
            "error": self.error,
            "error_type": self.error_type,
            "media_type": self.media_type,
            "size_bytes": int(self.size_bytes),
            "width": self.width,
            "height": self.height,
            "fake_probability": None if self.fake_probability is None else round(float(self.fake_probability), 6),
            "verdict": self.verdict,
            "no_face": bool(self.no_face),
            "n_faces": len(self.faces),
            "faces": [f.to_dict() for f in self.faces],
            "tracks": [t.to_dict() for t in self.tracks],
            "frames_sampled": int(self.frames_sampled),
            "duplicate_of": self.duplicate_of,
            "aggregation": self.aggregation,
            "model": dict(self.model),
            "threshold": dict(self.threshold),
            "evidence": [e.to_dict() for e in self.evidence],
            "timings_ms": {k: round(float(v), 3) for k, v in self.timings_ms.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileResult:
        return cls(
            path=d["path"], sha256=d.get("sha256", ""), status=d.get("status", "ok"), error=d.get("error"),
            error_type=d.get("error_type"), media_type=d.get("media_type"), size_bytes=d.get("size_bytes", 0),
            width=d.get("width"), height=d.get("height"), fake_probability=d.get("fake_probability"),
            verdict=d.get("verdict"), no_face=d.get("no_face", False),
            faces=[FaceResult.from_dict(f) for f in d.get("faces", [])],
            tracks=[TrackResult(**t) for t in d.get("tracks", [])], frames_sampled=d.get("frames_sampled", 0),
            duplicate_of=d.get("duplicate_of"), aggregation=d.get("aggregation", ""), model=d.get("model", {}),
            threshold=d.get("threshold", {}), evidence=[EvidenceResult.from_dict(e) for e in d.get("evidence", [])],
            timings_ms=d.get("timings_ms", {}), schema_version=d.get("schema_version", SCHEMA_VERSION),
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class ScanConfig:
    """Every knob of a scan; the CLI options map 1:1 onto these fields."""

    threshold: str | float = DEFAULT_POLICY
    evidence: str | list[str] = "all"
    device: str = "auto"
    batch: int = 16  # files per chunk (images) / frames per detector call (videos) / crops per forward
    workers: int = 2  # threads for decoding and file evidence
    timeout_s: float | None = 300.0  # per file; None = no limit
    fps: float = 1.0  # sampled frames per second of video
    max_frames: int = 32  # sampled frames per video (sampling rate lowered to cover the whole clip)
    max_faces: int = 8  # most confident faces per image / frame
    face_detector: str = "mtcnn"
    detect_max_side: int = 1024  # images are downscaled to this for detection (faces stay full-res for the model)
    work_max_side: int = 4096  # decoded images larger than this are downscaled once (bounds memory per chunk)
    min_track_faces: int = 2
    explain_faces: int = 4  # faces per file that get Grad-CAM (the most suspicious ones)
    keep_images: bool = False  # keep thumbnails / crops / heatmaps for the HTML report
    follow_symlinks: bool = False
    max_pixels: int | None = None  # overrides MediaLimits.max_pixels
    max_bytes: int | None = None  # overrides MediaLimits.max_bytes
    threads: int | None = None  # torch intra-op threads (None = torch's default: all cores)

    def __post_init__(self) -> None:
        for name in ("batch", "workers", "max_frames", "max_faces", "min_track_faces"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be >= 1")
        if self.fps <= 0:
            raise UsageError(f"--fps {self.fps}: must be > 0")
        if self.timeout_s is not None and self.timeout_s <= 0:
            self.timeout_s = None
        self.evidence = resolve_evidence(self.evidence)

    def limits(self):
        from forensics.media import MediaLimits

        kw: dict[str, Any] = {}
        if self.max_pixels:
            kw["max_pixels"] = int(self.max_pixels)
        if self.max_bytes:
            kw["max_bytes"] = int(self.max_bytes)
        return MediaLimits(**kw)


DEFAULT_MODEL_DIR = ASSETS_DIR / "models" / "default"  # where detectors.default_model installs it


def resolve_model(model: Any = "default", device: str = "auto") -> Any:
    """A loaded ``detectors.modelfile.Model`` from a Model, a path or ``'default'`` (with a clear error if absent)."""
    if not isinstance(model, (str, os.PathLike)):
        return model
    if str(model) == "default" and not (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        raise ModelFileError("no default model shipped; pass --model FILE")
    from detectors.modelfile import load_model

    return load_model(str(model), device=device)


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------
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
        self.started = 0
        self.abandoned = 0
        for _ in range(workers):
            self._spawn()

    def _spawn(self) -> None:
        self.started += 1
        threading.Thread(target=self._work, name=f"{self._name}_{self.started}", daemon=True).start()

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            fut, fn, args = job
            if not fut.set_running_or_notify_cancel():
                continue
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

    def shutdown(self) -> None:
        """Let idle workers exit; never waits (a stuck one is a daemon and dies with the process)."""
        for _ in range(self.started):
            self._queue.put(None)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _error_result(path: str, exc: BaseException, item: InputItem | None = None) -> FileResult:
    if isinstance(exc, ForensicsError):
        msg = str(exc)
    else:  # an unexpected failure inside a decoder or a model: still one line naming the file
        msg = " ".join(f"{path}: {type(exc).__name__}: {exc}".split())
    if path not in msg:
        msg = f"{path}: {msg}"
    return FileResult(
        path=path,
        sha256=item.sha256 if item else "",
        size_bytes=item.size_bytes if item else 0,
        status="error",
        error=msg,
        error_type=type(exc).__name__,
    )


def _thumbnail(pixels: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    import cv2

    h, w = pixels.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return pixels.copy()
    return cv2.resize(pixels, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)


def _downscale(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image to run the face detector on, and the factor that maps its coordinates back."""
    import cv2

    h, w = pixels.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return pixels, 1.0
    small = cv2.resize(pixels, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small), s


def _rescaled(face: Any, s: float) -> Any:
    if s == 1.0:
        return face
    from forensics.faces import Face

    return Face(
        box=tuple(float(v) / s for v in face.box),
        landmarks=np.asarray(face.landmarks, dtype=np.float64) / s,
        prob=face.prob,
        approx_landmarks=getattr(face, "approx_landmarks", False),
    )


def top_half_mean(probs: Sequence[float]) -> float:
    """Mean of the top ceil(n/2) values: the per-track video aggregate (see module docstring)."""
    v = np.sort(np.asarray(probs, dtype=np.float64))[::-1]
    return float(v[: max(1, math.ceil(len(v) / 2))].mean())


@dataclass
class _Loaded:
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


# ---------------------------------------------------------------------------------------------------------------
# the scanner
# ---------------------------------------------------------------------------------------------------------------
class Scanner:
    """Holds the model, the face detector and the config; turns :class:`InputItem` streams into results.

    One Scanner is used per process (the Ray engine builds one per actor). The face detector and the model are
    called from the thread that iterates :meth:`scan_items` only: torch modules with Grad-CAM hooks are not
    thread-safe, and batching beats threading for the forward pass anyway.
    """

    def __init__(self, model: Any = "default", config: ScanConfig | None = None, detector: Any = None) -> None:
        self.config = config or ScanConfig()
        if self.config.threads:
            # On a shared or oversubscribed machine torch's default (one thread per core) spins against other
            # processes; MTCNN measured 8x slower with 2 threads than with 1 on a loaded 2-core box.
            import torch

            torch.set_num_threads(int(self.config.threads))
        self.model = resolve_model(model, self.config.device)
        self.policy = ThresholdPolicy.resolve(self.config.threshold, dict(getattr(self.model, "thresholds", {})))
        warn_unsupported_preset(self.policy.policy, getattr(self.model, "card", {}))
        self.spec = self.model.preprocess
        self._detector = detector
        self._limits = self.config.limits()
        self.model_info = {"name": str(self.model.name), "sha256": str(self.model.sha256)}
        self.totals = {"detect": 0.0, "model": 0.0, "load": 0.0, "evidence": 0.0, "align": 0.0}
        self._lock = threading.Lock()
        if self._detector is None:  # load now: a broken detector fails fast and its load time is not "detect" time
            from forensics.faces import get_face_detector

            self._detector = get_face_detector(self.config.face_detector, device=self.config.device)

    @property
    def detector(self) -> Any:
        return self._detector

    # -- timing helpers -----------------------------------------------------------------------------------------
    def _add_total(self, key: str, ms: float) -> None:
        with self._lock:
            self.totals[key] += ms

    def _predict(self, crops: list[np.ndarray]) -> tuple[np.ndarray, float]:
        if not crops:
            return np.zeros(0), 0.0
        t0 = time.perf_counter()
        out = []
        for i in range(0, len(crops), max(1, self.config.batch)):
            out.append(np.asarray(self.model.predict_proba(crops[i : i + self.config.batch]), dtype=np.float64))
        ms = (time.perf_counter() - t0) * 1000
        self._add_total("model", ms)
        return np.concatenate(out).reshape(-1), ms

    def _detect(self, images: list[np.ndarray]) -> tuple[list[list[Any]], float]:
        if not images:
            return [], 0.0
        t0 = time.perf_counter()
        faces = self.detector.detect(images)
        ms = (time.perf_counter() - t0) * 1000
        self._add_total("detect", ms)
        return [f[: self.config.max_faces] for f in faces], ms

    # -- public -------------------------------------------------------------------------------------------------
    def scan_items(self, items: Iterable[InputItem]) -> Iterator[FileResult]:
        """Scan items in chunks of ``batch`` files; yields one :class:`FileResult` per item, in input order."""
        cfg = self.config
        done: dict[str, bytes] = {}  # sha256 -> compressed record of the first copy (for its duplicates)
        # Two pools: prefetched loads of the next chunk (possibly stuck on a hostile file nobody waits for yet) must
        # never hold up the current chunk's evidence or video frame decoding, or a healthy file would time out.
        with WorkerPool(cfg.workers, "load") as loader, WorkerPool(cfg.workers, "work") as pool:
            chunks = _chunked(items, cfg.batch)
            nxt = next(chunks, None)
            prefetch = self._submit_loads(loader, nxt) if nxt else None
            while nxt is not None:
                chunk, loads = nxt, prefetch
                nxt = next(chunks, None)
                prefetch = self._submit_loads(loader, nxt) if nxt else None  # decode the next chunk meanwhile
                results = self._scan_chunk(loader, pool, chunk, loads)
                for item in chunk:
                    if item.duplicate_of is not None and item.error is None:
                        yield self._duplicate(item, _uncompact(done.get(item.sha256)))
                        continue
                    res = results[id(item)]
                    self._stamp(res)
                    if res.status == "ok" and res.sha256:
                        done[res.sha256] = _compact(res)
                    yield res

    def _stamp(self, res: FileResult) -> None:
        """Every record names the model and policy (errors too), so a results file is self-describing."""
        res.model = res.model or dict(self.model_info)
        res.threshold = res.threshold or {"policy": self.policy.policy, "value": self.policy.value}
        res.timings_ms = res.timings_ms or _timings()

    # -- chunk pipeline -----------------------------------------------------------------------------------------
    def _submit_loads(self, pool: WorkerPool, chunk: list[InputItem]) -> dict[int, tuple[Future, list]]:
        # the list receives the monotonic time the decode actually starts: waiting in the queue is not the file's fault
        out = {}
        for it in chunk:
            if it.error is None and it.duplicate_of is None:
                started: list[float] = []
                out[id(it)] = (pool.submit(self._load, it, started), started)
        return out

    def _load(self, item: InputItem, started: list[float] | None = None) -> _Loaded:
        from forensics import media

        if started is not None:
            started.append(time.monotonic())
        t0 = time.perf_counter()
        out = _Loaded(item)
        try:
            out.kind = media.sniff(item.path)
            if out.kind == "image":
                loaded = media.load_image(item.path, limits=self._limits)
                # An 80 MP photo is 240 MB decoded; a chunk of them (plus the prefetched next chunk) must stay
                # bounded. 4096 px still gives any face far more pixels than a model crop needs.
                out.pixels, out.work_scale = _downscale(loaded.pixels, self.config.work_max_side)
                out.info = loaded.info
                out.det_image, out.det_scale = _downscale(out.pixels, self.config.detect_max_side)
            else:
                out.info = media.probe(item.path, limits=self._limits, sha256=False)  # hashed already
        except Exception as exc:  # noqa: BLE001 - every failure becomes this file's error record
            out.error = exc
        out.load_ms = (time.perf_counter() - t0) * 1000
        out.loaded_at = time.monotonic()
        self._add_total("load", out.load_ms)
        return out

    def _scan_chunk(
        self,
        loader: WorkerPool,
        pool: WorkerPool,
        chunk: list[InputItem],
        loads: dict[int, tuple[Future, list]] | None,
    ) -> dict[int, FileResult]:
        cfg = self.config
        results: dict[int, FileResult] = {}
        images: list[_Loaded] = []
        videos: list[_Loaded] = []
        for item in chunk:
            if item.error is not None:
                results[id(item)] = FileResult(
                    path=item.path, status="error", error=item.error, error_type=item.error_type or "InputError"
                )
                continue
            if item.duplicate_of is not None:
                continue
            fut, started = (loads or {})[id(item)]
            if cfg.timeout_s is not None:
                # still queued behind other decodes: its clock starts when its own work does. Loads start in
                # submission order, so what runs ahead of it is an earlier file of this chunk, already waited for
                # (and abandoned and replaced if it was stuck): this wait ends.
                while not started and not fut.done():
                    time.sleep(0.005)
            deadline = Deadline(item.path, cfg.timeout_s, start=started[0] if started else None)
            try:
                loaded = deadline.wait(loader, fut, "while sniffing, opening or decoding")
            except ScanTimeoutError as exc:
                results[id(item)] = _error_result(item.path, exc, item)
                continue
            loaded.deadline = deadline
            if loaded.error is not None:
                results[id(item)] = _error_result(item.path, loaded.error, item)
            elif loaded.kind == "image":
                images.append(loaded)
            else:
                videos.append(loaded)
        if images:
            for ld in images:
                ld.deadline.pause_since(ld.loaded_at)
            for ld, res in zip(images, self._scan_images(pool, images)):
                results[id(ld.item)] = res
        for ld in videos:
            ld.deadline.pause_since(ld.loaded_at)
            try:
                results[id(ld.item)] = self._scan_video(pool, ld, ld.deadline)
            except Exception as exc:  # noqa: BLE001
                results[id(ld.item)] = _error_result(ld.item.path, exc, ld.item)
        return results

    def _scan_images(self, pool: WorkerPool, images: list[_Loaded]) -> list[FileResult]:
        cfg = self.config
        try:
            detections, det_ms = self._detect([ld.det_image for ld in images])
        except Exception as exc:  # noqa: BLE001 - a detector crash must not stop the batch
            if len(images) == 1:
                return [_error_result(images[0].item.path, exc, images[0].item)]
            # nor fail the chunk mates of the one image it choked on: again one by one
            return [res for ld in images for res in self._scan_images(pool, [ld])]
        t0 = time.perf_counter()
        crops: list[np.ndarray] = []
        owners: list[tuple[int, Any, bool, bool]] = []  # (image index, face or None, aligned, no_face)
        for i, (ld, faces) in enumerate(zip(images, detections)):
            for c in crop_faces(ld.pixels, [_rescaled(f, ld.det_scale) for f in faces], self.spec):
                crops.append(c.pixels)
                owners.append((i, c.face, c.aligned, c.no_face))
        align_ms = (time.perf_counter() - t0) * 1000
        self._add_total("align", align_ms)
        try:
            probs, model_ms = self._predict(crops)
        except Exception as exc:  # noqa: BLE001
            return [_error_result(ld.item.path, exc, ld.item) for ld in images]
        per_image: list[list[FaceResult]] = [[] for _ in images]
        crop_share = [0] * len(images)
        for (i, f, aligned, no_face), crop, p in zip(owners, crops, probs):
            ws = images[i].work_scale  # boxes are reported in the file's own pixel coordinates
            h, w = images[i].pixels.shape[0] / ws, images[i].pixels.shape[1] / ws
            fr = FaceResult(
                index=len(per_image[i]),
                box=[v / ws for v in f.box] if f is not None else [0.0, 0.0, float(round(w)), float(round(h))],
                frame=0,
                time_s=0.0,
                track=len(per_image[i]),
                fake_probability=float(p),
                verdict=self.policy.verdict(float(p)) or VERDICT_CLEAR,
                detection_prob=float(f.prob) if f is not None else None,
                aligned=aligned,
                no_face=no_face,
                crop=crop,
            )
            per_image[i].append(fr)
            crop_share[i] += 1
        # file-scope evidence for each image runs in the pool while Grad-CAM runs here
        ev_futs = [
            pool.submit(self._file_evidence, ld.item.path, "image", ld.pixels,
                        [[v * ld.work_scale for v in fr.box] for fr in fs if not fr.no_face], ld.info, ld.work_scale)
            for ld, fs in zip(images, per_image)
        ]  # fmt: skip
        out = []
        n_imgs, n_crops = len(images), max(1, len(crops))
        for i, ld in enumerate(images):
            try:  # the file's deadline covers detection, the model and evidence too, not just its decode
                ld.deadline.check("during face detection and scoring")
                t_face = time.perf_counter()
                self._face_evidence(per_image[i])
                face_ev_ms = (time.perf_counter() - t_face) * 1000
                ld.deadline.check("during Grad-CAM evidence")
                file_ev, file_ev_ms = ld.deadline.wait(pool, ev_futs[i], "during evidence analyses")
            except ScanTimeoutError as exc:
                ev_futs[i].cancel()
                out.append(_error_result(ld.item.path, exc, ld.item))
                continue
            faces = per_image[i]
            p_file = max(fr.fake_probability for fr in faces)
            res = self._base_result(ld)
            res.faces = faces
            res.no_face = faces[0].no_face
            res.fake_probability = p_file
            res.verdict = self.policy.verdict(p_file)
            res.aggregation = "whole-image centre crop (no face found)" if res.no_face else "max over faces"
            res.frames_sampled = 1
            res.evidence = file_ev
            share = crop_share[i] / n_crops
            res.timings_ms = _timings(
                load=ld.load_ms, detect=det_ms / n_imgs, align=align_ms * share, model=model_ms * share,
                evidence=file_ev_ms + face_ev_ms,
            )  # fmt: skip
            if cfg.keep_images:
                res.thumbnail = _thumbnail(ld.pixels)
            else:
                for fr in faces:
                    fr.crop = None
            out.append(res)
        return out

    def _base_result(self, ld: _Loaded) -> FileResult:
        info = ld.info
        return FileResult(
            path=ld.item.path,
            sha256=ld.item.sha256 or getattr(info, "sha256", ""),
            size_bytes=ld.item.size_bytes or getattr(info, "size_bytes", 0),
            media_type=ld.kind,
            width=getattr(info, "width", None),
            height=getattr(info, "height", None),
            model=dict(self.model_info),
            threshold={"policy": self.policy.policy, "value": self.policy.value},
        )

    # -- evidence -----------------------------------------------------------------------------------------------
    def _file_evidence(
        self, path: str, kind: str, pixels: np.ndarray, boxes: list, info: Any, scale: float = 1.0
    ) -> tuple[list[EvidenceResult], float]:
        t0 = time.perf_counter()
        names = self.config.evidence
        if not names:
            return [], 0.0
        subject = EvidenceSubject(
            path=path, media_type=kind, pixels=pixels, face_boxes=[tuple(b) for b in boxes],
            container=str(getattr(info, "container", "") or ""), exif=dict(getattr(info, "exif", {}) or {}),
            pixel_scale=scale,
        )  # fmt: skip
        res = run_file_evidence(names, subject)
        if not self.config.keep_images:
            for r in res:
                r.heatmap = None
        ms = (time.perf_counter() - t0) * 1000
        self._add_total("evidence", ms)
        return res, ms

    def _face_evidence(self, faces: list[FaceResult]) -> None:
        names = [n for n in self.config.evidence if _is_face_scope(n)]
        if not names:
            return
        t0 = time.perf_counter()
        ranked = sorted((f for f in faces if f.crop is not None), key=lambda f: -f.fake_probability)
        for fr in ranked[: self.config.explain_faces]:
            fr.evidence = run_face_evidence(names, fr.crop, self.model)
            if not self.config.keep_images:
                for e in fr.evidence:
                    e.heatmap = None
        self._add_total("evidence", (time.perf_counter() - t0) * 1000)

    # -- video --------------------------------------------------------------------------------------------------
    def _scan_video(self, pool: WorkerPool, ld: _Loaded, deadline: Deadline) -> FileResult:
        from forensics import media
        from forensics.faces import IoUTracker

        cfg = self.config
        info = ld.info
        fps = cfg.fps
        duration = getattr(info, "duration_s", None)
        if duration and duration > 0 and cfg.max_frames / duration < fps:
            fps = cfg.max_frames / duration  # spread the frame budget over the whole clip
        tracker = IoUTracker()
        faces: list[FaceResult] = []
        fallback: list[tuple[int, float, np.ndarray]] = []
        best: tuple[float, np.ndarray | None, list] = (-1.0, None, [])  # (max p, frame pixels, boxes)
        first_frame: np.ndarray | None = None
        det_ms = model_ms = align_ms = 0.0
        sampled = 0
        frames = media.iter_frames(ld.item.path, fps=fps, limits=self._limits)
        stuck = False
        try:
            for batch in _batched(_decoded_in(pool, frames, deadline), cfg.batch, limit=cfg.max_frames):
                deadline.check(f"after {sampled} sampled frames")
                sampled += len(batch)
                if first_frame is None:
                    first_frame = batch[0].pixels.copy()
                small = [_downscale(fr.pixels, cfg.detect_max_side) for fr in batch]
                dets, ms = self._detect([s[0] for s in small])
                det_ms += ms
                t0 = time.perf_counter()
                crops, meta = [], []
                for fr, (_, s), fs in zip(batch, small, dets):
                    fs = [_rescaled(f, s) for f in fs]
                    ids = tracker.update([f.box for f in fs])
                    if fs:
                        for c, tid in zip(crop_faces(fr.pixels, fs, self.spec), ids):
                            crops.append(c.pixels)
                            meta.append((fr, c.face, tid, c.aligned))
                    elif len(fallback) < FALLBACK_VIDEO_CROPS:  # the whole-frame centre crop
                        fallback.append((fr.index, float(fr.time_s), crop_faces(fr.pixels, [], self.spec)[0].pixels))
                align_ms += (time.perf_counter() - t0) * 1000
                probs, ms = self._predict(crops)
                model_ms += ms
                frame_best: dict[int, tuple[float, Any]] = {}
                for (fr, f, tid, aligned), crop, p in zip(meta, crops, probs):
                    faces.append(
                        FaceResult(
                            index=len(faces), box=list(f.box), frame=int(fr.index), time_s=float(fr.time_s),
                            track=int(tid), fake_probability=float(p), verdict=self.policy.verdict(float(p)) or "",
                            detection_prob=float(f.prob), aligned=aligned, crop=crop,
                        )
                    )  # fmt: skip
                    if p > frame_best.get(fr.index, (-1.0, None))[0]:
                        frame_best[fr.index] = (float(p), fr)
                for p, fr in frame_best.values():
                    if p > best[0]:
                        boxes = [fc.box for fc in faces if fc.frame == fr.index]
                        best = (p, fr.pixels.copy(), boxes)
                _drop_crops_beyond_top(faces, cfg.explain_faces)  # memory: keep only the crops Grad-CAM may use
        except ScanTimeoutError:
            stuck = True
            raise
        finally:
            if not stuck:  # a decoder abandoned mid-frame still runs in its worker: closing it there would race
                frames.close()
        if sampled == 0:
            raise media.TruncatedMediaError(ld.item.path, "no decodable video frame")
        deadline.check("during face detection and scoring")
        res = self._base_result(ld)
        res.frames_sampled = sampled
        if faces:
            by_track: dict[int, list[FaceResult]] = {}
            for fc in faces:
                by_track.setdefault(fc.track, []).append(fc)
            for tid, fs in sorted(by_track.items()):
                p = top_half_mean([fc.fake_probability for fc in fs])
                res.tracks.append(
                    TrackResult(tid, len(fs), fs[0].frame, fs[-1].frame, p, self.policy.verdict(p) or VERDICT_CLEAR)
                )
            long_tracks = [t for t in res.tracks if t.n_faces >= cfg.min_track_faces] or res.tracks
            res.fake_probability = max(t.fake_probability for t in long_tracks)
            res.aggregation = (
                f"video: per-track mean of top half of frame probabilities; max over tracks with >= "
                f"{cfg.min_track_faces} faces"
            )
        else:
            probs, ms = self._predict([c for _, _, c in fallback])
            model_ms += ms
            h, w = first_frame.shape[:2] if first_frame is not None else (0, 0)
            for (idx, t, crop), p in zip(fallback, probs):
                faces.append(
                    FaceResult(
                        index=len(faces), box=[0.0, 0.0, float(w), float(h)], frame=idx, time_s=t, track=-1,
                        fake_probability=float(p), verdict=self.policy.verdict(float(p)) or "", aligned=False,
                        no_face=True, crop=crop,
                    )
                )  # fmt: skip
            res.no_face = True
            res.fake_probability = top_half_mean(probs) if len(probs) else None
            res.aggregation = "video without faces: mean of top half of whole-frame centre-crop probabilities"
            _drop_crops_beyond_top(faces, cfg.explain_faces)
        res.faces = faces
        res.verdict = self.policy.verdict(res.fake_probability)
        rep = best[1] if best[1] is not None else first_frame
        t_ev = time.perf_counter()
        self._face_evidence(faces)
        ev_ms = (time.perf_counter() - t_ev) * 1000
        if rep is not None and cfg.evidence:
            deadline.check("before evidence")
            fut = pool.submit(self._file_evidence, ld.item.path, "video", rep, best[2], info)
            file_ev, ms = deadline.wait(pool, fut, "during evidence analyses")
            res.evidence, ev_ms = file_ev, ev_ms + ms
        if cfg.keep_images and rep is not None:
            res.thumbnail = _thumbnail(rep)
        if not cfg.keep_images:
            for fc in faces:
                fc.crop = None
        res.timings_ms = _timings(load=ld.load_ms, detect=det_ms, align=align_ms, model=model_ms, evidence=ev_ms)
        return res

    def _duplicate(self, item: InputItem, first: FileResult | None) -> FileResult:
        threshold = {"policy": self.policy.policy, "value": self.policy.value}
        return duplicate_result(item, first, self.model_info, threshold)


def duplicate_result(
    item: InputItem, first: FileResult | None, model_info: dict[str, str], threshold: dict[str, Any]
) -> FileResult:
    """A copy of the first file's record for a byte-identical file: same bytes, same answer, no second scan."""
    if first is None:  # the first copy failed: the duplicate fails the same way, without re-trying
        return FileResult(
            path=item.path, sha256=item.sha256, size_bytes=item.size_bytes, status="error",
            error=f"{item.path}: duplicate of {item.duplicate_of}, which could not be scanned",
            error_type="DuplicateOfFailedError", duplicate_of=item.duplicate_of, model=dict(model_info),
            threshold=dict(threshold),
        )  # fmt: skip
    res = FileResult.from_dict(first.to_dict())
    res.path, res.duplicate_of = item.path, item.duplicate_of
    res.timings_ms = _timings()
    return res


def _is_face_scope(name: str) -> bool:
    from forensics.evidence import EVIDENCE

    return EVIDENCE.get(name).meta.get("scope") == "face"


def _drop_crops_beyond_top(faces: list[FaceResult], keep: int) -> None:
    with_crop = [f for f in faces if f.crop is not None]
    if len(with_crop) <= keep:
        return
    for f in sorted(with_crop, key=lambda f: -f.fake_probability)[keep:]:
        f.crop = None


def _compact(res: FileResult) -> bytes:
    """What duplicates need from the first copy, small enough to keep for every unique file of a long run.

    The record without evidence payloads, zlib-compressed: typically 200-400 bytes per file, so the duplicate index
    of a million-file scan stays in the hundreds of megabytes at worst.
    """
    import json
    import zlib

    d = res.to_dict()
    d["evidence"] = []
    for f in d["faces"]:
        f["evidence"] = []
    return zlib.compress(json.dumps(d, separators=(",", ":")).encode("utf-8"))


def _uncompact(blob: bytes | None) -> FileResult | None:
    import json
    import zlib

    return None if blob is None else FileResult.from_dict(json.loads(zlib.decompress(blob)))


def _timings(**parts: float) -> dict[str, float]:
    keys = ("load", "detect", "align", "model", "evidence")
    out = {k: float(parts.get(k, 0.0)) for k in keys}
    out["total"] = sum(out.values())
    return out


def _chunked(items: Iterable[InputItem], n: int) -> Iterator[list[InputItem]]:
    chunk: list[InputItem] = []
    for it in items:
        chunk.append(it)
        if len(chunk) >= n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _decoded_in(pool: WorkerPool, frames: Iterator[Any], deadline: Deadline) -> Iterator[Any]:
    """``frames`` with every ``next`` (demux + decode, where a hostile video spends its time) run in a worker and
    bounded by the file's deadline, so a decoder stuck inside FFmpeg is abandoned instead of stalling the scan."""
    end = object()
    while True:
        frame = deadline.wait(pool, pool.submit(next, frames, end), "while decoding video frames")
        if frame is end:
            return
        yield frame


def _batched(frames: Iterable[Any], n: int, limit: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for count, fr in enumerate(frames, start=1):
        batch.append(fr)
        if len(batch) >= n or count >= limit:
            yield batch
            batch = []
        if count >= limit:
            return
    if batch:
        yield batch


# ---------------------------------------------------------------------------------------------------------------
# Python API
# ---------------------------------------------------------------------------------------------------------------
def scan(
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    model: Any = "default",
    *,
    engine: str = "local",
    follow_symlinks: bool = False,
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
