"""forensics_core.media: round-trips, EXIF orientation, sampling, writing, and every hostile input a moderation
pipeline sees, each generated here and each expected to raise its typed one-line error naming the file."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from forensics_core.errors import ForensicsError, UsageError
from forensics_core.media import (
    FrameStream,
    MediaError,
    MediaLimits,
    MediaTooLargeError,
    TruncatedMediaError,
    UnreadableMediaError,
    UnsupportedMediaError,
    detect_format,
    iter_frames,
    load_image,
    probe,
    sniff,
    write_video,
)
from forensics_core.media.image import decoder_available
from forensics_core.media.sniff import MEDIA_FORMATS


# -- helpers -----------------------------------------------------------------------------------------------------
def _image(h: int = 24, w: int = 32) -> np.ndarray:
    """Smooth gradients plus a marker block: survives lossy codecs well enough to compare, and shows rotations."""
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, 96)], axis=-1).astype(np.uint8)
    a[:4, :4] = (255, 0, 0)
    return a


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _assert_error(exc_info: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(exc_info.value)
    assert str(path) in msg and "\n" not in msg
    assert isinstance(exc_info.value, ForensicsError) and exc_info.value.exit_code == 2


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _frames(n: int, h: int = 32, w: int = 48) -> list[np.ndarray]:
    out = []
    for i in range(n):
        a = _image(h, w)
        a[:, :, 2] = i * 255 // max(n - 1, 1)  # a per-frame value so the order is checkable
        out.append(a)
    return out


def _audio_mp4(path: Path, seconds: float = 1.0, with_video: bool = False) -> Path:
    """A small MP4 with an AAC sine track (and optionally a short video track)."""
    rate = 16000
    with av.open(str(path), "w") as out:
        vs = None
        if with_video:
            vs = out.add_stream("libx264", rate=10)
            vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        a = out.add_stream("aac", rate=rate)
        a.layout = "mono"
        t = np.arange(int(seconds * rate)) / rate
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = rate
        out.mux(a.encode(frame))
        out.mux(a.encode(None))
        if vs is not None:
            for i in range(int(seconds * 10)):
                vf = av.VideoFrame.from_ndarray(_image(32, 32), format="rgb24")
                vf.pts, vf.time_base = i, Fraction(1, 10)
                out.mux(vs.encode(vf))
            out.mux(vs.encode(None))
    return path


# -- images ------------------------------------------------------------------------------------------------------
LOSSLESS = {"png": {}, "bmp": {}, "tiff": {}, "webp": {"lossless": True}}
LOSSY = {"jpeg": {"quality": 95}, "avif": {"quality": 95}}


@pytest.mark.parametrize("fmt", [*LOSSLESS, *LOSSY])
def test_image_round_trip(tmp_path: Path, fmt: str) -> None:
    spec = MEDIA_FORMATS.get(fmt).obj
    if not decoder_available(spec):
        pytest.skip(f"Pillow here has no {fmt} support")
    src = _image()
    p = tmp_path / f"img.{fmt}"
    Image.fromarray(src).save(p, format=spec.pil_format, **{**LOSSLESS, **LOSSY}[fmt])
    loaded = load_image(p)
    assert loaded.pixels.dtype == np.uint8 and loaded.pixels.shape == src.shape
    assert loaded.info.container == fmt and loaded.info.kind == "image"
    assert loaded.info.sha256 == _sha(p) and loaded.info.size_bytes == p.stat().st_size
    assert (loaded.info.width, loaded.info.height) == (32, 24)
    diff = np.abs(loaded.pixels.astype(int) - src).mean()
    assert diff == 0 if fmt in LOSSLESS else diff < 6
    assert sniff(p) == "image"
    info = probe(p)
    assert info.sha256 == loaded.info.sha256 and (info.width, info.height) == (32, 24)


def test_gif_first_frame_and_palette(tmp_path: Path) -> None:
    src = np.zeros((16, 20, 3), np.uint8)
    src[:, 10:] = (0, 255, 0)
    p = tmp_path / "a.gif"
    Image.fromarray(src).save(p)
    assert np.array_equal(load_image(p).pixels, src)
    assert sniff(p) == "image"


def test_grey_alpha_and_16bit_become_rgb(tmp_path: Path) -> None:
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.dstack([_image(8, 8), np.zeros((8, 8), np.uint8)])).save(tmp_path / "a.png")
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / "16.png")
    assert (load_image(tmp_path / "g.png").pixels == 200).all()
    assert np.array_equal(load_image(tmp_path / "a.png").pixels, _image(8, 8))  # alpha dropped, colour kept
    assert (load_image(tmp_path / "16.png").pixels == 255).all()


def test_type_comes_from_content_not_extension(tmp_path: Path) -> None:
    p = tmp_path / "really_a_png.jpg"
    Image.fromarray(_image()).save(p, format="PNG")
    assert load_image(p).info.container == "png"


def test_exif_orientation_applied(tmp_path: Path) -> None:
    src = _image(20, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored image rotated 90 degrees clockwise
    exif[0x010F] = "TestCam"
    p = tmp_path / "rot.png"
    Image.fromarray(src).save(p, exif=exif.tobytes())
    loaded = load_image(p)
    assert np.array_equal(loaded.pixels, np.rot90(src, k=-1))
    assert loaded.pixels[:4, -4:].tolist() == [[[255, 0, 0]] * 4] * 4  # red marker moved to the top-right
    assert loaded.info.orientation == 6 and (loaded.info.width, loaded.info.height) == (20, 40)
    assert loaded.info.exif["Make"] == "TestCam"
    info = probe(p)
    assert (info.width, info.height) == (20, 40) and info.orientation == 6


def test_xmp_presence(tmp_path: Path) -> None:
    p = tmp_path / "x.jpg"
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    Image.fromarray(_image()).save(p, xmp=xmp)
    assert load_image(p).info.has_xmp
    Image.fromarray(_image()).save(tmp_path / "n.jpg")
    assert not load_image(tmp_path / "n.jpg").info.has_xmp


# -- hostile inputs ----------------------------------------------------------------------------------------------
def test_zero_byte_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    for fn in (load_image, probe, sniff):
        with pytest.raises(UnreadableMediaError, match="empty file") as e:
            fn(p)
        _assert_error(e, p)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image(tmp_path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format=fmt)
    p = tmp_path / f"cut.{fmt.lower()}"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(TruncatedMediaError, match="truncated") as e:
        load_image(p)
    _assert_error(e, p)


def _png_declaring(p: Path, w: int, h: int) -> Path:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    p.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )
    return p


def test_png_declaring_100k_by_100k_is_refused_before_decoding(tmp_path: Path) -> None:
    p = _png_declaring(tmp_path / "bomb.png", 100_000, 100_000)
    for fn in (load_image, probe):
        with pytest.raises(MediaTooLargeError) as e:
            fn(p)
        _assert_error(e, p)


def test_max_pixels_limit_below_pillow_guard(tmp_path: Path) -> None:
    p = _png_declaring(tmp_path / "big.png", 5000, 5000)  # 25 MP: Pillow itself would accept it
    with pytest.raises(MediaTooLargeError, match="5000x5000"):
        load_image(p, MediaLimits(max_pixels=1_000_000))


@pytest.mark.parametrize(
    ("content", "detected"),
    [
        (b"hello, this is not a picture\n" * 4, "text"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF"),
        (b"<!DOCTYPE html><html><body>x</body></html>", "HTML"),
        (b"PK\x03\x04" + b"\0" * 40, "ZIP"),
        (bytes(range(256)) * 2, "unrecognised"),
    ],
)
def test_non_media_renamed_jpg(tmp_path: Path, content: bytes, detected: str) -> None:
    p = tmp_path / "photo.jpg"
    p.write_bytes(content)
    for fn in (load_image, probe, sniff):
        with pytest.raises(UnsupportedMediaError, match=detected) as e:
            fn(p)
        _assert_error(e, p)


def test_audio_only_mp4_has_no_frames(tmp_path: Path) -> None:
    p = _audio_mp4(tmp_path / "voice.mp4")
    assert sniff(p) == "video"  # ftyp says MP4; only opening it shows there is no picture
    with pytest.raises(UnsupportedMediaError, match="no video stream") as e:
        probe(p)
    _assert_error(e, p)
    with pytest.raises(MediaError):
        list(iter_frames(p))


def test_empty_and_truncated_mp4(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(struct.pack(">I", 24) + b"ftypisom" + b"\0\0\x02\0" + b"isomiso2")
    with pytest.raises(TruncatedMediaError) as e:
        probe(empty)
    _assert_error(e, empty)
    good = write_video(tmp_path / "good.mp4", _frames(5), fps=5)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # moov atom is at the end: gone
    with pytest.raises(TruncatedMediaError):
        probe(cut)
    with pytest.raises(TruncatedMediaError):
        list(iter_frames(cut))


def test_unreadable_permissions(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can read any file")
    p = tmp_path / "locked.png"
    Image.fromarray(_image()).save(p)
    p.chmod(0)
    try:
        with pytest.raises(UnreadableMediaError, match="permission denied") as e:
            load_image(p)
        _assert_error(e, p)
    finally:
        p.chmod(0o644)


def test_permission_denied_is_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same mapping, simulated, so it is checked when tests run as root too."""
    p = tmp_path / "locked.png"
    Image.fromarray(_image()).save(p)
    real_open = os.open

    def deny(file, flags, *a, **k):
        if str(file) == str(p):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, flags, *a, **k)

    monkeypatch.setattr(os, "open", deny)  # every loader opens user files through os.open (open_for_read)
    with pytest.raises(UnreadableMediaError, match="permission denied") as e:
        load_image(p)
    _assert_error(e, p)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(UnreadableMediaError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(UnreadableMediaError, match="directory"):
        probe(tmp_path)


def test_max_bytes(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    Image.fromarray(_image()).save(p)
    with pytest.raises(MediaTooLargeError, match="limit") as e:
        load_image(p, MediaLimits(max_bytes=100))
    _assert_error(e, p)
    with pytest.raises(MediaTooLargeError):
        load_image(p, MediaLimits(max_image_bytes=100))
    with pytest.raises(MediaTooLargeError):
        probe(p, MediaLimits(max_bytes=100))
    assert sniff(p) == "image"  # routing still works: sniff applies no size limit


def test_load_image_refuses_video(tmp_path: Path) -> None:
    p = write_video(tmp_path / "v.mp4", _frames(2), fps=5)
    with pytest.raises(UnsupportedMediaError, match="not an image"):
        load_image(p)


def test_limits_validate() -> None:
    with pytest.raises(ValueError):
        MediaLimits(max_pixels=0)


# -- sniffing ----------------------------------------------------------------------------------------------------
def _ftyp(major: bytes, *compat: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compat)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + b"\0" * 32


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (_ftyp(b"isom", b"isom", b"avc1"), "mp4"),
        (_ftyp(b"qt  ", b"qt  "), "mov"),
        (b"\0\0\0\x08wide" + b"\0" * 8, "mov"),
        (_ftyp(b"avif", b"mif1", b"avif"), "avif"),
        (_ftyp(b"mif1", b"mif1", b"avif"), "avif"),
        (_ftyp(b"heic", b"mif1", b"heic"), "heic"),
        (_ftyp(b"M4A ", b"M4A ", b"isom"), "m4a"),
        (b"RIFF\0\0\0\0AVI LIST" + b"\0" * 8, "avi"),
        (b"RIFF\0\0\0\0WEBPVP8L" + b"\0" * 8, "webp"),
        (b"RIFF\0\0\0\0WAVEfmt " + b"\0" * 8, "wav"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "webm"),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x82\x88matroska", "mkv"),
        (b"GIF89a\x01\0\x01\0", "gif"),
        (b"II*\0\x08\0\0\0", "tiff"),
        (b"BM" + b"\0" * 12 + b"\x28\0\0\0" + b"\0" * 8, "bmp"),
        (b"BMW is a car brand, not a bitmap", "text"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF", "jpeg"),
        (b"FLV\x01\x05", "flv"),
    ],
)
def test_detect_format(head: bytes, name: str) -> None:
    spec = detect_format(head)
    assert spec is not None and spec.name == name


def test_heic_without_decoder_names_the_type(tmp_path: Path) -> None:
    spec = MEDIA_FORMATS.get("heic").obj
    if decoder_available(spec):
        pytest.skip("a HEIF decoder is installed here")
    p = tmp_path / "phone.jpg"
    p.write_bytes(_ftyp(b"heic", b"mif1", b"heic"))
    with pytest.raises(UnsupportedMediaError, match="HEIC"):
        load_image(p)


# -- videos ------------------------------------------------------------------------------------------------------
def test_write_probe_iter_round_trip(tmp_path: Path) -> None:
    src = _frames(12, 33, 47)  # odd sizes are padded to even for yuv420p
    p = write_video(tmp_path / "clip.mp4", src, fps=12.5, crf=10)
    assert sniff(p) == "video"
    info = probe(p)
    assert (info.kind, info.container, info.codec) == ("video", "mp4", "h264")
    assert (info.width, info.height) == (48, 34) and info.fps == pytest.approx(12.5)
    assert info.n_frames == 12 and info.n_frames_exact and not info.has_audio
    assert info.duration_s == pytest.approx(12 / 12.5, abs=0.05) and info.sha256 == _sha(p)
    frames = list(iter_frames(p))
    assert [f.index for f in frames] == list(range(12))
    assert [f.time_s for f in frames] == pytest.approx([i / 12.5 for i in range(12)], abs=1e-3)
    for f, s in zip(frames, src):
        assert f.pixels.shape == (34, 48, 3)
        assert np.abs(f.pixels[:33, :47].astype(int) - s).mean() < 8
    assert probe(p, count_frames=True).n_frames == 12


def test_crf_changes_size(tmp_path: Path) -> None:
    src = [np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8) for i in range(6)]
    hi = write_video(tmp_path / "hi.mp4", src, fps=10, crf=12).stat().st_size
    lo = write_video(tmp_path / "lo.mp4", src, fps=10, crf=40).stat().st_size
    assert lo < hi / 2


def test_sampling_every_and_fps(tmp_path: Path) -> None:
    p = write_video(tmp_path / "c.mp4", _frames(20, 16, 16), fps=10, crf=30)
    assert [f.index for f in iter_frames(p, every=3)] == [0, 3, 6, 9, 12, 15, 18]
    assert [f.index for f in iter_frames(p, fps=2.5)] == [0, 4, 8, 12, 16]
    assert [f.index for f in iter_frames(p, fps=100)] == list(range(20))  # faster than the source: every frame
    with pytest.raises(UsageError):
        iter_frames(p, every=2, fps=1)
    with pytest.raises(UsageError):
        iter_frames(p, every=0)


def test_frame_limits_stop_and_flag(tmp_path: Path) -> None:
    p = write_video(tmp_path / "c.mp4", _frames(20, 16, 16), fps=10, crf=30)
    stream = iter_frames(p, limits=MediaLimits(max_frames=7))
    assert isinstance(stream, FrameStream)
    assert len(list(stream)) == 7 and stream.truncated and "max_frames" in stream.stop_reason
    stream = iter_frames(p, every=2, limits=MediaLimits(max_duration_s=0.95))
    assert [f.index for f in stream] == [0, 2, 4, 6, 8] and stream.truncated
    full = iter_frames(p)
    assert len(list(full)) == 20 and not full.truncated
    with pytest.raises(MediaTooLargeError, match="frames"):
        probe(p, MediaLimits(max_frames=7))
    with pytest.raises(MediaTooLargeError, match="duration"):
        probe(p, MediaLimits(max_duration_s=1))
    with pytest.raises(MediaTooLargeError, match="MP"):
        probe(p, MediaLimits(max_pixels=100))


def test_frame_stream_closes_early(tmp_path: Path) -> None:
    p = write_video(tmp_path / "c.mp4", _frames(6, 16, 16), fps=10, crf=30)
    with iter_frames(p) as stream:
        assert next(stream).index == 0
    assert list(stream) == [] and not stream.truncated and stream.n_decoded == 1


def test_write_video_keeps_audio(tmp_path: Path) -> None:
    src = _audio_mp4(tmp_path / "talk.mp4", seconds=1.0, with_video=True)
    assert probe(src).has_audio
    for ext in (".mp4", ".mkv"):
        out = write_video(tmp_path / f"dub{ext}", _frames(10, 16, 16), fps=10, audio_from=src)
        info = probe(out)
        assert info.has_audio and info.audio_codec == "aac" and info.n_frames == 10


def test_write_video_leaves_nothing_on_error(tmp_path: Path) -> None:
    def broken():
        yield from _frames(3, 16, 16)
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        write_video(tmp_path / "x.mp4", broken(), fps=5)
    with pytest.raises(UsageError, match="frame 1"):
        write_video(tmp_path / "y.mp4", [_frames(1)[0], np.zeros((8, 8, 3), np.uint8)], fps=5)
    with pytest.raises(MediaError, match="no frames"):
        write_video(tmp_path / "z.mp4", [], fps=5)
    assert list(tmp_path.iterdir()) == []


def test_animated_gif_is_a_video(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((12, 12, 3), v, np.uint8)) for v in (0, 120, 240)]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert sniff(p) == "video"
    info = probe(p)
    assert info.kind == "video" and info.n_frames == 3 and info.fps == pytest.approx(10)
    got = list(iter_frames(p))
    assert [f.index for f in got] == [0, 1, 2] and [f.time_s for f in got] == pytest.approx([0, 0.1, 0.2])
    assert [int(f.pixels.mean()) for f in got] == [0, 120, 240]
    assert int(load_image(p).pixels.mean()) == 0


def test_still_image_iterates_as_one_frame(tmp_path: Path) -> None:
    p = tmp_path / "s.png"
    Image.fromarray(_image()).save(p)
    got = list(iter_frames(p))
    assert len(got) == 1 and np.array_equal(got[0].pixels, _image())


def test_rotated_video_is_turned_upright(tmp_path: Path) -> None:
    p = tmp_path / "portrait.mp4"
    src = _image(32, 48)
    with av.open(str(p), "w") as out:
        vs = out.add_stream("libx264", rate=5)
        vs.width, vs.height, vs.pix_fmt = 48, 32, "yuv420p"
        vs.options = {"crf": "5"}
        vs.set_display_rotation(90)  # counter-clockwise, as phones store portrait clips
        for i in range(2):
            vf = av.VideoFrame.from_ndarray(src, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, 5)
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
    info = probe(p)
    assert (info.width, info.height, info.rotation) == (32, 48, 270)
    first = next(iter(iter_frames(p))).pixels
    assert first.shape == (48, 32, 3)
    assert np.abs(first.astype(int) - np.rot90(src, k=1)).mean() < 8  # matches ffmpeg's autorotate


@pytest.mark.shared
def test_shared_street_video(shared_data: Path) -> None:
    p = shared_data / "videos" / "facenet-pytorch" / "video.mp4"
    info = probe(p)
    assert (info.width, info.height, info.n_frames, info.fps) == (1920, 1080, 105, 25.0)
    assert info.codec == "h264" and info.has_audio
    stream = iter_frames(p, fps=1)
    assert [f.index for f in stream] == [0, 25, 50, 75, 100]


# -- fuzzing: corrupted files only ever raise MediaError ---------------------------------------------------------
@pytest.fixture(scope="module")
def seed_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("seeds")
    out = {}
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("GIF", "gif"), ("WEBP", "webp"), ("TIFF", "tif")):
        p = d / f"s.{ext}"
        Image.fromarray(_image(16, 16)).save(p, format=fmt)
        out[ext] = p.read_bytes()
    out["mp4"] = write_video(d / "s.mp4", _frames(3, 16, 16), fps=5).read_bytes()
    return out


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_files_raise_only_media_errors(tmp_path: Path, seed_files: dict[str, bytes], data) -> None:
    kind = data.draw(st.sampled_from(sorted(seed_files)))
    blob = bytearray(seed_files[kind])
    cut = data.draw(st.integers(1, len(blob)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(0, 255)), max_size=8))
    for pos, val in flips:
        blob[pos] = val
    p = tmp_path / f"fuzz.{kind}"
    p.write_bytes(bytes(blob[:cut]))
    for fn in (probe, load_image, lambda q: list(iter_frames(q))):
        try:
            fn(p)
        except MediaError as exc:
            assert str(p) in str(exc) and "\n" not in str(exc)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_benchmark_mutations_raise_only_media_errors(tmp_path: Path, seed_files: dict[str, bytes], data) -> None:
    """The fuzz benchmark's operators (chunk duplication, header edits, splices, ...) on every loader and on
    ``sniff``, chained like in ``benchmarks.fuzz_scan``; a small budget here, 10,000 files in the benchmark."""
    from benchmarks.fuzz_scan import MUTATORS

    kind = data.draw(st.sampled_from(sorted(seed_files)))
    chain = data.draw(st.lists(st.sampled_from(sorted(MUTATORS)), min_size=1, max_size=3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    blob = seed_files[kind]
    for op in chain:
        blob = MUTATORS[op](rng, blob)
    p = tmp_path / f"mutant.{kind}"
    p.write_bytes(blob)
    for fn in (sniff, probe, load_image, lambda q: list(iter_frames(q, fps=2.0))):
        try:
            fn(p)
        except MediaError as exc:
            assert str(p) in str(exc) and "\n" not in str(exc)
