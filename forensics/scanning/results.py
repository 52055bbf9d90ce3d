"""The scan's result schema: one :class:`FileResult` per file (``docs/scan-output.md`` pins its ``to_dict``),
with its faces and video tracks; error and duplicate records; the threshold-policy warning a scan logs."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from forensics.evidence import EvidenceResult
from forensics_core.errors import ForensicsError
from forensics_core.inputs import InputItem
from forensics_core.thresholds import VERDICT_FLAGGED

#: the scan's logger name is what users filter on (``WARNING forensics.pipeline: ...``); kept from before the split
log = logging.getLogger("forensics.pipeline")

SCHEMA_VERSION = "1.0"


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
    aligned: bool = True  # False: box or native crop (model policy, approximate landmarks) or no-face fallback
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


def error_result(path: str, exc: BaseException, item: InputItem | None = None) -> FileResult:
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


def listing_error_result(item: InputItem) -> FileResult:
    """The record of an input that failed while the inputs were listed or hashed (``item.error``): no scanner
    opens it. One place for every engine, so their records of the same bad input are the same."""
    return FileResult(path=item.path, status="error", error=item.error, error_type=item.error_type or "InputError")


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
    res.timings_ms = timings()
    return res


def compact(res: FileResult) -> bytes:
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


def uncompact(blob: bytes | None) -> FileResult | None:
    import json
    import zlib

    return None if blob is None else FileResult.from_dict(json.loads(zlib.decompress(blob)))


def timings(**parts: float) -> dict[str, float]:
    keys = ("load", "detect", "align", "model", "evidence")
    out = {k: float(parts.get(k, 0.0)) for k in keys}
    out["total"] = sum(out.values())
    return out
