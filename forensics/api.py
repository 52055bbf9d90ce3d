"""The scan as plain Python: inputs -> engine -> sinks / report -> exit code, without click.

``forensics scan`` (:mod:`forensics.commands.scan`) parses options and calls :func:`run_scan`; ``forensics.demo``
calls it with the bundled media. For a single file or an in-memory call use ``forensics.scan``
(:func:`forensics.pipeline.scan`), which returns results instead of writing outputs.

Exit codes (documented in ``docs/scan.md``): 0 = nothing flagged, 1 = at least one file flagged, 2 = usage or
fatal error, or every input failed.
"""

from __future__ import annotations

import sys
from typing import Any

from forensics_core.errors import UsageError

EXIT_CLEAR, EXIT_FLAGGED, EXIT_FATAL = 0, 1, 2

__all__ = ["EXIT_CLEAR", "EXIT_FATAL", "EXIT_FLAGGED", "run_scan"]


def _say(msg: str) -> None:
    """A note for people on stderr (what ``click.echo(msg, err=True)`` wrote before the scan left the command)."""
    print(msg, file=sys.stderr, flush=True)


def run_scan(inputs: list[str], *, quiet: bool = False, **o: Any) -> int:
    """Scan ``inputs`` and write the requested outputs; returns the exit code (``EXIT_*``).

    The body of ``forensics scan``, callable from Python (tests, ``forensics.demo``) without click. Options are the
    command's, by their Python names (``jsonl_out``, ``report_out``, ``timeout_s``, ...); missing ones take the
    command's defaults, which are :class:`~forensics.scanning.config.ScanConfig`'s field defaults (defined there
    once). Raises :class:`~forensics_core.errors.UsageError` on bad combinations or when nothing was found."""
    from forensics.engines import get_engine
    from forensics.scanning.config import ScanConfig
    from forensics_core.outputs import open_sinks, read_done, trim_partial_line

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
    if not o.get("no_table") and not quiet and not stdout_taken:  # -q: "no progress bar or table" (--help)
        specs.append(("table", "-"))
    engine_cls = get_engine(o.get("engine", "local"))
    config = ScanConfig(
        threshold=o.get("threshold"),
        evidence=evidence,
        device=o.get("device", ScanConfig.device),
        batch=o.get("batch", ScanConfig.batch),
        workers=o.get("workers", ScanConfig.workers),
        timeout_s=o.get("timeout_s", ScanConfig.timeout_s) or None,
        fps=o.get("fps", ScanConfig.fps),
        max_frames=o.get("max_frames", ScanConfig.max_frames),
        max_faces=o.get("max_faces", ScanConfig.max_faces),
        face_detector=o.get("face_detector") or ScanConfig.face_detector,
        detect_every=o.get("detect_every") or ScanConfig.detect_every,
        keep_images=bool(o.get("report_out")) and engine_cls.keeps_images,
        follow_symlinks=bool(o.get("follow_symlinks")),
        max_pixels=o.get("max_pixels", ScanConfig.max_pixels),
        threads=o.get("threads", ScanConfig.threads),
    )
    from forensics.pipeline import skip_done
    from forensics_core.inputs import InputExpander

    engine_opts = {k: o[k] for k in ("address", "actors") if o.get(k) is not None}
    if "-" in inputs:
        engine_opts["streamed"] = True
    engine = engine_cls(model=o.get("model", "default"), config=config, **engine_opts)  # a bad model fails here
    expander = InputExpander(
        inputs, follow_symlinks=config.follow_symlinks, stdin=sys.stdin, timeout_s=config.timeout_s
    )
    items: Any = expander
    if resume:
        trim_partial_line(resume)
        done = read_done(resume)
        if done:
            items = skip_done(expander, done)
    sinks: list[Any] = []
    report = None
    n = flagged = errors = 0
    try:
        # `auto` lists up to its threshold and loads its engine here: what fails then must leave outputs untouched,
        # so the outputs open after it
        results = engine.run(items)
        sinks = open_sinks(specs, append_to=resume)
        if o.get("report_out"):
            from forensics.report import ReportBuilder

            report = ReportBuilder(model=getattr(engine, "scanner", None) and engine.scanner.model)
        with _progress(quiet) as bar:
            task = bar.add_task("scanning", total=None) if bar else None
            for result in results:
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
        engine.close()  # worker processes (--engine processes) end here, whatever ended the loop
        for s in sinks:
            s.close()
    if report is not None:
        if report.model is None:  # ray / processes engine: load the card in the driver for the report
            from forensics.scanning.config import resolve_model

            report.model = resolve_model(o.get("model", "default"), "cpu")
        path = report.write(o["report_out"])
        if not quiet:
            _say(f"report: {path}")
    st = expander.stats
    if not quiet and (st.skipped_non_media or st.unmatched_patterns):
        _say(f"skipped {st.skipped_non_media} non-media files in folders")
    if n == 0:
        if resume:
            if not quiet:
                _say("nothing new to scan (all inputs are already in the resume file)")
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
