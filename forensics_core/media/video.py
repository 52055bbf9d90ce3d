"""Videos through PyAV (FFmpeg): probing, streamed frame iteration with sampling, and H.264 writing.

PyAV is imported inside the functions so that ``import forensics_core.media`` stays cheap for image-only users.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from forensics_core.errors import UsageError
from forensics_core.hashing import hash_file
from forensics_core.media.sniff import FormatSpec, checked_size, open_for_read
from forensics_core.media.types import (
    MediaError,
    MediaInfo,
    MediaLimits,
    MediaTooLargeError,
    TruncatedMediaError,
    UnreadableMediaError,
    UnsupportedMediaError,
)

log = logging.getLogger(__name__)

# output extension -> (FFmpeg muxer, audio codecs that can be copied into it without re-encoding)
MUXERS: dict[str, tuple[str, frozenset[str]]] = {
    ".mp4": ("mp4", frozenset({"aac", "mp3", "alac", "opus", "ac3"})),
    ".m4v": ("mp4", frozenset({"aac", "mp3", "alac", "ac3"})),
    ".mov": ("mov", frozenset({"aac", "mp3", "alac", "pcm_s16le", "pcm_s24le", "ac3"})),
    ".mkv": ("matroska", frozenset({"aac", "mp3", "opus", "vorbis", "flac", "ac3", "pcm_s16le"})),
    ".avi": ("avi", frozenset({"mp3", "ac3", "pcm_s16le"})),
}


@contextmanager
def _open(path: str | Path, spec: FormatSpec) -> Iterator[Any]:
    """The demuxer over a file object from :func:`open_for_read`: FFmpeg never opens the path itself, so a FIFO or
    device swapped in for the file cannot block it."""
    import av

    with open_for_read(path) as fh:
        try:
            container = av.open(fh, mode="r", metadata_errors="ignore")
        except av.FFmpegError as exc:
            raise TruncatedMediaError(path, f"cannot parse {spec.description} ({_ffmsg(exc)})") from None
        with container:
            yield container


def _ffmsg(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _video_stream(container: Any, path: str | Path, spec: FormatSpec) -> Any:
    if not container.streams.video:
        what = "audio only" if container.streams.audio else "no streams"
        raise UnsupportedMediaError(path, f"{spec.description} has no video stream ({what})")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise TruncatedMediaError(path, f"{spec.description} video stream has no usable codec parameters")
    return stream


def _rate(stream: Any) -> float | None:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r:
            f = float(r)
            if math.isfinite(f) and 0 < f < 10_000:
                return f
    return None


def _check_dims(path: str | Path, w: int, h: int, limits: MediaLimits) -> None:
    if w * h > limits.max_pixels:
        raise MediaTooLargeError(
            path, f"video frames are {w}x{h} = {w * h / 1e6:.1f} MP, limit {limits.max_pixels / 1e6:.1f} MP"
        )


def _rotation(frame: Any) -> int:
    """Clockwise degrees to turn a decoded frame upright (phones store portrait video as rotated landscape).

    FFmpeg's display matrix angle is counter-clockwise; ``ffmpeg`` autorotation turns frames by its negative.
    """
    try:
        ccw = float(frame.rotation or 0)
    except Exception:
        return 0
    return int(round(-ccw / 90.0)) % 4 * 90


def _upright(pixels: np.ndarray, rotation: int) -> np.ndarray:
    # np.rot90 with k>0 turns counter-clockwise, so a clockwise turn is negative k
    return np.ascontiguousarray(np.rot90(pixels, k=-(rotation // 90))) if rotation else pixels


def _decode(container: Any, stream: Any, path: str | Path) -> Iterator[Any]:
    import av

    it = container.decode(stream)
    n = 0
    while True:
        try:
            frame = next(it)
        except StopIteration:
            return
        except av.FFmpegError as exc:
            raise TruncatedMediaError(
                path, f"video stream is corrupt or truncated after frame {n} ({_ffmsg(exc)})"
            ) from None
        n += 1
        yield frame


def probe_video(
    path: str | Path, spec: FormatSpec, limits: MediaLimits, *, sha256: bool = True, count_frames: bool = False
) -> MediaInfo:
    """Header-level facts plus one decoded frame (proves the stream decodes and gives the true frame size)."""
    size = checked_size(path, limits)
    with _open(path, spec) as container:
        stream = _video_stream(container, path, spec)
        cc = stream.codec_context
        _check_dims(path, cc.width or 0, cc.height or 0, limits)
        fps = _rate(stream)
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000  # AV_TIME_BASE
        if duration is not None and duration > limits.max_duration_s:
            raise MediaTooLargeError(path, f"duration {duration:.0f} s exceeds limit {limits.max_duration_s:.0f} s")
        n, exact = int(stream.frames or 0), bool(stream.frames)
        if not exact and duration and fps:
            n = int(round(duration * fps))
        if n > limits.max_frames:
            raise MediaTooLargeError(path, f"declares {n} frames, limit {limits.max_frames}")
        first = next(_decode(container, stream, path), None)
        if first is None:
            raise TruncatedMediaError(path, f"{spec.description} video stream has no decodable frames")
        _check_dims(path, first.width, first.height, limits)
        rotation = _rotation(first)
        w, h = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        if count_frames:
            container.seek(0)
            n = sum(1 for p in container.demux(stream) if p.size)
            exact = True
            if n > limits.max_frames:
                raise MediaTooLargeError(path, f"has {n} frames, limit {limits.max_frames}")
        audio = container.streams.audio[0] if container.streams.audio else None
        info = MediaInfo(
            path=str(path),
            kind="video",
            container=spec.name,
            codec=cc.name,
            width=w,
            height=h,
            sha256="",
            size_bytes=size,
            fps=fps,
            n_frames=n,
            duration_s=duration,
            has_audio=audio is not None,
            n_frames_exact=exact,
            rotation=rotation,
            audio_codec=audio.codec_context.name if audio else None,
            exif={k: v for k, v in (container.metadata or {}).items() if isinstance(v, str)},
        )
    if sha256:
        try:
            info.sha256 = hash_file(path, untrusted=True).sha256
        except OSError as exc:
            raise UnreadableMediaError(path, f"read error ({exc.strerror or exc})") from None
    return info


def iter_video_frames(path: str | Path, spec: FormatSpec, limits: MediaLimits) -> Iterator[tuple[float, Callable]]:
    """(time_s, pixel getter) per decoded frame; the getter converts to RGB only for frames that are used."""
    checked_size(path, limits)
    with _open(path, spec) as container:
        stream = _video_stream(container, path, spec)
        cc = stream.codec_context
        _check_dims(path, cc.width or 0, cc.height or 0, limits)
        stream.thread_type = "AUTO"
        fps = _rate(stream) or 25.0
        tb = stream.time_base
        start = stream.start_time or 0
        for i, frame in enumerate(_decode(container, stream, path)):
            _check_dims(path, frame.width, frame.height, limits)
            t = float((frame.pts - start) * tb) if frame.pts is not None and tb else i / fps
            rot = _rotation(frame)
            yield max(t, 0.0), (lambda f=frame, r=rot: _upright(f.to_ndarray(format="rgb24"), r))


# -- writing -----------------------------------------------------------------------------------------------------
def _prepare(arr: np.ndarray, shape: tuple[int, int], even: tuple[int, int], path: str | Path, i: int) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise UsageError(f"{path}: frame {i} has shape {a.shape}; expected H x W x 3 RGB")
    if a.shape[:2] != shape:
        raise UsageError(f"{path}: frame {i} is {a.shape[1]}x{a.shape[0]}, the first frame was {shape[1]}x{shape[0]}")
    if a.dtype != np.uint8:
        raise UsageError(f"{path}: frame {i} has dtype {a.dtype}; expected uint8")
    a = a[:, :, :3]
    ph, pw = even[0] - shape[0], even[1] - shape[1]
    if ph or pw:  # yuv420p needs even sizes: repeat the last row/column rather than cropping content away
        a = np.pad(a, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return np.ascontiguousarray(a)


def _add_audio(out: Any, src_path: str | Path, muxer_audio: frozenset[str]) -> tuple[Any, Any, Any, bool] | None:
    """Open ``src_path``'s first audio stream and add a matching output stream (copy if the codec fits)."""
    import av

    try:
        src = av.open(str(src_path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise TruncatedMediaError(src_path, f"cannot read audio source ({_ffmsg(exc)})") from None
    if not src.streams.audio:
        src.close()
        log.warning("%s: no audio stream to copy; writing video only", src_path)
        return None
    a_in = src.streams.audio[0]
    if a_in.codec_context.name in muxer_audio:
        return src, a_in, out.add_stream_from_template(a_in), True
    a_out = out.add_stream("aac", rate=a_in.codec_context.sample_rate or 48000)
    return src, a_in, a_out, False


def _copy_audio(out: Any, audio: tuple[Any, Any, Any, bool], until_s: float) -> None:
    src, a_in, a_out, copy = audio
    start = a_in.start_time or 0
    if copy:
        for pkt in src.demux(a_in):
            if pkt.dts is None or pkt.size == 0:
                continue
            if float((pkt.pts if pkt.pts is not None else pkt.dts) - start) * float(a_in.time_base) > until_s:
                break
            pkt.stream = a_out
            out.mux(pkt)
        return
    for frame in src.decode(a_in):
        if frame.time is not None and frame.time - float(start * a_in.time_base) > until_s:
            break
        frame.pts = None
        out.mux(a_out.encode(frame))
    out.mux(a_out.encode(None))


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    crf: int = 23,
    audio_from: str | Path | None = None,
    *,
    preset: str = "medium",
) -> Path:
    """Encode RGB uint8 frames as H.264 (libx264, yuv420p) at ``fps``; returns the written path.

    ``crf`` is x264's constant rate factor (0 = lossless, 23 = default, 51 = worst). Odd sizes are padded to even
    by repeating the edge. ``audio_from`` copies the first audio track of another file (remuxed when the codec
    fits the container, otherwise re-encoded as AAC), cut to the video's length. The file is written to a
    temporary name in the same folder and renamed at the end, so an error never leaves a partial video behind.
    """
    import av

    path = Path(path)
    if not 0 <= int(crf) <= 51:
        raise UsageError(f"{path}: crf must be in 0..51, got {crf}")
    if not fps or not math.isfinite(fps) or fps <= 0:
        raise UsageError(f"{path}: fps must be positive, got {fps}")
    muxer, audio_ok = MUXERS.get(path.suffix.lower(), (None, frozenset()))
    if muxer is None:
        raise UsageError(f"{path}: cannot write H.264 to '{path.suffix}'; use one of {', '.join(MUXERS)}")
    rate = Fraction(fps).limit_denominator(1001)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".partial{path.suffix}")
    os.close(fd)
    audio = None
    try:
        it = iter(frames)
        first = next(it, None)
        if first is None:
            raise MediaError(path, "no frames to write")
        shape = tuple(np.asarray(first).shape[:2])
        even = (shape[0] + shape[0] % 2, shape[1] + shape[1] % 2)
        with av.open(tmp, mode="w", format=muxer) as out:
            vs = out.add_stream("libx264", rate=rate)
            vs.width, vs.height, vs.pix_fmt = even[1], even[0], "yuv420p"
            vs.options = {"crf": str(int(crf)), "preset": preset}
            if audio_from is not None:
                audio = _add_audio(out, audio_from, audio_ok)
            n = 0
            for n, arr in enumerate(chain([first], it)):
                vf = av.VideoFrame.from_ndarray(_prepare(arr, shape, even, path, n), format="rgb24")
                vf.pts, vf.time_base = n, 1 / rate
                out.mux(vs.encode(vf))
            out.mux(vs.encode(None))
            if audio is not None:
                _copy_audio(out, audio, (n + 1) / float(rate))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        if audio is not None:
            audio[0].close()
    return path
