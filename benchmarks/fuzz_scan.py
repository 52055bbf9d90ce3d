"""Fuzz ``forensics scan``: thousands of mutated media files, plus FIFOs and sockets, must each give one record.

A moderation pipeline scans whatever users upload. This benchmark builds a corpus that is reproducible from
``--seed`` and holds no shared data: small valid seed files written here (JPEG, PNG, WebP, GIF, TIFF, MP4 made
with numpy / Pillow / PyAV), mutated by the operators in ``MUTATORS`` (bit flips, byte overwrites, truncation,
chunk duplication, header edits, random bytes behind a real magic number, and pure random bytes), one to three
operators per file. A ``special/`` folder adds files that are not regular files at all: named pipes (FIFOs) and a
Unix socket with media names, the case that used to hang a scan forever.

It then runs the real CLI once over the whole corpus (``forensics -q scan DIR --jsonl ...``) in a child process
with a wall-clock limit and checks what a user relies on:

* no hang: the scan ends by itself within ``--wall-limit`` (a hang is a kill by that limit);
* no traceback on stderr, every error message one line naming its file;
* every file exactly one record (none missing, none twice); every FIFO / socket an ``UnreadableMediaError``;
* bounded memory: the child's peak RSS (``getrusage``) is reported.

Example::

    python -m benchmarks.fuzz_scan --n 10000 --work /tmp/fuzz --out benchmarks/results/fuzz --threads 1
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.record import command_line, start_record

Mutator = Callable[[np.random.Generator, bytes], bytes]
MUTATORS: dict[str, Mutator] = {}
SEED_SIDES = (24, 64, 112)  # small, so decodable mutants also get through faces and the model quickly
SPECIAL_NAMES = ("fifo.jpg", "fifo.mp4", "pipe-no-extension", "socket.png")


def mutator(name: str) -> Callable[[Mutator], Mutator]:
    """Register a byte-level mutation operator under ``name`` (the corpus manifest records which ones were used)."""

    def deco(fn: Mutator) -> Mutator:
        if name in MUTATORS:
            raise ValueError(f"mutator {name!r} registered twice")
        MUTATORS[name] = fn
        return fn

    return deco


def _pos(rng: np.random.Generator, n: int) -> int:
    return int(rng.integers(0, max(1, n)))


@mutator("bitflip")
def bitflip(rng: np.random.Generator, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 17))):
        i = _pos(rng, len(b))
        if b:
            b[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


@mutator("overwrite")
def overwrite(rng: np.random.Generator, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        if b:
            b[_pos(rng, len(b))] = int(rng.choice([0x00, 0xFF, 0x7F, 0x80, int(rng.integers(0, 256))]))
    return bytes(b)


@mutator("truncate")
def truncate(rng: np.random.Generator, data: bytes) -> bytes:
    return data[: _pos(rng, len(data))]


@mutator("duplicate_chunk")
def duplicate_chunk(rng: np.random.Generator, data: bytes) -> bytes:
    """Copy a slice (up to 4 KiB) and insert it elsewhere: repeated PNG chunks, JPEG segments, MP4 boxes."""
    a = _pos(rng, len(data))
    b = min(len(data), a + int(rng.integers(1, 4097)))
    at = _pos(rng, len(data) + 1)
    return data[:at] + data[a:b] * int(rng.integers(1, 4)) + data[at:]


@mutator("header_edit")
def header_edit(rng: np.random.Generator, data: bytes) -> bytes:
    """Overwrite 2 or 4 bytes in the first 64 with extreme integers: sizes, lengths and counts in headers."""
    b = bytearray(data)
    width = int(rng.choice([2, 4]))
    value = int(rng.choice([0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, int(rng.integers(0, 1 << 32))]))
    i = _pos(rng, min(64, len(b)) - width + 1)
    b[i : i + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, str(rng.choice(["big", "little"])))
    return bytes(b)


@mutator("random_tail")
def random_tail(rng: np.random.Generator, data: bytes) -> bytes:
    """The real magic number and header (up to 32 bytes), then random bytes."""
    keep = int(rng.integers(2, 33))
    return data[:keep] + rng.integers(0, 256, int(rng.integers(0, 8192)), dtype=np.uint8).tobytes()


@mutator("splice")
def splice(rng: np.random.Generator, data: bytes) -> bytes:
    """Remove a slice from the middle (a lost block of an upload)."""
    a = _pos(rng, len(data))
    return data[:a] + data[a + int(rng.integers(1, 2049)) :]


def _frames(n: int, side: int, rng: np.random.Generator) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:side, 0:side]
    base = rng.integers(0, 256, 3)
    return [
        np.stack([(xx * 4 + 9 * i + base[0]) % 256, (yy * 3 + base[1]) % 256, ((xx + yy) * 2 + base[2]) % 256], -1)
        .astype(np.uint8)
        for i in range(n)
    ]


def make_seeds(rng: np.random.Generator, work: Path) -> dict[str, bytes]:
    """Valid files to mutate: every image format at ``SEED_SIDES`` plus short MP4s and an animated GIF."""
    from forensics_core.media import write_video

    seeds: dict[str, bytes] = {}
    for side in SEED_SIDES:
        (frame,) = _frames(1, side, rng)
        for fmt, ext, kw in (
            ("JPEG", "jpg", {"quality": 90}),
            ("PNG", "png", {}),
            ("WEBP", "webp", {"quality": 80}),
            ("GIF", "gif", {}),
            ("TIFF", "tif", {}),
            ("TIFF", "tif", {"compression": "tiff_deflate"}),
        ):
            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, format=fmt, **kw)
            seeds[f"{side}-{fmt.lower()}-{len(kw)}.{ext}"] = buf.getvalue()
    anim = [Image.fromarray(f) for f in _frames(6, 48, rng)]
    buf = io.BytesIO()
    anim[0].save(buf, format="GIF", save_all=True, append_images=anim[1:], duration=100, loop=0)
    seeds["48-anim.gif"] = buf.getvalue()
    for side, n in ((32, 8), (64, 12)):
        p = write_video(work / f"seed{side}.mp4", _frames(n, side, rng), fps=8)
        seeds[f"{side}-video.mp4"] = p.read_bytes()
        p.unlink()
    return seeds


def make_corpus(n: int, seed: int, work: Path) -> dict:
    """``n`` mutated files under ``work/files`` plus ``work/special``; returns the manifest (also written)."""
    rng = np.random.default_rng(seed)
    files = work / "files"
    if work.exists():
        shutil.rmtree(work)
    files.mkdir(parents=True)
    seeds = make_seeds(rng, work)
    names = sorted(seeds)
    ops = sorted(MUTATORS)
    used: Counter[str] = Counter()
    n_random = max(1, n // 20)  # 5% pure random bytes, with a media extension
    for i in range(n):
        if i < n_random:
            blob = rng.integers(0, 256, int(rng.integers(0, 16384)), dtype=np.uint8).tobytes()
            name, chain = f"{i:05d}-random.{rng.choice(['jpg', 'png', 'mp4', 'gif', 'webp', 'tif'])}", ["random"]
        else:
            src = names[int(rng.integers(len(names)))]
            chain = [ops[int(j)] for j in rng.integers(0, len(ops), int(rng.integers(1, 4)))]
            blob = seeds[src]
            for op in chain:
                blob = MUTATORS[op](rng, blob)
            name = f"{i:05d}-{'+'.join(chain)}-{src}"
        used.update(chain)
        (files / name).write_bytes(blob)
    special = work / "special"
    special.mkdir()
    for name in SPECIAL_NAMES:
        if name.startswith("socket"):
            s = socket.socket(socket.AF_UNIX)
            s.bind(str(special / name))  # the socket file stays after close: a leftover of a crashed service
            s.close()
        else:
            os.mkfifo(special / name)
    manifest = {"n_mutated": n, "seed": seed, "seeds": {k: len(v) for k, v in seeds.items()}, "mutators": dict(used),
                "special": list(SPECIAL_NAMES)}  # fmt: skip
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def make_slow(work: Path) -> list[str]:
    """Valid files that take seconds to decode: a 7000 x 7000 PNG (compresses to little, decodes to 147 MB) and a
    60 s 320 x 240 MP4 (every frame is decoded to sample one per second), next to a FIFO and a small PNG."""
    from forensics_core.media import write_video

    d = work / "slow"
    d.mkdir(parents=True)
    y, x = np.mgrid[0:7000, 0:7000]
    big = np.stack([x % 256, y % 256, (x // 32 + y // 32) % 256], -1).astype(np.uint8)
    Image.fromarray(big).save(d / "a-big.png", compress_level=1)
    del big, x, y
    yy, xx = np.mgrid[0:240, 0:320]
    write_video(d / "b-long.mp4", ((np.stack([(xx + 3 * i) % 256, yy % 256, xx * 0 + (i % 256)], -1)).astype(np.uint8)
                                   for i in range(1500)), fps=25, preset="ultrafast")  # fmt: skip
    Image.fromarray(_frames(1, 64, np.random.default_rng(0))[0]).save(d / "c-small.png")
    os.mkfifo(d / "d-fifo.jpg")
    return sorted(str(p) for p in d.iterdir())


def timeout_probe(work: Path, args: argparse.Namespace) -> dict:
    """``scan slow/ --timeout T`` with T far below the slow files' decode time: they must become
    ``ScanTimeoutError`` records while the small file is scored and the FIFO refused, and the scan end promptly."""
    expected = make_slow(work)
    out = work / "slow.jsonl"
    cmd = [sys.executable, "-m", "cli", "-q", "scan", str(work / "slow"), "--jsonl", str(out), "--no-table",
           "--evidence", "none", "--timeout", str(args.probe_timeout), "--threads", str(args.threads), "--device",
           "cpu"]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.wall_limit,
                          cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    recs = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    return {
        "cmd": " ".join(Path(c).name if c == sys.executable else c for c in cmd[1:]),
        "wall_s": round(time.monotonic() - t0, 1),
        "records": len(recs),
        "files": len(expected),
        "tracebacks": proc.stderr.count("Traceback"),
        "results": {n: r["error"].split(": ", 1)[-1] if r["error"] else f"ok ({r['media_type']})"
                    for n, r in sorted(recs.items())},  # fmt: skip
        "timeouts": sum(1 for r in recs.values() if r["error_type"] == "ScanTimeoutError"),
    }


def _cause(rec: dict) -> str:
    """A short cause for grouping: the error type plus the message up to its first detail in parentheses."""
    msg = (rec.get("error") or "").replace(rec["path"], "").lstrip(": ")
    for cut in ("(", " after frame", ", limit", " at ", "; "):
        msg = msg.split(cut)[0]
    return f"{rec.get('error_type')}: {msg.strip()[:70]}"


def run_scan(work: Path, out_jsonl: Path, args: argparse.Namespace) -> dict:
    """One ``forensics scan`` child over the corpus; wall time, exit code, peak RSS, stderr."""
    cmd = [sys.executable, "-m", "cli", "-q", "scan", str(work / "files"), str(work / "special"),
           *[str(work / "special" / n) for n in SPECIAL_NAMES if "." not in n],
           "--jsonl", str(out_jsonl), "--no-table", "--evidence", args.evidence, "--timeout", str(args.timeout),
           "--threads", str(args.threads), "--workers", str(args.workers), "--device", "cpu"]  # fmt: skip
    stderr_path = out_jsonl.with_suffix(".stderr")
    t0 = time.monotonic()
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=Path(__file__).resolve().parents[1])
        try:
            rc = proc.wait(timeout=args.wall_limit)
            hung = False
        except subprocess.TimeoutExpired:
            proc.kill()
            rc, hung = proc.wait(), True
    wall = time.monotonic() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    return {"cmd": cmd, "rc": rc, "hung": hung, "wall_s": round(wall, 1), "peak_rss_mib": round(peak_kib / 1024, 1),
            "stderr": stderr_path.read_text(errors="replace")}  # fmt: skip


def analyse(work: Path, out_jsonl: Path, run: dict) -> dict:
    """Counts a reader can check against the acceptance criteria (see module docstring)."""
    expected = {str(p) for p in (work / "files").iterdir()} | {str(work / "special" / n) for n in SPECIAL_NAMES}
    recs = [json.loads(line) for line in out_jsonl.read_text().splitlines() if line.strip()]
    per_path = Counter(r["path"] for r in recs)
    special = [r for r in recs if "/special/" in r["path"]]
    errors = [r for r in recs if r["status"] != "ok"]
    return {
        "files": len(expected),
        "records": len(recs),
        "missing": len(expected - set(per_path)),
        "duplicated": sum(1 for c in per_path.values() if c > 1),
        "unexpected_paths": len(set(per_path) - expected),
        "by_status": dict(Counter(r["status"] for r in recs)),
        "by_media_type_ok": dict(Counter(r["media_type"] for r in recs if r["status"] == "ok")),
        "by_error_type": dict(Counter(r["error_type"] for r in errors).most_common()),
        "top_causes": dict(Counter(_cause(r) for r in errors).most_common(15)),
        "timeouts": sum(1 for r in errors if r["error_type"] == "ScanTimeoutError"),
        "multi_line_errors": sum(1 for r in errors if "\n" in (r["error"] or "")),
        "errors_not_naming_file": sum(1 for r in errors if r["path"] not in (r["error"] or "")),
        "special": {Path(r["path"]).name: f"{r['error_type']}: {r['error']}" for r in special},
        "special_refused": sum(1 for r in special if r["error_type"] == "UnreadableMediaError"),
        "tracebacks": run["stderr"].count("Traceback"),
        "hung": run["hung"],
        "exit_code": run["rc"],
        "wall_s": run["wall_s"],
        "files_per_s": round(len(recs) / max(run["wall_s"], 1e-9), 1),
        "peak_rss_mib": run["peak_rss_mib"],
    }


def write_report(out: Path, summary: dict, manifest: dict, argv: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"manifest": manifest, **summary}, indent=1) + "\n")
    s = summary
    p = s["timeout_probe"]
    ok = (not s["hung"] and s["tracebacks"] == 0 and s["missing"] == 0 and s["duplicated"] == 0
          and s["special_refused"] == len(SPECIAL_NAMES) and s["multi_line_errors"] == 0
          and p["timeouts"] >= 2 and p["records"] == p["files"])  # fmt: skip
    probe_rows = "\n".join(f"| `{k}` | {v} |" for k, v in p["results"].items())
    seed_exts = ", ".join(sorted({k.split(".")[-1] for k in manifest["seeds"]}))
    rows = "\n".join(f"| `{k}` | {v} |" for k, v in s["top_causes"].items())
    special = "\n".join(f"| `{k}` | {v.split(': ', 1)[0]} | {v.split(': ', 2)[-1]} |" for k, v in s["special"].items())
    md = f"""# Fuzzed and non-regular files through `forensics scan`

**{"PASS" if ok else "FAIL"}**: no hang, no traceback, every file exactly one record, every FIFO / socket refused,
slow decodes stopped by `--timeout`.

Command: `python -m benchmarks.fuzz_scan {" ".join(argv)}`

Commit: `{s["commit"]}`; {s["machine"]}; {s["date"]}.
Scan (child process): `{" ".join(s["scan_cmd"][1:])}`

Corpus (reproducible from seed {manifest["seed"]}; written under the work folder, not committed):
{manifest["n_mutated"]} files from {len(manifest["seeds"])} valid seeds ({seed_exts}),
1-3 mutations each (counts: {", ".join(f"{k} {v}" for k, v in sorted(manifest["mutators"].items()))}), plus
`special/`: {", ".join(manifest["special"])} (FIFOs and a Unix socket).

| check | result |
|---|---|
| files in corpus | {s["files"]} |
| records written | {s["records"]} |
| files without a record / with more than one | {s["missing"]} / {s["duplicated"]} |
| status | {", ".join(f"{k} {v}" for k, v in s["by_status"].items())} |
| ok by media type | {", ".join(f"{k} {v}" for k, v in s["by_media_type_ok"].items())} |
| errors by type | {", ".join(f"{k} {v}" for k, v in s["by_error_type"].items())} |
| per-file timeouts (`ScanTimeoutError`) | {s["timeouts"]} |
| tracebacks on stderr | {s["tracebacks"]} |
| error messages spanning lines / not naming the file | {s["multi_line_errors"]} / {s["errors_not_naming_file"]} |
| hang (killed by the {s["wall_limit_s"]} s wall limit) | {"yes" if s["hung"] else "no"} |
| exit code | {s["exit_code"]} |
| wall time | {s["wall_s"]} s ({s["files_per_s"]} files/s) |
| peak RSS of the scan process | {s["peak_rss_mib"]} MiB |

## Non-regular files

| file | error type | message |
|---|---|---|
{special}

## Slow decodes and the per-file timeout

`{p["cmd"]}`: {p["records"]} records for {p["files"]} files, {p["timeouts"]} timeouts, {p["tracebacks"]} tracebacks,
{p["wall_s"]} s wall (model loading included).

| file | result |
|---|---|
{probe_rows}

## Most common error causes

| cause | files |
|---|---|
{rows}
"""
    (out / "fuzz.md").write_text(md)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Example::")[-1])
    ap.add_argument("--n", type=int, default=10000, help="Mutated files (plus the special files).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/forensics-fuzz", help="Where the corpus is written (not committed).")
    ap.add_argument("--out", default="benchmarks/results/fuzz", help="Folder for fuzz.md and summary.json.")
    ap.add_argument("--timeout", type=float, default=30.0, help="The scan's per-file --timeout.")
    ap.add_argument("--wall-limit", type=float, default=3600.0, help="Kill the scan after this many seconds (hang).")
    ap.add_argument("--threads", type=int, default=1, help="The scan's torch --threads.")
    ap.add_argument("--workers", type=int, default=2, help="The scan's decode --workers.")
    ap.add_argument("--evidence", default="none", help="The scan's --evidence.")
    ap.add_argument("--probe-timeout", type=float, default=0.5, help="--timeout of the slow-decode probe scan.")
    args = ap.parse_args(argv)
    rec = start_record(command_line("benchmarks.fuzz_scan", argv))
    work = Path(args.work)
    manifest = make_corpus(args.n, args.seed, work)
    out_jsonl = work / "scan.jsonl"
    run = run_scan(work, out_jsonl, args)
    summary = analyse(work, out_jsonl, run)
    summary["timeout_probe"] = timeout_probe(work, args)
    summary.update(
        commit=rec.commit, scan_cmd=[Path(c).name if c == sys.executable else c for c in run["cmd"]],
        wall_limit_s=args.wall_limit, date=rec.date(), machine=rec.machine(), command=rec.command,
        started=rec.started, environment=rec.environment,
    )  # fmt: skip
    write_report(Path(args.out), summary, manifest, argv)
    quiet = ("top_causes", "special", "scan_cmd", "environment")
    print(json.dumps({k: v for k, v in summary.items() if k not in quiet}, indent=1))
    probe = summary["timeout_probe"]
    probe_ok = probe["records"] == probe["files"] and probe["timeouts"] >= 2 and not probe["tracebacks"]
    return 0 if not summary["hung"] and summary["tracebacks"] == 0 and not summary["missing"] and probe_ok else 1


if __name__ == "__main__":
    sys.exit(main())
