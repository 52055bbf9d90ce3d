"""Every knob of a scan (:class:`ScanConfig`) and which model it runs (:func:`resolve_model`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from forensics.evidence import resolve_evidence
from forensics_core.config import ASSETS_DIR
from forensics_core.errors import ModelFileError, UsageError
from forensics_core.thresholds import parse_threshold


@dataclass
class ScanConfig:
    """Every knob of a scan; the CLI options map 1:1 onto these fields."""

    threshold: str | float | None = None  # None: the model's default (forensics_core.thresholds.DEFAULT_POLICIES)
    evidence: str | list[str] = "all"
    device: str = "auto"
    batch: int = 16  # files per chunk (images) / frames per detector call (videos) / crops per forward
    workers: int = 2  # threads for decoding and file evidence
    timeout_s: float | None = 300.0  # per file; None = no limit
    fps: float = 1.0  # sampled frames per second of video
    max_frames: int = 32  # sampled frames per video (sampling rate lowered to cover the whole clip)
    max_faces: int = 8  # most confident faces per image / frame
    # the face stage (issue #34; why these defaults: forensics_core.faces.FastMTCNNDetector and docs/faces.md)
    face_detector: str = "mtcnn-fast"
    # images / frames are downscaled to this for detection, faces are cut at full resolution: 1920 keeps a 1080p
    # frame whole (its 25 px faces were lost at 1024) and bounds the pyramid of larger photos
    detect_max_side: int = 1920
    detect_every: int = 1  # videos: full detection every N sampled frames, faces followed in between
    work_max_side: int = 4096  # decoded images larger than this are downscaled once (bounds memory per chunk)
    min_track_faces: int = 2
    explain_faces: int = 4  # faces per file that get Grad-CAM (the most suspicious ones)
    keep_images: bool = False  # keep thumbnails / crops / heatmaps for the HTML report
    follow_symlinks: bool = False
    max_pixels: int | None = None  # overrides MediaLimits.max_pixels
    max_bytes: int | None = None  # overrides MediaLimits.max_bytes
    threads: int | None = None  # torch intra-op threads (None = torch's default: all cores)

    def __post_init__(self) -> None:
        positive = ("batch", "workers", "max_frames", "max_faces", "min_track_faces", "detect_every", "detect_max_side")
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be >= 1")
        if self.fps <= 0:
            raise UsageError(f"--fps {self.fps}: must be > 0")
        if self.timeout_s is not None and self.timeout_s <= 0:
            self.timeout_s = None
        self.evidence = resolve_evidence(self.evidence)
        self.threshold = parse_threshold(self.threshold)  # canonical name or a number; a typo fails before the model

    def limits(self):
        from forensics_core.media import MediaLimits

        kw: dict[str, Any] = {}
        if self.max_pixels:
            kw["max_pixels"] = int(self.max_pixels)
        if self.max_bytes:
            kw["max_bytes"] = int(self.max_bytes)
        return MediaLimits(**kw)


DEFAULT_MODEL_DIR = ASSETS_DIR / "models" / "default"  # where detectors.default_model installs it


def _require_default(model: str | os.PathLike[str]) -> None:
    if str(model) == "default" and not (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        raise ModelFileError("no default model shipped; pass --model FILE")


def check_model(model: Any, threshold: str | float | None) -> dict[str, Any]:
    """The card of ``model`` (a path, an installed name or ``default``), with ``threshold`` checked against its
    presets, torch-free: a typo fails here in a fraction of a second instead of after torch and the weights load,
    or in every worker process. ``{}`` for an already loaded model."""
    from detectors.modelfile import check_weights_file, model_files, read_card
    from forensics_core.thresholds import FALLBACK_THRESHOLDS, ThresholdPolicy

    if not isinstance(model, (str, os.PathLike)):
        return {}
    _require_default(model)
    weights, model_dir = model_files(model)
    check_weights_file(weights)  # as load_model will: no pickles
    card = read_card(model_dir)
    ThresholdPolicy.resolve(threshold, dict(card.get("thresholds") or FALLBACK_THRESHOLDS))
    return card


def resolve_model(model: Any = "default", device: str = "auto") -> Any:
    """A loaded ``detectors.modelfile.Model`` from a Model, a path or ``'default'`` (with a clear error if absent)."""
    if not isinstance(model, (str, os.PathLike)):
        return model
    _require_default(model)
    from detectors.modelfile import load_model

    return load_model(str(model), device=device)
