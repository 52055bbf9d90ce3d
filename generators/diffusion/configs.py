"""Configs, presets and config checks of the latent-diffusion families, and the autoencoder a config describes.

One module so every family (``ldm-ae``, ``ae-recon`` and siblings, ``ldm``, ``sdedit``, ``ldm-inpaint``) reads
the same options and rejects a bad one with the same message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from forensics_core.errors import UsageError
from generators.base import GenConfig
from generators.diffusion.autoencoder import (
    FACTORS,
    KLAutoencoder,
)
from generators.layers import UPSAMPLERS

# ----------------------------------------------------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AEConfig(GenConfig):
    """KL autoencoder options. Loss = L1 + ``feat_weight`` * feature loss + ``kl_weight`` * KL
    + ``adv_weight`` * hinge adversarial loss once ``step >= adv_start`` (the warm-up lets L1 settle first,
    otherwise the critic wins against a decoder that still outputs mush)."""

    lr: float = 2e-4
    factor: int = 4
    z_channels: int = 4
    ae_base: int = 64
    ae_blocks: int = 1
    kl_weight: float = 1e-6
    feat_weight: float = 0.1
    adv_weight: float = 0.05
    adv_start: int = 2000
    d_base: int = 64
    d_lr: float = 2e-4
    feat_source: str = "auto"
    # False trains the decoder alone: the encoder, its latents and their scale stay exactly as a latent diffusion
    # model trained on them expects, so a sharper decoder improves ldm / sdedit / ldm-inpaint without retraining
    train_encoder: bool = True
    #: how the decoder doubles resolution: an upsampler tag of ``generators.layers.UPSAMPLERS``
    #: (a family refuses one that is not its own registered tag)
    ae_upsample: str = "nearest"


@dataclass
class LdmConfig(AEConfig):
    """Latent diffusion options. ``ae_run`` names a trained ``ldm-ae`` run (run dir, reference name or a
    ``.safetensors`` state dict); empty = hold a fresh autoencoder, trained for ``ae_steps`` first."""

    ae_run: str = ""
    ae_steps: int = 0
    timesteps: int = 1000
    schedule: str = "cosine"
    prediction: str = "v"
    unet_base: int = 64
    unet_mults: tuple[int, ...] | str = (1, 2, 2)
    unet_blocks: int = 1
    attn_heads: int = 4
    conditional: bool = True
    cond_drop: float = 0.1
    ema_decay: float = 0.999
    use_ema: bool = True
    clip_x0: float = 0.0
    # sampling defaults (overridable per call: steps=, eta=, guidance=)
    steps: int = 50
    eta: float = 0.0
    guidance: float = 1.0


@dataclass
class EditConfig(LdmConfig):
    """Options of the diffusion editors. ``ldm_run`` names a trained ``ldm`` run whose weights are reused."""

    ldm_run: str = ""
    strength: float = 0.5
    region: str = "freeform"
    resample: int = 1
    paste: bool = True
    steps: int = 50


# Presets per resolution (merged over the Config defaults): widths sized for a CPU at 64 px and a GPU at 128 px;
# ``tiny`` is for tests and smoke runs. Autoencoder-only families get only the autoencoder keys.
_AE_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"ae_base": 16, "d_base": 16, "adv_start": 1},
    "64": {"res": 64, "batch": 16, "ae_base": 32, "d_base": 32, "adv_start": 1500},
    "128": {"res": 128, "batch": 32, "ae_base": 64, "d_base": 64, "adv_start": 5000},
}
_UNET_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"unet_base": 16, "attn_heads": 2},
    "64": {"unet_base": 64},
    "128": {"unet_base": 128, "unet_mults": (1, 2, 2, 4)},
}
AE_PRESETS = _AE_PRESETS
LDM_PRESETS: dict[str, dict[str, Any]] = {k: {**_AE_PRESETS[k], **_UNET_PRESETS[k]} for k in _AE_PRESETS}


def _ints(value: tuple[int, ...] | list[int] | str) -> tuple[int, ...]:
    """Accept ``(1, 2, 2)`` or the CLI spelling ``"1,2,2"``."""
    if isinstance(value, str):
        try:
            return tuple(int(v) for v in value.replace(" ", "").split(",") if v)
        except ValueError:
            raise UsageError(f"expected comma-separated integers, got '{value}'") from None
    return tuple(int(v) for v in value)


def build_autoencoder(cfg: AEConfig) -> KLAutoencoder:
    """The autoencoder ``cfg`` describes (every family that holds one builds it here)."""
    return KLAutoencoder(cfg.channels, cfg.ae_base, cfg.factor, cfg.z_channels, cfg.ae_blocks, cfg.ae_upsample)



def _check_common(cfg: AEConfig) -> None:
    if cfg.ae_upsample not in UPSAMPLERS:
        raise UsageError(f"ae_upsample must be one of {', '.join(UPSAMPLERS.names())}, got '{cfg.ae_upsample}'")
    if cfg.factor not in FACTORS:
        raise UsageError(f"factor must be one of {FACTORS}, got {cfg.factor}")
    if cfg.res % cfg.factor:
        raise UsageError(f"resolution {cfg.res} is not divisible by the autoencoder factor {cfg.factor}")


def _check_inputs(inputs: torch.Tensor | None, n: int, factor: int, family: str) -> torch.Tensor:
    if inputs is None:
        raise UsageError(f"{family} edits real faces: pass inputs (--input DIR)")
    if inputs.ndim != 4 or inputs.shape[1] != 3:
        raise UsageError(f"{family}: inputs must be (N, 3, H, W) images, got shape {tuple(inputs.shape)}")
    if inputs.shape[0] < n:
        raise UsageError(f"{family}: asked for {n} images but got {inputs.shape[0]} inputs")
    if inputs.shape[-1] % factor or inputs.shape[-2] % factor:
        raise UsageError(f"{family}: input size {tuple(inputs.shape[-2:])} is not divisible by factor {factor}")
    return inputs[:n]
