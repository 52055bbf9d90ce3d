"""The autoencoder families: ``ldm-ae`` and the real/reconstruction families ``ae-recon``, ``ae-convt``,
``ae-shuffle`` (one per decoder upsampler, so the pairs differ only in the decoder's trace).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from forensics_core.errors import UsageError
from generators.base import Batch, GeneratorFamily, Samples
from generators.diffusion.ae_training import AETrainer
from generators.diffusion.configs import AE_PRESETS, AEConfig, _check_common, _check_inputs
from generators.diffusion.weights import _copy_into, _load_modules, _pick
from generators.registry import register_generator


def reconstruction_families() -> dict[str, str]:
    """Upsampler tag -> the registered real/reconstruction family (``ae-recon`` and its siblings) decoding that way."""
    from generators.registry import GENERATORS

    return {e.obj.upsampler: e.name for e in GENERATORS.entries() if issubclass(e.obj, AERecon)}


def _check_decoder(family: GeneratorFamily, cfg: AEConfig) -> None:
    """A family's samples carry its registered upsampler tag, so its autoencoder must decode that way: a config
    asking for another decoder would write samples whose tag lies (and leave-one-upsampler-out would split on it)."""
    if cfg.ae_upsample != family.upsampler:
        other = reconstruction_families().get(cfg.ae_upsample)
        hint = f": use {other}, the family registered for that decoder" if other else ""
        raise UsageError(
            f"{family.name} decodes with {family.upsampler} upsampling, got ae_upsample={cfg.ae_upsample}{hint}"
        )


def copy_run_modules(
    ref: str, what: str, required: dict[str, nn.Module], optional: dict[str, nn.Module] | None = None
) -> None:
    """Load the run ``ref`` (named by the option ``what``: ``ae_run`` or ``ldm_run``) and copy its modules into
    ours by key: each ``required`` one must be in that run, an ``optional`` one is copied when it is."""
    src = _load_modules(ref, what)
    for key, dst in required.items():
        _copy_into(dst, _pick(src, key, ref, what), f"{what} '{ref}'")
    for key, dst in (optional or {}).items():
        if key in src:
            _copy_into(dst, src[key], f"{what} '{ref}'")


class AEBackedFamily(GeneratorFamily):
    """A family whose images come out of the latent-diffusion autoencoder's decoder (``ldm-ae`` and its
    reconstruction aliases, ``ldm`` and its editors): the resolutions that decoder supports, and the config checks
    each runs before it builds anything."""

    resolutions = (16, 32, 64, 128, 256)

    def __init__(self, cfg: AEConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(cfg, device)
        _check_common(cfg)
        _check_decoder(self, cfg)


# ----------------------------------------------------------------------------------------------------------------
# families
# ----------------------------------------------------------------------------------------------------------------


@register_generator(
    "ldm-ae",
    upsampler="nearest",
    kind="autoencoder",
    description="KL autoencoder of latent diffusion (factor 4/8, 4 latent channels); samples = reconstructions",
    components=("ldm-autoencoder",),
)
class LdmAutoencoder(AEBackedFamily):
    """The latent-diffusion autoencoder as a trainable family; ``sample`` reconstructs ``inputs``."""

    Config = AEConfig
    presets = AE_PRESETS

    def __init__(self, cfg: AEConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(cfg, device)
        self.trainer = AETrainer(cfg, self.device)

    def modules(self) -> dict[str, nn.Module]:
        return {"AE": self.trainer.ae, "D": self.trainer.disc}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"AE": self.trainer.opt_ae, "D": self.trainer.opt_d}

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        return self.trainer.step(batch.image.to(self.device), step)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, **kwargs: Any) -> Samples:
        inputs = _check_inputs(kwargs.get("inputs"), n, self.cfg.factor, self.name).to(self.device)
        ae = self.trainer.ae.eval()
        images = ae.reconstruct(inputs)
        meta = {
            "factor": self.cfg.factor,
            "latent_channels": self.cfg.z_channels,
            "decoder_upsample": self.cfg.ae_upsample,
            "decoder_blocks": self.cfg.ae_blocks,
        }
        return Samples(images=images, meta=[dict(meta) for _ in range(n)])


@dataclass
class AEReconConfig(AEConfig):
    """``ae_run``: optionally start from (or just sample with) a trained ``ldm-ae`` run."""

    ae_run: str = ""


@register_generator(
    "ae-recon",
    upsampler="nearest",
    kind="image2image",
    description="real faces encoded and decoded by the latent-diffusion autoencoder (paired with their parent)",
    components=("ldm-autoencoder",),
)
class AERecon(LdmAutoencoder):
    """Dataset-facing alias of ``ldm-ae``: training it trains the autoencoder; samples are paired reconstructions."""

    Config = AEReconConfig

    def __init__(self, cfg: AEReconConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(cfg, device)
        if cfg.ae_run:
            copy_run_modules(cfg.ae_run, "ae_run", {"AE": self.trainer.ae}, {"D": self.trainer.disc})


@dataclass
class AEConvTConfig(AEReconConfig):
    """A second autoencoder: transposed-conv decoder, 8 latent channels, two residual blocks per level."""

    ae_upsample: str = "convT-k4s2"
    z_channels: int = 8
    ae_blocks: int = 2


@register_generator(
    "ae-convT",
    upsampler="convT-k4s2",
    kind="image2image",
    description="real faces through a transposed-conv autoencoder (factor 4, 8 latent channels, 2 blocks per level)",
    components=("ae-convT",),
)
class AEConvT(AERecon):
    """Real/reconstruction pairs through an autoencoder that shares no weights or upsampler with ``ae-recon``:
    a decoder trace of its own, so a held-out test on it asks whether decoder traces transfer."""

    Config = AEConvTConfig


@dataclass
class AEShuffleConfig(AEReconConfig):
    """A third autoencoder: pixel-shuffle decoder, factor 8 with 16 latent channels (SD-VAE-like compression)."""

    ae_upsample: str = "pixelshuffle"
    factor: int = 8
    z_channels: int = 16


@register_generator(
    "ae-shuffle",
    upsampler="pixelshuffle",
    kind="image2image",
    description="real faces through a pixel-shuffle autoencoder (factor 8, 16 latent channels, 1 block per level)",
    components=("ae-shuffle",),
)
class AEShuffle(AERecon):
    """Real/reconstruction pairs through a sub-pixel-conv decoder with a deeper, wider latent (factor 8)."""

    Config = AEShuffleConfig
