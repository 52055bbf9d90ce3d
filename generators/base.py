"""The contract every generator family implements, so one trainer, one sampler and one CLI serve them all.

A family owns its networks, optimisers and losses; :mod:`generators.train` owns the loop, run directories,
checkpoints (safetensors), resume, metrics and DDP. Families never read files or parse options themselves.

Kinds (``GeneratorFamily.kind``):
- ``noise``: unconditional synthesis from a latent (dcgan, stylegan2, resgan, pixelshuffle, ldm).
- ``conditional``: synthesis from a latent plus attribute labels (cgan; ldm with guidance).
- ``image2image``: edits a real face (cyclegan, inpaint, sdedit, ldm-inpaint, ae-recon): needs ``--input``.
- ``superres``: makes detail for a low-resolution real face (srgan): needs ``--input``.
- ``autoencoder``: reconstructs its inputs (ldm-ae): needs ``--input``.

Standard ``sample()`` keyword arguments (the sampler and trainer pass these; families ignore those they do not use,
and every value may be None meaning "the family's default"):
- ``inputs``: real faces (N, 3, res, res) in [-1, 1] for the kinds in :data:`INPUT_KINDS`;
- ``truncation``: psi in (0, 1] for latent families;
- ``condition``: ``"gender=female,age=20-29"`` (or a dict) for conditional families;
- anything else given on the command line (``--steps 50 --guidance 3 --strength 0.5 --region eyes``), as strings
  converted to int / float when they parse as numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

# Face attributes parsed from UTKFace names (``age_gender_race_date.jpg``): the conditioning vocabulary.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "gender": ("male", "female"),
    "age": ("0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60+"),
    "race": ("white", "black", "asian", "indian", "other"),
}


def random_condition(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, len(ATTRIBUTES)) attribute indices drawn uniformly, on the generator's device: what a conditional
    family samples when the caller fixes no attribute (a fixed seed gives the same people on any device)."""
    device = generator.device if generator is not None else None
    cols = [torch.randint(0, len(v), (n,), generator=generator, device=device) for v in ATTRIBUTES.values()]
    return torch.stack(cols, 1)


#: kinds whose ``sample`` edits real faces and so needs ``inputs`` (CLI ``--input DIR``)
INPUT_KINDS: tuple[str, ...] = ("image2image", "superres", "autoencoder")


@dataclass
class GenConfig:
    """Options shared by every family; families subclass this with their own fields and defaults."""

    res: int = 64
    batch: int = 32
    lr: float = 2e-4
    seed: int = 0
    channels: int = 3


@dataclass
class Batch:
    """What the trainer hands to ``train_step``. Images are float tensors in [-1, 1], NCHW.

    ``cond`` holds attribute indices (N, len(ATTRIBUTES)) in ATTRIBUTES order, -1 where unknown.
    ``image_b`` is an unpaired second domain (cyclegan).
    """

    image: torch.Tensor
    cond: torch.Tensor | None = None
    image_b: torch.Tensor | None = None


@dataclass
class Samples:
    """What ``sample`` returns: images in [-1, 1] plus per-image provenance for the manifest.

    ``masks`` (N,1,H,W, 1 = synthesised) give localisation ground truth for edits; ``meta[i]`` lands in the
    manifest row of image i (seed, truncation, condition, strength, ...).
    """

    images: torch.Tensor
    meta: list[dict[str, Any]] = field(default_factory=list)
    masks: torch.Tensor | None = None


class GeneratorFamily(ABC):
    """One trainable generator family. Subclasses set the class attributes and implement the four methods."""

    # Set by ``generators.registry.register_generator`` (the one place they are written), never in the class body.
    name: ClassVar[str]
    family: ClassVar[str]
    upsampler: ClassVar[str]
    kind: ClassVar[str] = "noise"
    Config: ClassVar[type[GenConfig]] = GenConfig
    #: named presets (e.g. per resolution) merged over the Config defaults before CLI overrides
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: resolutions the architecture supports
    resolutions: ClassVar[tuple[int, ...]] = (16, 32, 64, 128)

    def __init__(self, cfg: GenConfig, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)

    @abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """Every network to checkpoint, by name (e.g. ``G``, ``D``, ``G_ema``)."""

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser to checkpoint, by name."""

    @abstractmethod
    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        """One optimisation step on ``batch``; returns scalar losses for metrics.jsonl."""

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator, **kwargs: Any) -> Samples:
        """Generate ``n`` images (or edit ``kwargs['inputs']`` for image2image / superres kinds)."""

    def borrowed_modules(self) -> list[str]:
        """Modules whose weights come from another model named in the config (e.g. the autoencoder behind a latent
        diffusion model); shipping leaves them out, since loading the config loads them again, so one trained
        network is stored once however many families reuse it."""
        return []

    def discriminator(self) -> nn.Module | None:
        """The trained discriminator, for detectors that reuse it (``gan-disc``); None if the family has none."""
        return self.modules().get("D")
