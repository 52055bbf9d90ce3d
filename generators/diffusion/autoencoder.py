"""The KL-regularised convolutional autoencoder of latent diffusion, and the patch discriminator that sharpens it.

Latent diffusion (Rombach et al. 2022) splits synthesis in two: an autoencoder compresses a face by a factor ``f``
(4 or 8) into a small latent with 4 channels, and the diffusion model works only in that latent. Its decoder is
therefore the last network every latent-diffusion face passes through, and its upsampling trace is what detectors
can learn from real/reconstruction pairs (``ae-recon``). How the decoder upsamples is an option (a tag of
``generators.layers.UPSAMPLERS``, the GAN suite's registry: nearest neighbour + conv, transposed conv, sub-pixel
conv / pixel shuffle, ...), because each leaves its own periodic trace and a detector that met one decoder must be
tested on the others (Rajan et al., ICLR 2025: real images vs their reconstructions through several autoencoders).
The encoder outputs a diagonal Gaussian; a tiny KL weight keeps the latent roughly unit-scaled without blurring
reconstructions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from forensics_core.errors import UsageError
from generators.layers import UPSAMPLERS, layer_outputs, make_upsampler

FACTORS: tuple[int, ...] = (4, 8)


def groups_for(ch: int) -> int:
    """The largest GroupNorm group count <= 32 that divides ``ch`` (small test widths have few channels)."""
    for g in (32, 16, 8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


def norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups_for(ch), ch, eps=1e-6)


class ResBlock(nn.Module):
    """Pre-activation residual block (GroupNorm, SiLU, conv) x 2, 1x1 projection when widths differ."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.n1, self.c1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.n2, self.c2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        h = self.c2(F.silu(self.n2(h)))
        return self.skip(x) + h


#: per-tag options for the decoder's upsamplers (``generators.layers.make_upsampler``): pixel shuffle starts from
#: ICNR so a fresh decoder has no checkerboard (the GAN family of that tag keeps the registry's plain init)
DECODER_UPSAMPLE_OPTIONS: dict[str, dict[str, Any]] = {"pixelshuffle": {"icnr": True}}


def _conv_path(block: nn.Module) -> str:
    """The state-dict prefix of an upsampler block's one conv (``"1."`` for nearest + conv, ``""`` for a bare
    transposed conv, ``"0."`` for conv + pixel shuffle)."""
    (name,) = [n for n, m in block.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    return f"{name}." if name else ""


def channel_plan(base: int, factor: int) -> list[int]:
    """Widths per resolution level: level 0 at full resolution, one more level per halving."""
    if factor not in FACTORS:
        raise UsageError(f"autoencoder factor must be one of {FACTORS}, got {factor}")
    levels = int(math.log2(factor)) + 1
    mults = (1, 2, 2, 4)[:levels]
    return [base * m for m in mults]


def resnet_levels(chs: list[int], blocks: int, resample: Callable[[int], nn.Module]) -> tuple[nn.Sequential, int]:
    """The encoder's and decoder's body: ``blocks`` residual blocks per level of ``chs``, then ``resample(ch)``
    between levels (down in the encoder, up in the decoder); returns it with its output channels."""
    layers: list[nn.Module] = []
    prev = chs[0]
    for i, ch in enumerate(chs):
        for _ in range(blocks):
            layers.append(ResBlock(prev, ch))
            prev = ch
        if i < len(chs) - 1:
            layers.append(resample(ch))
    return nn.Sequential(*layers), prev


class Encoder(nn.Module):
    def __init__(self, in_ch: int, base: int, factor: int, z_ch: int, blocks: int) -> None:
        super().__init__()
        chs = channel_plan(base, factor)
        self.conv_in = nn.Conv2d(in_ch, chs[0], 3, padding=1)
        # learned downsampling between levels
        self.down, prev = resnet_levels(chs, blocks, lambda ch: nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid = ResBlock(prev, prev)
        self.out = nn.Sequential(norm(prev), nn.SiLU(), nn.Conv2d(prev, 2 * z_ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.mid(self.down(self.conv_in(x))))


class Decoder(nn.Module):
    def __init__(
        self, out_ch: int, base: int, factor: int, z_ch: int, blocks: int, upsample: str = "nearest"
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLERS:
            raise UsageError(f"decoder upsample must be one of {', '.join(UPSAMPLERS.names())}, got '{upsample}'")
        options = DECODER_UPSAMPLE_OPTIONS.get(upsample, {})
        chs = channel_plan(base, factor)[::-1]
        self.conv_in = nn.Conv2d(z_ch, chs[0], 3, padding=1)
        self.mid = ResBlock(chs[0], chs[0])
        self.up, prev = resnet_levels(chs, blocks, lambda ch: make_upsampler(upsample, ch, ch, **options))
        self.out = nn.Sequential(norm(prev), nn.SiLU(), nn.Conv2d(prev, out_ch, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.up(self.mid(self.conv_in(z))))

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any], strict: bool,
        missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str],
    ) -> None:
        """Autoencoders saved before the decoder took its upsamplers from ``generators.layers`` (the shipped
        ``ae-recon``, ``ae-convT``, ``ae-shuffle``: their hashes are the datasets' provenance) named each block's
        conv ``up.K.conv.*``: rename those keys to the registry module's path before the children load."""
        for i, block in enumerate(self.up):
            if isinstance(block, ResBlock):
                continue
            for param in ("weight", "bias"):
                legacy = f"{prefix}up.{i}.conv.{param}"
                if legacy in state_dict:
                    state_dict[f"{prefix}up.{i}.{_conv_path(block)}{param}"] = state_dict.pop(legacy)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


class KLAutoencoder(nn.Module):
    """Encoder -> diagonal Gaussian (mean, log-variance) -> decoder.

    ``latent_std`` is a buffer: a running estimate of the latent's standard deviation, kept during AE training,
    which the diffusion model divides by so its inputs are unit-scaled (LDM's "scale factor"). 0 = not measured.
    """

    def __init__(
        self,
        channels: int = 3,
        base: int = 64,
        factor: int = 4,
        z_channels: int = 4,
        blocks: int = 1,
        upsample: str = "nearest",
    ) -> None:
        super().__init__()
        self.factor = factor
        self.z_channels = z_channels
        self.encoder = Encoder(channels, base, factor, z_channels, blocks)
        self.decoder = Decoder(channels, base, factor, z_channels, blocks, upsample)
        self.register_buffer("latent_std", torch.zeros(()))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance (clamped: exp of a large log-variance overflows in fp16)."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @property
    def latent_scale(self) -> float:
        std = float(self.latent_std)
        return 1.0 / std if std > 0 else 1.0

    @torch.no_grad()
    def observe_latents(self, z: torch.Tensor, momentum: float = 0.99) -> None:
        std = z.detach().float().std()
        if float(self.latent_std) <= 0:
            self.latent_std.copy_(std)
        else:
            self.latent_std.mul_(momentum).add_((1 - momentum) * std)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction through the posterior mean: what ``ae-recon`` writes."""
        return self.decode(self.encode(x)[0]).clamp(-1, 1)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, var) || N(0, 1)) summed over latent elements, averaged over the batch."""
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(1).mean()


class PatchDiscriminator(nn.Module):
    """PatchGAN-style critic: strided 4x4 convs to a map of per-patch real/fake logits.

    Its intermediate activations double as the feature space of the perceptual-style loss when the project's
    feature network is unavailable (``features``).
    """

    def __init__(self, channels: int = 3, base: int = 64, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Sequential(nn.Conv2d(channels, base, 4, 2, 1), nn.LeakyReLU(0.2))]
        ch = base
        for i in range(1, layers):
            nxt = base * min(2**i, 8)
            blocks.append(nn.Sequential(nn.Conv2d(ch, nxt, 4, 2, 1), norm(nxt), nn.LeakyReLU(0.2)))
            ch = nxt
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(ch, 1, 3, padding=1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return layer_outputs(self.blocks, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1])
