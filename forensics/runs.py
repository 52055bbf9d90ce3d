"""Numbered run directories and optimiser state as flat tensors: shared by every trainer in the toolkit.

GAN / diffusion training (:mod:`generators.train`), detector training (:mod:`detectors.train`) and the video
generators (:mod:`generators.video.runs`) all write ``out/NNNNN-<desc>/`` run folders and safetensors checkpoints.
safetensors stores tensors only, so an optimiser's state dict is split into tensors plus a JSON-able side record
(parameter groups and non-tensor scalars such as Adam's ``step`` on older torch); nothing is ever pickled.
"""

from __future__ import annotations

import os
import re
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
