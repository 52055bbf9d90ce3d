"""``forensics scan`` never hangs: non-regular files are refused unopened, and a stuck file times out.

Every test that would hang without the fix runs its scan in a child process or a daemon thread with a short
limit, so a regression fails instead of stalling CI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forensics_core.media import UnreadableMediaError

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")


def _png(path: Path, shift: int = 0) -> Path:
    y, x = np.mgrid[0:48, 0:64]
    Image.fromarray(np.stack([(x + shift) % 256, y * 4 % 256, (x + y) % 256], -1).astype(np.uint8)).save(path)
    return path


def _in_thread(fn, limit: float = 60.0):
    """Run ``fn`` in a daemon thread; fail (not hang) if it has not returned within ``limit`` seconds."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), f"still running after {limit} s: hung"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture
def fifo_dir(tmp_path: Path) -> Path:
    d = tmp_path / "uploads"
    d.mkdir()
    _png(d / "a.png")
    os.mkfifo(d / "pipe.jpg")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d / "sock.png"))
    s.close()
    _png(d / "z.png", shift=7)
    return d


def test_scan_cli_refuses_fifo_and_socket_and_continues(fifo_dir: Path, tiny_model: str, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    args = ["-q", "scan", str(fifo_dir), str(fifo_dir / "pipe.jpg"), "--model", tiny_model, "--device", "cpu",
            "--threads", "1", "--no-table", "--jsonl", str(out)]  # fmt: skip
    code = f"import sys, cli; sys.exit(cli.main({args!r}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    recs = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(recs) == ["a.png", "pipe.jpg", "sock.png", "z.png"]  # the FIFO named twice is listed once
    for name, kind in (("pipe.jpg", "named pipe"), ("sock.png", "socket")):
        assert recs[name]["status"] == "error" and recs[name]["error_type"] == "UnreadableMediaError"
        assert kind in recs[name]["error"] and recs[name]["path"] in recs[name]["error"]
        assert "\n" not in recs[name]["error"]
    assert recs["a.png"]["status"] == recs["z.png"]["status"] == "ok"


def test_every_loader_refuses_a_fifo_without_blocking(fifo_dir: Path) -> None:
    from forensics_core import media
    from forensics_core.hashing import hash_file

    fifo = fifo_dir / "pipe.jpg"
    sha256_of = partial(hash_file, untrusted=True)
    for fn in (media.sniff, media.load_image, media.probe, lambda p: list(media.iter_frames(p)), sha256_of):
        with pytest.raises(UnreadableMediaError, match="named pipe"):
            _in_thread(lambda fn=fn: fn(fifo), limit=10)


def test_fifo_swapped_in_after_stat_is_refused(fifo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race: ``stat`` saw a regular file, then a FIFO took its name. O_NONBLOCK + fstat still refuse it."""
    from forensics_core.media.sniff import open_for_read

    regular = os.stat(fifo_dir / "a.png")
    real_stat = os.stat
    def lying_stat(p, *a, **k):
        return regular if str(p).endswith("pipe.jpg") else real_stat(p, *a, **k)

    monkeypatch.setattr(os, "stat", lying_stat)
    with pytest.raises(UnreadableMediaError, match="named pipe"):
        _in_thread(lambda: open_for_read(fifo_dir / "pipe.jpg"), limit=10)


def test_hashing_is_bounded_by_the_timeout(tmp_path: Path) -> None:
    from forensics_core.hashing import hash_file
    from forensics_core.inputs import InputExpander

    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + bytes(3 << 20))
    with pytest.raises(UnreadableMediaError, match="timed out after 0 s while hashing"):
        hash_file(str(big), untrusted=True, timeout_s=0)
    (item,) = list(InputExpander([str(big)], timeout_s=0))
    assert item.error_type == "UnreadableMediaError" and "timed out" in item.error


def test_worker_pool_replaces_an_abandoned_worker() -> None:
    from forensics.scanning.chunks import WorkerPool

    release = threading.Event()
    pool = WorkerPool(1)
    stuck = pool.submit(release.wait)
    queued = pool.submit(lambda: 42)
    time.sleep(0.2)
    assert stuck.running() and not queued.done()
    pool.abandon(stuck)
    assert queued.result(timeout=10) == 42  # the replacement thread picked up the queue
    assert pool.abandoned == 1 and pool.started == 2
    t0 = time.monotonic()
    pool.shutdown()  # never waits for the stuck task
    assert time.monotonic() - t0 < 1
    release.set()
    assert stuck.result(timeout=10) is True


def test_worker_pool_shutdown_lets_running_workers_finish() -> None:
    """A worker still inside a task at shutdown is waited for (bounded): a daemon thread returning from OpenCV /
    torch code while the interpreter finalises aborted about one scan in four under load (exit -6)."""
    from forensics.scanning.chunks import WorkerPool

    done: list[int] = []
    pool = WorkerPool(2, name="finishtest")
    pool.submit(lambda: (time.sleep(0.3), done.append(1)))
    time.sleep(0.05)
    pool.shutdown()
    assert done == [1]
    assert not [t for t in threading.enumerate() if t.name.startswith("finishtest_")]


def test_stuck_decodes_time_out_and_the_scan_moves_on(
    tmp_path: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More stuck files than workers: each becomes a timeout record, the good files are still scanned."""
    from forensics import scan
    from forensics_core import media

    d = tmp_path / "in"
    d.mkdir()
    for i in range(3):
        _png(d / f"stuck{i}.png", shift=i)
    for i in range(3):
        _png(d / f"good{i}.png", shift=10 + i)
    release = threading.Event()
    real_load = media.load_image

    def load(path, *a, **k):
        if Path(path).name.startswith("stuck"):
            release.wait()  # a decoder that never returns (nothing in Python can interrupt it)
        return real_load(path, *a, **k)

    monkeypatch.setattr(media, "load_image", load)
    try:
        t0 = time.monotonic()
        recs = _in_thread(lambda: list(scan(d, tiny_model, device="cpu", evidence="none", timeout_s=3, workers=2,
                                            batch=2, threads=1)), limit=120)  # fmt: skip
        elapsed = time.monotonic() - t0
    finally:
        release.set()
    by = {Path(r.path).name: r for r in recs}
    assert len(recs) == 6
    for i in range(3):
        assert by[f"stuck{i}.png"].error_type == "ScanTimeoutError"
        assert "timed out after 3 s while sniffing, opening or decoding" in by[f"stuck{i}.png"].error
        assert by[f"good{i}.png"].status == "ok", by[f"good{i}.png"].error
    assert elapsed < 60  # three stuck files, about one timeout each, partly overlapping


def test_stuck_video_decoder_times_out(tmp_path: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from forensics import scan
    from forensics_core import media
    from forensics_core.media import write_video

    y, x = np.mgrid[0:64, 0:64]
    frames = [np.stack([(x + 5 * i) % 256, y * 3 % 256, x * 0 + 90], -1).astype(np.uint8) for i in range(6)]
    write_video(tmp_path / "clip.mp4", frames, fps=6)
    release = threading.Event()
    real_iter = media.iter_frames

    def iter_frames(path, *a, **k):
        stream = real_iter(path, *a, **k)
        yield next(stream)
        release.wait()  # the demuxer hangs after the first frame
        yield from stream

    monkeypatch.setattr(media, "iter_frames", iter_frames)
    try:
        (rec,) = _in_thread(lambda: list(scan(tmp_path / "clip.mp4", tiny_model, device="cpu", evidence="none",
                                              timeout_s=3, fps=6, batch=2, threads=1)), limit=60)  # fmt: skip
    finally:
        release.set()
    assert rec.error_type == "ScanTimeoutError" and "while decoding video frames" in rec.error


def test_expand_paths_takes_folders_of_clips(face_clips: tuple[str, str], tmp_path: Path) -> None:
    """``video make-dataset --real`` accepts folders like ``scan`` does: sorted, videos by content, no hidden."""
    import shutil

    from forensics_core.inputs import expand_paths

    d = tmp_path / "clips"
    (d / "sub").mkdir(parents=True)
    shutil.copy(face_clips[1], d / "b.mp4")
    shutil.copy(face_clips[0], d / "sub" / "a-clip")  # no extension: found by content
    shutil.copy(face_clips[0], d / ".hidden.mp4")
    _png(d / "thumb.png")
    (d / "notes.txt").write_text("not a clip")
    explicit = _png(tmp_path / "named.png")
    got = expand_paths([str(d), str(explicit)], kind="video")
    assert [Path(p).name for p in got] == ["b.mp4", "a-clip", "named.png"]


def test_narrow_image_is_scanned_and_a_detector_crash_spares_chunk_mates(tmp_path: Path, tiny_model: str) -> None:
    """Found by the fuzz benchmark: a 24 x 2072 GIF (12 px wide after the detection downscale) made MTCNN fail
    on an empty image pyramid, and the failure took every other image of its chunk down with it."""
    from forensics.scanning.config import ScanConfig
    from forensics.scanning.scanner import Scanner
    from forensics_core.faces.detectors import get_face_detector
    from forensics_core.inputs import InputExpander

    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(np.full((2072, 24, 3), 128, np.uint8)).save(d / "a-narrow.png")
    _png(d / "b.png")
    Image.fromarray(np.full((50, 77, 3), 60, np.uint8)).save(d / "c-poison.png")
    _png(d / "d.png", shift=3)
    mtcnn = get_face_detector("mtcnn", device="cpu")

    class Choking:
        def detect(self, images):
            if any(im.shape[1] == 77 for im in images):
                raise ValueError("detector choked")
            return mtcnn.detect(images)

    cfg = ScanConfig(device="cpu", evidence="none", batch=4, threads=1)
    recs = {Path(r.path).name: r for r in Scanner(tiny_model, cfg, detector=Choking()).scan_items(InputExpander([d]))}
    assert recs["c-poison.png"].status == "error" and "detector choked" in recs["c-poison.png"].error
    assert all(recs[n].status == "ok" for n in ("a-narrow.png", "b.png", "d.png")), recs
    assert recs["a-narrow.png"].no_face


def test_resume_does_not_append_the_fifo_again(fifo_dir: Path, tiny_model: str, tmp_path: Path) -> None:
    """Found by the kill/resume benchmark: a record without a sha256 (the FIFO) was rescanned by every resume."""
    import cli

    out = tmp_path / "r.jsonl"
    args = ["-q", "scan", str(fifo_dir), "--model", tiny_model, "--device", "cpu", "--threads", "1", "--no-table"]
    _in_thread(lambda: cli.main([*args, "--jsonl", str(out)]))
    first = out.read_text().splitlines()
    assert len(first) == 4
    assert _in_thread(lambda: cli.main([*args, "--resume", str(out)])) == 0  # nothing new to scan
    assert out.read_text().splitlines() == first
