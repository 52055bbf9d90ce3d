"""``swap``: the classic deepfake autoencoder (one shared encoder, one decoder per identity).

Both identities are encoded by the same network, so the latent code captures pose, expression and lighting in
a shared form; decoding B's code with A's decoder renders A's face in B's pose. Inputs are randomly warped during
training (the original DeepFaceLab / faceswap trick) so the decoders learn to produce a clean face from a
distorted one instead of copying pixels. The decoder upsamples by pixel shuffle, and the result is blended back
through a soft mask with colour transfer: the two traces (upsampling + seam) that swap detectors learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generators.layers import optimizer_step


@dataclass
class SwapConfig:
    size: int = 64  # aligned face size the autoencoder works at (power of two, >= 16)
    margin: float = 0.15
    width: int = 64  # base channel count
    latent: int = 256
    batch: int = 16
    lr: float = 5e-4
    steps: int = 2000
    warp: float = 0.05  # strength of the random input warp (fraction of the face size)
    seed: int = 0


def _down(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 5, 2, 2), nn.LeakyReLU(0.1, inplace=True))


def _up(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout * 4, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True), nn.PixelShuffle(2))


class SwapEncoder(nn.Module):
    def __init__(self, cfg: SwapConfig) -> None:
        super().__init__()
        w = cfg.width
        self.n_down = 4 if cfg.size >= 64 else 2
        chans = [3] + [w * 2**i for i in range(self.n_down)]
        self.convs = nn.Sequential(*[_down(chans[i], chans[i + 1]) for i in range(self.n_down)])
        self.bottom = cfg.size // 2**self.n_down
        flat = chans[-1] * self.bottom**2
        self.fc = nn.Linear(flat, cfg.latent)
        self.fc_out = nn.Linear(cfg.latent, chans[-1] * self.bottom**2)
        self.up = _up(chans[-1], chans[-1])
        self.out_channels = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x).flatten(1)
        h = self.fc_out(self.fc(h)).view(-1, self.out_channels, self.bottom, self.bottom)
        return self.up(h)


class SwapDecoder(nn.Module):
    def __init__(self, cfg: SwapConfig, in_channels: int, n_up: int) -> None:
        super().__init__()
        chans = [in_channels] + [max(16, in_channels // 2 ** (i + 1)) for i in range(n_up)]
        self.ups = nn.Sequential(*[_up(chans[i], chans[i + 1]) for i in range(n_up)])
        self.rgb = nn.Conv2d(chans[-1], 3, 5, 1, 2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.rgb(self.ups(h)))


class SwapAutoencoder(nn.Module):
    """Shared encoder + decoders ``A`` and ``B``; ``forward(x, "A")`` renders identity A."""

    def __init__(self, cfg: SwapConfig) -> None:
        super().__init__()
        if cfg.size < 16 or cfg.size & (cfg.size - 1):
            from forensics_core.errors import UsageError

            raise UsageError(f"swap size {cfg.size}: must be a power of two >= 16")
        self.cfg = cfg
        self.encoder = SwapEncoder(cfg)
        n_up = self.encoder.n_down - 1
        self.decoders = nn.ModuleDict(
            {k: SwapDecoder(cfg, self.encoder.out_channels, n_up) for k in ("A", "B")}
        )

    def forward(self, x: torch.Tensor, identity: str) -> torch.Tensor:
        return self.decoders[identity](self.encoder(x))


def random_warp(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Random smooth displacement (coarse noise grid upsampled) plus a small random affine: the swap prior."""
    n, _, h, w = x.shape
    theta = torch.eye(2, 3).repeat(n, 1, 1)
    theta[:, :, :2] += (torch.rand(n, 2, 2, generator=generator) - 0.5) * strength
    theta[:, :, 2] += (torch.rand(n, 2, generator=generator) - 0.5) * strength
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    coarse = (torch.rand(n, 2, 5, 5, generator=generator) - 0.5) * 2 * strength
    grid = grid + F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def to_tensor(faces: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    arr = np.stack(list(faces)).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def swap_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 plus a gradient (edge) term: L1 alone gives the over-smooth faces that make swaps trivially detectable."""
    l1 = F.l1_loss(pred, target)
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return l1 + 0.5 * (F.l1_loss(dx(pred), dx(target)) + F.l1_loss(dy(pred), dy(target)))


def train_step(
    model: SwapAutoencoder,
    opt: torch.optim.Optimizer,
    faces: dict[str, torch.Tensor],
    cfg: SwapConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """One step on a random batch of each identity: reconstruct each face from its warped copy."""
    losses = {}
    total = 0.0
    for ident, pool in faces.items():
        idx = torch.randint(len(pool), (cfg.batch,), generator=generator)
        target = pool[idx]
        if torch.rand(1, generator=generator).item() < 0.5:
            target = target.flip(-1)
        pred = model(random_warp(target, cfg.warp, generator), ident)
        loss = swap_loss(pred, target)
        total = total + loss
        losses[f"loss_{ident}"] = float(loss.detach())
    optimizer_step(opt, total)
    return losses
