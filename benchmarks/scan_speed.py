"""Throughput of ``forensics scan`` on 512 px photos with faces, and its overhead over the unavoidable work.

The number a moderation pipeline needs is images/s end to end (decode, face detection, alignment, model, output),
and the question an engineer asks is "how much of that is the pipeline's own overhead?". So the script measures,
in the same run, the wall time of the whole scan and the time spent inside the face detector and the model
forward, and reports ``ratio = total / (detect + model)`` (issue #34's goal: <= 1.10 with evidence off). Evidence on is
measured separately (it is per-file CPU work an analyst asks for, not pipeline overhead).

Test photos: 512 x 512 JPEGs (q90), each a real face pasted at a random position and scale onto a textured
background: UTKFace crops from ``../shared/data`` when present (never copied into the repo), else scikit-image's
public-domain astronaut photo with random crops. They are written to ``--workdir`` (default: a temp dir).

``--faces`` adds rows with other face stages (``NAME@SIDE``: detector and detection side, as in
``benchmarks.faces_speed``), e.g. ``mtcnn@1024``, the scan's face stage before issue #34, measured in the same run.
``--videos`` measures the video path: sampled frames per second end to end on the shared talking-head clips (512 px)
and the 1080p street clip, at the default sampling (1 frame/s), at dense sampling (``--fps 25``: the 32-frame budget
spread over the clip) and dense with ``--detect-every 4`` (faces followed by O-Net between full detections).
``--per-analysis N`` times each evidence analysis alone on N photos (what each adds to a ``--report`` scan).
``--processes 1,2`` adds rows for ``--engine processes`` with that many scanner processes (each with
``cores / processes`` torch threads), evidence off, each against the local engine in alternating runs: the steady
rate once the workers are up (a moderation pipeline's long run) and, apart, the seconds their start took (what a
short ``forensics scan`` also pays). ``--commands auto,local`` times the whole ``forensics scan`` command per engine
from outside (interpreter start, model and worker start, every file), in rotating runs.

Example::

    python -m benchmarks.scan_speed --n 200 --device cpu --threads 2 --faces mtcnn@1024 --videos \
        --out benchmarks/results/scan.md
    python -m benchmarks.scan_speed --n 128 --device cpu --threads 2 --evidence none --processes 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.record import RunRecord, command_line, start_record
from forensics_core.config import shared_data_dir
from forensics_core.errors import ForensicsError


def make_photos(out: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct 512 px JPEG photos with one face each (see module docstring)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    data = shared_data_dir()
    faces: list[Path] = sorted((data / "real_faces" / "utkface_bagashvilit").glob("*.jpg"))[:2000] if data else []
    if not faces:
        from skimage import data as skd

        astro = Image.fromarray(skd.astronaut())
    paths = []
    for i in range(n):
        yy, xx = np.mgrid[0:512, 0:512]
        f1, f2 = rng.uniform(0.005, 0.05, 2)
        bg = np.stack([127 + 60 * np.sin(f1 * xx + i), 127 + 60 * np.cos(f2 * yy), 127 + 40 * np.sin(f1 * yy)], -1)
        bg = np.clip(bg + rng.normal(0, 8, bg.shape), 0, 255).astype(np.uint8)
        canvas = Image.fromarray(bg)
        if faces:
            face = Image.open(faces[int(rng.integers(len(faces)))]).convert("RGB")
            side = int(rng.integers(180, 300))
            face = face.resize((side, side), Image.BICUBIC)
        else:
            x0, y0 = int(rng.integers(100, 140)), int(rng.integers(20, 50))
            side = int(rng.integers(200, 260))
            face = astro.crop((x0, y0, x0 + 256, y0 + 256)).resize((side, side), Image.BICUBIC)
        canvas.paste(face, (int(rng.integers(0, 512 - side)), int(rng.integers(0, 512 - side))))
        p = out / f"photo-{i:05d}.jpg"
        canvas.save(p, quality=90)
        paths.append(str(p))
    return paths


def run_once(paths: list[str], model: Any, evidence: str, **cfg: Any) -> dict:
    """Scan ``paths`` once (after a warm-up on a few of them) and return the timing breakdown."""
    from forensics.engines import LocalEngine
    from forensics.scanning.config import ScanConfig
    from forensics_core.inputs import InputExpander

    engine = LocalEngine(model=model, config=ScanConfig(evidence=evidence, **cfg))
    list(engine.run(InputExpander(paths[: min(8, len(paths))], dedupe=False)))  # warm-up: lazy inits, allocator
    sc = engine.scanner
    sc.totals = dict.fromkeys(sc.totals, 0.0)
    t0 = time.perf_counter()
    results = list(engine.run(InputExpander(paths)))
    wall = time.perf_counter() - t0
    ok = [r for r in results if r.status == "ok"]
    core = (sc.totals["detect"] + sc.totals["model"]) / 1000
    return {
        "evidence": evidence,
        "faces": f"{sc.config.face_detector}@{sc.config.detect_max_side}",
        "n": len(results),
        "ok": len(ok),
        "with_face": sum(not r.no_face for r in ok),
        "wall_s": wall,
        "images_per_s": len(results) / wall,
        "ms_per_image": 1000 * wall / len(results),
        "detect_s": sc.totals["detect"] / 1000,
        "model_s": sc.totals["model"] / 1000,
        "load_s": sc.totals["load"] / 1000,
        "evidence_s": sc.totals["evidence"] / 1000,
        "ratio": wall / core if core else float("nan"),
        "device": str(getattr(sc.model, "device", "")),
    }


def run_processes(
    paths: list[str], model: str, processes: int, repeat: int = 5, local_threads: int | None = None, **cfg: Any
) -> dict:
    """``--engine processes`` with ``processes`` workers against the local engine, alternately in the same spell.

    The start (the first run, on 8 photos: the fork server's imports, then the model in each worker) is timed
    apart (with ``--processes 1,2`` the later rows find the server already up);
    one untimed pass over ``paths`` follows (every worker meets its first full chunks, as in a long run). Then
    ``repeat`` rounds, each one run of both engines over ``paths`` in alternating order: a shared machine's
    speed drifts by more than the difference measured, so only runs of the same spell are compared; the rates
    are the medians. ``cfg`` are ScanConfig fields; ``threads`` None gives each worker ``cores / processes``, the
    local engine runs with ``local_threads`` (its own default: every core)."""
    from forensics.engines import LocalEngine, ProcessEngine
    from forensics.scanning.config import ScanConfig
    from forensics_core.inputs import InputExpander

    local = LocalEngine(model=model, config=ScanConfig(evidence="none", **{**cfg, "threads": local_threads}))
    list(local.run(InputExpander(paths[: min(8, len(paths))], dedupe=False)))
    runs: dict[str, list[float]] = {"processes": [], "local": []}
    found = 0
    with ProcessEngine(model, ScanConfig(evidence="none", **cfg), actors=processes) as engine:
        t0 = time.perf_counter()
        list(engine.run(InputExpander(paths[: min(8, len(paths))], dedupe=False)))
        start = time.perf_counter() - t0
        list(engine.run(InputExpander(paths)))  # untimed: 8 photos warm one worker, not every worker's shapes
        for k in range(repeat):
            order = [("processes", engine), ("local", local)]
            for name, eng in order if k % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                results = list(eng.run(InputExpander(paths)))
                runs[name].append(len(results) / (time.perf_counter() - t0))
                if name == "processes":
                    found = sum(r.status == "ok" and not r.no_face for r in results)
    with ProcessEngine(model, ScanConfig(evidence="none", **cfg), actors=processes) as again:
        t0 = time.perf_counter()  # the fork server is up: what a replacement worker (or the next scan) costs
        list(again.run(InputExpander(paths[: min(8, len(paths))], dedupe=False)))
        restart = time.perf_counter() - t0
    return {
        "processes": processes,
        "threads": cfg.get("threads") or "cores / processes",
        "n": len(paths),
        "with_face": found,
        "runs": runs["processes"],
        "images_per_s": float(np.median(runs["processes"])),
        "local_runs": runs["local"],
        "local_images_per_s": float(np.median(runs["local"])),
        "start_s": start,
        "restart_s": restart,
    }


def processes_markdown(rows: list[dict]) -> str:
    return "\n".join([
        "", "## `--engine processes` against the local engine (evidence off, alternating runs)", "",
        "Each row: the workers started by a first run on 8 photos (`start s`: the fork server's imports, then the "
        "model and face detector in each worker, in parallel), one untimed pass over the photos, then rounds of one "
        "run of each engine over the photos, in alternating order; `images/s` are the medians of each engine's "
        "runs; `restart s`: a new engine's first 8 photos once the fork server is up (what a replacement worker "
        "costs).", "",
        "| processes | torch threads each | images | faces found | images/s | runs | local engine images/s | "
        "local runs | speed-up | start s | restart s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(f"| {r['processes']} | {r['threads']} | {r['n']} | {r['with_face']} | {r['images_per_s']:.2f} | "
          f"{', '.join(f'{x:.1f}' for x in r['runs'])} | {r['local_images_per_s']:.2f} | "
          f"{', '.join(f'{x:.1f}' for x in r['local_runs'])} | "
          f"{r['images_per_s'] / r['local_images_per_s']:.2f}x | {r['start_s']:.2f} | {r['restart_s']:.2f} |"
          for r in rows),
    ]) + "\n"  # fmt: skip


def run_commands(folder: Path, n: int, engines: list[str], repeat: int = 3, threads: int | None = None) -> dict:
    """The whole ``forensics scan FOLDER --engine E`` command, timed from outside (interpreter start, model load,
    worker start, every file, the JSONL written): what a user's script that calls the command pays. Rounds of one
    run per engine, the order rotating each round (the host's speed drifts); the rates are the medians."""
    import subprocess

    runs: dict[str, list[float]] = {e: [] for e in engines}
    with tempfile.TemporaryDirectory(prefix="scan-e2e-") as tmp:
        out = Path(tmp) / "records.jsonl"
        for k in range(repeat):
            for engine in engines[k % len(engines):] + engines[: k % len(engines)]:
                cmd = [sys.executable, "-m", "cli", "-q", "scan", str(folder), "--engine", engine, "--device", "cpu",
                       "--evidence", "none", "--no-table", "--jsonl", str(out)]
                cmd += ["--threads", str(threads)] if threads else []
                out.unlink(missing_ok=True)
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                records = len(out.read_text(encoding="utf-8").splitlines()) if out.exists() else 0
                if proc.returncode not in (0, 1) or records != n:  # 0: none flagged, 1: some flagged
                    raise ForensicsError(f"scan --engine {engine}: exit {proc.returncode}, {records} of {n} records: "
                                         f"{proc.stderr.strip()[-300:]}")
                runs[engine].append(n / wall)
    return {"n": n, "runs": runs, "images_per_s": {e: float(np.median(r)) for e, r in runs.items()}}


def commands_markdown(result: dict) -> str:
    lines = [
        "", "## The whole command, end to end (evidence off, rotating runs)", "",
        "Each run: `python -m cli -q scan FOLDER --engine E --device cpu --evidence none --no-table --jsonl OUT`, "
        "timed from outside (interpreter start, model load, worker start, every file); images/s = files / wall, "
        "medians of the runs.", "",
        "| engine | images | images/s (median) | runs |", "|---|---|---|---|",
    ]
    for engine, runs in result["runs"].items():
        lines.append(f"| {engine} | {result['n']} | {result['images_per_s'][engine]:.2f} | "
                     f"{', '.join(f'{x:.1f}' for x in runs)} |")
    return "\n".join(lines) + "\n"


#: video runs: label -> ScanConfig overrides (the default sampling, dense sampling, dense with faces followed)
VIDEO_RUNS = {
    "default (1 frame/s)": {},
    "--fps 25": {"fps": 25.0},
    "--fps 25 --detect-every 4": {"fps": 25.0, "detect_every": 4},
}


def video_sets() -> dict[str, list[str]]:
    """The shared clips by kind: 512 px talking heads (one face) and the 1080p street clip (several small faces)."""
    data = shared_data_dir()
    if data is None:
        return {}
    return {
        "talking heads 512 px": sorted(str(p) for p in (data / "videos" / "hdtf-real_sadtalker").glob("*.mp4")),
        "street 1080p": [str(data / "videos" / "facenet-pytorch" / "video.mp4")],
    }


def run_videos(model: Any, faces: list[str], **cfg: Any) -> list[dict]:
    """Sampled frames per second of each video set under each of :data:`VIDEO_RUNS` (and each extra face stage at
    the default sampling)."""
    from forensics.engines import LocalEngine
    from forensics.scanning.config import ScanConfig
    from forensics_core.inputs import InputExpander

    runs = dict(VIDEO_RUNS)
    for stage in faces:
        name, _, side = stage.partition("@")
        runs[f"default, {stage}"] = {"face_detector": name, **({"detect_max_side": int(side)} if side else {})}
    rows = []
    for kind, paths in video_sets().items():
        for label, over in runs.items():
            engine = LocalEngine(model=model, config=ScanConfig(evidence="none", **{**cfg, **over}))
            list(engine.run(InputExpander(paths[:1], dedupe=False)))  # warm-up
            sc = engine.scanner
            sc.totals = dict.fromkeys(sc.totals, 0.0)
            t0 = time.perf_counter()
            results = list(engine.run(InputExpander(paths, dedupe=False)))
            wall = time.perf_counter() - t0
            frames = sum(r.frames_sampled or 0 for r in results)
            rows.append({
                "videos": kind, "run": label, "faces_stage": f"{sc.config.face_detector}@{sc.config.detect_max_side}",
                "files": len(results), "frames": frames, "faces": sum(len(r.faces) for r in results),
                "tracks": sum(len(r.tracks) for r in results), "wall_s": wall, "frames_per_s": frames / wall,
                "detect_s": sc.totals["detect"] / 1000, "model_s": sc.totals["model"] / 1000,
            })  # fmt: skip
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    return rows


def video_markdown(rows: list[dict]) -> str:
    lines = [
        "",
        "## Video: sampled frames per second",
        "",
        "Each row scans every clip of the set once (after a warm-up), evidence off. `frames/s` = frames sampled and "
        "scored / wall time (decode of the skipped frames included).",
        "",
        "| videos | run | face stage | files | frames sampled | faces | tracks | wall s | frames/s | detect s "
        "| model s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['videos']} | {r['run']} | {r['faces_stage']} | {r['files']} | {r['frames']} | {r['faces']} | "
            f"{r['tracks']} | {r['wall_s']:.2f} | {r['frames_per_s']:.1f} | {r['detect_s']:.2f} | {r['model_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def time_analyses(paths: list[str], model: Any, device: str) -> dict[str, float]:
    """Milliseconds per image of each registered evidence analysis alone, on ``paths``: what each one adds to a
    ``--report`` scan. Faces are found by the scan's default face stage; file-scope analyses get the subject the
    scanner builds (pixels, boxes, landmarks), face-scope ones the model's crop of the first face."""
    from forensics.evidence import EVIDENCE, EvidenceSubject, run_face_evidence, run_file_evidence
    from forensics.scanning.config import ScanConfig
    from forensics_core.faces import get_face_detector
    from forensics_core.faces.crops import crop_faces

    detector = get_face_detector(ScanConfig().face_detector, device)
    spent = dict.fromkeys(EVIDENCE.names(), 0.0)
    for path in paths:
        img = np.asarray(Image.open(path).convert("RGB"))
        faces = detector.detect([img])[0]
        subject = EvidenceSubject(path=path, media_type="image", pixels=img, face_boxes=[tuple(f.box) for f in faces],
                                  face_landmarks=[np.asarray(f.landmarks, np.float64) for f in faces])  # fmt: skip
        crop = crop_faces(img, faces[:1], model.preprocess)[0].pixels
        for name in spent:
            t0 = time.perf_counter()
            if EVIDENCE.get(name).meta.get("scope") == "face":
                run_face_evidence([name], crop, model)
            else:
                run_file_evidence([name], subject)
            spent[name] += time.perf_counter() - t0
    return {name: 1000 * s / max(1, len(paths)) for name, s in sorted(spent.items(), key=lambda kv: -kv[1])}


def analyses_markdown(ms: dict[str, float], n: int) -> str:
    return "\n".join([
        "", f"## Evidence analyses one at a time ({n} photos, one thread of analyses)", "",
        "| analysis | ms per image |", "|---|---|", *(f"| {k} | {v:.1f} |" for k, v in ms.items()),
    ]) + "\n"  # fmt: skip


def markdown(rows: list[dict], rec: RunRecord, model_name: str) -> str:
    env = rec.environment
    lines = [
        "# forensics scan throughput",
        "",
        f"Command: `{rec.command}` at commit `{rec.commit}`",
        "",
        f"Machine: {env['machine']}, {env['cpu_count']} logical CPUs, "
        f"torch {env.get('torch')}, torch threads {env.get('torch_threads')}, Python {env['python']}; "
        f"model `{model_name}`; {rec.date()}.",
        "",
        "Photos: 512x512 JPEG q90 with one real face each (see `benchmarks/scan_speed.py`). `ratio` = wall time of "
        "the whole scan / (face detection + model forward) time measured in the same run; goal <= 1.10 with "
        "evidence off (issue #34).",
        "",
        "| evidence | face stage | device | images | faces found | images/s | ms/image | detect s | model s | "
        "decode s (threads) | evidence s | wall s | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['evidence']} | {r['faces']} | {r['device']} | {r['n']} | {r['with_face']} | "
            f"{r['images_per_s']:.2f} | "
            f"{r['ms_per_image']:.1f} | {r['detect_s']:.2f} | {r['model_s']:.2f} | {r['load_s']:.2f} | "
            f"{r['evidence_s']:.2f} | {r['wall_s']:.2f} | {r['ratio']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scan_speed", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="number of photos")
    ap.add_argument("--model", default="default")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--evidence", default="none,all", help="comma list of evidence settings to measure, in order")
    ap.add_argument("--faces", default="", help="comma list of extra face stages NAME@SIDE to measure with evidence "
                    "off (e.g. mtcnn@1024: the face stage before issue #34)")  # fmt: skip
    ap.add_argument("--videos", action="store_true", help="also measure sampled video frames/s (needs ../shared/data)")
    ap.add_argument("--per-analysis", type=int, default=0, metavar="N",
                    help="also time each evidence analysis alone on the first N photos")
    ap.add_argument("--processes", default="", help="comma list of scanner-process counts to measure with "
                    "--engine processes, evidence off (e.g. 1,2)")  # fmt: skip
    ap.add_argument("--commands", default="", help="comma list of engines whose whole 'forensics scan' command is "
                    "timed end to end, in rotating runs (e.g. auto,local)")  # fmt: skip
    ap.add_argument("--workdir", default=None, help="where the generated photos go (default: a temp dir)")
    ap.add_argument("--out", default=None, help="write a markdown table here (e.g. benchmarks/results/scan.md)")
    args = ap.parse_args(argv)
    if args.threads:  # before the record, so it states the thread count the runs use
        import torch

        torch.set_num_threads(args.threads)
    rec = start_record(command_line("benchmarks.scan_speed", argv))
    try:
        from forensics.scanning.config import resolve_model

        model = resolve_model(args.model, args.device)
        with tempfile.TemporaryDirectory(prefix="scan-speed-") as tmp:
            paths = make_photos(Path(args.workdir or tmp), args.n)
            rows = []
            for ev in args.evidence.split(","):
                ev = "all" if ev == "all" else ("none" if ev == "none" else ev.replace("+", ","))
                r = run_once(paths, model, ev, device=args.device, threads=args.threads, batch=args.batch,
                             workers=args.workers)  # fmt: skip
                rows.append(r)
                print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
            faces = [f for f in args.faces.split(",") if f]
            for stage in faces:
                name, _, side = stage.partition("@")
                r = run_once(paths, model, "none", device=args.device, threads=args.threads, batch=args.batch,
                             workers=args.workers, face_detector=name,
                             **({"detect_max_side": int(side)} if side else {}))  # fmt: skip
                rows.append(r)
                print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
            video_rows = (
                run_videos(model, faces, device=args.device, threads=args.threads, batch=args.batch,
                           workers=args.workers) if args.videos else []
            )  # fmt: skip
            per_analysis = time_analyses(paths[: args.per_analysis], model, args.device) if args.per_analysis else {}
            proc_rows = []
            for n_proc in (int(k) for k in args.processes.split(",") if k):
                r = run_processes(paths, args.model, n_proc, local_threads=args.threads, device=args.device,
                                  batch=args.batch, workers=args.workers)  # fmt: skip
                proc_rows.append(r)
                print(r, flush=True)
            engines = [e for e in args.commands.split(",") if e]
            # the commands run with their own defaults (no --threads): what a user who types them gets
            commands = run_commands(Path(paths[0]).parent, len(paths), engines) if engines else {}
            if commands:
                print(commands, flush=True)
    except ForensicsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    md = markdown(rows, rec, model.name)
    if video_rows:
        md += video_markdown(video_rows)
    if per_analysis:
        md += analyses_markdown(per_analysis, min(args.per_analysis, len(paths)))
    if proc_rows:
        md += processes_markdown(proc_rows)
    if commands:
        md += commands_markdown(commands)
    print(md)
    if args.out:
        Path(args.out).write_text(md, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
