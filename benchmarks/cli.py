"""``forensics bench``: run benchmark files, render reports, compare runs, list protocols and perturbations.

Imports stay inside the commands so ``forensics bench --help`` does not import torch.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click


@click.group(epilog="Example: forensics bench run benchmarks/configs/loo-gan.yaml --out runs/bench/loo-gan")
def bench() -> None:
    """Run benchmark protocols (leave-one-out, cross-dataset, robustness, video) and write reports."""


@bench.command(
    "run", epilog="Example: forensics bench run benchmarks/configs/robustness.yaml --out runs/bench/rob --device cuda"
)
@click.argument("bench_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/bench/<benchmark name>).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@click.option("--workers", type=int, default=2, show_default=True, help="Threads decoding and perturbing images.")
@click.option("--resume", is_flag=True, help="Continue a run in an existing --out folder (cached scores are reused).")
@click.option("--cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Score cache file shared between runs (default: OUT/scores.sqlite).")
@click.option("--dry-run", is_flag=True, help="Validate the file, print the plan (cells, training jobs), do no work.")
@click.pass_obj
def run_cmd(obj, bench_file: Path, out: Path | None, device: str, workers: int, resume: bool, cache: Path | None,
            dry_run: bool) -> None:
    """Run (or resume) the benchmark described by BENCH_FILE (YAML or TOML).

    Scores are cached per (model hash, item sha256, perturbation): a re-run with --resume only computes what is
    missing, and a killed run continues where it stopped. Writes results.json, report.md and PNG plots to --out.
    """
    from benchmarks.config import load_config
    from benchmarks.protocols import get_protocol
    from benchmarks.runner import RunOptions, run

    cfg = load_config(bench_file)
    if dry_run:
        plan = get_protocol(cfg.protocol).plan(cfg)
        click.echo(f"{cfg.name}: protocol {cfg.protocol}, {len(plan.jobs)} training jobs, {len(plan.cells)} cells")
        for job in plan.jobs:
            click.echo(f"  train {job.key}: {len(job.train)} train / {len(job.val)} val items")
        for cell in plan.cells:
            n_fake = sum(i.y for i in cell.items)
            click.echo(f"  cell {cell.id}: {len(cell.items) - n_fake} real / {n_fake} fake")
        return
    quiet = bool(obj and getattr(obj, "quiet", False))
    opts = RunOptions(
        out=out or Path("runs") / "bench" / cfg.name,
        device=device,
        workers=workers,
        resume=resume,
        cache=cache,
        progress=not quiet and sys.stderr.isatty(),
        command="forensics " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "",
    )
    results = run(bench_file, opts)
    c = results["run"]["cache"]
    click.echo(
        f"{cfg.name}: {len(results['cells'])} cells, {c['computed']} scores computed, {c['hits']} from cache, "
        f"{results['run']['n_errors']} unreadable items; report: {opts.out / 'report.md'}"
    )


@bench.command("report", epilog="Example: forensics bench report runs/bench/loo-gan --bootstrap 1000")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--bootstrap", type=int, default=None,
              help="Recompute every cell's metrics from RUN_DIR/cells with this many resamples (no scoring).")
def report_cmd(run_dir: Path, bootstrap: int | None) -> None:
    """Re-render report.md and the PNG plots of RUN_DIR from its results.json (no scoring)."""
    from benchmarks.report import recompute_metrics, write_report

    results = None
    if bootstrap is not None:
        results = recompute_metrics(run_dir, bootstrap, f"forensics bench report {run_dir} --bootstrap {bootstrap}")
    for p in write_report(run_dir, results):
        click.echo(str(p))


@bench.command("compare", epilog="Example: forensics bench compare runs/bench/loo-a runs/bench/loo-b --metric auc")
@click.argument("run_a", type=click.Path(file_okay=False, path_type=Path))
@click.argument("run_b", type=click.Path(file_okay=False, path_type=Path))
@click.option("--metric", "metrics", multiple=True, default=("auc", "tpr_at_fpr1", "ece"), show_default=True,
              type=click.Choice(["auc", "ap", "eer", "tpr_at_fpr1", "ece", "brier"]), help="Metric(s) to compare.")
@click.option("--bootstrap", type=int, default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a Markdown table.")
def compare_cmd(run_a: Path, run_b: Path, metrics: tuple[str, ...], bootstrap: int, as_json: bool) -> None:
    """Print metric(B) - metric(A) per shared cell with a (paired when possible) bootstrap 95% interval.

    A '*' marks differences whose interval excludes 0.
    """
    from benchmarks.compare import compare_runs, to_json, to_table

    diffs, only = compare_runs(run_a, run_b, list(metrics), n_boot=bootstrap)
    if as_json:
        click.echo(json.dumps({"differences": to_json(diffs), "unmatched_cells": only}, indent=1))
        return
    click.echo(to_table(diffs))
    if only:
        click.echo(f"\n{len(only)} cell(s) in only one run: {', '.join(only[:10])}{' ...' if len(only) > 10 else ''}")


@bench.command("list", epilog="Example: forensics bench list --json")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(as_json: bool) -> None:
    """List the registered protocols and perturbations."""
    from benchmarks.perturbations import PERTURBATIONS
    from benchmarks.protocols import PROTOCOLS

    data = {
        "protocols": {e.name: e.description for e in PROTOCOLS.entries()},
        "perturbations": {e.name: e.description for e in PERTURBATIONS.entries()},
    }
    if as_json:
        click.echo(json.dumps(data, indent=1))
        return
    for kind, entries in data.items():
        click.echo(f"{kind}:")
        for name, desc in entries.items():
            click.echo(f"  {name:24s} {desc}")


@bench.command("leaderboard", epilog="Example: forensics bench leaderboard --readme README.md")
@click.option("--results", "results_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of run folders (default: benchmarks/results).")
@click.option("--readme", type=click.Path(dir_okay=False, path_type=Path), help="Rewrite the leaderboard block here.")
@click.option("--check", is_flag=True, help="With --readme: change nothing, fail when the block is out of date.")
def leaderboard_cmd(results_dir: Path | None, readme: Path | None, check: bool) -> None:
    """Build the README leaderboard table from committed runs (benchmarks/results/*/results.json).

    Example: forensics bench leaderboard --readme README.md --check
    """
    from benchmarks.leaderboard import DEFAULT_RESULTS, apply

    click.echo(apply(results_dir or DEFAULT_RESULTS, readme, check))
