"""What a load run records and prints: :class:`LoadReport` (with the run record: command, commit, machine,
model), ``NAME.json`` and the ``NAME.md`` table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.record import RunRecord, model_ref, short_commit

RESULTS = Path(__file__).resolve().parents[1] / "results" / "serve"


@dataclass
class LoadReport:
    name: str
    command: str
    git_commit: str
    machine: dict[str, Any]
    config: dict[str, Any]
    files: dict[str, int]
    model: dict[str, str] = field(default_factory=dict)  # what both the scan baseline and the service ran
    started: str = ""  # UTC, from the run record (files before the record have none)
    environment: dict[str, Any] = field(default_factory=dict)  # the record's full environment; ``machine`` is its
    # summary under the keys the committed results use
    requests: int = 0
    answered: int = 0
    wall_s: float = 0.0
    throughput_rps: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    status_codes: dict[str, int] = field(default_factory=dict)
    error_mix: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    scan_baseline: list[dict[str, Any]] = field(default_factory=list)
    ratio_vs_scan: float = 0.0
    cpu_ms_per_request: float = 0.0  # front + scanner processes, during the load phase
    front_cpu_ms_per_request: float = 0.0  # the HTTP front alone (uvicorn + Starlette + spooling)
    cpu_ratio_vs_scan: float = 0.0  # scan CPU ms per file / service CPU ms per request (> 1: the service is leaner)
    server_counters: dict[str, float] = field(default_factory=dict)
    soak: dict[str, Any] = field(default_factory=dict)


def _default_model() -> dict[str, str]:
    """Name and weights hash of the model the server and the scan baseline load (the shipped default): a load
    number means little without the model it was measured with (the face stage and test-time views change it)."""
    from detectors.modelfile import read_card, resolve_model_dir

    ref = model_ref(read_card(resolve_model_dir("default")))
    return {"name": ref.name, "sha256": ref.weights_sha256}


def machine_summary(rec: RunRecord) -> dict[str, Any]:
    """The record's environment under the keys ``LoadReport.machine`` has always had (committed results read so)."""
    env = rec.environment
    return {"cpus": env.get("cpu_count"), "platform": env.get("platform"), "python": env.get("python"),
            "load_avg_at_start": env.get("load_avg") or []}


def header_lines(rep: LoadReport) -> list[str]:
    """What was run, at which commit, with which model, on what machine: the lines that make a number traceable."""
    return [
        f"# forensics serve load: {rep.name}",
        "",
        f"`{rep.command}` at commit `{short_commit(rep.git_commit)}`; "
        f"server: `{rep.config.get('server_command')}`; model "
        f"`{rep.model.get('name', '?')}` (weights sha256 `{rep.model.get('sha256', '')[:16]}`).",
        f"Machine: {rep.machine['cpus']} CPUs ({rep.machine['platform']}), load average at start "
        f"{', '.join(f'{x:.1f}' for x in rep.machine['load_avg_at_start'])} (shared with other jobs).",
    ]


def write_report(rep: LoadReport, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{rep.name}.json").write_text(json.dumps(asdict(rep), indent=2) + "\n")
    base = " / ".join(f"{b['files_per_s']:.1f}" for b in rep.scan_baseline) or "not run"
    cpu_base = " / ".join(f"{b['cpu_ms_per_file']:.1f}" for b in rep.scan_baseline) or "not run"
    ratio = f"{rep.ratio_vs_scan:.2f}x" if rep.scan_baseline else "not run"
    if rep.soak.get("killed"):  # the killed worker's CPU is lost and its replacement's is not sampled
        cpu = f"{cpu_base} / n/a (a worker was killed); front alone {rep.front_cpu_ms_per_request:.1f} ms"
    else:
        cpu = (f"{cpu_base} / {rep.cpu_ms_per_request:.1f} ms ({rep.cpu_ratio_vs_scan:.2f}x); front alone "
               f"{rep.front_cpu_ms_per_request:.1f} ms")  # fmt: skip
    lines = [
        *header_lines(rep),
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| requests / answered | {rep.requests} / {rep.answered} |",
        f"| unique files (good + hostile) | {rep.files['unique']} ({rep.files['good']} good) |",
        f"| connections | {rep.config['concurrency']} |",
        f"| throughput | {rep.throughput_rps:.1f} requests/s over {rep.wall_s:.1f} s |",
        f"| latency p50 / p95 / p99 | {rep.latency_ms['p50']:.0f} / {rep.latency_ms['p95']:.0f} / "
        f"{rep.latency_ms['p99']:.0f} ms (max {rep.latency_ms['max']:.0f}) |",
        f"| status codes | {', '.join(f'{k}: {v}' for k, v in rep.status_codes.items())} |",
        f"| error mix | {', '.join(f'{k}: {v}' for k, v in rep.error_mix.items()) or 'none'} |",
        f"| peak RSS (front + workers / front / largest worker) | {rep.peak_rss_mb['total']:.0f} / "
        f"{rep.peak_rss_mb['front']:.0f} / {rep.peak_rss_mb['largest_worker']:.0f} MB |",
        f"| `forensics scan` steady files/s (before / after) | {base} |",
        f"| ratio service / scan (throughput, mean of the scan runs) | {ratio} |",
        f"| CPU per file: scan / service (front + workers) | {cpu} |",
        f"| worker restarts counted by the server | {rep.server_counters['worker_restarts']:.0f} |",
        f"| worker killed | {rep.soak['killed'] or 'no'} |",
        f"| unanswered / duplicated / mismatched answers | {rep.soak['requests_without_answer']} / "
        f"{rep.soak['duplicate_answers']} / {rep.soak['mismatched_answers']} |",
        f"| admitted requests / files the server answered | {rep.soak['admitted']} / "
        f"{rep.soak['server_files_answered']:.0f} |",
        f"| every admitted request answered exactly once | {rep.soak['every_admitted_request_answered_once']} |",
        "",
    ]
    (out / f"{rep.name}.md").write_text("\n".join(lines))
