"""Pixel-shuffle GAN: the ResGAN trunk and discriminator with sub-pixel convolution (Shi et al. 2016) upsampling.

Sub-pixel convolution computes the four output phases of every 2x2 cell with separate filters; when those filters
disagree the image carries a period-2 pattern distinct from a transposed conv's checkerboard. Everything but the
upsampler is shared with :mod:`generators.families.resgan`.
"""

from __future__ import annotations

from dataclasses import dataclass

from generators.families.resgan import ResGAN, ResGANConfig
from generators.registry import register_generator


@dataclass
class PixelShuffleConfig(ResGANConfig):
    upsampler: str = "pixelshuffle"


@register_generator(
    "pixelshuffle", upsampler="pixelshuffle", kind="noise",
    description="ResGAN trunk with sub-pixel convolution (PixelShuffle) upsampling",
    components=("resgan-trunk", "dcgan-discriminator"),  # ResGAN's G and D code, upsampler aside
)
class PixelShuffleGAN(ResGAN):
    """Residual generator whose only difference from ``resgan`` is the sub-pixel convolution upsampler."""

    Config = PixelShuffleConfig
