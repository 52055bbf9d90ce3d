"""Safetensors checkpoints and run options for the video generators (numbered run dirs: :mod:`forensics.runs`).

Same layout as the GAN suite's runs: ``NNNNN-<kind>/`` with ``options.json``, ``metrics.jsonl`` and
``checkpoint.safetensors`` (model + optimiser tensors) beside ``checkpoint.json`` (step, optimiser hyper-
parameters, RNG state), so nothing is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from forensics.errors import ModelFileError, UsageError
from forensics.runs import optimizer_state_dict, optimizer_to_tensors


def save_checkpoint(run: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int,
                    generator: torch.Generator) -> None:
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    opt_t, opt_meta = optimizer_to_tensors("optim", opt)
    tensors.update(opt_t)
    tensors["rng.generator"] = generator.get_state()
    tmp = run / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(run / "checkpoint.safetensors")
    (run / "checkpoint.json").write_text(json.dumps({"step": step, "optimizer": opt_meta}, indent=1))


def load_checkpoint(run: Path, model: torch.nn.Module, opt: torch.optim.Optimizer | None = None,
                    generator: torch.Generator | None = None) -> int:
    """Load weights (and optimiser / RNG when given); return the step the checkpoint was taken at."""
    ck = Path(run) / "checkpoint.safetensors"
    if not ck.is_file():
        raise ModelFileError(f"{run}: no checkpoint.safetensors (not a finished run directory?)")
    tensors = load_file(str(ck))
    meta = json.loads((Path(run) / "checkpoint.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if opt is not None:
        opt.load_state_dict(optimizer_state_dict("optim", tensors, meta["optimizer"]))
    if generator is not None and "rng.generator" in tensors:
        generator.set_state(tensors["rng.generator"])
    return int(meta["step"])


def write_options(run: Path, cfg: Any, **extra: Any) -> None:
    (run / "options.json").write_text(json.dumps({**asdict(cfg), **extra}, indent=1, default=str))


def read_options(run: str | Path) -> dict[str, Any]:
    p = Path(run) / "options.json"
    if not p.is_file():
        raise UsageError(f"{run}: not a run directory (no options.json)")
    return json.loads(p.read_text())


def append_metrics(run: Path, row: dict[str, Any]) -> None:
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
