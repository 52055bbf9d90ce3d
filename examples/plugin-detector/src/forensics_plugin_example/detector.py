"""``laplacian-energy``: a deliberately tiny detector showing everything a plugin has to provide.

A plugin detector is a :class:`detectors.base.Detector` subclass with a config dataclass, registered under a name
with :func:`detectors.registry.register_detector`. The package's entry point (group ``forensics.detectors``) names
this module; the toolkit imports it on the first registry lookup, which runs the decorator. From then on the
detector is trained, saved, loaded, scanned with and benchmarked exactly like a built-in one.

This one derives from :class:`detectors.base.LinearHeadDetector`, which owns the linear head and the logit: a
detector whose score is a linear layer on its features only computes ``embed`` (the features the toolkit's
temporal ``video`` model also reads) and calls ``add_head``.

The model itself: the log energy of a 3x3 Laplacian (high-pass) response per colour channel, fed to a linear
layer. Upsampling and over-smoothing move high-frequency energy, so this is a weak but honest baseline with four
trainable parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from detectors.base import DetectorConfig, LinearHeadDetector
from detectors.registry import register_detector


@dataclass
class LaplacianEnergyConfig(DetectorConfig):
    """Every field is stored in ``model.json``, so a saved model rebuilds this exact detector."""

    crop: str = "center"
    eps: float = 1e-6


@register_detector(
    "laplacian-energy",
    description="Example plugin: log Laplacian energy per channel + linear head (examples/plugin-detector).",
    tags=("example", "plugin", "image"),
)
class LaplacianEnergy(LinearHeadDetector):
    Config = LaplacianEnergyConfig

    def __init__(self, cfg: LaplacianEnergyConfig) -> None:
        super().__init__(cfg)
        k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        self.register_buffer("kernel", k.expand(3, 1, 3, 3).clone())
        self.add_head(n_features=3)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        r = F.conv2d(x, self.kernel, padding=1, groups=3)
        return torch.log(r.pow(2).mean(dim=(2, 3)) + self.cfg.eps)
