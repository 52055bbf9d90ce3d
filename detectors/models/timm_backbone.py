"""``timm``: any timm backbone by name with a single-logit head. Nothing is ever downloaded (``pretrained=False``);
``--weights FILE`` loads a local safetensors file (an ImageNet checkpoint converted by the user, or a previous run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from detectors.base import Detector, DetectorConfig
from detectors.registry import register_detector
from forensics_core.errors import ModelFileError, UnknownNameError


@dataclass
class TimmConfig(DetectorConfig):
    backbone: str = "resnet18"
    drop_rate: float = 0.2
    imagenet_norm: bool = True


@register_detector(
    "timm",
    description="Any timm backbone (efficientnet_b0, xception41, resnet50, convnext_tiny...).",
    tags=("backbone", "image"),
)
class TimmDetector(Detector):
    Config = TimmConfig

    def __init__(self, cfg: TimmConfig) -> None:
        super().__init__(cfg)
        import timm

        if not timm.is_model(cfg.backbone):
            import difflib

            close = difflib.get_close_matches(cfg.backbone, timm.list_models(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(f"unknown timm backbone '{cfg.backbone}'{hint}")
        if cfg.imagenet_norm:  # the statistics a converted ImageNet checkpoint expects
            self.mean, self.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        self.net = timm.create_model(cfg.backbone, pretrained=False, num_classes=1, drop_rate=cfg.drop_rate)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    def cam_layer(self) -> nn.Module | None:
        convs = [m for m in self.net.modules() if isinstance(m, nn.Conv2d)]
        return convs[-1] if convs else None

    def initialise(self, weights: str | None = None, **sources: Any) -> None:
        super().initialise(**sources)
        if not weights:
            return
        from detectors.modelfile import read_state_dict

        state = read_state_dict(weights)
        own = self.net.state_dict()
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not usable:
            raise ModelFileError(f"{weights}: no tensor matches backbone '{self.cfg.backbone}'")
        self.net.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in usable.items()}})
        self.loaded_weights_ = (weights, len(usable), len(own))
