"""``npr``: a compact CNN on neighbouring-pixel residuals (Tan et al., CVPR 2024, "Rethinking the up-sampling
operations in CNN-based generative network for generalizable deepfake detection").

Every generator that upsamples (transposed conv, nearest/bilinear resize, pixel shuffle) leaves correlations between
the pixels of each 2x2 block. ``x - up(down(x))`` with nearest-neighbour resampling removes the block's content and
keeps exactly those local correlations, so the classifier sees generator plumbing rather than faces; this is why the
approach transfers across generators better than an RGB classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from detectors.base import CompactCNNDetector, DetectorConfig
from detectors.registry import register_detector
from forensics_core.errors import UsageError


@dataclass
class NPRConfig(DetectorConfig):
    factor: int = 2
    widths: tuple[int, ...] = (16, 32, 64, 128)
    dropout: float = 0.2
    residual_gain: float = 4.0
    #: pixel-unshuffle the residual by this factor before the CNN: lossless (the 2x2 block structure NPR exposes
    #: becomes channels) and 4x fewer FLOPs, which is what makes 128 px inputs fast on CPU
    unshuffle: int = 1
    #: also feed the (unshuffled) RGB image: helps when the fakes were downsampled after generation (e.g. 1024 ->
    #: 128 px thumbnails), which erases much of the upsampling trace NPR isolates
    with_rgb: bool = False
    #: ``rgb``: the residual of each colour channel; ``luma``: the residual of the luma (Y) alone, repeated over
    #: the three channels (so ``rgb`` weights still load). Why: JPEG's 4:2:0 chroma subsampling *is* a 2x
    #: upsampling of the colour planes, and an NPR on colour channels reads it as a generator trace
    residual: str = "rgb"
    #: ``full``: colour as delivered; ``half``: every input's chroma (B - Y, R - Y) is box-averaged to half
    #: resolution and bilinearly upsampled back before both streams, as a 4:2:0 JPEG stores it. Why: most
    #: delivered images are 4:2:0 JPEGs and most lossless sources are not, so chroma resolution is a delivery
    #: label; ``residual=luma`` hides it from the residual stream only, ``half`` from the RGB stream as well
    chroma: str = "full"


#: ITU-R BT.601 luma weights, as JPEG computes Y
LUMA = torch.tensor([0.299, 0.587, 0.114])


def luma(x: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` BT.601 luma of ``(N, 3, H, W)`` colour (any affine per-image scale: the weights sum to 1)."""
    return (x * LUMA.to(x.device, x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)


def half_chroma(x: torch.Tensor) -> torch.Tensor:
    """``x`` with its colour-difference planes at half resolution (luma untouched): 4:2:0 for every input.

    Linear in ``x``, so it commutes with the per-channel ``(x - 0.5) / 0.5`` normalisation the model uses."""
    y = luma(x)
    smooth = F.interpolate(
        F.avg_pool2d(x - y, 2, ceil_mode=True), size=x.shape[-2:], mode="bilinear", align_corners=False
    )
    out = y + smooth
    # the three colour differences are not independent (their luma-weighted sum is zero): restore that exactly,
    # so the output's luma is the input's
    return out - luma(out) + y


def npr_residual(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """``x - nearest_up(nearest_down(x))``: zero inside flat 2x2 blocks, non-zero where neighbours differ."""
    h, w = x.shape[-2:]
    small = F.interpolate(x, scale_factor=1.0 / factor, mode="nearest")
    up = F.interpolate(small, size=(h, w), mode="nearest")
    return x - up


@register_detector(
    "npr", description="Compact CNN on neighbouring-pixel residuals (upsampling artifacts).", tags=("artifact", "image")
)
class NPRDetector(CompactCNNDetector):
    """Compact residual CNN over NPR maps; fast on CPU (about 0.7 M parameters)."""

    Config = NPRConfig

    def __init__(self, cfg: NPRConfig) -> None:
        if cfg.residual not in ("rgb", "luma"):
            raise UsageError(f"npr: residual must be 'rgb' or 'luma', got '{cfg.residual}'")
        if cfg.chroma not in ("full", "half"):
            raise UsageError(f"npr: chroma must be 'full' or 'half', got '{cfg.chroma}'")
        super().__init__(cfg, in_channels=3 * cfg.unshuffle**2 * (2 if cfg.with_rgb else 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.chroma == "half":
            x = half_chroma(x)
        src = x
        if self.cfg.residual == "luma":
            src = luma(x).expand(-1, 3, -1, -1)
        r = npr_residual(src, self.cfg.factor) * self.cfg.residual_gain
        if self.cfg.with_rgb:
            r = torch.cat([r, x], dim=1)
        if self.cfg.unshuffle > 1:
            r = F.pixel_unshuffle(r, self.cfg.unshuffle)
        return self.trunk(r)
