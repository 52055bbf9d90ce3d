"""Heatmaps that say where a detector looked: Grad-CAM on a conv layer, or input-gradient saliency.

Both return ``(N, S, S)`` arrays in [0, 1] aligned pixel-for-pixel with the detector input, so ``scan`` can
resize them back onto the face crop. ``overlay`` renders a heatmap over an image for reports and
``forensics detector explain``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _normalise(maps: torch.Tensor) -> np.ndarray:
    maps = maps.detach().float()
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1)
    return ((maps - lo) / (hi - lo).clamp_min(1e-8)).cpu().numpy()


def gradcam(model: nn.Module, x: torch.Tensor, layer: nn.Module) -> np.ndarray:
    """Grad-CAM (Selvaraju et al.) of the fake logit at ``layer``, upsampled bilinearly to the input size."""
    acts: list[torch.Tensor] = []
    grads: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        # clone so that later in-place activations (ReLU(inplace=True)) cannot clobber the map or its gradient
        out = out.clone()
        acts.append(out.detach())
        out.register_hook(grads.append)
        return out

    handle = layer.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            xi = x.detach().clone().requires_grad_(True)
            # one view: a detector with test-time views (cfg.tta) would run ``layer`` once per view, and the map
            # must be the unflipped crop's
            z = getattr(model, "logits", model)(xi)
            model.zero_grad(set_to_none=True)
            z.sum().backward()
    finally:
        handle.remove()
        model.train(was_training)
    a, g = acts[-1], grads[-1]
    weights = g.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * a).sum(dim=1, keepdim=True))
    if float(cam.detach().max()) <= 0:  # all-negative evidence: show magnitude instead of a blank map
        cam = (weights * a).sum(dim=1, keepdim=True).abs()
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    model.zero_grad(set_to_none=True)
    return _normalise(cam)


def saliency(model: nn.Module, x: torch.Tensor, smooth: int = 5) -> np.ndarray:
    """|d logit / d input| summed over channels and box-smoothed: for detectors without a conv layer."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            xi = x.detach().clone().requires_grad_(True)
            model(xi).sum().backward()
    finally:
        model.train(was_training)
    g = xi.grad.abs().sum(dim=1, keepdim=True) if xi.grad is not None else torch.zeros_like(xi[:, :1])
    if smooth > 1:
        g = F.avg_pool2d(g, smooth, stride=1, padding=smooth // 2, count_include_pad=False)
    return _normalise(g[:, 0])


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heatmap (any size) over an RGB uint8 image with the 'jet' colour map."""
    import cv2

    h, w = image.shape[:2]
    heat = cv2.resize(heat.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    return np.clip(image.astype(np.float32) * (1 - alpha) + colour.astype(np.float32) * alpha, 0, 255).astype(np.uint8)
