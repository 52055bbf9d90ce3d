"""DCGAN (Radford et al. 2016): transposed-conv generator, batch norm, non-saturating loss.

Registered twice, differing only in the transposed convolution: kernel 4 / stride 2 (even overlap, the classic
checkerboard) and kernel 3 / stride 2 (uneven overlap, a stronger checkerboard at a different phase). Both keep
``family="dcgan"`` so a leave-one-upsampler-out protocol can hold out one kernel while training on the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from generators.layers import CONV_GAN_PRESETS, AdversarialConfig, AdversarialFamily, channels_per_level, make_upsampler
from generators.registry import register_generator


@dataclass
class DCGANConfig(AdversarialConfig):
    z_dim: int = 100
    upsampler: str = "convT-k4s2"


class DCGANGenerator(nn.Module):
    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__()
        c = channels_per_level(cfg.res, cfg.ch, cfg.ch_max)
        layers: list[nn.Module] = [
            nn.Unflatten(1, (cfg.z_dim, 1, 1)),
            nn.ConvTranspose2d(cfg.z_dim, c[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(c[0]),
            nn.ReLU(True),
        ]
        for i in range(1, len(c) - 1):
            layers += [make_upsampler(cfg.upsampler, c[i - 1], c[i]), nn.BatchNorm2d(c[i]), nn.ReLU(True)]
        layers += [make_upsampler(cfg.upsampler, c[-2], cfg.channels), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class DCGANDiscriminator(nn.Module):
    """Strided k4s2 convs with BN (none on the first layer) down to 4x4, then a 4x4 conv to one logit."""

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__()
        c = channels_per_level(cfg.res, cfg.ch, cfg.ch_max)[::-1]  # widths from res down to 4 px
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, c[1], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for i in range(1, len(c) - 1):
            layers += [
                nn.Conv2d(c[i], c[i + 1], 4, 2, 1, bias=False), nn.BatchNorm2d(c[i + 1]), nn.LeakyReLU(0.2, True)
            ]
        layers += [nn.Conv2d(c[-1], 1, 4, 1, 0), nn.Flatten(0)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


@register_generator(
    "dcgan", upsampler="convT-k4s2", kind="noise",
    description="DCGAN: transposed conv k4s2, batch norm, non-saturating loss",
    components=("dcgan-discriminator",),
)
class DCGAN(AdversarialFamily):
    """DCGAN with 4x4 stride-2 transposed convolutions."""

    Config = DCGANConfig
    presets = CONV_GAN_PRESETS
    Generator = DCGANGenerator
    Discriminator = DCGANDiscriminator


@dataclass
class DCGANK3Config(DCGANConfig):
    upsampler: str = "convT-k3s2"


@register_generator(
    "dcgan-k3", family="dcgan", upsampler="convT-k3s2", kind="noise",
    description="DCGAN with 3x3 stride-2 transposed convs (uneven-overlap checkerboard)",
    components=("dcgan-discriminator",),
)
class DCGANK3(DCGAN):
    """DCGAN whose transposed convolutions use kernel 3 / stride 2 / output padding 1."""

    Config = DCGANK3Config
