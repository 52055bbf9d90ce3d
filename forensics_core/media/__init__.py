"""``forensics_core.media``: the one safe loader for images and videos.

A moderation pipeline feeds this module files it does not trust. Every entry point therefore

* decides the type from the content (magic bytes, :mod:`forensics_core.media.sniff`), never from the extension;
* checks the file size with ``stat`` before reading and the *declared* pixel / frame / duration counts before
  decoding (:class:`MediaLimits`), so decompression bombs and endless streams are refused cheaply;
* raises a :class:`MediaError` subclass whose one-line message names the file and the cause.

Images go through Pillow (EXIF orientation applied, first frame of animations), videos through PyAV / FFmpeg
(streamed, bounded memory). Limits and formats are documented in ``docs/media.md``.

``iter_frames`` never raises for *too many* frames or *too long* a video: it stops at the limit and sets
``truncated`` on the returned :class:`FrameStream` (a scan can still score what it saw). ``probe`` raises
:class:`MediaTooLargeError` for the same declared values, so a caller that must see everything probes first.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from forensics_core.errors import UsageError
from forensics_core.media.image import load_image, probe_image
from forensics_core.media.sniff import MEDIA_FORMATS, FormatSpec, detect_format, sniff, sniff_format
from forensics_core.media.types import (
    DEFAULT_LIMITS,
    Frame,
    LoadedImage,
    MediaError,
    MediaInfo,
    MediaLimits,
    MediaTooLargeError,
    TruncatedMediaError,
    UnreadableMediaError,
    UnsupportedMediaError,
    typed_errors,
)
from forensics_core.media.video import MUXERS, write_video
from forensics_core.plumbing import Closing

__all__ = [
    "DEFAULT_LIMITS",
    "MEDIA_FORMATS",
    "MUXERS",
    "FormatSpec",
    "Frame",
    "FrameStream",
    "LoadedImage",
    "MediaError",
    "MediaInfo",
    "MediaLimits",
    "MediaTooLargeError",
    "TruncatedMediaError",
    "UnreadableMediaError",
    "UnsupportedMediaError",
    "detect_format",
    "iter_frames",
    "load_image",
    "probe",
    "sniff",
    "sniff_format",
    "write_video",
]

log = logging.getLogger(__name__)


def probe(
    path: str | Path, limits: MediaLimits | None = None, *, sha256: bool = True, count_frames: bool = False
) -> MediaInfo:
    """Metadata of an image or video without decoding it whole.

    Raises :class:`MediaTooLargeError` when the file, its declared pixels, frames or duration exceed ``limits``.
    For videos one frame is decoded to prove the stream is usable; ``count_frames`` demuxes the whole file for an
    exact frame count when the container does not store one; ``sha256=False`` skips hashing a large video.
    Animated GIF / APNG / WebP come back with ``kind='video'``, like :func:`sniff` says.
    """
    limits = limits or DEFAULT_LIMITS
    with typed_errors(path):
        spec = sniff_format(path, limits)
        if spec.kind == "image":
            return probe_image(path, limits)
        from forensics_core.media.video import probe_video

        return probe_video(path, spec, limits, sha256=sha256, count_frames=count_frames)


class _Sampler:
    """Which decoded frames to yield: every N-th (``every``) or the first frame of each 1/F-second slot (``fps``)."""

    def __init__(self, every: int, fps: float | None) -> None:
        self.every, self.fps, self._slot = every, fps, -1

    def want(self, index: int, t: float) -> bool:
        if self.fps is None:
            return index % self.every == 0
        slot = math.floor(t * self.fps + 1e-6)
        if slot > self._slot:
            self._slot = slot
            return True
        return False


class FrameStream(Closing, Iterator[Frame]):
    """The iterator :func:`iter_frames` returns: frames one at a time plus how the iteration ended.

    ``truncated`` is true (and ``stop_reason`` says why) when ``max_frames`` or ``max_duration_s`` stopped the
    decoding before the end of the file. ``n_decoded`` counts decoded frames, sampled or not. Closing the stream
    (or leaving a ``with`` block) releases the decoder early.
    """

    def __init__(
        self,
        path: str | Path,
        source: Iterator[tuple[float, Callable[[], Any]]],
        sampler: _Sampler,
        limits: MediaLimits,
    ) -> None:
        self.path = str(path)
        self._source, self._sampler, self._limits = source, sampler, limits
        self.n_decoded = 0
        self.n_yielded = 0
        self.truncated = False
        self.stop_reason: str | None = None
        self._done = False

    def __iter__(self) -> FrameStream:
        return self

    def close(self) -> None:
        self._done = True
        close = getattr(self._source, "close", None)
        if close is not None:
            close()

    def _stop(self, reason: str) -> None:
        self.truncated, self.stop_reason = True, reason
        log.warning("%s: stopped after %d frames: %s", self.path, self.n_decoded, reason)
        self.close()

    def __next__(self) -> Frame:
        while not self._done:
            if self.n_decoded >= self._limits.max_frames:
                self._stop(f"max_frames={self._limits.max_frames} reached")
                break
            try:
                with typed_errors(self.path):
                    t, get = next(self._source)
            except StopIteration:
                self.close()
                if self.n_decoded == 0:
                    raise TruncatedMediaError(self.path, "no decodable video frames") from None
                break
            if t > self._limits.max_duration_s:
                self._stop(f"max_duration_s={self._limits.max_duration_s:g} reached")
                break
            index = self.n_decoded
            self.n_decoded += 1
            if self._sampler.want(index, t):
                self.n_yielded += 1
                with typed_errors(self.path):
                    pixels = get()
                return Frame(index=index, time_s=t, pixels=pixels)
        raise StopIteration


def iter_frames(
    path: str | Path, every: int = 1, fps: float | None = None, limits: MediaLimits | None = None
) -> FrameStream:
    """Stream RGB frames of a video (or animated image; a still image gives one frame) with bounded memory.

    ``every=N`` yields decoded frames 0, N, 2N, ...; ``fps=F`` yields about F frames per second of media time
    (the first frame of each 1/F slot). ``Frame.index`` is always the decoded-frame index, so results can be
    mapped back to the source. Errors: the typed :class:`MediaError` subclasses; limits stop the stream and set
    ``FrameStream.truncated`` instead of raising (see the module docstring).
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise UsageError(f"{path}: every must be an integer >= 1, got {every!r}")
    if fps is not None and (not math.isfinite(fps) or fps <= 0):
        raise UsageError(f"{path}: fps must be positive, got {fps}")
    if fps is not None and every != 1:
        raise UsageError(f"{path}: give either every or fps, not both")
    limits = limits or DEFAULT_LIMITS
    spec = sniff_format(path, limits)
    if spec.kind == "image":
        from forensics_core.media.image import iter_image_frames

        source = iter_image_frames(path, limits)
    else:
        from forensics_core.media.video import iter_video_frames

        source = iter_video_frames(path, spec, limits)
    return FrameStream(path, source, _Sampler(every, fps), limits)
