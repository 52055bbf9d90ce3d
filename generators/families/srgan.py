"""``srgan``: 4x face super-resolution: a face that is real at low resolution and synthetic in its detail.

Ideas from Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a GAN" (SRGAN, 2017), with two
changes that later work showed matter (EDSR / ESRGAN): no batch norm in the trunk (BN causes artefacts and makes
eval differ from training) and a scaled residual per block.
- SRResNet trunk: 9x9 stem, ``n_blocks`` residual blocks (conv-PReLU-conv, residual scale 0.2), a long skip, then
  two **pixel-shuffle** x2 stages (conv to 4x channels, PixelShuffle(2), PReLU) and a 9x9 conv to RGB.
- Losses: L1 to the high-resolution face, an adversarial term (non-saturating) and a *feature loss* measured in
  the discriminator's own intermediate features (feature matching). SRGAN used a pretrained VGG; downloading
  weights is not allowed here, and D's features are the ones that tell real detail from synthetic detail.

Upsampler tag: ``pixelshuffle``, the same operator as the ``pixelshuffle`` family. The tag names the operator so
that leave-one-upsampler-out holds both out together (otherwise the held-out trace leaks into training);
``family`` still separates them.

Training and sampling make the low-resolution face the same way: antialiased bicubic downsampling by 4
(``downsample``), so the model learns to invert exactly the degradation it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from forensics_core.errors import UsageError
from generators.base import Batch, GenConfig, GeneratorFamily, Samples
from generators.families.cgan import check_resolution
from generators.families.cyclegan import check_inputs
from generators.layers import GanState, frozen, layer_outputs, optimizer_step, requires_grad, sn
from generators.registry import register_generator

SCALE = 4

#: name -> function(images, factor) making the low-resolution input; a registry so the choice is a config string.
DOWNSAMPLERS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "bicubic": lambda x, f: F.interpolate(x, scale_factor=1 / f, mode="bicubic", antialias=True, align_corners=False),
    "area": lambda x, f: F.avg_pool2d(x, f),
    "bilinear": lambda x, f: F.interpolate(x, scale_factor=1 / f, mode="bilinear", antialias=True, align_corners=False),
}


class ResidualBlock(nn.Module):
    def __init__(self, ch: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1), nn.PReLU(ch), nn.Conv2d(ch, ch, 3, 1, 1))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class SRResNet(nn.Module):
    def __init__(self, ch: int, n_blocks: int, res_scale: float) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, ch, 9, 1, 4), nn.PReLU(ch))
        self.trunk = nn.Sequential(*(ResidualBlock(ch, res_scale) for _ in range(n_blocks)), nn.Conv2d(ch, ch, 3, 1, 1))
        self.upsample = nn.Sequential(
            *(m for _ in range(2) for m in (nn.Conv2d(ch, ch * 4, 3, 1, 1), nn.PixelShuffle(2), nn.PReLU(ch)))
        )
        self.to_rgb = nn.Conv2d(ch, 3, 9, 1, 4)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        h = self.stem(lr)
        h = h + self.trunk(h)
        # Predict the residual over a bicubic upscale: the low-frequency face stays the real one, G adds detail.
        base = F.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False)
        return torch.tanh(self.to_rgb(self.upsample(h)) + torch.atanh(base.clamp(-0.999, 0.999)))


class FeatureDiscriminator(nn.Module):
    """SRGAN-style strided conv stack (SN instead of BN); ``features`` exposes every stage for the feature loss."""

    def __init__(self, ch: int, res: int) -> None:
        super().__init__()
        stages, cin, c, size = [], 3, ch, res
        while size > 4:
            stages.append(
                nn.Sequential(
                    sn(nn.Conv2d(cin, c, 3, 1, 1)),
                    nn.LeakyReLU(0.2, True),
                    sn(nn.Conv2d(c, c, 4, 2, 1)),
                    nn.LeakyReLU(0.2, True),
                )
            )
            cin, c, size = c, min(2 * c, 8 * ch), size // 2
        self.stages = nn.ModuleList(stages)
        self.head = sn(nn.Linear(cin, 1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return layer_outputs(self.stages, x)

    def logits(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.head(feats[-1].mean((2, 3))).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(x))


@dataclass
class SRGANConfig(GenConfig):
    ch: int = 32
    ndf: int = 32
    n_blocks: int = 8
    res_scale: float = 0.2
    downsample: str = "bicubic"
    lambda_l1: float = 1.0
    lambda_feat: float = 1.0
    lambda_adv: float = 5e-3
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    ema_decay: float = 0.999
    batch: int = 16


@register_generator(
    "srgan",
    upsampler="pixelshuffle",
    kind="superres",
    description="4x face super-resolution: SRResNet (no BN) + pixel shuffle, adversarial + D-feature + L1 losses",
)
class SRGAN(GanState, GeneratorFamily):
    """4x super-resolution of real faces.

    ``sample(n, generator, inputs=x)``: ``x`` is (N,3,res,res) real faces, downsampled by 4 with ``downsample``
    and super-resolved; (N,3,res/4,res/4) inputs are taken as already low resolution. ``n`` is ignored (one
    output per input). Masks are all ones: every output pixel is synthesised from the low-resolution face.
    """

    Config = SRGANConfig
    presets = {
        "16": {"res": 16, "ch": 16, "ndf": 16, "n_blocks": 2, "batch": 16},
        "32": {"res": 32, "ch": 32, "ndf": 32, "n_blocks": 4, "batch": 16},
        "64": {"res": 64, "ch": 32, "ndf": 32, "n_blocks": 8, "batch": 16},
        "128": {"res": 128, "ch": 48, "ndf": 32, "n_blocks": 12, "batch": 8},
    }

    def __init__(self, cfg: SRGANConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(cfg, device)
        check_resolution(self, cfg.res)
        if cfg.downsample not in DOWNSAMPLERS:
            raise UsageError(f"srgan: unknown downsample {cfg.downsample!r} (choose one of {', '.join(DOWNSAMPLERS)})")
        self.init_gan_state(
            SRResNet(cfg.ch, cfg.n_blocks, cfg.res_scale), FeatureDiscriminator(cfg.ndf, cfg.res),
            cfg.lr, cfg.lr, (cfg.beta1, cfg.beta2),
        )

    def degrade(self, hr: torch.Tensor) -> torch.Tensor:
        """The low-resolution face (res/4) the model learns to super-resolve."""
        return DOWNSAMPLERS[self.cfg.downsample](hr, SCALE).clamp(-1, 1)

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        cfg = self.cfg
        hr = batch.image.to(self.device)
        sr = self.G(self.degrade(hr))
        requires_grad(self.D, True)
        loss_d = F.softplus(-self.D(hr)).mean() + F.softplus(self.D(sr.detach())).mean()
        optimizer_step(self.opt_D, loss_d)
        with frozen(self.D):
            real_feats = [f.detach() for f in self.D.features(hr)]
            fake_feats = self.D.features(sr)
            feat = sum(F.l1_loss(f, r) for f, r in zip(fake_feats, real_feats)) / len(real_feats)
            adv = F.softplus(-self.D.logits(fake_feats)).mean()
            l1 = F.l1_loss(sr, hr)
            loss_g = cfg.lambda_l1 * l1 + cfg.lambda_feat * feat + cfg.lambda_adv * adv
            self.generator_update(loss_g, step)
        return {
            "loss_g": float(loss_g.detach()),
            "loss_l1": float(l1.detach()),
            "loss_feat": float(feat.detach()),
            "loss_adv": float(adv.detach()),
            "loss_d": float(loss_d.detach()),
        }

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, **kwargs: Any) -> Samples:
        res = self.cfg.res
        x = check_inputs(self, kwargs.get("inputs"), (res, res // SCALE)).to(self.device)
        given_low = x.shape[-1] == res // SCALE
        lr = x if given_low else self.degrade(x)
        images = self.G_ema(lr).clamp(-1, 1).float()
        meta = [
            {"scale": SCALE, "input_res": res // SCALE, "downsample": "given" if given_low else self.cfg.downsample}
            for _ in range(len(images))
        ]
        return Samples(images=images, meta=meta, masks=torch.ones_like(images[:, :1]))
