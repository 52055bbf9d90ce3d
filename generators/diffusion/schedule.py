"""Noise schedules and the DDPM / DDIM update rules, written from the papers' equations.

The forward process (DDPM, Ho et al. 2020) noises a clean sample ``x0`` to step ``t`` in closed form,
``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``; everything here is a function of the cumulative product
``abar`` (``alphas_cumprod``), so a schedule is just its betas. Two parameterisations of the network output are
supported because they trade off differently at the ends of the schedule: ``eps`` (predict the noise, DDPM) and
``v`` (predict ``sqrt(abar) eps - sqrt(1 - abar) x0``, Salimans & Ho 2022), which stays well-scaled near t = T
where ``eps`` prediction says little about ``x0``. DDIM (Song et al. 2021) reuses the same trained network with
fewer, deterministic (``eta = 0``) or partly stochastic steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from forensics_core.errors import UsageError

BetaFn = Callable[[int], torch.Tensor]


def linear_betas(timesteps: int) -> torch.Tensor:
    """DDPM's linear betas (1e-4 .. 0.02 at T = 1000), rescaled so shorter schedules keep the same end points."""
    scale = 1000.0 / timesteps
    return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64).clamp(max=0.999)


def cosine_betas(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: abar follows cos^2, which destroys information more evenly than
    the linear schedule at low resolution (the last linear steps are nearly pure noise and waste capacity)."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64)
    f = torch.cos(((steps / timesteps) + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(min=1e-8, max=0.999)


#: name -> beta function; new schedules register here rather than in an if/else chain
BETA_SCHEDULES: dict[str, BetaFn] = {"linear": linear_betas, "cosine": cosine_betas}
PREDICTIONS: tuple[str, ...] = ("eps", "v")


def randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Gaussian noise drawn on the generator's own device, then moved: the same seed gives the same noise on any
    compute device, which keeps CPU and GPU sampling runs comparable image for image."""
    gdev = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gdev).to(device)


class NoiseSchedule:
    """Precomputed schedule tensors plus the forward (``q_sample``) and reverse (``ddpm_step`` / ``ddim_step``)
    rules. Timesteps are integer indices ``0 .. T-1``; ``-1`` stands for the clean sample (``abar = 1``)."""

    def __init__(self, timesteps: int = 1000, schedule: str = "cosine", prediction: str = "eps") -> None:
        if timesteps < 2:
            raise UsageError(f"diffusion timesteps must be >= 2, got {timesteps}")
        if schedule not in BETA_SCHEDULES:
            raise UsageError(f"unknown noise schedule '{schedule}'; known: {', '.join(sorted(BETA_SCHEDULES))}")
        if prediction not in PREDICTIONS:
            raise UsageError(f"unknown diffusion prediction '{prediction}'; known: {', '.join(PREDICTIONS)}")
        self.timesteps = timesteps
        self.schedule = schedule
        self.prediction = prediction
        betas = BETA_SCHEDULES[schedule](timesteps)
        abar = torch.cumprod(1.0 - betas, dim=0)
        self.betas = betas.float()
        self.alphas_cumprod = abar.float()
        # abar at "t = -1" is 1: index shift lets ddim_step look up the previous step without branches
        self._abar_ext = torch.cat([torch.ones(1, dtype=torch.float64), abar]).float()

    # -- lookups ------------------------------------------------------------------------------------------
    def abar(self, t: torch.Tensor) -> torch.Tensor:
        """abar_t for integer steps ``t`` (-1 allowed), shaped (N, 1, 1, 1) to broadcast over images."""
        table = self._abar_ext.to(t.device)
        return table[(t.long() + 1)].view(-1, 1, 1, 1)

    # -- forward process ----------------------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noise ``x0`` to step ``t`` in one shot (the closed form of the forward Markov chain)."""
        a = self.abar(t).to(x0.dtype)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def renoise(self, x: torch.Tensor, t_from: int, t_to: int, generator: torch.Generator | None) -> torch.Tensor:
        """Move a sample from step ``t_from`` forward to a noisier ``t_to`` (RePaint's resampling jump)."""
        a_from = float(self._abar_ext[t_from + 1])
        a_to = float(self._abar_ext[t_to + 1])
        ratio = a_to / a_from
        return math.sqrt(ratio) * x + math.sqrt(max(1.0 - ratio, 0.0)) * randn(tuple(x.shape), generator, x.device)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output at step ``t`` under this schedule's parameterisation."""
        if self.prediction == "eps":
            return noise
        a = self.abar(t).to(x0.dtype)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def split(
        self, x_t: torch.Tensor, t: torch.Tensor, out: torch.Tensor, clip_x0: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn a network output into the pair (predicted x0, predicted eps) used by every sampler.

        ``clip_x0 > 0`` clamps the predicted x0 to [-clip_x0, clip_x0] and recomputes eps from it (DDPM clips x0
        to the data range). It matters for ``eps`` prediction near t = T, where x0 = (x_t - sqrt(1-abar) eps) /
        sqrt(abar) multiplies the network's error by 1 / sqrt(abar): about 2e4 at the last cosine step.
        """
        a = self.abar(t).to(x_t.dtype)
        if self.prediction == "eps":
            eps = out
            x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
        else:
            x0 = a.sqrt() * x_t - (1 - a).sqrt() * out
            eps = (1 - a).sqrt() * x_t + a.sqrt() * out
        if clip_x0 > 0:
            x0 = x0.clamp(-clip_x0, clip_x0)
            eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        return x0, eps

    # -- reverse process ----------------------------------------------------------------------------------
    def ddim_timesteps(self, steps: int, t_start: int | None = None) -> list[int]:
        """``steps`` evenly spaced indices from ``t_start`` (default T-1) down to 0, highest first."""
        if steps < 1:
            raise UsageError(f"sampling steps must be >= 1, got {steps}")
        top = self.timesteps - 1 if t_start is None else int(t_start)
        steps = min(steps, top + 1)
        ts = torch.linspace(top, 0, steps).round().long().tolist()
        out: list[int] = []
        for t in ts:  # rounding can repeat an index when steps is close to top + 1
            if not out or t < out[-1]:
                out.append(int(t))
        return out

    def ddim_step(
        self,
        x_t: torch.Tensor,
        x0: torch.Tensor,
        eps: torch.Tensor,
        t: int,
        t_prev: int,
        eta: float,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """One DDIM update from ``t`` to ``t_prev`` (``-1`` = clean). ``eta = 0`` is deterministic; ``eta = 1``
        with every step recovers DDPM's ancestral sampler."""
        a_t = float(self._abar_ext[t + 1])
        a_prev = float(self._abar_ext[t_prev + 1])
        sigma = eta * math.sqrt(max((1 - a_prev) / (1 - a_t), 0.0)) * math.sqrt(max(1 - a_t / a_prev, 0.0))
        dir_coef = math.sqrt(max(1 - a_prev - sigma**2, 0.0))
        x_prev = math.sqrt(a_prev) * x0 + dir_coef * eps
        if sigma > 0:
            x_prev = x_prev + sigma * randn(tuple(x_t.shape), generator, x_t.device)
        return x_prev

    def ddpm_step(
        self, x_t: torch.Tensor, x0: torch.Tensor, t: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """One ancestral DDPM step t -> t-1 from the Gaussian posterior q(x_{t-1} | x_t, x0)."""
        a_t = float(self._abar_ext[t + 1])
        a_prev = float(self._abar_ext[t])
        beta = float(self.betas[t])
        mean = (math.sqrt(a_prev) * beta / (1 - a_t)) * x0 + (math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t)) * x_t
        if t == 0:
            return mean
        var = beta * (1 - a_prev) / (1 - a_t)
        return mean + math.sqrt(var) * randn(tuple(x_t.shape), generator, x_t.device)
