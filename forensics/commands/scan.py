"""``forensics scan``: score images and videos for synthetic or manipulated faces.

Exit codes (documented in ``docs/scan.md``): 0 = nothing flagged, 1 = at least one file flagged, 2 = usage or
fatal error, or every input failed. Per-file errors never stop a batch: they become ``status: error`` records.
torch is imported only inside the command body, so ``forensics scan --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from forensics.errors import UsageError

EXIT_CLEAR, EXIT_FLAGGED, EXIT_FATAL = 0, 1, 2


class ThresholdType(click.ParamType):
    """``balanced`` | ``fpr1`` | ``fpr01`` | a probability in [0, 1]."""

    name = "{balanced,fpr1,fpr01}|FLOAT"

    def convert(self, value: Any, param: Any, ctx: Any) -> str | float:
        if isinstance(value, float) or value in ("balanced", "fpr1", "fpr01"):
            return value
        try:
            v = float(value)
        except ValueError:
            self.fail(f"{value!r} is not balanced, fpr1, fpr01 or a probability", param, ctx)
        if not 0.0 <= v <= 1.0:
            self.fail(f"{v} is not a probability in [0, 1]", param, ctx)
        return v


@click.command(
    "scan",
    epilog="Example: forensics scan photos/ clip.mp4 --threshold fpr1 --jsonl out.jsonl --report report.html",
)
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", "model", default="default", show_default=True,
              help="Model directory / model.json / .safetensors, or an installed model name.")
@click.option("--threshold", type=ThresholdType(), default="balanced", show_default=True,
              help="Verdict policy from the model file (balanced, fpr1 = 1% FPR, fpr01 = 0.1% FPR) or a probability.")
@click.option("--evidence", default="auto", show_default=True,
              help="Evidence analyses: all, none, or a comma list (gradcam,ela,noise,spectrum,jpeg,metadata). "
                   "auto = all with --report, none otherwise.")
@click.option("--json", "json_out", metavar="FILE", help="Write all records as one JSON array ('-' = stdout).")
@click.option("--jsonl", "jsonl_out", metavar="FILE", help="Stream one JSON record per line ('-' = stdout).")
@click.option("--csv", "csv_out", metavar="FILE", help="Write one CSV row per file ('-' = stdout).")
@click.option("--report", "report_out", metavar="FILE", help="Write a self-contained HTML report.")
@click.option("--resume", metavar="OUT.jsonl",
              help="Skip inputs already in this JSONL (same path and sha256) and append new records to it.")
@click.option("--timeout", "timeout_s", type=float, default=300.0, show_default=True,
              help="Per-file time limit in seconds, every stage from hashing to evidence (0 = none).")
@click.option("--fps", type=float, default=1.0, show_default=True, help="Video frames sampled per second.")
@click.option("--max-frames", type=int, default=32, show_default=True,
              help="Sampled frames per video; the rate is lowered so they span the whole clip.")
@click.option("--max-faces", type=int, default=8, show_default=True, help="Most confident faces per image / frame.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@click.option("--batch", type=int, default=16, show_default=True, help="Files (or video frames) per batched step.")
@click.option("--workers", type=int, default=2, show_default=True, help="Threads for decoding and evidence.")
@click.option("--threads", type=int, default=None,
              help="torch CPU threads (default: all cores; use 1 per process on shared machines).")
@click.option("--engine", default="local", show_default=True, help="local, or ray (Ray Data; needs the [ray] extra).")
@click.option("--address", default=None, help="Ray cluster address (ray://host:10001 or auto); default: local Ray.")
@click.option("--actors", type=int, default=1, show_default=True, help="Ray: parallel scanner actors.")
@click.option("--face-detector", default="mtcnn", show_default=True, help="Face detector: mtcnn or opencv.")
@click.option("--follow-symlinks", is_flag=True, help="Follow symlinks that point outside the scanned folders.")
@click.option("--max-pixels", type=int, default=None, help="Refuse images / frames larger than this (pixels).")
@click.option("--no-table", is_flag=True, help="Do not print the results table.")
@click.option("-q", "--quiet", "quiet_flag", is_flag=True, help="No progress bar or table (as 'forensics -q scan').")
@click.pass_obj
def scan(obj: Any, inputs: tuple[str, ...], **opts: Any) -> int:
    """Scan images and videos (files, folders, globs, or - for a list on stdin) for synthetic or manipulated faces.

    Each file gets a calibrated probability that its faces are fake, a verdict under the chosen threshold
    policy, and optional evidence (heatmaps, error levels, noise, spectrum, JPEG and metadata analyses).
    Results are evidence, not proof.
    """
    quiet = opts.pop("quiet_flag") or bool(getattr(obj, "quiet", False))
    return run_scan(list(inputs), quiet=quiet, **opts)


def run_scan(inputs: list[str], *, quiet: bool = False, **o: Any) -> int:
    """The command body, callable from Python (tests, ``forensics.demo``) without click."""
    from forensics.outputs import open_sinks, read_done, trim_partial_line
    from forensics.pipeline import ScanConfig

    resume = o.get("resume")
    jsonl_out = o.get("jsonl_out")
    if resume:
        if jsonl_out and jsonl_out != resume:
            raise UsageError(f"--resume {resume} appends to that file; drop --jsonl {jsonl_out} or make them the same")
        jsonl_out = resume
    evidence = o.get("evidence", "auto")
    if evidence == "auto":
        evidence = "all" if o.get("report_out") else "none"
    specs: list[tuple[str, str]] = []
    for fmt, key in (("json", "json_out"), ("csv", "csv_out")):
        if o.get(key):
            specs.append((fmt, o[key]))
    if jsonl_out:
        specs.append(("jsonl", jsonl_out))
    stdout_taken = any(t == "-" for _, t in specs)
    if not o.get("no_table") and not stdout_taken:
        specs.append(("table", "-"))
    config = ScanConfig(
        threshold=o.get("threshold", "balanced"),
        evidence=evidence,
        device=o.get("device", "auto"),
        batch=o.get("batch", 16),
        workers=o.get("workers", 2),
        timeout_s=o.get("timeout_s", 300.0) or None,
        fps=o.get("fps", 1.0),
        max_frames=o.get("max_frames", 32),
        max_faces=o.get("max_faces", 8),
        face_detector=o.get("face_detector", "mtcnn"),
        keep_images=bool(o.get("report_out")) and o.get("engine", "local") == "local",
        follow_symlinks=bool(o.get("follow_symlinks")),
        max_pixels=o.get("max_pixels"),
        threads=o.get("threads"),
    )
    from forensics.engines import get_engine
    from forensics.inputs import InputExpander
    from forensics.pipeline import skip_done

    engine_cls = get_engine(o.get("engine", "local"))
    engine_opts = {k: o[k] for k in ("address", "actors") if o.get(k)}
    engine = engine_cls(model=o.get("model", "default"), config=config, **engine_opts)  # loads the model: fails fast
    expander = InputExpander(
        inputs, follow_symlinks=config.follow_symlinks, stdin=sys.stdin, timeout_s=config.timeout_s
    )
    items: Any = expander
    if resume:
        trim_partial_line(resume)
        done = read_done(resume)
        if done:
            items = skip_done(expander, done)
    sinks = open_sinks(specs, append_to=resume)
    report = None
    if o.get("report_out"):
        from forensics.report import ReportBuilder

        report = ReportBuilder(model=getattr(engine, "scanner", None) and engine.scanner.model)
    n = flagged = errors = 0
    progress = _progress(quiet)
    try:
        with progress as bar:
            task = bar.add_task("scanning", total=None) if bar else None
            for result in engine.run(items):
                n += 1
                flagged += int(result.flagged)
                errors += int(result.status != "ok")
                for s in sinks:
                    s.write(result)
                if report is not None:
                    report.add(result)
                if bar:
                    bar.update(task, advance=1, description=f"scanning ({flagged} flagged, {errors} errors)")
    finally:
        for s in sinks:
            s.close()
    if report is not None:
        if report.model is None:  # ray engine: load the card in the driver for the report
            from forensics.pipeline import resolve_model

            report.model = resolve_model(o.get("model", "default"), "cpu")
        path = report.write(o["report_out"])
        if not quiet:
            click.echo(f"report: {path}", err=True)
    st = expander.stats
    if not quiet and (st.skipped_non_media or st.unmatched_patterns):
        click.echo(f"skipped {st.skipped_non_media} non-media files in folders", err=True)
    if n == 0:
        if resume:
            if not quiet:
                click.echo("nothing new to scan (all inputs are already in the resume file)", err=True)
            return EXIT_CLEAR
        raise UsageError(f"no media files found in {', '.join(inputs)}")
    if flagged:
        return EXIT_FLAGGED
    if errors == n:
        return EXIT_FATAL
    return EXIT_CLEAR


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _progress(quiet: bool) -> Any:
    """A rich progress bar on stderr for people; nothing when quiet or when stderr is not a terminal."""
    if quiet or not sys.stderr.isatty():
        return _NoProgress()
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed} files"),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )
