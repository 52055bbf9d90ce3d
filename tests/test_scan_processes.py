"""``--engine processes``: records identical to the local engine's, in input order, and none lost when a scanner
process dies mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli


def _pattern(k: int) -> np.ndarray:
    y, x = np.mgrid[0:96, 0:128]
    return np.stack([(x * (k + 1)) % 256, (y + 7 * k) % 256, (x * y + k) % 256], -1).astype(np.uint8)


def _inputs(folder: Path, n: int) -> Path:
    folder.mkdir()
    for k in range(n):
        Image.fromarray(_pattern(k)).save(folder / f"img{k:02d}.png")
    shutil.copy(folder / "img00.png", folder / "img00-copy.png")  # a duplicate: resolved by the driver
    (folder / "broken.jpg").write_text("not an image")  # a per-file error from a worker
    (folder / "empty.png").write_bytes(b"")
    return folder


def _scan(src: Path, model: str, out: Path, *extra: str) -> tuple[int, list[dict]]:
    rc = cli.main([
        "-q", "scan", str(src), "--model", model, "--device", "cpu", "--threads", "1", "--threshold", "0",
        "--jsonl", str(out), "--no-table", "--batch", "2", *extra,
    ])  # fmt: skip
    return rc, [json.loads(line) for line in out.read_text().splitlines()]


def _without_timings(rec: dict) -> dict:
    rec = dict(rec)
    rec.pop("timings_ms", None)
    rec["faces"] = [{k: v for k, v in f.items() if k != "timings_ms"} for f in rec.get("faces", [])]
    return rec


@pytest.mark.slow
def test_processes_engine_matches_local(tmp_path: Path, tiny_model: str) -> None:
    src = _inputs(tmp_path / "in", 5)
    rc_local, local = _scan(src, tiny_model, tmp_path / "local.jsonl")
    rc_proc, procs = _scan(src, tiny_model, tmp_path / "proc.jsonl", "--engine", "processes", "--actors", "2")
    assert rc_proc == rc_local == 1  # threshold 0: every scanned file is flagged
    assert [r["path"] for r in procs] == [r["path"] for r in local]
    assert [_without_timings(r) for r in procs] == [_without_timings(r) for r in local]
    by_name = {Path(r["path"]).name: r for r in procs}
    assert by_name["img00-copy.png"]["duplicate_of"] or by_name["img00.png"]["duplicate_of"]
    assert by_name["broken.jpg"]["status"] == by_name["empty.png"]["status"] == "error"
    assert by_name["broken.jpg"]["error"].startswith(str(src / "broken.jpg"))


@pytest.mark.slow
def test_processes_engine_survives_a_killed_worker(tmp_path: Path, tiny_model: str) -> None:
    """SIGKILL the only scanner process while files are in flight: they are retried alone in its replacement and
    every file still gets its own record, in input order."""
    from forensics.engines import ProcessEngine
    from forensics.scanning.config import ScanConfig
    from forensics_core.inputs import InputExpander

    src = _inputs(tmp_path / "in", 8)
    engine = ProcessEngine(tiny_model, ScanConfig(device="cpu", threads=1, batch=2, threshold="0"), actors=1)
    killed: list[int] = []

    def items() -> Iterator:
        for k, item in enumerate(InputExpander([str(src)])):
            if k == 3:  # the first jobs are with the worker by now (submitting waits for no answer)
                pool = engine._pool
                while pool.slots[0].state not in ("ready", "busy"):
                    time.sleep(0.02)
                killed.append(pool.slots[0].pid)
                os.kill(pool.slots[0].pid, signal.SIGKILL)
            yield item

    with engine:
        records = list(engine.run(items()))
        restarts = engine._pool.slots[0].restarts
    names = sorted(p.name for p in src.iterdir())
    assert killed and restarts >= 1
    assert sorted(Path(r.path).name for r in records) == names
    assert len({r.path for r in records}) == len(records)
    scanned = [r for r in records if r.path.endswith(".png") and "empty" not in r.path]
    assert all(r.status == "ok" and r.model["name"] == "tiny-npr" for r in scanned)


def test_processes_engine_refuses_bad_options(tiny_model: str) -> None:
    from forensics.engines import ProcessEngine
    from forensics.scanning.config import ScanConfig
    from forensics_core.errors import UsageError

    with pytest.raises(UsageError, match="--actors must be >= 1"):
        ProcessEngine(tiny_model, ScanConfig(), actors=0)
    with pytest.raises(UsageError, match="--address only applies"):
        ProcessEngine(tiny_model, ScanConfig(), address="auto")


@pytest.mark.slow
def test_scan_speed_measures_the_processes_engine(tiny_model: str, tmp_path: Path) -> None:
    pytest.importorskip("skimage.data")  # make_photos' fallback face without ../shared/data
    from benchmarks.scan_speed import make_photos, processes_markdown, run_processes

    paths = make_photos(tmp_path, 3)
    row = run_processes(paths, tiny_model, 1, repeat=2, local_threads=1, device="cpu", batch=2, workers=1)
    assert row["n"] == 3 and row["processes"] == 1 and len(row["runs"]) == len(row["local_runs"]) == 2
    assert row["images_per_s"] > 0 and row["local_images_per_s"] > 0 and row["start_s"] > 0 and row["restart_s"] > 0
    md = processes_markdown([row])
    assert "| 1 | cores / processes | 3 |" in md and f"{row['images_per_s'] / row['local_images_per_s']:.2f}x" in md


@pytest.mark.slow
def test_scan_speed_times_the_whole_command_and_checks_its_records(tmp_path: Path) -> None:
    """``--commands``: the command's wall from outside; a run that leaves fewer records than files is an error."""
    pytest.importorskip("skimage.data")
    from benchmarks.scan_speed import commands_markdown, make_photos, run_commands
    from forensics_core.errors import ForensicsError

    folder = Path(make_photos(tmp_path / "photos", 2)[0]).parent
    result = run_commands(folder, 2, ["local"], repeat=1, threads=1)
    assert len(result["runs"]["local"]) == 1 and result["images_per_s"]["local"] > 0
    assert "| local | 2 |" in commands_markdown(result)
    (folder / "extra.png").write_bytes(b"")  # a third file: three records where two were expected
    with pytest.raises(ForensicsError, match="3 of 2 records"):
        run_commands(folder, 2, ["local"], repeat=1, threads=1)


@pytest.mark.slow
def test_processes_engine_fails_in_one_line_when_no_worker_can_start(tiny_model: str, tmp_path: Path) -> None:
    """A worker that cannot build its scanner (here an unknown face detector, which the CLI would have refused) is
    retried by the pool for ever; the run must end with the worker's reason instead of waiting."""
    from forensics.engines import ProcessEngine
    from forensics.scanning.config import ScanConfig
    from forensics_core.errors import UsageError
    from forensics_core.inputs import InputExpander

    src = _inputs(tmp_path / "in", 1)
    engine = ProcessEngine(tiny_model, ScanConfig(device="cpu", face_detector="nope"), actors=1)
    with engine, pytest.raises(UsageError, match="no scanner process could start: .*unknown face detector 'nope'"):
        list(engine.run(InputExpander([str(src / "img00.png")])))


def test_processes_engine_workers_take_the_callers_folder_and_environment(
    tmp_path: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers fork from a server started earlier, with its own environment: an installed model named through a
    ``FORENSICS_HOME`` exported since, and relative paths given after a ``cd``, must reach the workers as they
    reach a spawned one."""
    from forensics.engines import ProcessEngine
    from forensics.scanning.config import ScanConfig
    from forensics.serve.pool import prestart_workers
    from forensics_core.inputs import InputExpander

    prestart_workers()  # the server starts here, before the environment and the folder change
    shutil.copytree(tiny_model, tmp_path / "home" / "models" / "tiny-installed")
    shutil.copytree(tiny_model, tmp_path / "work" / "runs" / "tiny")
    monkeypatch.setenv("FORENSICS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "work")
    src = _inputs(tmp_path / "work" / "in", 2)
    for model in ("tiny-installed", "runs/tiny"):  # a name under $FORENSICS_HOME/models; a path from this folder
        with ProcessEngine(model, ScanConfig(device="cpu", threads=1, batch=2), actors=1) as engine:
            records = list(engine.run(InputExpander([str(src / "img00.png"), "in/img01.png"])))
        assert [(Path(r.path).name, r.status, r.model["name"]) for r in records] == [
            ("img00.png", "ok", "tiny-npr"), ("img01.png", "ok", "tiny-npr")
        ], [r.error for r in records]  # fmt: skip


def test_a_worker_whose_front_is_gone_ends_quietly(tmp_path: Path, tiny_model: str) -> None:
    """A driver killed mid-scan (``kill -9``) closes the pipe under a worker that is still scanning its chunk: the
    worker must end cleanly at its next answer (exit code 0), not die on the closed pipe with a traceback."""
    from forensics.serve.pool import WorkerOptions, worker_context, worker_main

    src = _inputs(tmp_path / "in", 3)
    ctx = worker_context()
    front, child = ctx.Pipe(duplex=True)
    opts = WorkerOptions(model=tiny_model, scan={"device": "cpu", "threads": 1, "evidence": "none"}, json_logs=False)
    proc = ctx.Process(target=worker_main, args=(child, json.dumps(asdict(opts)), dict(os.environ)))
    proc.start()
    child.close()
    assert json.loads(front.recv_bytes())["op"] == "ready"
    jobs = [{"id": str(k), "path": str(src / f"img0{k}.png"), "name": f"img0{k}.png"} for k in range(3)]
    front.send_bytes(json.dumps({"op": "scan", "jobs": jobs}).encode())
    front.close()  # gone before the first answer could be read
    proc.join(60)
    assert proc.exitcode == 0


def test_processes_engine_starts_no_worker_for_no_files(tiny_model: str) -> None:
    from forensics.engines import ProcessEngine
    from forensics.scanning.config import ScanConfig

    with ProcessEngine(tiny_model, ScanConfig(device="cpu"), actors=2) as engine:
        assert list(engine.run([])) == []
        assert engine._pool is None


@pytest.mark.slow
def test_auto_engine_moves_long_cpu_scans_to_processes(
    tmp_path: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--engine auto`` (the CLI's default): worker processes from ``AutoEngine.min_files`` listed files on, with the
    local engine's records; the local engine below it, for ``--report`` scans (face crops) and for stdin paths."""
    from forensics.engines import AutoEngine, LocalEngine, ProcessEngine
    from forensics.scanning.config import ScanConfig
    from forensics_core.inputs import InputExpander

    src = _inputs(tmp_path / "in", 5)
    monkeypatch.setattr(AutoEngine, "min_files", 4)
    monkeypatch.setattr("forensics.engines.usable_cpus", lambda: 2)
    cfg = ScanConfig(device="cpu", threads=1, batch=2, threshold="0")

    def run(config: ScanConfig, items: list, **options: object) -> tuple[list[dict], type]:
        with AutoEngine(tiny_model, config, actors=1, **options) as engine:
            records = [_without_timings(r.to_dict()) for r in engine.run(items)]
            return records, type(engine.chosen)

    every = list(InputExpander([str(src)]))
    local = [_without_timings(r.to_dict()) for r in LocalEngine(tiny_model, cfg).run(every)]
    assert run(cfg, every) == (local, ProcessEngine)
    assert run(cfg, every[:3]) == (local[:3], LocalEngine)
    assert run(cfg, every, streamed=True)[1] is LocalEngine
    assert run(ScanConfig(device="cpu", threads=1, batch=2, threshold="0", keep_images=True), every)[1] is LocalEngine
