"""``python -m benchmarks.transfer``: the options, and which job each one runs (score a model, print a table,
write the index or the README block, run a selection rule)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from benchmarks.transfer.delivery import SCAN_OVERRIDES
from benchmarks.transfer.evaluate import run
from benchmarks.transfer.protocols import NEEDS_RECON, PROTOCOLS, VAL_PROTOCOLS
from benchmarks.transfer.reports import RESULTS, comparison_table, readme_block, write_index
from benchmarks.transfer.selection import select, select_transfer
from forensics_core.errors import ForensicsError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.transfer",
        description="Score a model file end to end on the transfer protocols (shortcuts, external-dev). Example: "
        "python -m benchmarks.transfer --model default --label default --out benchmarks/results/transfer/default",
    )
    ap.add_argument("--model", default="default", help="model dir, model.json or installed name")
    ap.add_argument("--label", default=None, help="row name in the comparison table (default: the model's name)")
    ap.add_argument("--out", type=Path, help="results folder (results.json + report.md)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("FORENSICS_DATA", "../shared/data")))
    ap.add_argument("--n", type=int, default=400, help="files per set (0 = all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--protocol", action="append", choices=sorted(PROTOCOLS), default=None)
    ap.add_argument("--face-detector", default=None, help="scan's face detector (default: the scan default)")
    ap.add_argument("--detect-max-side", type=int, default=None, help="scan's detection side (default: scan's)")
    ap.add_argument("--split", choices=["crossval", "val"], default="crossval",
                    help="crossval: the test numbers; val: the selection numbers (shortcuts and real-sources only)")
    ap.add_argument("--recon", type=Path, default=None,
                    help="work folder of benchmarks/build_suite_dataset.sh (edit-inputs/, fakes/): adds the "
                    "unseen-decoders protocol to a crossval run")
    ap.add_argument("--table", type=Path, default=None, help="print the comparison table of every results folder")
    ap.add_argument("--select", type=Path, default=None,
                    help="write ROOT/selection.json: the candidate to ship, chosen on the --split val results in ROOT")
    ap.add_argument("--select-transfer", type=Path, default=None,
                    help="write ROOT/selection-transfer.json: the candidate to ship, chosen on the transfer-val "
                    "results in ROOT by the declared worst-cell rule")
    ap.add_argument("--index", type=Path, default=None, help="write ROOT/README.md: both tables and the selection")
    ap.add_argument("--readme", type=Path, default=None, help="rewrite the README's transfer block (--results ROOT)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="results root for --readme")
    args = ap.parse_args(argv)
    try:
        if args.readme:
            from benchmarks.leaderboard import update_readme

            update_readme(args.readme, readme_block(args.results), name="transfer")
            print(f"updated {args.readme}")
            return 0
        if args.index:
            print(write_index(args.index).read_text(encoding="utf-8"))
            return 0
        if args.select_transfer:
            sel = select_transfer(args.select_transfer)
            out = args.select_transfer / "selection-transfer.json"
            out.write_text(json.dumps(sel, indent=2) + "\n", encoding="utf-8")
            print(json.dumps(sel, indent=2))
            return 0
        if args.select:
            sel = select(args.select)
            (args.select / "selection.json").write_text(json.dumps(sel, indent=2) + "\n", encoding="utf-8")
            print(json.dumps(sel, indent=2))
            return 0
        if args.table:
            print(comparison_table(args.table, args.split))
            return 0
        if not args.out:
            ap.error("--out is required (or --table)")
        SCAN_OVERRIDES.update({k: v for k, v in (("face_detector", args.face_detector),
                                                 ("detect_max_side", args.detect_max_side)) if v is not None})
        default = VAL_PROTOCOLS if args.split == "val" else tuple(
            p for p in PROTOCOLS if p not in NEEDS_RECON or args.recon
        )
        out = run(args.model, args.label or args.model, args.out, args.data, args.n, args.threads,
                  list(args.protocol or default), args.split, args.recon)
        print((out / "report.md").read_text(encoding="utf-8"))
        return 0
    except ForensicsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
