"""Face extraction from media files: the generator behind ``forensics faces extract`` (:func:`extract_faces`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from forensics_core.errors import UsageError
from forensics_core.faces.crops import CropSpec, canonical_landmarks, crop_faces
from forensics_core.faces.detectors import FaceDetector
from forensics_core.faces.tracking import IoUTracker
from forensics_core.faces.types import Face
from forensics_core.plumbing import batched


# --------------------------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------------------------
@dataclass
class ExtractConfig:
    """How faces are cut out of media. ``every``/``fps`` sample video frames (``fps`` wins when set)."""

    size: int = 224
    margin: float = 0.3
    every: int = 1
    fps: float | None = None
    max_faces: int | None = None
    batch_size: int = 8
    min_iou: float = 0.3
    max_age: int = 5

    def __post_init__(self) -> None:
        if self.every < 1:
            raise UsageError(f"--every {self.every}: must be >= 1")
        if self.fps is not None and self.fps <= 0:
            raise UsageError(f"--fps {self.fps}: must be > 0")
        if self.max_faces is not None and self.max_faces < 1:
            raise UsageError(f"--max-faces {self.max_faces}: must be >= 1")
        canonical_landmarks(self.size, self.margin)  # validates size and margin


@dataclass
class ExtractedFace:
    """An aligned crop plus where it came from: enough to write a manifest row or to score it."""

    crop: np.ndarray
    face: Face
    source: str
    source_sha256: str
    kind: str  # "image" | "video"
    frame: int
    time_s: float
    track: int


def _aligned(image: np.ndarray, face: Face, cfg: ExtractConfig) -> np.ndarray:
    return crop_faces(image, [face], CropSpec(cfg.size, "align", cfg.margin), align_approx=True)[0].pixels


def extract_faces(
    path: str | os.PathLike[str],
    detector: FaceDetector,
    cfg: ExtractConfig | None = None,
    limits: Any = None,
) -> Iterator[ExtractedFace]:
    """Yield the aligned faces of one image or video.

    Images give track ids ``0..n-1`` in order of confidence. Videos are streamed through
    ``forensics_core.media.iter_frames`` (bounded memory), detected in batches of ``cfg.batch_size`` frames and
    tracked with :class:`IoUTracker`. ``max_faces`` keeps the K most confident faces per image / frame.
    Raises :class:`forensics_core.media.MediaError` (one line naming the file) when the file cannot be read; faces
    already yielded for a video that breaks half-way remain valid.
    """
    from forensics_core import media

    cfg = cfg or ExtractConfig()
    p = str(path)
    kind = media.sniff(p)
    if kind == "image":
        loaded = media.load_image(p, limits=limits)
        faces = detector.detect([loaded.pixels])[0][: cfg.max_faces]
        for k, face in enumerate(faces):
            yield ExtractedFace(_aligned(loaded.pixels, face, cfg), face, p, loaded.info.sha256, kind, 0, 0.0, k)
        return
    info = media.probe(p, limits=limits)
    tracker = IoUTracker(cfg.min_iou, cfg.max_age)
    frames = media.iter_frames(p, every=cfg.every, fps=cfg.fps, limits=limits)
    for batch in batched(frames, cfg.batch_size):
        for fr, faces in zip(batch, detector.detect([f.pixels for f in batch])):
            faces = faces[: cfg.max_faces]
            ids = tracker.update([f.box for f in faces])
            for face, tid in zip(faces, ids):
                yield ExtractedFace(
                    _aligned(fr.pixels, face, cfg), face, p, info.sha256, kind, fr.index, float(fr.time_s), tid
                )


# Extensions treated as media when a directory is expanded. Only used to pick candidates inside directories; the
# type of every file is still decided from its bytes by ``forensics_core.media.sniff``.
MEDIA_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif", ".heic", ".heif"}
    | {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"}
)
