"""``forensics serve``: the scan pipeline as an HTTP service for moderation pipelines (see ``docs/serve.md``).

The command validates its options and the model card in this process (no torch: start-up errors are immediate),
then runs uvicorn on the Starlette app of :mod:`forensics.serve`; the scanner processes load the model in the
background and ``GET /readyz`` turns 200 when the first one is ready. Exit codes: 0 after a clean shutdown
(SIGINT / SIGTERM), 2 for a usage error (bad option, unreadable key file, missing model).
"""

from __future__ import annotations

from typing import Any

import click

from forensics.commands.scan import ThresholdType
from forensics.scanning.config import ScanConfig
from forensics_core.clirun import RegistryHelpOption
from forensics_core.faces.detectors import face_detector_help
from forensics_core.thresholds import DEFAULT_POLICY

MiB = 1024 * 1024


@click.command(
    "serve",
    epilog="Example: forensics serve --host 127.0.0.1 --port 8080 --model default --workers 2 "
    "--root /srv/uploads --api-key-file /etc/forensics/keys  (then: curl -F file=@face.jpg "
    "http://127.0.0.1:8080/v1/scan)",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (keep loopback behind a proxy).")
@click.option("--port", type=int, default=8080, show_default=True, help="TCP port.")
@click.option("--model", default="default", show_default=True, help="Model directory / model.json, or a name.")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Scanner processes (each loads the model once; about one per CPU core or GPU).")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads per scanner process.")
@click.option("--threshold", type=ThresholdType(), default=ScanConfig.threshold,
              help=f"Verdict policy, any case: balanced, fpr1, fpr01, or a probability. Default: {DEFAULT_POLICY} "
              "(balanced for a model file without one).")
@click.option("--evidence", default="none", show_default=True,
              help="Evidence analyses added to every record: none, all, or a comma list.")
@click.option("--device", default=ScanConfig.device, show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@click.option("--face-detector", cls=RegistryHelpOption, default=ScanConfig.face_detector, show_default=True,
              help=lambda: face_detector_help(ScanConfig.face_detector) + " Example: --face-detector mtcnn")
@click.option("--queue", type=int, default=128, show_default=True,
              help="Most files admitted and not yet answered; beyond it requests get 429 + Retry-After.")
@click.option("--batch", type=int, default=ScanConfig.batch, show_default=True,
              help="Most queued files one worker scans at once.")
@click.option("--timeout", "timeout_s", type=float, default=30.0, show_default=True,
              help="Per-request budget in seconds (queue wait + scan); past it: 504 and the worker is replaced.")
@click.option("--max-upload-mb", type=float, default=32.0, show_default=True,
              help="Largest request body (one upload, or all files of a batch upload), in MiB.")
@click.option("--max-pixels", type=int, default=40_000_000, show_default=True,
              help="Refuse images / frames with more pixels (decompression-bomb guard).")
@click.option("--max-batch-files", type=int, default=64, show_default=True, help="Most files per batch request.")
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="Allow POST /v1/scan/batch {\"paths\": [...]} for files under this folder (off by default).")
@click.option("--api-key-file", type=click.Path(dir_okay=False), default=None,
              help="Require 'Authorization: Bearer KEY' (keys one per line, file mode 600); probes stay open.")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning"]))
@click.option("--plain-logs", is_flag=True, help="Human-readable logs instead of JSON lines.")
def serve(**o: Any) -> int:
    """Serve scans over HTTP: POST /v1/scan, POST /v1/scan/batch, GET /healthz /readyz /metrics /v1/model.

    Records are the same JSON objects as 'forensics scan --jsonl'. A bad file is answered 422 with a one-line
    cause; a full queue 429 with Retry-After; a request past --timeout 504. Logs are JSON lines with request ids.
    """
    settings = settings_from_options(o)
    return run_serve(settings)


def settings_from_options(o: dict[str, Any]) -> Any:
    """Options -> :class:`ServeSettings`, with the model card and key file checked before anything starts."""
    from forensics.scanning.config import check_model
    from forensics.serve.settings import ServeSettings, read_api_keys
    from forensics_core.faces.detectors import FACE_DETECTORS

    model = o["model"]
    check_model(model, o["threshold"])  # torch-free: a typo fails here, not in every worker
    FACE_DETECTORS.get(o["face_detector"])
    return ServeSettings(
        host=o["host"], port=o["port"], model=model, workers=o["workers"], threads=o["threads"],
        threshold=o["threshold"], evidence=o["evidence"], device=o["device"], face_detector=o["face_detector"],
        queue=o["queue"], batch=o["batch"], timeout_s=o["timeout_s"],
        max_upload_bytes=int(o["max_upload_mb"] * MiB), max_pixels=o["max_pixels"],
        max_batch_files=o["max_batch_files"], root=o["root"],
        api_keys=read_api_keys(o["api_key_file"]) if o["api_key_file"] else (),
        log_level=o["log_level"], json_logs=not o["plain_logs"],
    )  # fmt: skip


def run_serve(settings: Any) -> int:
    """Run uvicorn until SIGINT / SIGTERM; the app's lifespan starts and stops the scanner processes."""
    import uvicorn

    from forensics.serve import create_app
    from forensics.serve.logs import configure_logging

    configure_logging(settings.log_level, settings.json_logs)
    config = uvicorn.Config(
        create_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False,
        lifespan="on", timeout_graceful_shutdown=max(5, int(settings.timeout_s)),
    )  # fmt: skip
    uvicorn.Server(config).run()
    return 0
