"""Still (and animated) images through Pillow, with the safety checks a moderation pipeline needs.

The whole file is read once into memory (bounded by ``MediaLimits.max_image_bytes``) and hashed on the way, so
the sha256 and the decoded pixels always come from the same bytes, even if the file changes on disk meanwhile.
Pillow is told the exact format the magic bytes announced (``formats=[...]``), so it never second-guesses a
file; declared dimensions are checked against ``max_pixels`` before any pixel is decoded.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, ImageSequence, UnidentifiedImageError

from forensics_core.hashing import sha256_bytes
from forensics_core.media.sniff import (
    FormatSpec,
    checked_size,
    describe_unsupported,
    detect_format,
    open_for_read,
    read_head,
)
from forensics_core.media.types import (
    LoadedImage,
    MediaInfo,
    MediaLimits,
    MediaTooLargeError,
    TruncatedMediaError,
    UnreadableMediaError,
    UnsupportedMediaError,
    typed_errors,
)

_CHUNK = 1 << 20
_ANIMATABLE = {"gif", "png", "webp"}


def _register_optional_plugins() -> None:
    """HEIC needs the optional ``pillow-heif`` wheel; AVIF is built into Pillow >= 11.2."""
    try:  # pragma: no cover - depends on the environment
        import pillow_heif  # type: ignore[import-not-found]

        pillow_heif.register_heif_opener()
    except ImportError:
        pass


_register_optional_plugins()
Image.init()


def decoder_available(spec: FormatSpec) -> bool:
    return spec.pil_format is not None and spec.pil_format in Image.OPEN


# -- reading -----------------------------------------------------------------------------------------------------
def read_hashed(path: str | Path, max_bytes: int) -> tuple[bytes, str]:
    """The whole file and its sha256, read in one pass; never more than ``max_bytes`` (the file may grow)."""
    buf = bytearray()
    with open_for_read(path) as fh:
        try:
            while chunk := fh.read(_CHUNK):
                buf += chunk
                if len(buf) > max_bytes:
                    raise MediaTooLargeError(path, f"file grew past the {max_bytes} byte limit while reading")
        except OSError as exc:
            raise UnreadableMediaError(path, f"read error ({exc.strerror or exc})") from None
    if not buf:
        raise UnreadableMediaError(path, "empty file (0 bytes)")
    data = bytes(buf)
    return data, sha256_bytes(data)


def _image_spec(path: str | Path, limits: MediaLimits) -> FormatSpec:
    checked_size(path, limits)
    head = read_head(path)
    spec = detect_format(head)
    if spec is None or spec.kind == "other":
        raise describe_unsupported(path, head, spec)
    if spec.kind != "image":
        raise UnsupportedMediaError(path, f"content is {spec.a_description}, not an image (use iter_frames/probe)")
    checked_size(path, limits, image=True)
    return spec


def open_pil(path: str | Path, data: bytes, spec: FormatSpec, limits: MediaLimits) -> Image.Image:
    """Lazily open ``data`` (header only) and enforce ``max_pixels`` on the declared size."""
    if not decoder_available(spec):
        hint = " (pip install pillow-heif)" if spec.name == "heic" else ""
        raise UnsupportedMediaError(path, f"content is {spec.a_description} but no decoder is installed{hint}")
    with warnings.catch_warnings():
        # Pillow warns above its own MAX_IMAGE_PIXELS; our max_pixels check below is the one that decides. (With
        # threads, catch_warnings can at worst show or hide that warning elsewhere; it never changes a limit.)
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=[spec.pil_format])
        except Image.DecompressionBombError as exc:
            raise MediaTooLargeError(path, f"declared image size is a decompression bomb ({exc})") from None
        except (UnidentifiedImageError, SyntaxError, OSError, ValueError, EOFError) as exc:
            raise TruncatedMediaError(path, f"corrupt or truncated {spec.description} header ({exc})") from None
    w, h = img.size
    if w <= 0 or h <= 0:
        raise TruncatedMediaError(path, f"{spec.description} declares an empty size {w}x{h}")
    if w * h > limits.max_pixels:
        mp, limit = w * h / 1e6, limits.max_pixels / 1e6
        raise MediaTooLargeError(path, f"declares {w}x{h} = {mp:.1f} MP, limit {limit:.1f} MP (decompression bomb?)")
    return img


# -- metadata ----------------------------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    """EXIF values as JSON-friendly Python: rationals to floats, short byte strings to text, blobs summarised."""
    if isinstance(v, bytes):
        if len(v) <= 64:
            try:
                return v.decode("ascii").rstrip("\x00")
            except UnicodeDecodeError:
                return v.hex()
        return f"<{len(v)} bytes>"
    if isinstance(v, str):
        v = v.rstrip("\x00")
        return v if len(v) <= 1000 else v[:1000] + "..."
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v[:64]]
    if isinstance(v, (int, bool)) or v is None:
        return v
    try:
        f = float(v)  # IFDRational and friends
    except (TypeError, ValueError, ZeroDivisionError):
        return str(v)[:200]
    return f if math.isfinite(f) else None


def read_exif(img: Image.Image) -> tuple[dict[str, Any], int]:
    """EXIF tags by name (base IFD plus the Exif and GPS sub-IFDs) and the orientation (1..8)."""
    try:
        ex = img.getexif()
    except Exception:  # broken EXIF must not make a decodable image unusable
        return {}, 1
    out: dict[str, Any] = {}
    for tag, val in ex.items():
        if tag in (ExifTags.Base.ExifOffset, ExifTags.Base.GPSInfo):
            continue
        out[ExifTags.TAGS.get(tag, f"0x{tag:04x}")] = _jsonable(val)
    sub_ifds = ((ExifTags.IFD.Exif, ExifTags.TAGS, None), (ExifTags.IFD.GPSInfo, ExifTags.GPSTAGS, "GPSInfo"))
    for ifd_id, names, key in sub_ifds:
        try:
            ifd = ex.get_ifd(ifd_id)
        except Exception:
            continue
        items = {names.get(t, f"0x{t:04x}"): _jsonable(v) for t, v in ifd.items()}
        if key is None:
            out.update(items)
        elif items:
            out[key] = items
    orientation = ex.get(ExifTags.Base.Orientation, 1)
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1
    return out, orientation


def _has_xmp(img: Image.Image, data: bytes) -> bool:
    return bool(img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")) or b"<x:xmpmeta" in data


def _frame_count(img: Image.Image) -> int:
    return int(getattr(img, "n_frames", 1) or 1)


def _durations_s(img: Image.Image, n: int) -> list[float]:
    """Per-frame display durations of an animated image (GIF/APNG/WebP store milliseconds per frame)."""
    out = []
    for i in range(n):
        img.seek(i)
        d = img.info.get("duration") or 0
        out.append(max(float(d), 0.0) / 1000.0)
    img.seek(0)
    return out


def _make_info(
    path: str | Path, spec: FormatSpec, img: Image.Image, data: bytes, sha: str, limits: MediaLimits
) -> MediaInfo:
    exif, orientation = read_exif(img)
    w, h = img.size
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: display size is transposed
        w, h = h, w
    n = _frame_count(img) if spec.name in _ANIMATABLE else 1
    fps = duration = None
    if n > 1:
        if n > limits.max_frames:
            raise MediaTooLargeError(path, f"animation has {n} frames, limit {limits.max_frames}")
        durs = _durations_s(img, n)
        duration = sum(durs)
        fps = n / duration if duration > 0 else None
    codec = spec.name
    if spec.name == "tiff":
        codec = str(img.info.get("compression") or "tiff")
    return MediaInfo(
        path=str(path),
        kind="video" if n > 1 else "image",
        container=spec.name,
        codec=codec,
        width=w,
        height=h,
        sha256=sha,
        size_bytes=len(data),
        fps=fps,
        n_frames=n,
        duration_s=duration,
        exif=exif,
        orientation=orientation,
        has_xmp=_has_xmp(img, data),
    )


# -- pixels ------------------------------------------------------------------------------------------------------
def to_rgb(img: Image.Image) -> np.ndarray:
    """H x W x 3 uint8 RGB. Alpha is dropped (the stored colour is the evidence, not a compositing choice);
    16-bit and float greyscale are scaled, not clipped, to 8 bits."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(a.max()), 1.0)
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _decode(path: str | Path, spec: FormatSpec, img: Image.Image) -> np.ndarray:
    try:
        img.load()
        return to_rgb(ImageOps.exif_transpose(img))
    except MemoryError:
        raise MediaTooLargeError(path, "out of memory while decoding") from None
    except Exception as exc:  # Pillow plugins raise OSError, SyntaxError, ValueError, EOFError, zlib.error, ...
        msg = str(exc) or type(exc).__name__
        raise TruncatedMediaError(path, f"truncated or corrupt {spec.description} ({msg})") from None


# -- public entry points (re-exported by forensics_core.media) --------------------------------------------------------
def probe_image(path: str | Path, limits: MediaLimits) -> MediaInfo:
    spec = _image_spec(path, limits)
    data, sha = read_hashed(path, min(limits.max_bytes, limits.max_image_bytes))
    img = open_pil(path, data, spec, limits)
    try:
        return _make_info(path, spec, img, data, sha, limits)
    except Exception as exc:
        if isinstance(exc, MediaTooLargeError):
            raise
        raise TruncatedMediaError(path, f"truncated or corrupt {spec.description} ({exc})") from None


def load_image(path: str | Path, limits: MediaLimits | None = None) -> LoadedImage:
    """Decode an image to H x W x 3 uint8 RGB with EXIF orientation applied (first frame of an animation).

    Raises a :class:`~forensics_core.media.MediaError` subclass naming the file and the cause for anything that is
    not a readable, complete, supported image within ``limits``.
    """
    limits = limits or MediaLimits()
    with typed_errors(path):
        spec = _image_spec(path, limits)
        data, sha = read_hashed(path, min(limits.max_bytes, limits.max_image_bytes))
        img = open_pil(path, data, spec, limits)
        try:
            info = _make_info(path, spec, img, data, sha, limits)
        except MediaTooLargeError:
            raise
        except Exception as exc:
            raise TruncatedMediaError(path, f"truncated or corrupt {spec.description} ({exc})") from None
        pixels = _decode(path, spec, img)
        info.height, info.width = pixels.shape[:2]
        return LoadedImage(pixels=pixels, info=info)


def is_animated(path: str | Path, spec: FormatSpec) -> bool:
    """True for GIF / APNG / WebP files holding more than one frame (cheap: Pillow reads headers only)."""
    if spec.name not in _ANIMATABLE or not decoder_available(spec):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open_for_read(path) as fh, Image.open(fh, formats=[spec.pil_format]) as img:
                return bool(getattr(img, "is_animated", False))
    except Exception:  # sniffing must not fail on a broken body; load/probe report the real problem
        return False


def iter_image_frames(path: str | Path, limits: MediaLimits) -> Iterator[tuple[float, Any]]:
    """(time_s, pixel getter) for every frame of an image: one for a still, all for an animation."""
    spec = _image_spec(path, limits)
    data, _ = read_hashed(path, min(limits.max_bytes, limits.max_image_bytes))
    img = open_pil(path, data, spec, limits)
    t = 0.0
    try:
        for frame in ImageSequence.Iterator(img):
            w, h = frame.size
            if w * h > limits.max_pixels:
                raise MediaTooLargeError(path, f"frame of {w}x{h} exceeds {limits.max_pixels / 1e6:.1f} MP")
            # lazy: the caller converts only the frames it samples, before the iterator seeks on
            yield t, (lambda f=frame: _decode(path, spec, f))
            t += max(float(frame.info.get("duration") or 0), 0.0) / 1000.0
    except (MediaTooLargeError, TruncatedMediaError):
        raise
    except Exception as exc:
        raise TruncatedMediaError(path, f"truncated or corrupt {spec.description} ({exc})") from None
