"""ResGAN (SNGAN / BigGAN style): residual generator blocks, spectrally normalised residual D, hinge loss.

The generator trunk takes its upsampler from :data:`generators.layers.UPSAMPLERS`; ``resgan`` uses nearest +
conv, and :mod:`generators.families.pixelshuffle` reuses the identical trunk with sub-pixel convolution, so the
two families differ in nothing but the upsampling operator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from generators.families.dcgan import DCGANDiscriminator
from generators.layers import (
    CONV_GAN_PRESETS,
    AdversarialConfig,
    AdversarialFamily,
    channels_per_level,
    choose,
    d_norm,
    make_upsampler,
)
from generators.registry import register_generator


@dataclass
class ResGANConfig(AdversarialConfig):
    loss: str = "hinge"
    beta1: float = 0.0
    beta2: float = 0.9
    upsampler: str = "nearest"
    ndf: int = 0  # D's width at the output resolution (0 = ch): D's full-resolution block dominates CPU time
    d_norm: str = "spectral"  # key of generators.layers.D_NORMS (the resnet D)
    # key of D_ARCHS: "resnet" is SNGAN's critic; "strided" (DCGAN's D: k4s2 convs + BN; loss=nonsat) is the D the
    # shipped resgan / pixelshuffle generators were fine-tuned against, as G outran the residual critic on a CPU
    d_arch: str = "resnet"


class GBlock(nn.Module):
    """Pre-activation residual block that doubles the resolution on both paths with the same upsampler."""

    def __init__(self, cin: int, cout: int, upsampler: str) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(), make_upsampler(upsampler, cin, cout),
            nn.BatchNorm2d(cout), nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1),
        )
        # A 3x3 shortcut, not SNGAN's 1x1: a 1x1 shortcut carries the nearest-upsampled 4x4 map straight to the
        # output, and on a CPU budget G stayed stuck drawing those blocks (measured: "box" samples at 600 steps)
        self.skip = make_upsampler(upsampler, cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.skip(x)


class ResGenerator(nn.Module):
    def __init__(self, cfg: ResGANConfig) -> None:
        super().__init__()
        c = channels_per_level(cfg.res, cfg.ch, cfg.ch_max)
        self.c0 = c[0]
        self.fc = nn.Linear(cfg.z_dim, c[0] * 16)
        self.blocks = nn.Sequential(*[GBlock(c[i - 1], c[i], cfg.upsampler) for i in range(1, len(c))])
        self.out = nn.Sequential(nn.BatchNorm2d(c[-1]), nn.ReLU(), nn.Conv2d(c[-1], cfg.channels, 3, 1, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.fc(z).view(-1, self.c0, 4, 4)))


class DBlock(nn.Module):
    def __init__(self, cin: int, cout: int, first: bool = False, norm: str = "spectral") -> None:
        super().__init__()
        wrap = d_norm(norm)
        pre: list[nn.Module] = [] if first else [nn.ReLU()]
        self.main = nn.Sequential(
            *pre, wrap(nn.Conv2d(cin, cout, 3, 1, 1)), nn.ReLU(), wrap(nn.Conv2d(cout, cout, 3, 1, 1)), nn.AvgPool2d(2)
        )
        self.skip = nn.Sequential(wrap(nn.Conv2d(cin, cout, 1)), nn.AvgPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.skip(x)


class ResDiscriminator(nn.Module):
    """Spectrally normalised residual D down to 4x4, global sum pooling, linear logit (Miyato et al. 2018)."""

    def __init__(self, cfg: ResGANConfig) -> None:
        super().__init__()
        c = channels_per_level(cfg.res, cfg.ndf or cfg.ch, cfg.ch_max)[::-1]
        blocks = [DBlock(cfg.channels, c[1], first=True, norm=cfg.d_norm)]
        blocks += [DBlock(c[i], c[i + 1], norm=cfg.d_norm) for i in range(1, len(c) - 1)]
        self.blocks = nn.Sequential(*blocks)
        self.fc = d_norm(cfg.d_norm)(nn.Linear(c[-1], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.blocks(x)).sum([2, 3])
        return self.fc(h).flatten()


#: name -> discriminator class built from the config; ``d_arch`` picks one
D_ARCHS: dict[str, type[nn.Module]] = {"resnet": ResDiscriminator, "strided": DCGANDiscriminator}


@register_generator(
    "resgan", upsampler="nearest", kind="noise",
    description="SNGAN-style residual GAN: nearest upsample + conv, spectral norm D, hinge loss",
    # d_arch="strided" is DCGAN's discriminator, the one the suite's last stage trains G against
    components=("resgan-trunk", "dcgan-discriminator"),
)
class ResGAN(AdversarialFamily):
    """Residual generator with nearest-neighbour upsampling; spectral-norm residual discriminator; hinge loss."""

    Config = ResGANConfig
    presets = CONV_GAN_PRESETS
    Generator = ResGenerator

    def build_discriminator(self) -> nn.Module:
        d_norm(self.cfg.d_norm)  # a bad name is an error whichever D uses it
        return choose(D_ARCHS, self.cfg.d_arch, "d_arch", self.name)(self.cfg)
