"""Safetensors checkpoints and run options for the video generators (numbered run dirs: :mod:`forensics_core.runs`).

Same layout as the GAN suite's runs: ``NNNNN-<kind>/`` with ``options.json``, ``metrics.jsonl`` and
``checkpoint.safetensors`` (model + optimiser tensors) beside ``checkpoint.json`` (step, optimiser hyper-
parameters, RNG state), so nothing is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file

from forensics_core.errors import ModelFileError, UsageError
from forensics_core.runs import append_jsonl, restore_run_checkpoint, save_run_checkpoint, write_json

if TYPE_CHECKING:  # each loader imports its own model class: loading one kind needs no other
    from generators.video.landmark2face import Landmark2FaceModel
    from generators.video.reenact import ReenactModel
    from generators.video.swap import SwapAutoencoder


def save_checkpoint(run: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int,
                    generator: torch.Generator) -> None:
    save_run_checkpoint(
        run, model, opt, {"step": step}, opt_prefix="optim", extra_tensors={"rng.generator": generator.get_state()},
        indent=1,
    )


def load_checkpoint(run: Path, model: torch.nn.Module, opt: torch.optim.Optimizer | None = None,
                    generator: torch.Generator | None = None) -> int:
    """Load weights (and optimiser / RNG when given); return the step the checkpoint was taken at."""
    ck = Path(run) / "checkpoint.safetensors"
    if not ck.is_file():
        raise ModelFileError(f"{run}: no checkpoint.safetensors (not a finished run directory?)")
    tensors = load_file(str(ck))
    meta = json.loads((Path(run) / "checkpoint.json").read_text())
    restore_run_checkpoint(tensors, meta, model, opt, opt_prefix="optim")
    if generator is not None and "rng.generator" in tensors:
        generator.set_state(tensors["rng.generator"])
    return int(meta["step"])


def write_options(run: Path, cfg: Any, **extra: Any) -> None:
    write_json(run / "options.json", {**asdict(cfg), **extra}, indent=1, default=str)


def read_options(run: str | Path) -> dict[str, Any]:
    p = Path(run) / "options.json"
    if not p.is_file():
        raise UsageError(f"{run}: not a run directory (no options.json)")
    return json.loads(p.read_text())


def append_metrics(run: Path, row: dict[str, Any]) -> None:
    append_jsonl(run / "metrics.jsonl", row)


# ---------------------------------------------------------------------------------------------------------------
# Loading trained video generators: here, not in the trainer, so the methods that apply a model
# (:mod:`generators.video.methods`) never import the training loops.
# ---------------------------------------------------------------------------------------------------------------


def _config(cls: type, opts: dict[str, Any]):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in opts.items() if k in names})


def load_swap(run: str | Path) -> SwapAutoencoder:
    from generators.video.swap import SwapAutoencoder, SwapConfig

    cfg = _config(SwapConfig, read_options(run))
    model = SwapAutoencoder(cfg)
    load_checkpoint(Path(run), model)
    return model.eval()


def load_reenact(run: str | Path) -> tuple[ReenactModel, float]:
    from generators.video.reenact import ReenactConfig, ReenactModel

    opts = read_options(run)
    model = ReenactModel(_config(ReenactConfig, opts))
    load_checkpoint(Path(run), model)
    return model.eval(), float(opts.get("margin", 0.4))


def load_landmark2face(run: str | Path) -> Landmark2FaceModel:
    from generators.video.landmark2face import Landmark2FaceConfig, Landmark2FaceModel

    opts = read_options(run)
    if opts.get("kind", "landmark2face") != "landmark2face":
        raise UsageError(f"{run}: a '{opts.get('kind')}' run, not a landmark2face run")
    model = Landmark2FaceModel(_config(Landmark2FaceConfig, opts))
    load_checkpoint(Path(run), model)
    return model.eval()
