"""The training-run toolkit shared by every trainer: run dirs, options, metrics, checkpoints, DDP set-up.

GAN / diffusion training (:mod:`generators.train`), detector training (:mod:`detectors.train`) and the video
generators (:mod:`generators.video.runs`) all write ``out/NNNNN-<desc>/`` run folders (:func:`next_run_dir`) with
an options file (:func:`write_json`), ``metrics.jsonl`` (:func:`append_jsonl`, :class:`MetricsLog`) and safetensors
checkpoints. safetensors stores tensors only, so an optimiser's state dict is split into tensors plus a JSON-able
side record (parameter groups and non-tensor scalars such as Adam's ``step`` on older torch); nothing is ever
pickled. The detector and video trainers keep one checkpoint per run (:func:`save_run_checkpoint`:
``checkpoint.safetensors`` + ``checkpoint.json``); the GAN trainer keeps numbered checkpoint dirs
(:mod:`generators.checkpoints`). Multi-process training (``torchrun``) joins its process group through
:func:`init_distributed`. The loop that decides when these are written is :mod:`forensics_core.training`. torch is
imported inside the functions that need it, so importing this module is cheap.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_RE = re.compile(r"^(\d{5})-")


def next_run_dir(out: str | os.PathLike[str], desc: str, create: bool = True) -> Path:
    """``out/NNNNN-desc`` with the next free number (never reuses one, so runs are never overwritten)."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    ids = [int(m.group(1)) for p in root.iterdir() if (m := RUN_RE.match(p.name))]
    run = root / f"{max(ids, default=-1) + 1:05d}-{desc}"
    if create:
        run.mkdir()
    return run


def optimizer_to_tensors(prefix: str, opt: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(tensors, side)``: state tensors under ``{prefix}.state.{param}.{key}``; ``side`` is JSON-able."""
    import torch

    sd = opt.state_dict()
    tensors: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            key = f"{prefix}.state.{pid}.{k}"
            if torch.is_tensor(v):
                tensors[key] = v.detach().cpu().contiguous().clone()
            else:
                scalars[key] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_state_dict(prefix: str, tensors: dict[str, Any], side: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_tensors`: a state dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    head = f"{prefix}.state."
    for key, v in list(tensors.items()) + list(side["scalars"].items()):
        if key.startswith(head):
            pid, k = key[len(head) :].split(".", 1)
            state.setdefault(int(pid), {})[k] = v
    return {"state": state, "param_groups": side["param_groups"]}


# -- options and metrics ----------------------------------------------------------------------------------------
def write_json(
    path: str | os.PathLike[str],
    obj: Any,
    *,
    indent: int | None = 2,
    newline: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> Path:
    """``obj`` as JSON at ``path`` through a temporary file + rename (a crash leaves the old file or none).
    Each trainer's files keep their own layout (``indent``, a trailing ``newline``, ``default``), byte for byte."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=indent, default=default) + ("\n" if newline else ""), encoding="utf-8")
    os.replace(tmp, path)
    return path


def append_jsonl(
    path: str | os.PathLike[str], row: dict[str, Any], default: Callable[[Any], Any] | None = None
) -> None:
    """Append one JSON object as a line (``metrics.jsonl``)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=default) + "\n")


class MetricsLog:
    """``metrics.jsonl`` of a run: each record stamped with the wall-clock ``time``; a no-op on DDP ranks > 0."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled

    def write(self, **rec: Any) -> None:
        if not self.enabled:
            return
        append_jsonl(self.path, {"time": round(time.time(), 3), **rec}, default=float)


# -- single-file checkpoints ------------------------------------------------------------------------------------
def save_tensors(path: str | os.PathLike[str], tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """safetensors file written through a temporary file + rename."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def save_run_checkpoint(
    run: Path,
    model: Any,
    opt: Any,
    meta: dict[str, Any],
    *,
    opt_prefix: str,
    extra_tensors: dict[str, Any] | None = None,
    indent: int | None = None,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """``run/checkpoint.safetensors`` (``model.*`` weights, ``{opt_prefix}.state.*`` optimiser tensors, any
    ``extra_tensors`` such as an RNG state) and ``run/checkpoint.json`` (``meta`` plus the optimiser's side record
    under ``optimizer``): the one-checkpoint-per-run layout of the detector and video trainers."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    opt_tensors, opt_side = optimizer_to_tensors(opt_prefix, opt)
    tensors.update(opt_tensors)
    tensors.update(extra_tensors or {})
    save_tensors(run / "checkpoint.safetensors", tensors)
    write_json(run / "checkpoint.json", {**meta, "optimizer": opt_side}, indent=indent, default=default)


def restore_run_checkpoint(
    tensors: dict[str, Any], meta: dict[str, Any], model: Any, opt: Any | None, *, opt_prefix: str
) -> None:
    """Inverse of :func:`save_run_checkpoint` once its two files are read (each trainer reads them with its own
    checks and error messages): weights into ``model``, optimiser state into ``opt`` when given."""
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if opt is not None:
        opt.load_state_dict(optimizer_state_dict(opt_prefix, tensors, meta["optimizer"]))


# -- multi-process (DDP) set-up ---------------------------------------------------------------------------------
@dataclass
class Dist:
    """This process's place in a ``torchrun`` job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def world_size() -> int:
    """Processes in this job, from the environment ``torchrun`` sets (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: Any) -> Dist:
    """Join the process group that ``torchrun`` (or a test's spawn) described in the environment: NCCL for a CUDA
    ``device``, Gloo otherwise. A single process gets ``Dist()`` and no process group."""
    if world_size() <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def rank_device(dist: Dist, device: Any) -> Any:
    """The device this rank trains on: its own GPU (``cuda:LOCAL_RANK``, made current) when distributed on CUDA,
    else ``device`` unchanged."""
    if not (dist.enabled and device.type == "cuda"):
        return device
    import torch

    device = torch.device("cuda", dist.local_rank)
    torch.cuda.set_device(device)
    return device
