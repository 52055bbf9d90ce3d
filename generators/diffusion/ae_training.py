"""KL autoencoder training, shared by ``ldm-ae``, ``ae-recon`` (and siblings) and the first phase of ``ldm``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from forensics_core.errors import UsageError
from generators.diffusion.autoencoder import (
    PatchDiscriminator,
    kl_divergence,
)
from generators.diffusion.configs import AEConfig, build_autoencoder
from generators.layers import optimizer_step

# ----------------------------------------------------------------------------------------------------------------
# autoencoder training (shared by ldm-ae, ae-recon and ldm's first phase)
# ----------------------------------------------------------------------------------------------------------------


def feature_loss(feats_real: list[torch.Tensor], feats_fake: list[torch.Tensor]) -> torch.Tensor:
    """LPIPS-style distance: unit-normalise every feature vector over channels, mean squared difference per layer."""
    total = feats_real[0].new_zeros(())
    for fr, ff in zip(feats_real, feats_fake):
        fr = fr / (fr.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)
        ff = ff / (ff.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)
        total = total + (fr - ff).pow(2).sum(1).mean()
    return total


class FeatNetLayers(nn.Module):
    """Spatial activations at the end of each stage of the project's own feature network (``generators.metrics``).

    That network was trained to recognise blur, noise, JPEG and upsampling traces on real faces, which is exactly
    what a perceptual loss for an autoencoder must penalise (LDM uses LPIPS on ImageNet VGG, unavailable here).
    Frozen: it is a fixed yardstick, never trained by the autoencoder's loss.
    """

    def __init__(self, body: nn.Sequential, stage_len: int = 6) -> None:
        super().__init__()
        self.body = body.requires_grad_(False).eval()
        self.taps = set(range(stage_len - 1, len(body), stage_len))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i in self.taps:
                feats.append(x)
        return feats


def _featnet_layers() -> FeatNetLayers | None:
    try:
        from generators.metrics import load_featnet
    except ImportError:
        return None
    net = load_featnet(required=False)
    return None if net is None else FeatNetLayers(copy.deepcopy(net.body))


#: where the perceptual-style loss takes its features: ``auto`` prefers the project's feature network and falls
#: back to the autoencoder's own patch discriminator (random at first, then adversarially trained)
FEATURE_SOURCES: tuple[str, ...] = ("auto", "featnet", "disc")


class AETrainer:
    """Owns the autoencoder's losses and optimisers so every family that holds an AE trains it the same way."""

    def __init__(self, cfg: AEConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.ae = build_autoencoder(cfg).to(device)
        self.disc = PatchDiscriminator(cfg.channels, cfg.d_base).to(device)
        self.ae.encoder.requires_grad_(cfg.train_encoder)
        trained = self.ae.parameters() if cfg.train_encoder else self.ae.decoder.parameters()
        self.opt_ae = torch.optim.Adam(trained, lr=cfg.lr, betas=(0.5, 0.9))
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.d_lr, betas=(0.5, 0.9))
        if cfg.feat_source not in FEATURE_SOURCES:
            raise UsageError(f"feat_source must be one of {', '.join(FEATURE_SOURCES)}, got '{cfg.feat_source}'")
        featnet = _featnet_layers() if cfg.feat_source in ("auto", "featnet") else None
        if cfg.feat_source == "featnet" and featnet is None:
            raise UsageError("feat_source=featnet but generators/assets/featnet.safetensors is missing")
        #: the resolved feature source, for the run's record ("featnet" or "disc")
        self.feat_source = "disc" if featnet is None else "featnet"
        self.featnet = None if featnet is None else featnet.to(device)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.disc.features(x) if self.featnet is None else self.featnet(x)

    def step(self, x: torch.Tensor, step: int) -> dict[str, float]:
        cfg = self.cfg
        self.ae.train()
        mean, logvar = self.ae.encode(x)  # no graph through a frozen encoder: its weights need no grad
        z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
        if cfg.train_encoder:  # a frozen encoder keeps the latent scale the diffusion model was trained with
            self.ae.observe_latents(z)
        recon = self.ae.decode(z)
        l1 = (recon - x).abs().mean()
        kl = kl_divergence(mean, logvar)
        with torch.no_grad():
            feats_real = self.features(x)
        feat = feature_loss(feats_real, self.features(recon))
        loss = l1 + cfg.feat_weight * feat + cfg.kl_weight * kl
        adversarial = step >= cfg.adv_start and cfg.adv_weight > 0
        g_adv = torch.zeros(())
        if adversarial:
            g_adv = -self.disc(recon).mean()
            loss = loss + cfg.adv_weight * g_adv
        optimizer_step(self.opt_ae, loss)
        out = {"l1": l1.item(), "feat": feat.item(), "kl": kl.item(), "ae_loss": loss.item()}
        if adversarial:
            d_real = self.disc(x)
            d_fake = self.disc(recon.detach())
            d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
            optimizer_step(self.opt_d, d_loss)  # its zero_grad drops the grads the feature loss left in D
            out.update({"g_adv": g_adv.item(), "d_loss": d_loss.item()})
        return out
