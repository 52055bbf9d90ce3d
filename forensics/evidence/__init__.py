"""Evidence analyses: each one looks at a file (or a face) from a different angle and returns a typed result.

Analyses are registered in :data:`EVIDENCE` (``@register_evidence("ela", scope="file")``) so the scan command,
the report and third-party plugins (entry-point group ``forensics.evidence``) all see the same list, and
``--evidence all|none|ela,jpeg`` resolves names through the registry instead of an ``if`` chain.

Every result is *evidence, not proof*: ``summary`` is a sentence an analyst can read out ("the face region
re-compresses differently from the background"), ``score`` is an analysis-specific strength in [0, 1] (or
``None`` when the analysis only reports facts, like metadata), and the heatmap, when there is one, is for the
report only (it is never written to JSON). Reports render these results; they never compute them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forensics_core.registry import Registry

SCOPES = ("file", "face")


@dataclass
class EvidenceSubject:
    """What a file-scope analysis gets: the decoded pixels plus where they came from.

    ``pixels`` is the image (or, for a video, the representative frame) as HxWx3 uint8 RGB. ``face_boxes`` are
    the detected faces in ``pixels`` coordinates so analyses can compare a face with its surroundings (spliced or
    generated faces often differ from the background in compression and noise).
    """

    path: str
    media_type: str  # 'image' | 'video'
    pixels: np.ndarray
    face_boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    container: str = ""
    exif: dict[str, Any] = field(default_factory=dict)
    pixel_scale: float = 1.0  # < 1 when ``pixels`` were downscaled from the file's own resolution
    #: each face's 5 landmarks (``(5, 2)``, ``pixels`` coordinates, in ``face_boxes`` order) when the caller has
    #: them: analyses that compare a face with its surround need its shape, and estimate it from the box without
    face_landmarks: list[np.ndarray] = field(default_factory=list)


@dataclass
class EvidenceResult:
    """One analysis' finding. ``details`` must be JSON-serialisable; ``heatmap`` (HxW float in [0,1]) is not."""

    name: str
    scope: str  # 'file' | 'face'
    score: float | None
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    heatmap: np.ndarray | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scope": self.scope,
            "score": None if self.score is None else round(float(self.score), 6),
            "summary": self.summary,
            "details": _jsonable(self.details),
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvidenceResult:
        return cls(
            name=d["name"],
            scope=d.get("scope", "file"),
            score=d.get("score"),
            summary=d.get("summary", ""),
            details=d.get("details") or {},
            error=d.get("error"),
        )


FileAnalysis = Callable[[EvidenceSubject], EvidenceResult]
EVIDENCE: Registry[Callable[..., EvidenceResult]] = Registry(
    "evidence analysis",
    "forensics.evidence",
    (
        "forensics.evidence.gradcam",
        "forensics.evidence.ela",
        "forensics.evidence.noise",
        "forensics.evidence.spectrum",
        "forensics.evidence.jpeg",
        "forensics.evidence.metadata",
        "forensics.evidence.surround_noise",
        "forensics.evidence.boundary",
        "forensics.evidence.cooccurrence",
        "forensics.evidence.jpeg_grid",
    ),
)


def register_evidence(
    name: str,
    scope: str = "file",
    media: tuple[str, ...] = ("image", "video"),
    *,
    label: str | None = None,
    colour: bool = True,
    **meta: Any,
):
    """Decorator registering an analysis. ``scope='face'`` analyses are called as ``fn(face_crop, model)``.

    The registration is all the scan command and the report need to know about an analysis:
    ``description`` is its help line; ``label`` captions its heatmap in the HTML report (a file-scope analysis
    without a label has its heatmap left out of the report; a face-scope heatmap is overlaid on the face crop);
    ``colour=False`` shows the heatmap as grey levels (a log spectrum) instead of through the colour map;
    ``strength`` says what its ``score`` measures and when it reaches 1 (each analysis has its own scale: the
    report's legend prints this line, so a reader never compares an ELA 0.4 with a spectrum 0.4 as if alike).
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}")
    return EVIDENCE.register(name, scope=scope, media=media, label=label, colour=colour, **meta)


def list_evidence(pattern: str = "*") -> list[str]:
    return EVIDENCE.names(pattern)


def evidence_meta(name: str) -> dict[str, Any]:
    """The registration metadata of analysis ``name`` (``{}`` for a name no installed analysis has, e.g. a result
    read back from another installation's JSON), so a renderer never needs its own table of analyses."""
    return dict(EVIDENCE.get(name).meta) if name in EVIDENCE else {}


def evidence_help() -> str:
    """The ``--evidence`` option's help, listing every registered analysis in registration order."""
    names = ", ".join(EVIDENCE.names(sort=False))  # spaced, so the help wraps between names, not inside them
    return f"Evidence analyses: all, none, or a comma list ({names}). auto = all with --report, none otherwise."


def resolve_evidence(spec: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``'all'`` / ``'none'`` / ``'ela,jpeg'`` / a list -> validated analysis names (unknown names raise)."""
    if spec is None:
        return []
    if isinstance(spec, str):
        spec = spec.strip()
        if spec in ("", "none"):
            return []
        if spec == "all":
            return list_evidence()
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    names = []
    for s in spec:
        EVIDENCE.get(s)  # raises UnknownNameError with close matches
        if s not in names:
            names.append(s)
    return names


def run_file_evidence(names: list[str], subject: EvidenceSubject) -> list[EvidenceResult]:
    """Run the file-scope analyses among ``names``; one failing analysis becomes a result with ``error`` set."""
    out = []
    for name in names:
        entry = EVIDENCE.get(name)
        if entry.meta.get("scope") != "file" or subject.media_type not in entry.meta.get("media", ()):
            continue
        out.append(_guarded(name, "file", lambda e=entry: e.obj(subject)))
    return out


def run_face_evidence(names: list[str], face: np.ndarray, model: Any) -> list[EvidenceResult]:
    """Run the face-scope analyses (e.g. Grad-CAM) on one aligned face crop."""
    out = []
    for name in names:
        entry = EVIDENCE.get(name)
        if entry.meta.get("scope") != "face":
            continue
        out.append(_guarded(name, "face", lambda e=entry: e.obj(face, model)))
    return out


def _guarded(name: str, scope: str, fn: Callable[[], EvidenceResult]) -> EvidenceResult:
    try:
        return fn()
    except Exception as exc:  # an analysis bug or odd input must not cost the file its verdict
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())
        return EvidenceResult(name=name, scope=scope, score=None, summary="analysis failed", error=msg)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return round(v, 6) if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return obj
