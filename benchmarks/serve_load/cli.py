"""``python -m benchmarks.serve_load``: the options (see the package docstring for what a run does)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.serve_load.measure import run
from benchmarks.serve_load.report import RESULTS, write_report


def main(argv: list[str] | None = None) -> int:
    from benchmarks import serve_load  # the package's docstring says what a run does

    ap = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=serve_load.__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="requests to send (the run stops there)")
    ap.add_argument("--concurrency", type=int, default=16, help="keep-alive connections sending in parallel")
    ap.add_argument("--workers", type=int, default=1, help="forensics serve --workers")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker (scan gets workers x threads)")
    ap.add_argument("--queue", type=int, default=128, help="forensics serve --queue")
    ap.add_argument("--good", type=int, default=400, help="distinct good face images")
    ap.add_argument("--hostile", type=float, default=0.1, help="fraction of hostile files in the mix")
    ap.add_argument("--kill-after", type=float, default=0.0, help="SIGKILL a worker after this fraction of answers")
    ap.add_argument("--client-timeout", type=float, default=120.0, help="seconds a request may take")
    ap.add_argument("--max-seconds", type=float, default=900.0, help="wall-clock bound of each phase")
    ap.add_argument("--skip-scan", action="store_true", help="no forensics scan baseline")
    ap.add_argument("--name", default="load", help="results file stem")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = ap.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or not 0 <= args.hostile < 1 or not 0 <= args.kill_after < 1:
        ap.error("--requests and --concurrency >= 1; --hostile and --kill-after in [0, 1)")
    rep = run(args)
    write_report(rep, args.out)
    print((args.out / f"{rep.name}.md").read_text())
    return 0 if rep.soak["every_admitted_request_answered_once"] else 1
