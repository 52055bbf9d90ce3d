"""The latent-diffusion families: ``ldm`` (latent DDPM, DDIM sampling, classifier-free guidance) and the editors
``sdedit`` and ``ldm-inpaint`` that reuse a trained ``ldm``; conditions (``gender=female,...``) are parsed here.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from forensics_core.errors import UsageError
from generators.base import ATTRIBUTES, Batch, Samples, random_condition
from generators.diffusion.ae_families import AEBackedFamily, copy_run_modules
from generators.diffusion.ae_training import AETrainer
from generators.diffusion.configs import (
    LDM_PRESETS,
    EditConfig,
    LdmConfig,
    _check_inputs,
    _ints,
    build_autoencoder,
)
from generators.diffusion.schedule import NoiseSchedule, randn
from generators.diffusion.unet import UNet
from generators.layers import optimizer_step
from generators.registry import register_generator

COND_SIZES: tuple[int, ...] = tuple(len(v) for v in ATTRIBUTES.values())


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


@register_generator(
    "ldm",
    upsampler="nearest",
    kind="conditional",
    description="latent DDPM/DDIM with a small attention UNet, EMA, eps/v prediction, classifier-free guidance",
    components=("ldm-autoencoder", "ldm-unet"),  # decodes through the autoencoder it borrows (ae_run: ae-recon)
)
class LatentDiffusion(AEBackedFamily):
    """Latent DDPM trained in the autoencoder's latent space, sampled with DDIM (+ classifier-free guidance)."""

    Config = LdmConfig
    presets = LDM_PRESETS

    def __init__(self, cfg: LdmConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(cfg, device)
        if not 0.0 <= cfg.cond_drop <= 1.0:
            raise UsageError(f"cond_drop must be in [0, 1], got {cfg.cond_drop}")
        self.schedule = NoiseSchedule(cfg.timesteps, cfg.schedule, cfg.prediction)
        # a fresh autoencoder is trained here (phase 1) only when no trained one is referenced
        self.ae_trainer = None if cfg.ae_run else AETrainer(cfg, self.device)
        if self.ae_trainer is not None:
            self.ae = self.ae_trainer.ae
        else:
            self.ae = build_autoencoder(cfg).to(self.device)
            copy_run_modules(cfg.ae_run, "ae_run", {"AE": self.ae})
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
            copy_run_modules(cfg.ldm_run, "ldm_run", {"AE": self.ae, "UNet": self.unet, "UNet_ema": self.unet_ema})

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
