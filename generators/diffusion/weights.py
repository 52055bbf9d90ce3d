"""Reusing another run's weights: one trained autoencoder (``ae_run``) or LDM (``ldm_run``) behind every latent family.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from forensics_core.errors import UsageError


def _load_modules(ref: str, what: str) -> dict[str, nn.Module] | dict[str, dict[str, torch.Tensor]]:
    """Modules of another run (``generators.checkpoints.load_run``) or state dicts grouped by prefix from a
    ``.safetensors`` file. Reusing runs by reference keeps one trained autoencoder behind every latent family."""
    if ref.endswith(".safetensors"):
        from pathlib import Path

        from safetensors.torch import load_file

        if not Path(ref).is_file():
            raise UsageError(f"{what} '{ref}': file not found")
        groups: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in load_file(ref).items():
            prefix, _, rest = key.partition(".")
            groups.setdefault(prefix, {})[rest] = tensor
        return groups
    try:
        from generators.checkpoints import load_run
    except ImportError as exc:  # run loading is a separate module; say so instead of a traceback
        raise UsageError(f"{what} '{ref}': cannot load runs ({exc}); pass a .safetensors file instead") from None
    return load_run(ref).modules()


def _pick(src: dict[str, Any], key: str, ref: str, what: str) -> Any:
    if key not in src:
        raise UsageError(f"{what} '{ref}' has no '{key}' weights (found: {', '.join(sorted(src)) or 'none'})")
    return src[key]


def _copy_into(dst: nn.Module, src: nn.Module | dict[str, torch.Tensor], what: str) -> None:
    state = src.state_dict() if isinstance(src, nn.Module) else src
    try:
        dst.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UsageError(f"{what}: weights do not fit this config ({first}); match factor / widths") from None
