"""Typed values and errors of :mod:`forensics_core.media`: limits, metadata, decoded images and frames.

Kept free of heavy imports (no PyAV, no Pillow) so that error types can be caught anywhere without paying for the
decoders.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forensics_core.errors import ForensicsError

GiB = 1 << 30
MiB = 1 << 20


# -- errors ------------------------------------------------------------------------------------------------------
class MediaError(ForensicsError):
    """A media file could not be used. The message is one line: ``<path>: <cause>``."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{path}: {cause}")


class UnreadableMediaError(MediaError):
    """The bytes cannot be read at all: missing file, directory, permission denied, empty file, I/O error."""


class UnsupportedMediaError(MediaError):
    """The content is not a supported image or video (text renamed ``.jpg``, PDF, audio-only MP4, HEIC without
    a decoder, ...). The message names the type that was detected from the content."""


class TruncatedMediaError(MediaError):
    """The file starts like a supported format but its data is cut short or corrupt (an interrupted upload, a
    broken stream, a container whose video track holds no decodable frame)."""


class MediaTooLargeError(MediaError):
    """A declared or actual size exceeds a :class:`MediaLimits` bound (file bytes, pixels, frames, duration).
    Raised *before* decoding whenever the header declares the size, so decompression bombs cost nothing."""


# -- limits ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MediaLimits:
    """Bounds that keep a hostile or accidental file from exhausting memory, disk or time.

    Defaults suit a moderation pipeline: any phone photo or camera RAW-to-JPEG export (up to ~50 MP) and any
    ordinary upload video (up to 3 hours of 4K) pass; decompression bombs, gigapixel scans and endless streams do
    not. ``max_image_bytes`` is separate because an image is read into memory whole (so its hash and its decode
    see the same bytes), while a video is streamed.
    """

    max_bytes: int = 2 * GiB  # any file, checked with stat() before a byte is read
    max_pixels: int = 80_000_000  # width * height of an image or of one video frame (80 MP)
    max_frames: int = 324_000  # decoded video frames (3 h at 30 fps)
    max_duration_s: float = 3 * 3600.0  # video duration
    max_image_bytes: int = 256 * MiB  # still images are read whole into memory

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_frames", "max_duration_s", "max_image_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"MediaLimits.{name} must be positive")


DEFAULT_LIMITS = MediaLimits()


# -- results -----------------------------------------------------------------------------------------------------
@dataclass
class MediaInfo:
    """What a file is, from its header (``probe``) or from decoding (``load_image``).

    ``width``/``height`` are display dimensions: EXIF orientation (images) and the display matrix (videos) are
    already applied, so they match the pixels the loaders return. ``n_frames`` is exact when
    ``n_frames_exact`` is true; otherwise it is estimated from duration x fps (containers that do not index frames).
    """

    path: str
    kind: str  # 'image' | 'video'
    container: str  # sniffed format: 'jpeg', 'png', 'mp4', 'mov', 'mkv', 'webm', 'gif', ...
    codec: str  # 'jpeg', 'png', 'h264', 'vp9', 'gif', ...
    width: int
    height: int
    sha256: str
    size_bytes: int
    fps: float | None = None
    n_frames: int = 1
    duration_s: float | None = None
    exif: dict[str, Any] = field(default_factory=dict)
    has_audio: bool = False
    n_frames_exact: bool = True
    orientation: int = 1  # EXIF orientation tag (1 = upright) or 1 for videos
    rotation: int = 0  # degrees clockwise applied to video frames from the display matrix
    has_xmp: bool = False
    audio_codec: str | None = None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class LoadedImage:
    """Decoded pixels (H x W x 3, uint8, RGB, orientation applied) plus the file's metadata."""

    pixels: np.ndarray
    info: MediaInfo


@dataclass
class Frame:
    """One decoded video frame. ``index`` counts decoded frames from 0; ``time_s`` is its presentation time
    relative to the start of the stream."""

    index: int
    time_s: float
    pixels: np.ndarray


@contextmanager
def typed_errors(path: str | Path) -> Iterator[None]:
    """Last line of defence for hostile input: any unexpected decoder exception becomes a typed MediaError.

    Pillow plugins and FFmpeg wrappers raise a zoo of exceptions on malformed data (AttributeError on a missing
    codec context, struct.error, zlib.error, ...). The specific cases are mapped where they happen; this keeps a
    batch from dying on the ones nobody foresaw. The original traceback is logged at debug level.
    """
    try:
        yield
    except (ForensicsError, StopIteration, GeneratorExit):
        raise
    except MemoryError:
        raise MediaTooLargeError(path, "out of memory while decoding") from None
    except Exception as exc:
        logging.getLogger("forensics_core.media").debug("unexpected decoder error on %s", path, exc_info=True)
        raise TruncatedMediaError(path, f"corrupt or undecodable content ({type(exc).__name__}: {exc})") from None
