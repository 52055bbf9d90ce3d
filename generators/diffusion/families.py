"""Latent-diffusion generator families: ``ldm-ae``, ``ae-recon``, ``ldm``, ``sdedit`` and ``ldm-inpaint``.

They plug into the same trainer, run directories, checkpoints and sampler as the GAN families through the
:class:`generators.base.GeneratorFamily` contract. One implementation is shared on purpose:

- ``ldm-ae`` trains the KL autoencoder; ``sample`` returns reconstructions of ``inputs``.
- ``ae-recon`` is the same network under the dataset-facing name and kind (``image2image``): real faces encoded
  and decoded, each fake paired with its real parent, so the pair differs only in the decoder's trace.
- ``ldm`` trains a latent DDPM in that autoencoder's latent space (phase 1: ``ae_steps`` autoencoder steps when it
  holds a fresh autoencoder; phase 2: diffusion) and samples with DDIM and classifier-free guidance.
- ``sdedit`` and ``ldm-inpaint`` reuse a trained ``ldm`` (``ldm_run``) to edit real faces: SDEdit noises a face's
  latent to strength ``t`` and denoises it; RePaint-style inpainting regenerates a masked region while the known
  region is re-noised from the input at every step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from forensics_core.errors import UsageError
from generators.base import ATTRIBUTES, Batch, GenConfig, GeneratorFamily, Samples, random_condition
from generators.diffusion.autoencoder import (
    FACTORS,
    KLAutoencoder,
    PatchDiscriminator,
    kl_divergence,
)
from generators.diffusion.schedule import NoiseSchedule, randn
from generators.diffusion.unet import UNet
from generators.layers import UPSAMPLERS, optimizer_step
from generators.registry import register_generator

COND_SIZES: tuple[int, ...] = tuple(len(v) for v in ATTRIBUTES.values())


# ----------------------------------------------------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AEConfig(GenConfig):
    """KL autoencoder options. Loss = L1 + ``feat_weight`` * feature loss + ``kl_weight`` * KL
    + ``adv_weight`` * hinge adversarial loss once ``step >= adv_start`` (the warm-up lets L1 settle first,
    otherwise the critic wins against a decoder that still outputs mush)."""

    lr: float = 2e-4
    factor: int = 4
    z_channels: int = 4
    ae_base: int = 64
    ae_blocks: int = 1
    kl_weight: float = 1e-6
    feat_weight: float = 0.1
    adv_weight: float = 0.05
    adv_start: int = 2000
    d_base: int = 64
    d_lr: float = 2e-4
    feat_source: str = "auto"
    # False trains the decoder alone: the encoder, its latents and their scale stay exactly as a latent diffusion
    # model trained on them expects, so a sharper decoder improves ldm / sdedit / ldm-inpaint without retraining
    train_encoder: bool = True
    #: how the decoder doubles resolution: an upsampler tag of ``generators.layers.UPSAMPLERS``
    #: (a family refuses one that is not its own registered tag)
    ae_upsample: str = "nearest"


@dataclass
class LdmConfig(AEConfig):
    """Latent diffusion options. ``ae_run`` names a trained ``ldm-ae`` run (run dir, reference name or a
    ``.safetensors`` state dict); empty = hold a fresh autoencoder, trained for ``ae_steps`` first."""

    ae_run: str = ""
    ae_steps: int = 0
    timesteps: int = 1000
    schedule: str = "cosine"
    prediction: str = "v"
    unet_base: int = 64
    unet_mults: tuple[int, ...] | str = (1, 2, 2)
    unet_blocks: int = 1
    attn_heads: int = 4
    conditional: bool = True
    cond_drop: float = 0.1
    ema_decay: float = 0.999
    use_ema: bool = True
    clip_x0: float = 0.0
    # sampling defaults (overridable per call: steps=, eta=, guidance=)
    steps: int = 50
    eta: float = 0.0
    guidance: float = 1.0


@dataclass
class EditConfig(LdmConfig):
    """Options of the diffusion editors. ``ldm_run`` names a trained ``ldm`` run whose weights are reused."""

    ldm_run: str = ""
    strength: float = 0.5
    region: str = "freeform"
    resample: int = 1
    paste: bool = True
    steps: int = 50


# Presets per resolution (merged over the Config defaults): widths sized for a CPU at 64 px and a GPU at 128 px;
# ``tiny`` is for tests and smoke runs. Autoencoder-only families get only the autoencoder keys.
_AE_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"ae_base": 16, "d_base": 16, "adv_start": 1},
    "64": {"res": 64, "batch": 16, "ae_base": 32, "d_base": 32, "adv_start": 1500},
    "128": {"res": 128, "batch": 32, "ae_base": 64, "d_base": 64, "adv_start": 5000},
}
_UNET_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"unet_base": 16, "attn_heads": 2},
    "64": {"unet_base": 64},
    "128": {"unet_base": 128, "unet_mults": (1, 2, 2, 4)},
}
AE_PRESETS = _AE_PRESETS
LDM_PRESETS: dict[str, dict[str, Any]] = {k: {**_AE_PRESETS[k], **_UNET_PRESETS[k]} for k in _AE_PRESETS}


def _ints(value: tuple[int, ...] | list[int] | str) -> tuple[int, ...]:
    """Accept ``(1, 2, 2)`` or the CLI spelling ``"1,2,2"``."""
    if isinstance(value, str):
        try:
            return tuple(int(v) for v in value.replace(" ", "").split(",") if v)
        except ValueError:
            raise UsageError(f"expected comma-separated integers, got '{value}'") from None
    return tuple(int(v) for v in value)


def build_autoencoder(cfg: AEConfig) -> KLAutoencoder:
    """The autoencoder ``cfg`` describes (every family that holds one builds it here)."""
    return KLAutoencoder(cfg.channels, cfg.ae_base, cfg.factor, cfg.z_channels, cfg.ae_blocks, cfg.ae_upsample)


def reconstruction_families() -> dict[str, str]:
    """Upsampler tag -> the registered real/reconstruction family (``ae-recon`` and its siblings) decoding that way."""
    from generators.registry import GENERATORS

    return {e.obj.upsampler: e.name for e in GENERATORS.entries() if issubclass(e.obj, AERecon)}


def _check_decoder(family: GeneratorFamily, cfg: AEConfig) -> None:
    """A family's samples carry its registered upsampler tag, so its autoencoder must decode that way: a config
    asking for another decoder would write samples whose tag lies (and leave-one-upsampler-out would split on it)."""
    if cfg.ae_upsample != family.upsampler:
        other = reconstruction_families().get(cfg.ae_upsample)
        hint = f": use {other}, the family registered for that decoder" if other else ""
        raise UsageError(
            f"{family.name} decodes with {family.upsampler} upsampling, got ae_upsample={cfg.ae_upsample}{hint}"
        )


def _check_common(cfg: AEConfig) -> None:
    if cfg.ae_upsample not in UPSAMPLERS:
        raise UsageError(f"ae_upsample must be one of {', '.join(UPSAMPLERS.names())}, got '{cfg.ae_upsample}'")
    if cfg.factor not in FACTORS:
        raise UsageError(f"factor must be one of {FACTORS}, got {cfg.factor}")
    if cfg.res % cfg.factor:
        raise UsageError(f"resolution {cfg.res} is not divisible by the autoencoder factor {cfg.factor}")


def _check_inputs(inputs: torch.Tensor | None, n: int, factor: int, family: str) -> torch.Tensor:
    if inputs is None:
        raise UsageError(f"{family} edits real faces: pass inputs (--input DIR)")
    if inputs.ndim != 4 or inputs.shape[1] != 3:
        raise UsageError(f"{family}: inputs must be (N, 3, H, W) images, got shape {tuple(inputs.shape)}")
    if inputs.shape[0] < n:
        raise UsageError(f"{family}: asked for {n} images but got {inputs.shape[0]} inputs")
    if inputs.shape[-1] % factor or inputs.shape[-2] % factor:
        raise UsageError(f"{family}: input size {tuple(inputs.shape[-2:])} is not divisible by factor {factor}")
    return inputs[:n]


def parse_condition(condition: Any, n: int, device: torch.device) -> torch.Tensor | None:
    """``"gender=female,age=20-29"`` or ``{"gender": "female"}`` -> (n, len(ATTRIBUTES)) indices, -1 = unset."""
    if condition is None or isinstance(condition, torch.Tensor):
        return None if condition is None else condition[:n].to(device)
    if isinstance(condition, str):
        pairs = [p.split("=", 1) for p in condition.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise UsageError(f"condition '{condition}' must look like gender=female,age=20-29")
        condition = {k.strip(): v.strip() for k, v in pairs}
    row = [-1] * len(ATTRIBUTES)
    names = list(ATTRIBUTES)
    for key, value in dict(condition).items():
        if key not in ATTRIBUTES:
            raise UsageError(f"unknown condition attribute '{key}'; known: {', '.join(names)}")
        if value not in ATTRIBUTES[key]:
            raise UsageError(f"unknown {key} '{value}'; known: {', '.join(ATTRIBUTES[key])}")
        row[names.index(key)] = ATTRIBUTES[key].index(value)
    return torch.tensor([row] * n, dtype=torch.long, device=device)


def _cond_arg(kwargs: dict[str, Any]) -> Any:
    """``cond`` (a tensor, from code) wins over ``condition`` (a string or dict, from the CLI); None = default."""
    return kwargs["cond"] if kwargs.get("cond") is not None else kwargs.get("condition")


def describe_condition(cond: torch.Tensor | None, i: int) -> dict[str, str] | None:
    if cond is None:
        return None
    out = {k: ATTRIBUTES[k][int(v)] for k, v in zip(ATTRIBUTES, cond[i].tolist()) if 0 <= int(v) < len(ATTRIBUTES[k])}
    return out or None


def _load_modules(ref: str, what: str) -> dict[str, nn.Module] | dict[str, dict[str, torch.Tensor]]:
    """Modules of another run (``generators.checkpoints.load_run``) or state dicts grouped by prefix from a
    ``.safetensors`` file. Reusing runs by reference keeps one trained autoencoder behind every latent family."""
    if ref.endswith(".safetensors"):
        from pathlib import Path

        from safetensors.torch import load_file

        if not Path(ref).is_file():
            raise UsageError(f"{what} '{ref}': file not found")
        groups: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in load_file(ref).items():
            prefix, _, rest = key.partition(".")
            groups.setdefault(prefix, {})[rest] = tensor
        return groups
    try:
        from generators.checkpoints import load_run
    except ImportError as exc:  # run loading is a separate module; say so instead of a traceback
        raise UsageError(f"{what} '{ref}': cannot load runs ({exc}); pass a .safetensors file instead") from None
    return load_run(ref).modules()


def _pick(src: dict[str, Any], key: str, ref: str, what: str) -> Any:
    if key not in src:
        raise UsageError(f"{what} '{ref}' has no '{key}' weights (found: {', '.join(sorted(src)) or 'none'})")
    return src[key]


def _copy_into(dst: nn.Module, src: nn.Module | dict[str, torch.Tensor], what: str) -> None:
    state = src.state_dict() if isinstance(src, nn.Module) else src
    try:
        dst.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UsageError(f"{what}: weights do not fit this config ({first}); match factor / widths") from None


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


# ----------------------------------------------------------------------------------------------------------------
# families
# ----------------------------------------------------------------------------------------------------------------


@register_generator(
    "ldm-ae",
    family="ldm-ae",
    upsampler="nearest",
    kind="autoencoder",
    description="KL autoencoder of latent diffusion (factor 4/8, 4 latent channels); samples = reconstructions",
    components=("ldm-autoencoder",),
)
class LdmAutoencoder(GeneratorFamily):
    """The latent-diffusion autoencoder as a trainable family; ``sample`` reconstructs ``inputs``."""

    Config = AEConfig
    presets = AE_PRESETS
    resolutions = (16, 32, 64, 128, 256)

    def __init__(self, cfg: AEConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(cfg, device)
        _check_common(cfg)
        _check_decoder(self, cfg)
        self.trainer = AETrainer(cfg, self.device)

    def modules(self) -> dict[str, nn.Module]:
        return {"AE": self.trainer.ae, "D": self.trainer.disc}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"AE": self.trainer.opt_ae, "D": self.trainer.opt_d}

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        return self.trainer.step(batch.image.to(self.device), step)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, **kwargs: Any) -> Samples:
        inputs = _check_inputs(kwargs.get("inputs"), n, self.cfg.factor, self.name).to(self.device)
        ae = self.trainer.ae.eval()
        images = ae.reconstruct(inputs)
        meta = {
            "factor": self.cfg.factor,
            "latent_channels": self.cfg.z_channels,
            "decoder_upsample": self.cfg.ae_upsample,
            "decoder_blocks": self.cfg.ae_blocks,
        }
        return Samples(images=images, meta=[dict(meta) for _ in range(n)])


@dataclass
class AEReconConfig(AEConfig):
    """``ae_run``: optionally start from (or just sample with) a trained ``ldm-ae`` run."""

    ae_run: str = ""


@register_generator(
    "ae-recon",
    family="ae-recon",
    upsampler="nearest",
    kind="image2image",
    description="real faces encoded and decoded by the latent-diffusion autoencoder (paired with their parent)",
    components=("ldm-autoencoder",),
)
class AERecon(LdmAutoencoder):
    """Dataset-facing alias of ``ldm-ae``: training it trains the autoencoder; samples are paired reconstructions."""

    Config = AEReconConfig

    def __init__(self, cfg: AEReconConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(cfg, device)
        if cfg.ae_run:
            src = _load_modules(cfg.ae_run, "ae_run")
            _copy_into(self.trainer.ae, _pick(src, "AE", cfg.ae_run, "ae_run"), f"ae_run '{cfg.ae_run}'")
            if "D" in src:
                _copy_into(self.trainer.disc, src["D"], f"ae_run '{cfg.ae_run}'")


@dataclass
class AEConvTConfig(AEReconConfig):
    """A second autoencoder: transposed-conv decoder, 8 latent channels, two residual blocks per level."""

    ae_upsample: str = "convT-k4s2"
    z_channels: int = 8
    ae_blocks: int = 2


@register_generator(
    "ae-convT",
    family="ae-convT",
    upsampler="convT-k4s2",
    kind="image2image",
    description="real faces through a transposed-conv autoencoder (factor 4, 8 latent channels, 2 blocks per level)",
    components=("ae-convT",),
)
class AEConvT(AERecon):
    """Real/reconstruction pairs through an autoencoder that shares no weights or upsampler with ``ae-recon``:
    a decoder trace of its own, so a held-out test on it asks whether decoder traces transfer."""

    Config = AEConvTConfig


@dataclass
class AEShuffleConfig(AEReconConfig):
    """A third autoencoder: pixel-shuffle decoder, factor 8 with 16 latent channels (SD-VAE-like compression)."""

    ae_upsample: str = "pixelshuffle"
    factor: int = 8
    z_channels: int = 16


@register_generator(
    "ae-shuffle",
    family="ae-shuffle",
    upsampler="pixelshuffle",
    kind="image2image",
    description="real faces through a pixel-shuffle autoencoder (factor 8, 16 latent channels, 1 block per level)",
    components=("ae-shuffle",),
)
class AEShuffle(AERecon):
    """Real/reconstruction pairs through a sub-pixel-conv decoder with a deeper, wider latent (factor 8)."""

    Config = AEShuffleConfig


@register_generator(
    "ldm",
    family="ldm",
    upsampler="nearest",
    kind="conditional",
    description="latent DDPM/DDIM with a small attention UNet, EMA, eps/v prediction, classifier-free guidance",
    components=("ldm-autoencoder", "ldm-unet"),  # decodes through the autoencoder it borrows (ae_run: ae-recon)
)
class LatentDiffusion(GeneratorFamily):
    """Latent DDPM trained in the autoencoder's latent space, sampled with DDIM (+ classifier-free guidance)."""

    Config = LdmConfig
    presets = LDM_PRESETS
    resolutions = (16, 32, 64, 128, 256)

    def __init__(self, cfg: LdmConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(cfg, device)
        _check_common(cfg)
        _check_decoder(self, cfg)
        if not 0.0 <= cfg.cond_drop <= 1.0:
            raise UsageError(f"cond_drop must be in [0, 1], got {cfg.cond_drop}")
        self.schedule = NoiseSchedule(cfg.timesteps, cfg.schedule, cfg.prediction)
        # a fresh autoencoder is trained here (phase 1) only when no trained one is referenced
        self.ae_trainer = None if cfg.ae_run else AETrainer(cfg, self.device)
        if self.ae_trainer is not None:
            self.ae = self.ae_trainer.ae
        else:
            self.ae = build_autoencoder(cfg).to(self.device)
            src = _load_modules(cfg.ae_run, "ae_run")
            _copy_into(self.ae, _pick(src, "AE", cfg.ae_run, "ae_run"), f"ae_run '{cfg.ae_run}'")
            self.ae.requires_grad_(False)
        latent = cfg.res // cfg.factor
        self.unet = UNet(
            cfg.z_channels,
            cfg.unet_base,
            _ints(cfg.unet_mults),
            cfg.unet_blocks,
            latent,
            cfg.attn_heads,
            COND_SIZES if cfg.conditional else (),
        ).to(self.device)
        self.unet_ema = copy.deepcopy(self.unet).requires_grad_(False)
        self.opt = torch.optim.AdamW(self.unet.parameters(), lr=cfg.lr, weight_decay=0.0)

    # -- contract -------------------------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"AE": self.ae, "UNet": self.unet, "UNet_ema": self.unet_ema}
        if self.ae_trainer is not None:
            mods["D"] = self.ae_trainer.disc
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {"UNet": self.opt}
        if self.ae_trainer is not None:
            opts.update({"AE": self.ae_trainer.opt_ae, "D": self.ae_trainer.opt_d})
        return opts

    def discriminator(self) -> nn.Module | None:
        return None  # the AE's patch critic judges reconstructions, not diffusion samples

    def borrowed_modules(self) -> list[str]:
        return ["AE"] if self.cfg.ae_run else []

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        x = batch.image.to(self.device)
        if self.ae_trainer is not None and step < self.cfg.ae_steps:
            return self.ae_trainer.step(x, step)
        return self.diffusion_step(x, batch.cond, step)

    def diffusion_step(self, x: torch.Tensor, cond: torch.Tensor | None, step: int) -> dict[str, float]:
        cfg = self.cfg
        self.ae.eval()
        with torch.no_grad():
            mean, logvar = self.ae.encode(x)
            z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
            if float(self.ae.latent_std) <= 0:  # an AE that was never trained: measure the scale once
                self.ae.observe_latents(z)
            z = z * self.ae.latent_scale
        n = z.shape[0]
        t = torch.randint(0, self.schedule.timesteps, (n,), device=self.device)
        noise = torch.randn_like(z)
        z_t = self.schedule.q_sample(z, t, noise)
        c = None
        if cfg.conditional and cond is not None:
            c = cond.to(self.device).long().clone()
            drop = torch.rand(n, device=self.device) < cfg.cond_drop
            c[drop] = -1  # dropped rows use the null token: the unconditional model for guidance
        self.unet.train()
        out = self.unet(z_t, t, c)
        loss = F.mse_loss(out, self.schedule.target(z, noise, t))
        optimizer_step(self.opt, loss)
        self._update_ema(step)
        return {"diffusion_loss": loss.item()}

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        # warm-up: early on the EMA follows the raw weights closely, otherwise it stays near the random init
        decay = min(self.cfg.ema_decay, (1 + step) / (10 + step))
        for pe, p in zip(self.unet_ema.parameters(), self.unet.parameters()):
            pe.lerp_(p, 1 - decay)
        for be, b in zip(self.unet_ema.buffers(), self.unet.buffers()):
            be.copy_(b)

    # -- sampling -------------------------------------------------------------------------------------------
    def _options(self, kwargs: dict[str, Any]) -> tuple[int, float, float]:
        steps = int(kwargs.get("steps") if kwargs.get("steps") is not None else self.cfg.steps)
        eta = float(kwargs.get("eta") if kwargs.get("eta") is not None else self.cfg.eta)
        guidance = float(kwargs.get("guidance") if kwargs.get("guidance") is not None else self.cfg.guidance)
        if steps < 1:
            raise UsageError(f"{self.name}: --steps must be >= 1, got {steps}")
        if eta < 0:
            raise UsageError(f"{self.name}: --eta must be >= 0, got {eta}")
        if guidance < 0:
            raise UsageError(f"{self.name}: --guidance must be >= 0, got {guidance}")
        return steps, eta, guidance

    def _net(self) -> UNet:
        return (self.unet_ema if self.cfg.use_ema else self.unet).eval()

    def denoise_output(
        self, net: UNet, z: torch.Tensor, t: int, cond: torch.Tensor | None, guidance: float
    ) -> torch.Tensor:
        """Network output at step ``t``; with guidance, extrapolate from the unconditional to the conditional one."""
        tt = torch.full((z.shape[0],), t, device=z.device, dtype=torch.long)
        if cond is None or not net.cond_sizes or guidance == 1.0:
            return net(z, tt, cond if net.cond_sizes else None)
        both = net(torch.cat([z, z]), torch.cat([tt, tt]), torch.cat([cond, torch.full_like(cond, -1)]))
        out_c, out_u = both.chunk(2)
        return out_u + guidance * (out_c - out_u)

    def ddim_loop(
        self,
        z: torch.Tensor,
        timesteps: list[int],
        cond: torch.Tensor | None,
        guidance: float,
        eta: float,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        net = self._net()
        for i, t in enumerate(timesteps):
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            out = self.denoise_output(net, z, t, cond, guidance)
            x0, eps = self.schedule.split(z, torch.tensor([t], device=z.device), out, self.cfg.clip_x0)
            z = self.schedule.ddim_step(z, x0, eps, t, t_prev, eta, generator)
        return z

    def encode_latent(self, images: torch.Tensor) -> torch.Tensor:
        return self.ae.eval().encode(images)[0] * self.ae.latent_scale

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.ae.eval().decode(z / self.ae.latent_scale).clamp(-1, 1)

    def _latent_shape(self, n: int, res: int) -> tuple[int, int, int, int]:
        return (n, self.cfg.z_channels, res // self.cfg.factor, res // self.cfg.factor)

    def _meta(self, n: int, cond: torch.Tensor | None, **extra: Any) -> list[dict[str, Any]]:
        base = {"schedule": self.cfg.schedule, "prediction": self.cfg.prediction, **extra}
        return [{**base, "condition": describe_condition(cond, i)} for i in range(n)]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, **kwargs: Any) -> Samples:
        steps, eta, guidance = self._options(kwargs)
        cond = parse_condition(_cond_arg(kwargs), n, self.device)
        z = randn(self._latent_shape(n, self.cfg.res), generator, self.device)
        if cond is None and guidance != 1.0 and self._net().cond_sizes:
            # guidance needs a condition to extrapolate towards: without one, draw each face's attributes
            cond = random_condition(n, generator).to(self.device)
        z = self.ddim_loop(z, self.schedule.ddim_timesteps(steps), cond, guidance, eta, generator)
        images = self.decode_latent(z)
        return Samples(images=images, meta=self._meta(n, cond, steps=steps, eta=eta, guidance=guidance))


class _LdmEditor(LatentDiffusion):
    """Shared set-up of the diffusion editors: they reuse a trained ``ldm`` run (``ldm_run``)."""

    Config = EditConfig

    def __init__(self, cfg: EditConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(cfg, device)
        if cfg.ldm_run:
            src = _load_modules(cfg.ldm_run, "ldm_run")
            for key, dst in (("AE", self.ae), ("UNet", self.unet), ("UNet_ema", self.unet_ema)):
                _copy_into(dst, _pick(src, key, cfg.ldm_run, "ldm_run"), f"ldm_run '{cfg.ldm_run}'")

    def borrowed_modules(self) -> list[str]:
        return list(self.modules()) if self.cfg.ldm_run else super().borrowed_modules()

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        """With ``ldm_run`` the editor only wraps that trained model (``--steps 1`` packages it as a run); without
        it, it trains its own latent diffusion model exactly like ``ldm``."""
        if self.cfg.ldm_run:
            return {}
        return super().train_step(batch, step)

    def _strength(self, kwargs: dict[str, Any]) -> float:
        value = kwargs.get("strength")
        strength = float(self.cfg.strength if value is None else value)
        if not 0.0 <= strength <= 1.0:
            raise UsageError(f"{self.name}: --strength must be in [0, 1], got {strength}")
        return strength

    def _t_start(self, strength: float) -> int:
        return round(strength * (self.schedule.timesteps - 1))


@register_generator(
    "sdedit",
    family="sdedit",
    upsampler="nearest",
    kind="image2image",
    description="SDEdit: a real face's latent noised to strength t and denoised with DDIM (manifest records t)",
    components=("ldm-autoencoder", "ldm-unet"),  # a trained ldm run (ldm_run), autoencoder included
)
class SDEdit(_LdmEditor):
    """SDEdit (Meng et al. 2022): the higher the strength, the less of the real face survives."""


    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, **kwargs: Any) -> Samples:
        inputs = _check_inputs(kwargs.get("inputs"), n, self.cfg.factor, self.name).to(self.device)
        steps, eta, guidance = self._options(kwargs)
        strength = self._strength(kwargs)
        cond = parse_condition(_cond_arg(kwargs), n, self.device)
        z0 = self.encode_latent(inputs)
        if strength == 0.0:  # nothing to denoise: the pure autoencoder round trip
            z = z0
            t_start = -1
        else:
            t_start = self._t_start(strength)
            noise = randn(tuple(z0.shape), generator, self.device)
            z = self.schedule.q_sample(z0, torch.full((n,), t_start, device=self.device), noise)
            # the number of DDIM steps scales with strength, as in SDEdit: a light edit needs few steps
            k = max(1, round(steps * strength))
            z = self.ddim_loop(z, self.schedule.ddim_timesteps(k, t_start), cond, guidance, eta, generator)
        images = self.decode_latent(z)
        meta = self._meta(n, cond, strength=strength, t_start=t_start, steps=steps, eta=eta, guidance=guidance)
        return Samples(images=images, meta=meta)


#: spellings the CLI accepts for the mask kinds of :mod:`generators.masks`
_REGION_ALIASES = {"free-form": "freeform", "free_form": "freeform"}


def region_masks(region: str, n: int, res: int, generator: torch.Generator | None) -> torch.Tensor:
    """Binary masks (n, 1, res, res) for ``eyes`` / ``mouth`` / ``nose`` / ``freeform`` / ``random`` regions,
    drawn by the shared :func:`generators.masks.make_masks` so both inpainters use the same region definitions."""
    from generators.masks import make_masks

    gen = generator if generator is None or generator.device.type == "cpu" else None
    return make_masks(_REGION_ALIASES.get(region, region), n, res, gen)


@register_generator(
    "ldm-inpaint",
    family="ldm-inpaint",
    upsampler="nearest",
    kind="image2image",
    description="RePaint-style latent inpainting of eyes / mouth / nose / free-form regions (writes masks)",
    components=("ldm-autoencoder", "ldm-unet", "face-masks"),  # ldm_run's networks + inpaint's region masks
)
class LdmInpaint(_LdmEditor):
    """RePaint (Lugmayr et al. 2022) in latent space: at every step the known region is replaced by the input's
    latent noised to the same step, so the generated region is harmonised with it; ``resample`` > 1 adds
    RePaint's jumps back (re-noise one step, denoise again) for better harmony at the cost of more steps."""


    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, **kwargs: Any) -> Samples:
        inputs = _check_inputs(kwargs.get("inputs"), n, self.cfg.factor, self.name).to(self.device)
        steps, eta, guidance = self._options(kwargs)
        resample = int(self.cfg.resample if kwargs.get("resample") is None else kwargs["resample"])
        if resample < 1:
            raise UsageError(f"{self.name}: --resample must be >= 1, got {resample}")
        region = str(kwargs.get("region") or self.cfg.region)
        masks = kwargs.get("masks")
        h, w = inputs.shape[-2:]
        if masks is None:
            masks = region_masks(region, n, h, generator).to(self.device)
        else:
            masks = torch.as_tensor(masks).to(self.device, torch.float32)
            if masks.ndim == 3:
                masks = masks[:, None]
            if tuple(masks.shape) != (n, 1, h, w):
                want = (n, 1, h, w)
                raise UsageError(f"{self.name}: mask shape {tuple(masks.shape)} does not match the images {want}")
            region = "given"
        masks = (masks > 0.5).float()
        cond = parse_condition(_cond_arg(kwargs), n, self.device)
        z0 = self.encode_latent(inputs)
        # a latent cell is regenerated if any pixel it covers is masked: the decoder's receptive field is local
        m = F.adaptive_max_pool2d(masks, z0.shape[-2:])
        timesteps = self.schedule.ddim_timesteps(steps)
        net = self._net()
        z = randn(tuple(z0.shape), generator, self.device)
        for i, t in enumerate(timesteps):
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            for u in range(resample):
                out = self.denoise_output(net, z, t, cond, guidance)
                x0, eps = self.schedule.split(z, torch.tensor([t], device=self.device), out, self.cfg.clip_x0)
                z_unknown = self.schedule.ddim_step(z, x0, eps, t, t_prev, eta, generator)
                if t_prev >= 0:
                    noise = randn(tuple(z0.shape), generator, self.device)
                    z_known = self.schedule.q_sample(z0, torch.full((n,), t_prev, device=self.device), noise)
                else:
                    z_known = z0
                z = m * z_unknown + (1 - m) * z_known
                if u + 1 < resample and t_prev >= 0:
                    z = self.schedule.renoise(z, t_prev, t, generator)
        images = self.decode_latent(z)
        if self.cfg.paste:  # outside the mask the pixels stay the real ones, so the mask is exact ground truth
            images = masks * images + (1 - masks) * inputs
        meta = self._meta(n, cond, region=region, steps=steps, eta=eta, guidance=guidance, resample=resample)
        return Samples(images=images, meta=meta, masks=masks)
