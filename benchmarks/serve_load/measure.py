"""One load run, end to end: the file set, the scan baseline before and after, the server under load (with
an optional SIGKILL of a scanner process), and the numbers of the :class:`LoadReport`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.record import command_line, start_record
from benchmarks.serve_load.client import run_load
from benchmarks.serve_load.files import good_files, hostile_files, interleave
from benchmarks.serve_load.processes import RssSampler, ServerProcess, _children, _cpu_s, scan_baseline
from benchmarks.serve_load.report import LoadReport, _default_model, machine_summary


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return float(np.percentile(np.asarray(values) * 1000, q))


def run(args: argparse.Namespace) -> LoadReport:
    good = good_files(args.good)
    hostile = hostile_files(round(args.good * args.hostile / (1 - args.hostile)), good)
    files = interleave(good, hostile)
    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    for i, f in enumerate(files):
        f.path = str(work / f"{i:05d}-{f.name}")
        Path(f.path).write_bytes(f.data)
    rec = start_record(command_line("benchmarks.serve_load"))
    rep = LoadReport(
        name=args.name, command=rec.command, git_commit=rec.commit, machine=machine_summary(rec),
        config={k: v for k, v in vars(args).items() if k not in ("out",)},
        files={"unique": len(files), "good": len(good), **Counter(f.kind for f in hostile)},
        model=_default_model(), started=rec.started, environment=rec.environment,
    )  # fmt: skip
    scan_threads = args.workers * args.threads
    if not args.skip_scan:
        print(f"scan baseline over {len(files)} files ...", file=sys.stderr)
        rep.scan_baseline.append(scan_baseline(files, scan_threads, args.max_seconds))
    srv = ServerProcess(args.workers, args.threads, args.queue, work / "serve.log")
    rep.config["server_command"] = "forensics " + " ".join(srv.cmd[3:])
    sampler = RssSampler(srv.proc.pid)
    try:
        state = srv.wait_ready(workers=args.workers)
        sampler.start()
        victim = state["workers"][0]["pid"]
        kill_at = int(args.requests * args.kill_after) if args.kill_after else -1
        killed: dict[str, Any] = {}

        def progress(done: int) -> None:
            if done == kill_at and not killed:
                os.kill(victim, signal.SIGKILL)
                killed.update({"pid": victim, "after_answers": done, "t": time.monotonic()})

        print(f"load: {args.requests} requests, {args.concurrency} connections ...", file=sys.stderr)
        procs = [srv.proc.pid, *_children(srv.proc.pid)]
        cpu0 = sum(_cpu_s(p) for p in procs)
        front_cpu0 = _cpu_s(srv.proc.pid)
        answers, wall = asyncio.run(run_load(srv.port, files, args.requests, args.concurrency, args.client_timeout,
                                             args.max_seconds, progress))  # fmt: skip
        cpu_used = sum(_cpu_s(p) for p in procs) - cpu0  # a killed worker's share is lost (soak runs only)
        front_cpu = _cpu_s(srv.proc.pid) - front_cpu0
        if killed:
            after = srv.wait_ready(workers=args.workers)
            killed["workers_after"] = [w["pid"] for w in after["workers"]]
            killed["restarts"] = sum(w["restarts"] for w in after["workers"])
        counters = srv.metrics()
    finally:
        sampler.stop()
        rc = srv.stop()
    lat = [a.latency_s for a in answers if a.status]
    rep.requests = args.requests
    rep.answered = sum(1 for a in answers if a.status)
    rep.wall_s = round(wall, 2)
    rep.throughput_rps = round(rep.answered / wall, 2) if wall else 0.0
    rep.latency_ms = {"p50": round(_pct(lat, 50), 1), "p95": round(_pct(lat, 95), 1), "p99": round(_pct(lat, 99), 1),
                      "mean": round(statistics.fmean(lat) * 1000, 1) if lat else 0.0,
                      "max": round(max(lat) * 1000, 1) if lat else 0.0}  # fmt: skip
    rep.status_codes = dict(sorted(Counter(str(a.status) for a in answers).items()))
    rep.error_mix = dict(sorted(Counter(a.cause for a in answers if a.cause != "ok").items()))
    rep.problems = [f"request {a.index}: {a.problem}" for a in answers if a.problem][:50]
    rep.peak_rss_mb = {"total": round(sampler.peak_total_kb / 1024, 1), "front": round(sampler.peak_front_kb / 1024, 1),
                       "largest_worker": round(sampler.peak_worker_kb / 1024, 1)}  # fmt: skip
    admitted = sum(1 for a in answers if a.status not in (0, 413, 429, 401, 400))
    files_answered = sum(v for k, v in counters.items() if k.startswith("forensics_serve_files_total"))
    rep.cpu_ms_per_request = round(1000 * cpu_used / max(1, rep.answered), 2)
    rep.front_cpu_ms_per_request = round(1000 * front_cpu / max(1, rep.answered), 2)
    rep.server_counters = {
        "files_answered": files_answered,
        "worker_restarts": counters.get("forensics_serve_worker_restarts_total", 0.0),
        "exit_code": rc,
    }
    if not args.skip_scan:
        print("scan baseline again (the machine is shared: take the mean) ...", file=sys.stderr)
        rep.scan_baseline.append(scan_baseline(files, scan_threads, args.max_seconds))
        base = statistics.fmean(b["files_per_s"] for b in rep.scan_baseline)
        rep.ratio_vs_scan = round(rep.throughput_rps / base, 3) if base else 0.0
        base_cpu = statistics.fmean(b["cpu_ms_per_file"] for b in rep.scan_baseline)
        rep.cpu_ratio_vs_scan = round(base_cpu / rep.cpu_ms_per_request, 3) if rep.cpu_ms_per_request else 0.0
    ids = [a.index for a in answers]
    rep.soak = {
        "killed": killed,
        "requests_without_answer": sum(1 for a in answers if a.status == 0),
        "duplicate_answers": len(ids) - len(set(ids)),
        "mismatched_answers": len(rep.problems),
        "admitted": admitted,
        "server_files_answered": files_answered,
        "every_admitted_request_answered_once": bool(
            len(answers) == args.requests and len(set(ids)) == len(ids) and not rep.problems
            and files_answered == admitted
        ),
    }  # fmt: skip
    for f in files:
        Path(f.path).unlink(missing_ok=True)
    (work / "serve.log").unlink(missing_ok=True)
    work.rmdir()
    return rep
