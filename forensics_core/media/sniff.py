"""Decide what a file is from its first bytes, never from its extension.

Every known signature is an entry in the ``MEDIA_FORMATS`` registry: a :class:`FormatSpec` with a matcher over the
file's head. Media entries say which decoder opens them (Pillow format id or PyAV); non-media entries (PDF, ZIP,
audio, executables, ...) exist only so that the error for a renamed file can say what the file really is.
A new format is one ``MEDIA_FORMATS.add`` call, not another branch.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from forensics_core.media.types import MediaLimits, MediaTooLargeError, UnreadableMediaError, UnsupportedMediaError
from forensics_core.registry import Registry

HEAD_BYTES = 4096  # enough for ftyp compatible brands, EBML doctype, VP8X flags and an APNG acTL chunk


@dataclass(frozen=True)
class FormatSpec:
    """One recognisable file type.

    ``kind`` is 'image', 'video' or 'other' (recognised but unsupported). ``pil_format`` is the Pillow plugin id
    used to open an image, so Pillow never guesses from content on its own; ``description`` is what error
    messages call it. ``priority`` orders matchers where signatures overlap (lower first).
    """

    name: str
    kind: str
    match: Callable[[bytes], bool]
    description: str
    pil_format: str | None = None
    priority: int = 50
    unsupported_reason: str | None = None

    @property
    def a_description(self) -> str:
        """The description with its article, for messages: 'an MP4 video', 'a JPEG image'."""
        spoken_vowel = self.description[0] in "AEIOUaeiou" or self.description.split()[0] in _AN_WORDS
        return f"{'an' if spoken_vowel else 'a'} {self.description}"


# acronyms read with a leading vowel sound ("an MP4", "an HTML"); ordinary words go by their first letter
_AN_WORDS = {"MP4", "MP3", "HTML", "XML", "ELF", "MPEG", "SVG", "FLV"}


MEDIA_FORMATS: Registry[FormatSpec] = Registry("media format")


def _add(spec: FormatSpec) -> None:
    MEDIA_FORMATS.add(spec.name, spec, kind=spec.kind, description=spec.description)


# -- ISO base media (ftyp box): MP4, MOV, 3GP, AVIF, HEIC, M4A ---------------------------------------------------
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}


def _ftyp_brands(head: bytes) -> set[bytes] | None:
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    size = int.from_bytes(head[0:4], "big")
    end = min(max(size, 16), len(head))
    brands = {head[8:12]}
    brands.update(head[i : i + 4] for i in range(16, end - 3, 4))
    return brands


def _is_avif(h: bytes) -> bool:
    b = _ftyp_brands(h)
    return b is not None and bool(b & {b"avif", b"avis"})


def _is_heif(h: bytes) -> bool:
    b = _ftyp_brands(h)
    return b is not None and bool(b & _HEIF_BRANDS) and not _is_avif(h)


def _is_m4a(h: bytes) -> bool:
    return _ftyp_brands(h) is not None and h[8:12] in _AUDIO_BRANDS


def _is_mov(h: bytes) -> bool:
    if _ftyp_brands(h) is not None:
        return h[8:12] == b"qt  "
    # classic QuickTime files start directly with a top-level atom
    return len(h) >= 8 and h[4:8] in {b"moov", b"mdat", b"wide", b"pnot"}


def _is_mp4(h: bytes) -> bool:
    return _ftyp_brands(h) is not None and not (_is_avif(h) or _is_heif(h) or _is_m4a(h) or _is_mov(h))


# -- RIFF family ------------------------------------------------------------------------------------------------
def _riff(h: bytes, form: bytes) -> bool:
    return len(h) >= 12 and h[:4] == b"RIFF" and h[8:12] == form


def _is_ebml(h: bytes) -> bool:
    return h[:4] == b"\x1a\x45\xdf\xa3"


def _is_webm(h: bytes) -> bool:
    return _is_ebml(h) and b"webm" in h[:64]


def _is_mpegts(h: bytes) -> bool:
    return len(h) >= 377 and h[0] == 0x47 and h[188] == 0x47 and h[376] == 0x47


def _is_bmp(h: bytes) -> bool:
    # "BM" alone is two letters of text; also require the DIB header size field to be one of the real ones
    return len(h) >= 18 and h[:2] == b"BM" and int.from_bytes(h[14:18], "little") in {12, 16, 40, 52, 56, 64, 108, 124}


def _is_text(h: bytes) -> bool:
    if not h or b"\x00" in h:
        return False
    try:
        h.decode("utf-8")
    except UnicodeDecodeError as exc:  # the head may cut a multi-byte character: allow that at the very end
        if exc.start < len(h) - 4:
            return False
    return True


def _starts(*prefixes: bytes) -> Callable[[bytes], bool]:
    return lambda h: any(h.startswith(p) for p in prefixes)


def _text_starts(*prefixes: bytes) -> Callable[[bytes], bool]:
    def match(h: bytes) -> bool:
        s = h.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        return any(s.startswith(p) for p in prefixes)

    return match


for _spec in (
    # images (Pillow)
    FormatSpec("jpeg", "image", _starts(b"\xff\xd8\xff"), "JPEG image", "JPEG"),
    FormatSpec("png", "image", _starts(b"\x89PNG\r\n\x1a\n"), "PNG image", "PNG"),
    FormatSpec("gif", "image", _starts(b"GIF87a", b"GIF89a"), "GIF image", "GIF"),
    FormatSpec("webp", "image", lambda h: _riff(h, b"WEBP"), "WebP image", "WEBP"),
    FormatSpec("bmp", "image", _is_bmp, "BMP image", "BMP", priority=80),
    FormatSpec("tiff", "image", _starts(b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), "TIFF image", "TIFF"),
    FormatSpec("avif", "image", _is_avif, "AVIF image", "AVIF", priority=10),
    FormatSpec("heic", "image", _is_heif, "HEIC/HEIF image", "HEIF", priority=11),
    # videos (PyAV)
    FormatSpec("mp4", "video", _is_mp4, "MP4 video", priority=30),
    FormatSpec("mov", "video", _is_mov, "QuickTime MOV video", priority=20),
    FormatSpec("avi", "video", lambda h: _riff(h, b"AVI "), "AVI video"),
    FormatSpec("webm", "video", _is_webm, "WebM video", priority=10),
    FormatSpec("mkv", "video", _is_ebml, "Matroska (MKV) video", priority=20),
    FormatSpec("flv", "video", _starts(b"FLV\x01"), "Flash video (FLV)"),
    FormatSpec("asf", "video", _starts(bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")), "ASF/WMV video"),
    FormatSpec("mpegts", "video", _is_mpegts, "MPEG transport stream", priority=90),
    FormatSpec("mpegps", "video", _starts(b"\x00\x00\x01\xba"), "MPEG program stream"),
    # recognised, not supported: named in the error so a renamed file is obvious
    FormatSpec("m4a", "other", _is_m4a, "MP4 audio file (M4A)", priority=5),
    FormatSpec("wav", "other", lambda h: _riff(h, b"WAVE"), "WAV audio file"),
    FormatSpec("mp3", "other", _starts(b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"), "MP3 audio file", priority=90),
    FormatSpec("flac", "other", _starts(b"fLaC"), "FLAC audio file"),
    FormatSpec("ogg", "other", _starts(b"OggS"), "Ogg container"),
    FormatSpec("pdf", "other", _starts(b"%PDF-"), "PDF document"),
    FormatSpec("zip", "other", _starts(b"PK\x03\x04", b"PK\x05\x06"), "ZIP archive (or DOCX/APK/...)"),
    FormatSpec("gzip", "other", _starts(b"\x1f\x8b"), "gzip archive"),
    FormatSpec("7z", "other", _starts(b"7z\xbc\xaf\x27\x1c"), "7-Zip archive"),
    FormatSpec("rar", "other", _starts(b"Rar!\x1a\x07"), "RAR archive"),
    FormatSpec("elf", "other", _starts(b"\x7fELF"), "ELF executable"),
    FormatSpec("exe", "other", _starts(b"MZ"), "Windows executable", priority=90),
    FormatSpec("psd", "other", _starts(b"8BPS"), "Photoshop document"),
    FormatSpec("jp2", "other", _starts(b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51"), "JPEG 2000 image"),
    FormatSpec("svg", "other", _text_starts(b"<svg", b'<?xml version="1.0"?>\n<svg'), "SVG vector image", priority=60),
    FormatSpec("html", "other", _text_starts(b"<!doctype html", b"<html"), "HTML document", priority=60),
    FormatSpec("xml", "other", _text_starts(b"<?xml"), "XML document", priority=70),
    FormatSpec("json", "other", lambda h: _is_text(h) and _text_starts(b"{", b"[")(h), "JSON document", priority=95),
    FormatSpec("text", "other", _is_text, "text file", priority=99),
):
    _add(_spec)


def _ordered() -> list[FormatSpec]:
    return sorted((e.obj for e in MEDIA_FORMATS.entries()), key=lambda s: (s.priority, s.name))


def detect_format(head: bytes) -> FormatSpec | None:
    """The first registered format whose matcher accepts ``head`` (the file's first bytes), or None."""
    for spec in _ordered():
        if spec.match(head):
            return spec
    return None


# -- safe file access --------------------------------------------------------------------------------------------
@contextmanager
def _os_errors(path: str | Path, verb: str) -> Iterator[None]:
    """What the OS refuses, worded once for every call that touches the file (``verb``: what was tried, named in
    the message for the rarer errors), as :class:`UnreadableMediaError`."""
    try:
        yield
    except FileNotFoundError:
        raise UnreadableMediaError(path, "no such file") from None
    except PermissionError:
        raise UnreadableMediaError(path, "permission denied") from None
    except IsADirectoryError:
        raise UnreadableMediaError(path, "is a directory, not a media file") from None
    except OSError as exc:
        raise UnreadableMediaError(path, f"cannot {verb} ({exc.strerror or exc})") from None


def checked_size(path: str | Path, limits: MediaLimits | None, *, image: bool = False) -> int:
    """``stat`` the file and enforce existence, type and byte limits (unless ``limits`` is None) before reading."""
    with _os_errors(path, "stat"):
        st = os.stat(path)
    _require_regular(path, st.st_mode)
    if st.st_size == 0:
        raise UnreadableMediaError(path, "empty file (0 bytes)")
    if limits is None:
        return st.st_size
    limit = min(limits.max_bytes, limits.max_image_bytes) if image else limits.max_bytes
    if st.st_size > limit:
        raise MediaTooLargeError(path, f"file is {_human(st.st_size)}, limit {_human(limit)}")
    return st.st_size


_O_READ = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # POSIX; Windows has no FIFOs to guard against
_O_NOCTTY = getattr(os, "O_NOCTTY", 0)


def non_regular_kind(mode: int) -> str | None:
    """What a non-regular file is ('named pipe (FIFO)', 'socket', ...), or None for a regular file."""
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "named pipe (FIFO)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "special file"


def _require_regular(path: str | Path, mode: int) -> None:
    kind = non_regular_kind(mode)
    if kind == "directory":
        raise UnreadableMediaError(path, "is a directory, not a media file")
    if kind is not None:
        raise UnreadableMediaError(path, f"not a regular file but a {kind}; refused without reading it")


def open_for_read(path: str | Path):
    """Open a *regular* file for binary reading; anything else is refused without blocking or reading.

    ``open()`` on a FIFO blocks until a writer appears (forever, in an upload folder), and a device may block, read
    endlessly (``/dev/zero``) or act on being opened. So the path is ``stat``-ed first (a device is never opened),
    then opened with ``O_NONBLOCK`` (a FIFO swapped in after the ``stat`` opens at once instead of blocking) and
    the *descriptor* is ``fstat``-ed, which checks the object actually opened. Only then is ``O_NONBLOCK`` cleared
    for ordinary reads. OS errors become :class:`UnreadableMediaError`.
    """
    with _os_errors(path, "open"):
        _require_regular(path, os.stat(path).st_mode)
        fd = os.open(path, _O_READ | _O_NONBLOCK | _O_NOCTTY)
    try:
        _require_regular(path, os.fstat(fd).st_mode)
        if _O_NONBLOCK:
            import fcntl

            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_head(path: str | Path, n: int = HEAD_BYTES) -> bytes:
    with open_for_read(path) as fh:
        try:
            return fh.read(n)
        except OSError as exc:
            raise UnreadableMediaError(path, f"read error ({exc.strerror or exc})") from None


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def describe_unsupported(path: str | Path, head: bytes, spec: FormatSpec | None) -> UnsupportedMediaError:
    """The error for a file that is not a supported image or video, naming what it looks like instead."""
    if spec is None:
        return UnsupportedMediaError(
            path, f"unrecognised content (first bytes {head[:8].hex(' ')}); not a supported image or video"
        )
    reason = spec.unsupported_reason or "not a supported image or video"
    return UnsupportedMediaError(path, f"content is {spec.a_description}; {reason}")


def sniff_format(path: str | Path, limits: MediaLimits | None = None) -> FormatSpec:
    """The supported :class:`FormatSpec` of ``path``; raises a :class:`MediaError` for anything else.

    ``limits`` adds the ``max_bytes`` check; without it only existence, type and emptiness are checked, so a
    router can learn what an oversized file is before refusing it.
    """
    checked_size(path, limits)
    head = read_head(path)
    spec = detect_format(head)
    if spec is None or spec.kind == "other":
        raise describe_unsupported(path, head, spec)
    return spec


def sniff(path: str | Path) -> str:
    """'image' or 'video', decided by magic bytes; raises :class:`UnsupportedMediaError` for anything else.

    Animated images (GIF, APNG, animated WebP with more than one frame) are 'video': they carry motion, and a
    scan should look at more than their first frame. :func:`load_image` still accepts them (first frame).
    Missing, unreadable and empty files raise :class:`UnreadableMediaError`; size limits are not applied here.
    """
    spec = sniff_format(path)
    if spec.kind == "image":
        from forensics_core.media.image import is_animated

        return "video" if is_animated(path, spec) else "image"
    return spec.kind
