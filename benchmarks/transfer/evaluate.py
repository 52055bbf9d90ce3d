"""One model through the chosen protocols: ``results.json`` (with the run record: command, commit,
environment) and ``report.md`` in the output folder.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.record import command_line, start_record
from benchmarks.transfer.delivery import SCAN_OVERRIDES
from benchmarks.transfer.protocols import NEEDS_RECON, PROTOCOLS, VAL_PROTOCOLS
from benchmarks.transfer.reports import render
from forensics_core.errors import DataError


def _scan_settings() -> dict[str, Any]:
    """The face-stage settings the scores were made with (the overrides over ``ScanConfig``'s defaults)."""
    from forensics.scanning.config import ScanConfig

    cfg = ScanConfig(**SCAN_OVERRIDES)
    return {"face_detector": cfg.face_detector, "detect_max_side": cfg.detect_max_side}


def run(
    model_ref: str, label: str, out: Path, data: Path, n: int, threads: int, protocols: list[str], split: str,
    recon: Path | None = None,
) -> Path:
    from detectors.modelfile import load_model

    if split == "val" and set(protocols) - set(VAL_PROTOCOLS):
        raise DataError(
            f"--split val: only {', '.join(VAL_PROTOCOLS)} (external-dev, unseen-decoders: never a selection input)"
        )
    if not data.is_dir():
        raise DataError(f"{data}: shared data folder not found (set --data or FORENSICS_DATA)")
    model = load_model(model_ref, device="cpu")
    rec = start_record(command_line("benchmarks.transfer"))  # the model: below, with its thresholds and training
    t0 = time.time()
    res: dict[str, Any] = {
        "label": label,
        "model": {
            "ref": model_ref, "name": model.card.get("name", ""), "sha256": model.sha256,
            "thresholds": dict(model.thresholds), "threshold_support": model.card.get("threshold_support", {}),
            "families": sorted(model.card.get("training", {}).get("families", [])),
            "trained_by": model.card.get("training", {}).get("command", ""),
            "members": [m["sha256"] for m in model.card.get("training", {}).get("fused_from", [])],
        },
        "command": rec.command,
        "scan": _scan_settings(),
        "commit": rec.commit,
        "started": rec.started,
        "environment": rec.environment,
        "n_per_set": n,
        "split": split,
        "protocols": {},
    }
    with tempfile.TemporaryDirectory(prefix="transfer-") as tmp:
        for name in protocols:
            extra = {"recon": recon} if name in NEEDS_RECON else {}
            res["protocols"][name] = PROTOCOLS[name](model, data, n, threads, Path(tmp) / name, split=split, **extra)
    res["minutes"] = (time.time() - t0) / 60
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render(res) + "\n", encoding="utf-8")
    return out
