"""Kill ``forensics scan`` with SIGKILL at random points, ``--resume`` each time: no record lost or duplicated.

A moderation worker gets killed (OOM killer, preemption, a deploy). ``--resume OUT.jsonl`` must then finish the job
so that every input has exactly one record: nothing lost (a record half-written at the kill is trimmed and its
file rescanned), nothing twice (a file whose record reached the file is skipped).

The corpus (``--n`` files, reproducible from ``--seed``, no shared data) is mostly small generated photos, plus
hostile files (zero-byte, truncated, text named ``.jpg``), byte-identical duplicates, a short MP4 and a FIFO named
``.jpg``. Procedure:

1. one uninterrupted scan: the reference records;
2. ``--kills`` times: start ``scan --resume out.jsonl`` (the first time ``--jsonl``) and ``kill -9`` it at a random
   point: every fifth run (3rd, 8th) during start-up (0.2 s .. ``--startup-s``: imports, model load, reading the resume
   file), the others 0-50 ms after a random number of new records reached the file (so mid-scan, sometimes
   mid-write), spread so that the ten kills cover the whole folder;
3. one last ``--resume`` run to completion;
4. compare: paths missing from out.jsonl (lost), paths with more than one record (duplicated), and records whose
   status / verdict / probability differ from the reference.

Example::

    python -m benchmarks.kill_resume --n 1000 --kills 10 --work /tmp/kill-resume --out benchmarks/results/fuzz
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_corpus(work: Path, n: int, seed: int) -> list[str]:
    """``n`` files under ``work/in``; returns their paths (what must each get exactly one record)."""
    from forensics_core.media import write_video

    rng = np.random.default_rng(seed)
    d = work / "in"
    if work.exists():
        shutil.rmtree(work)
    (d / "bad").mkdir(parents=True)
    paths: list[Path] = []
    n_photos = n - 12
    for i in range(n_photos):
        side = int(rng.integers(48, 129))
        y, x = np.mgrid[0:side, 0:side]
        a, b, c = rng.uniform(0.02, 0.2, 3)
        img = np.stack([127 + 100 * np.sin(a * x + i), 127 + 100 * np.cos(b * y), 127 + 80 * np.sin(c * (x + y))], -1)
        img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        p = d / f"{i // 100:02d}" / f"img{i:05d}.{'jpg' if i % 2 else 'png'}"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(img).save(p, **({"quality": 90} if i % 2 else {}))
        paths.append(p)
    for k in range(5):  # byte-identical copies: scanned once, recorded with duplicate_of
        src = paths[int(rng.integers(len(paths)))]
        dup = d / "dups" / f"copy{k}{src.suffix}"
        dup.parent.mkdir(exist_ok=True)
        shutil.copy(src, dup)
        paths.append(dup)
    good = paths[1].read_bytes()
    bad = d / "bad"
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (bad / "text.jpg").write_text("not a picture\n")
    (bad / "random.png").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    os.mkfifo(bad / "fifo.jpg")
    frames = [np.roll(np.asarray(Image.open(paths[0]).convert("RGB").resize((64, 64))), 2 * t, 1) for t in range(8)]
    write_video(bad / "clip.mp4", frames, fps=8)
    paths += [bad / n for n in ("zero.jpg", "truncated.jpg", "text.jpg", "random.png", "fifo.jpg", "clip.mp4")]
    while len(paths) < n:  # top up with a few more photos so the count is exactly n
        p = d / "extra" / f"x{len(paths)}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return sorted(str(p) for p in paths)


def scan_cmd(work: Path, out: Path, args: argparse.Namespace, resume: bool) -> list[str]:
    return [sys.executable, "-m", "cli", "-q", "scan", str(work / "in"), "--no-table", "--device", "cpu",
            "--evidence", "none", "--threads", str(args.threads), "--workers", "2", "--timeout", "60",
            "--resume" if resume else "--jsonl", str(out)]  # fmt: skip


def _lines(path: Path) -> tuple[int, bool]:
    """Complete lines in ``path`` and whether it ends with a partial line (a record cut by the kill)."""
    if not path.exists():
        return 0, False
    data = path.read_bytes()
    return data.count(b"\n"), bool(data) and not data.endswith(b"\n")


def _key(rec: dict) -> tuple:
    """What must not depend on where the kills fell. Not ``duplicate_of``: a copy whose first copy was recorded
    by an earlier run is scanned for real after a resume (documented), so only its scores must agree. Probabilities
    are compared to 4 decimals: batches are composed differently after a resume, and batched float sums differ in
    the last bits."""
    p = rec["fake_probability"]
    return rec["status"], rec["error_type"], rec["verdict"], None if p is None else round(p, 4)


def run(args: argparse.Namespace) -> dict:
    work = Path(args.work)
    expected = make_corpus(work, args.n, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    ref_out = work / "reference.jsonl"
    t0 = time.monotonic()
    subprocess.run(scan_cmd(work, ref_out, args, False), cwd=ROOT, env=env, check=False, timeout=args.wall_limit)
    ref_wall = time.monotonic() - t0
    reference = {r["path"]: r for r in map(json.loads, ref_out.read_text().splitlines())}
    out = work / "out.jsonl"
    kills = []
    for k in range(args.kills):
        before, _ = _lines(out)
        left = len(expected) - before
        # a random point: runs 3 and 8 (of 10) are killed at a random time during start-up (imports, model load,
        # reading the resume file), the others 0-50 ms after a random number of new records reached the file
        early = k % 5 == 2
        target = before + int(rng.integers(1, max(2, 2 * left // (args.kills - k + 1))))
        delay = float(rng.uniform(0.2, args.startup_s)) if early else float(rng.uniform(0, 0.05))
        proc = subprocess.Popen(scan_cmd(work, out, args, resume=k > 0), cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        t_start = time.monotonic()
        if not early:
            while proc.poll() is None and _lines(out)[0] < target and time.monotonic() - t_start < args.wall_limit:
                time.sleep(0.02)
        try:
            proc.wait(timeout=delay)
            finished = True  # it completed before the kill
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            finished = False
        after, partial = _lines(out)
        kills.append({"kill": k + 1, "after_s": round(time.monotonic() - t_start, 2), "during_startup": early,
                      "records_before": before, "records_after": after, "partial_line_left": partial,
                      "finished_before_kill": finished})  # fmt: skip
    t1 = time.monotonic()
    final = subprocess.run(scan_cmd(work, out, args, resume=True), cwd=ROOT, env=env, timeout=args.wall_limit,
                           capture_output=True, text=True)  # fmt: skip
    final_wall = time.monotonic() - t1
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    per_path = Counter(r["path"] for r in recs)
    exp = set(expected)
    return {
        "files": len(expected),
        "reference_records": len(reference),
        "reference_wall_s": round(ref_wall, 1),
        "records": len(recs),
        "lost": len(exp - set(per_path)),
        "duplicated": sum(1 for c in per_path.values() if c > 1),
        "unexpected": len(set(per_path) - exp),
        "differs_from_reference": sum(1 for r in recs if _key(r) != _key(reference.get(r["path"], r))),
        "kills": kills,
        "actual_kills": sum(1 for k in kills if not k["finished_before_kill"]),
        "kills_with_partial_line": sum(1 for k in kills if k["partial_line_left"]),
        "final_resume_records": len(recs) - kills[-1]["records_after"] if kills else len(recs),
        "final_resume_wall_s": round(final_wall, 1),
        "final_exit_code": final.returncode,
        "tracebacks": final.stderr.count("Traceback"),
        "by_status": dict(Counter(r["status"] for r in recs)),
    }


def write_report(out_dir: Path, s: dict, argv: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "kill_resume.json").write_text(json.dumps(s, indent=1) + "\n")
    ok = s["lost"] == 0 and s["duplicated"] == 0 and s["unexpected"] == 0 and s["differs_from_reference"] == 0
    rows = "\n".join(
        f"| {k['kill']} | {k['after_s']} | {'start-up' if k['during_startup'] else 'scanning'} | "
        f"{k['records_before']} | {k['records_after']} | "
        f"{'yes' if k['partial_line_left'] else 'no'} | {'finished first' if k['finished_before_kill'] else 'killed'} |"
        for k in s["kills"]
    )
    md = f"""# `kill -9` during a scan, then `--resume`

**{"PASS" if ok else "FAIL"}**: {s["lost"]} records lost, {s["duplicated"]} duplicated over {s["actual_kills"]} kills.

Command: `python -m benchmarks.kill_resume {" ".join(argv)}`

Commit: `{s["commit"]}`; {s["machine"]}; {s["date"]}.
Each run: `forensics -q scan IN --resume out.jsonl --evidence none --threads 1 --workers 2 --timeout 60` (the first
with `--jsonl`), killed with SIGKILL at a random point (see `benchmarks/kill_resume.py`); then one last `--resume`
to completion.

| check | result |
|---|---|
| files (photos, 5 byte-identical copies, zero-byte, truncated, text `.jpg`, random bytes, FIFO, MP4) | {s["files"]} |
| reference: one uninterrupted run | {s["reference_records"]} records, {s["reference_wall_s"]} s wall |
| kills (SIGKILL mid-run) / kills that left a half-written line | {s["actual_kills"]} / {s["kills_with_partial_line"]} |
| records after the final `--resume` | {s["records"]} ({", ".join(f"{k} {v}" for k, v in s["by_status"].items())}) |
| **lost** (file without a record) | **{s["lost"]}** |
| **duplicated** (file with more than one record) | **{s["duplicated"]}** |
| records for paths that are not inputs | {s["unexpected"]} |
| records whose status / error type / verdict / probability differ from the reference | {s["differs_from_reference"]} |
| final resume: records added, wall s, exit code, tracebacks | {s["final_resume_records"]}, \
{s["final_resume_wall_s"]}, {s["final_exit_code"]}, {s["tracebacks"]} |

| kill | killed after s | when | complete lines before | after | partial line left | run |
|---|---|---|---|---|---|---|
{rows}
"""
    (out_dir / "kill_resume.md").write_text(md)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Example::")[-1])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--startup-s", type=float, default=4.0, help="Kills during start-up land in 0.2 s .. this.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--wall-limit", type=float, default=1800.0, help="Limit for each uninterrupted run (hang).")
    ap.add_argument("--work", default="/tmp/forensics-kill-resume")
    ap.add_argument("--out", default="benchmarks/results/fuzz")
    args = ap.parse_args(argv)
    from benchmarks.record import command_line, start_record

    rec = start_record(command_line("benchmarks.kill_resume", argv))
    s = run(args)
    s.update(commit=rec.commit, date=rec.date(), machine=rec.machine(), command=rec.command, started=rec.started,
             environment=rec.environment)
    write_report(Path(args.out), s, argv)
    print(json.dumps({k: v for k, v in s.items() if k not in ("kills", "environment")}, indent=1))
    return 0 if s["lost"] == 0 and s["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
