"""``forensics scan``: score images and videos for synthetic or manipulated faces.

Exit codes (documented in ``docs/scan.md``): 0 = nothing flagged, 1 = at least one file flagged, 2 = usage or
fatal error, or every input failed. Per-file errors never stop a batch: they become ``status: error`` records.
torch is imported only inside the command body, so ``forensics scan --help`` stays fast. The command parses options;
the scan itself is :func:`forensics.api.run_scan`, which ``forensics.demo`` calls too.
"""

from __future__ import annotations

from typing import Any

import click

from forensics.api import EXIT_CLEAR, EXIT_FATAL, EXIT_FLAGGED, run_scan
from forensics.engines import ENGINES
from forensics.evidence import evidence_help
from forensics.scanning.config import ScanConfig
from forensics_core.clirun import RegistryChoice, RegistryHelpOption
from forensics_core.faces.detectors import FACE_DETECTORS, face_detector_help
from forensics_core.thresholds import DEFAULT_POLICY, THRESHOLD_POLICIES, parse_threshold

__all__ = ["EXIT_CLEAR", "EXIT_FATAL", "EXIT_FLAGGED", "ThresholdType", "run_scan", "scan"]


class ThresholdType(click.ParamType):
    """``balanced`` | ``fpr1`` | ``fpr01`` (any case) | a probability in [0, 1], read by
    :func:`forensics_core.thresholds.parse_threshold`; an unknown name is a one-line usage error listing the names."""

    name = "threshold"

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        # click upper-cases a type's name for the metavar ("{BALANCED,FPR1,FPR01}"): show the names as typed
        return "[" + "|".join(THRESHOLD_POLICIES) + "|FLOAT]"

    def convert(self, value: Any, param: Any, ctx: Any) -> str | float:
        return parse_threshold(value)


@click.command(
    "scan",
    epilog="Example: forensics scan photos/ clip.mp4 --threshold fpr1 --jsonl out.jsonl --report report.html",
)
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", "model", default="default", show_default=True,
              help="Model directory / model.json / .safetensors, or an installed model name.")
@click.option("--threshold", type=ThresholdType(), default=ScanConfig.threshold,
              help=f"Verdict policy from the model file, any case (balanced, fpr1 = 1% FPR, fpr01 = 0.1% FPR; a "
              "policy the model card marks not estimable logs a warning), or a probability. Default: "
              f"{DEFAULT_POLICY} (balanced for a model file without one): balanced flags about a fifth of real "
              "photos from sources the shipped model never saw (docs/scan.md).")
@click.option("--evidence", cls=RegistryHelpOption, default="auto", show_default=True,
              help=evidence_help)
@click.option("--json", "json_out", metavar="FILE", help="Write all records as one JSON array ('-' = stdout).")
@click.option("--jsonl", "jsonl_out", metavar="FILE", help="Stream one JSON record per line ('-' = stdout).")
@click.option("--csv", "csv_out", metavar="FILE", help="Write one CSV row per file ('-' = stdout).")
@click.option("--report", "report_out", metavar="FILE", help="Write a self-contained HTML report.")
@click.option("--resume", metavar="OUT.jsonl",
              help="Skip inputs already in this JSONL (same path and sha256) and append new records to it.")
@click.option("--timeout", "timeout_s", type=float, default=ScanConfig.timeout_s, show_default=True,
              help="Per-file time limit in seconds, every stage from hashing to evidence (0 = none).")
@click.option("--fps", type=float, default=ScanConfig.fps, show_default=True, help="Video frames sampled per second.")
@click.option("--max-frames", type=int, default=ScanConfig.max_frames, show_default=True,
              help="Sampled frames per video; the rate is lowered so they span the whole clip.")
@click.option("--max-faces", type=int, default=ScanConfig.max_faces, show_default=True,
              help="Most confident faces per image / frame.")
@click.option("--device", default=ScanConfig.device, show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@click.option("--batch", type=int, default=ScanConfig.batch, show_default=True,
              help="Files (or video frames) per batched step.")
@click.option("--workers", type=int, default=ScanConfig.workers, show_default=True,
              help="Threads for decoding and evidence.")
@click.option("--threads", type=int, default=ScanConfig.threads,
              help="torch CPU threads (default: all cores; use 1 per process on shared machines).")
@click.option("--engine", default="auto", show_default=True, type=RegistryChoice(lambda: ENGINES.names()),
              help="auto (processes once a CPU scan lists 1000 files, else local), local (this process), processes "
                   "(--actors scanner processes on this machine: the fastest on a multi-core CPU) or ray (Ray Data; "
                   "needs the [ray] extra). Example: --engine processes")
@click.option("--address", default=None, help="Ray cluster address (ray://host:10001 or auto); default: local Ray.")
@click.option("--actors", type=click.IntRange(min=1), default=None,
              help="Parallel scanners: processes for --engine processes (default: one per CPU core, each with "
                   "cores / processes torch threads), actors for --engine ray (default 1).")
@click.option("--face-detector", cls=RegistryHelpOption, default=ScanConfig.face_detector, show_default=True,
              type=RegistryChoice(lambda: FACE_DETECTORS.names()),
              help=lambda: face_detector_help(ScanConfig.face_detector) + " Example: --face-detector mtcnn")
@click.option("--detect-every", type=int, default=ScanConfig.detect_every, show_default=True,
              help="Videos: full face detection every N sampled frames, faces followed by the detector in between "
              "(mtcnn-fast: O-Net on the previous boxes). Example: --detect-every 4")
@click.option("--follow-symlinks", is_flag=True, help="Follow symlinks that point outside the scanned folders.")
@click.option("--max-pixels", type=int, default=ScanConfig.max_pixels,
              help="Refuse images / frames larger than this (pixels).")
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
