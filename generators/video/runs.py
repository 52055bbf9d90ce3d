"""Run directories and safetensors checkpoints for the video generators (swap, reenact).

Same layout as the GAN suite's runs: ``NNNNN-<kind>/`` with ``options.json``, ``metrics.jsonl`` and
``checkpoint.safetensors`` (model + optimiser tensors) beside ``checkpoint.json`` (step, optimiser hyper-
parameters, RNG state), so nothing is ever unpickled.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from forensics.errors import ModelFileError, UsageError


def new_run_dir(out: str | Path, kind: str) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = [int(m.group(1)) for p in out.iterdir() if (m := re.match(r"(\d{5})-", p.name))]
    run = out / f"{max(ids, default=-1) + 1:05d}-{kind}"
    run.mkdir()
    return run


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state into flat tensors (for safetensors) and JSON-able hyper-parameters."""
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"optim.{idx}.{k}"] = t.detach().clone().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = t
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(run: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int,
                    generator: torch.Generator) -> None:
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    opt_t, opt_meta = optimizer_tensors(opt)
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
        load_optimizer(opt, tensors, meta["optimizer"])
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
