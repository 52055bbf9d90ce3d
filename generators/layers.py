"""Shared building blocks for the generator families: up/down-samplers, equalised-lr layers, losses, EMA.

The benchmark protocols split generators by their *upsampler* because each leaves its own spectral trace
(checkerboards from transposed convs, blockiness from nearest, periodic phase patterns from pixel shuffle, the
soft spectrum of low-pass filtered resampling). Keeping every upsampler here, behind one registry, means a family
differs from another only in the piece we say it differs in, and the tag in the manifest is true by construction.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from forensics_core.errors import UsageError
from forensics_core.registry import Registry
from generators.base import Batch, GenConfig, GeneratorFamily, Samples

T = TypeVar("T")

# --------------------------------------------------------------------------------------------------------------
# FIR (low-pass) resampling, as in StyleGAN2: zero-insertion / decimation around a separable [1,3,3,1] filter.
# --------------------------------------------------------------------------------------------------------------


def fir_kernel(taps: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)) -> torch.Tensor:
    """The separable 2-D low-pass kernel (outer product of ``taps``), normalised to unit DC gain."""
    k = torch.tensor(taps, dtype=torch.float32)
    k2 = torch.outer(k, k)
    return k2 / k2.sum()


def _fir(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int], stride: int = 1) -> torch.Tensor:
    c = x.shape[1]
    k = kernel.to(device=x.device, dtype=x.dtype).flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, k, stride=stride, groups=c)


def upsample_fir(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """2x upsampling: insert zeros, then low-pass filter (gain 4 keeps the mean)."""
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, h * 2, w * 2)
    up[:, :, ::2, ::2] = x
    kh = kernel.shape[0]
    return _fir(up, kernel * 4, ((kh - 2 + 1) // 2 + 1, (kh - 2) // 2))


def downsample_fir(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """2x downsampling: low-pass filter, then keep every other pixel (anti-aliased)."""
    kh = kernel.shape[0]
    return _fir(x, kernel, ((kh - 2 + 1) // 2, (kh - 2) // 2), stride=2)


class _FirResample(nn.Module):
    """Holds the FIR kernel as a non-persistent buffer: it follows ``.to(device)`` but is rebuilt from ``taps``
    rather than saved, so checkpoints hold only trained weights."""

    def __init__(self, taps: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)) -> None:
        super().__init__()
        self.register_buffer("kernel", fir_kernel(taps), persistent=False)


class FirUpsample(_FirResample):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_fir(x, self.kernel)


class FirDownsample(_FirResample):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return downsample_fir(x, self.kernel)


# --------------------------------------------------------------------------------------------------------------
# Upsampler registry: (c_in, c_out) -> module that doubles H and W. The registry name is the manifest tag.
# --------------------------------------------------------------------------------------------------------------

UPSAMPLERS: Registry[Callable[[int, int], nn.Module]] = Registry("upsampler")


@UPSAMPLERS.register("convT-k4s2", description="transposed conv, kernel 4, stride 2 (DCGAN)")
def _up_convt_k4(cin: int, cout: int) -> nn.Module:
    return nn.ConvTranspose2d(cin, cout, 4, 2, 1)


@UPSAMPLERS.register("convT-k3s2", description="transposed conv, kernel 3, stride 2 (uneven overlap)")
def _up_convt_k3(cin: int, cout: int) -> nn.Module:
    return nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1)


@UPSAMPLERS.register("nearest", description="nearest-neighbour x2 then 3x3 conv (SNGAN / BigGAN)")
def _up_nearest(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1))


def icnr_(conv: nn.Conv2d, scale: int = 2) -> None:
    """ICNR init (Aitken et al. 2017) of a conv feeding ``PixelShuffle(scale)``: its ``scale**2`` sub-pixel filters
    start equal, so the layer starts as nearest upsampling of one conv with no checkerboard at step 0, and the
    periodic trace a detector later reads is what training made of the phases, not an artefact of the init."""
    phases = scale * scale
    with torch.no_grad():
        w = torch.empty(conv.out_channels // phases, conv.in_channels, *conv.kernel_size)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        conv.weight.copy_(w.repeat_interleave(phases, dim=0))
        if conv.bias is not None:
            conv.bias.copy_(conv.bias[::phases].repeat_interleave(phases))


@UPSAMPLERS.register("pixelshuffle", description="sub-pixel conv: 3x3 conv to 4x channels, then PixelShuffle(2)")
def _up_pixelshuffle(cin: int, cout: int, icnr: bool = False) -> nn.Module:
    conv = nn.Conv2d(cin, cout * 4, 3, 1, 1)
    if icnr:
        icnr_(conv)
    return nn.Sequential(conv, nn.PixelShuffle(2))


@UPSAMPLERS.register("bilinear-fir", description="zero-insert + [1,3,3,1] low-pass filter then 3x3 conv")
def _up_fir(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(FirUpsample(), nn.Conv2d(cin, cout, 3, 1, 1))


def make_upsampler(name: str, cin: int, cout: int, **options: Any) -> nn.Module:
    """The registered upsampler ``name`` mapping ``cin`` to ``cout`` channels; ``options`` are that entry's own
    keywords (``icnr=True`` for ``pixelshuffle``)."""
    return UPSAMPLERS.get(name).obj(cin, cout, **options)


# --------------------------------------------------------------------------------------------------------------
# Equalised learning rate (Karras et al.): weights stored at N(0,1), scaled at run time by He's constant, so Adam's
# per-parameter step size is the same for every layer regardless of fan-in.
# --------------------------------------------------------------------------------------------------------------


class EqualLinear(nn.Module):
    def __init__(self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0, act: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(cin)
        self.lr_mul = lr_mul
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if self.act else out


class EqualConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale = 1 / math.sqrt(cin * k * k)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)


class MinibatchStd(nn.Module):
    """Appends the mean per-group feature std-dev as a channel: lets D see (lack of) diversity, fighting collapse."""

    def __init__(self, group: int = 4) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group, n)
        while n % g:
            g -= 1
        y = x.reshape(g, -1, c, h, w)
        y = (y.var(0, unbiased=False) + 1e-8).sqrt().mean([1, 2, 3])  # (n/g,)
        y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], 1)


def layer_outputs(layers: Iterable[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """Feed ``x`` through ``layers`` in turn and return every layer's output, last one last: the intermediate
    activations a discriminator's feature-matching (or perceptual-style) loss compares."""
    outputs = []
    for layer in layers:
        x = layer(x)
        outputs.append(x)
    return outputs


def sn(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al.) via the parametrisation API, whose state dict is plain tensors."""
    return nn.utils.parametrizations.spectral_norm(module)


#: name -> wrapper applied to each D weight layer; a config picks one (``d_norm``), so trying another
#: normalisation is a preset, not a code change. "none" is meant to be paired with R1 (``r1_gamma``).
D_NORMS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "spectral": sn,
    "none": lambda module: module,
}


def choose(table: Mapping[str, T], key: str, what: str, owner: str = "") -> T:
    """``table[key]`` for a config string (loss, d_norm, d_arch), else a one-line error naming the choices."""
    if key not in table:
        prefix = f"{owner}: " if owner else ""
        raise UsageError(f"{prefix}unknown {what} {key!r} (choose one of {', '.join(table)})")
    return table[key]


def d_norm(name: str) -> Callable[[nn.Module], nn.Module]:
    """The D weight wrapper called ``name`` (see :data:`D_NORMS`)."""
    return choose(D_NORMS, name, "d_norm")


def channels_per_level(res: int, ch: int, ch_max: int, start: int = 4) -> list[int]:
    """Feature widths from ``start`` px up to ``res`` px: wide at low resolution, halving as images grow."""
    n = int(math.log2(res // start))
    return [min(ch_max, ch * 2 ** (n - i)) for i in range(n + 1)]


# --------------------------------------------------------------------------------------------------------------
# Losses and training helpers.
# --------------------------------------------------------------------------------------------------------------


def d_loss_nonsat(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_loss_nonsat(fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean()


def d_loss_hinge(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def g_loss_hinge(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


#: name -> (D loss, G loss); families pick by config so a loss swap is a preset, not a code change.
LOSSES: dict[str, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = {
    "nonsat": (d_loss_nonsat, g_loss_nonsat),
    "hinge": (d_loss_hinge, g_loss_hinge),
}


def r1_penalty(d_out: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al.): squared gradient norm of D on reals; keeps D smooth near the data manifold."""
    (grad,) = torch.autograd.grad(d_out.sum(), real, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def lazy_r1_step(
    d_fn: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, opt: torch.optim.Optimizer, gamma: float,
    every: int, step: int,
) -> float | None:
    """Lazy R1 (Karras et al. 2020): every ``every`` steps, one extra D step on ``gamma / 2 * every * R1``;
    returns the penalty, or None on steps without one (or with ``gamma`` 0)."""
    if gamma <= 0 or step % every:
        return None
    real_r = real.detach().requires_grad_(True)
    r1 = r1_penalty(d_fn(real_r), real_r)
    optimizer_step(opt, r1 * (gamma / 2 * every))
    return float(r1.detach())


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """Polyak average of parameters; buffers (BN statistics, w_avg) are copied so EMA sampling matches G."""
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p.detach(), 1 - decay)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


def ema_decay_at(decay: float, step: int) -> float:
    """EMA warm-up: early averages would be dominated by the random initialisation, which short (CPU) runs never
    outlive, so the effective decay ramps as (1 + step) / (10 + step) up to ``decay``."""
    return min(decay, (1 + step) / (10 + step))


def flag_on_any_rank(flag: bool, device: torch.device) -> bool:
    """OR a per-batch flag across DDP ranks, so every rank takes the same branch.

    The trainer averages gradients in an optimiser pre-step hook (a collective); a rank that skipped a step or
    raised while the others stepped would leave them waiting forever.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    t = torch.tensor(float(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """``module`` takes no gradients inside the block (trainable again after it): the generator's losses go through
    D, and freezing D keeps that backward pass from computing gradients the D step would discard anyway."""
    requires_grad(module, False)
    try:
        yield
    finally:
        requires_grad(module, True)


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One update of ``opt``'s parameters on ``loss`` (gradients cleared first, so nothing leaks between steps)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def kw(kwargs: dict[str, Any], key: str, default: Any) -> Any:
    """Read an optional sample() kwarg that may be passed as None by the CLI."""
    v = kwargs.get(key)
    return default if v is None else v


# --------------------------------------------------------------------------------------------------------------
# A shared G/D/EMA family skeleton for the unconditional GANs (dcgan, resgan, pixelshuffle, stylegan2 builds on it).
# --------------------------------------------------------------------------------------------------------------



@dataclass
class AdversarialConfig(GenConfig):
    """Options every unconditional GAN shares; each family adds its own fields on top."""

    z_dim: int = 128
    ch: int = 32  # width at the output resolution; doubles per level towards 4x4, capped at ch_max
    ch_max: int = 256
    loss: str = "nonsat"  # key of LOSSES
    beta1: float = 0.5
    beta2: float = 0.999
    lr_d: float = 0.0  # 0 = same as lr
    ema_decay: float = 0.999
    r1_gamma: float = 0.0  # 0 disables R1
    r1_every: int = 16  # lazy regularisation interval (Karras et al. 2020)


class GanState:
    """G, D, a frozen EMA copy of G and one Adam per network: the state every adversarial family checkpoints.

    A mixin (listed before :class:`GeneratorFamily`) so families with their own training steps (cgan, cyclegan,
    inpaint, srgan) and :class:`AdversarialFamily` share one definition of what is saved and resumed.
    """

    device: torch.device

    def init_gan_state(self, G: nn.Module, D: nn.Module, lr: float, lr_d: float, betas: tuple[float, float]) -> None:
        self.G = G.to(self.device)
        self.D = D.to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval()
        requires_grad(self.G_ema, False)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr_d, betas=betas)

    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D}

    def generator_update(self, loss_g: torch.Tensor, step: int) -> None:
        """The generator's update every adversarial family ends its G step with: one Adam step on ``loss_g`` (its
        own losses, computed inside ``with frozen(self.D)``), then the EMA copy follows G at this step's decay."""
        optimizer_step(self.opt_G, loss_g)
        ema_update(self.G_ema, self.G, ema_decay_at(self.cfg.ema_decay, step))


class AdversarialFamily(GanState, GeneratorFamily):
    """G + D + EMA-of-G with a configurable loss; subclasses only name the two networks.

    Sampling uses ``G_ema`` in eval mode so that taking a sample never changes any state (exact resume needs
    the checkpoint to depend only on the training steps taken).
    """

    Config = AdversarialConfig
    #: the two networks, each built from the config alone (``Generator(cfg)``); a family that picks one by a config
    #: option overrides :meth:`build_generator` / :meth:`build_discriminator` instead
    Generator: ClassVar[Callable[[Any], nn.Module]]
    Discriminator: ClassVar[Callable[[Any], nn.Module]]

    def __init__(self, cfg: AdversarialConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(cfg, device)
        if cfg.res not in self.resolutions:
            raise UsageError(f"{self.name}: resolution {cfg.res} not supported (choose one of {self.resolutions})")
        self.d_loss_fn, self.g_loss_fn = choose(LOSSES, cfg.loss, "loss", self.name)
        self.init_gan_state(
            self.build_generator(), self.build_discriminator(), cfg.lr, cfg.lr_d or cfg.lr, (cfg.beta1, cfg.beta2)
        )

    def build_generator(self) -> nn.Module:
        return self.Generator(self.cfg)

    def build_discriminator(self) -> nn.Module:
        return self.Discriminator(self.cfg)

    def latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        # Drawn on the CPU so a seed gives the same latent on every device.
        return torch.randn(n, self.cfg.z_dim, generator=generator).to(self.device)

    def generate(self, G: nn.Module, z: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return G(z)

    def fakes(self, n: int) -> torch.Tensor:
        """``n`` images from the training G for the D and G losses (StyleGAN2 overrides it to mix styles)."""
        return self.generate(self.G, self.latent(n))

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        cfg = self.cfg
        real = batch.image.to(self.device)
        n = real.shape[0]
        # D step
        requires_grad(self.D, True)
        with torch.no_grad():
            fake = self.fakes(n)
        loss_d = self.d_loss_fn(self.D(real), self.D(fake))
        optimizer_step(self.opt_D, loss_d)
        out = {"loss_d": loss_d.item()}
        r1 = lazy_r1_step(self.D, real, self.opt_D, cfg.r1_gamma, cfg.r1_every, step)
        if r1 is not None:
            out["r1"] = r1
        with frozen(self.D):  # G step
            loss_g = self.g_loss_fn(self.D(self.fakes(n)))
            self.generator_update(loss_g, step)
        out["loss_g"] = loss_g.item()
        return out

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, **kwargs: Any) -> Samples:
        """``truncation`` psi scales the latent towards its mean (0), trading diversity for typicality."""
        psi = float(kw(kwargs, "truncation", 1.0))
        z = self.latent(n, generator) * psi
        images = self.generate(self.G_ema, z, **kwargs).clamp(-1, 1).float()
        return Samples(images=images, meta=[{"truncation": psi} for _ in range(n)])


#: Presets shared by the plain convolutional GANs (dcgan, resgan, pixelshuffle): same widths per resolution, so
#: families differ in their upsampler and losses, not in capacity.
CONV_GAN_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"res": 16, "ch": 8, "ch_max": 32, "z_dim": 32, "batch": 8},  # tests and smoke runs
    "16": {"res": 16, "ch": 32, "batch": 64},
    "32": {"res": 32, "ch": 32, "batch": 64},
    "64": {"res": 64, "ch": 32, "ch_max": 128, "batch": 32},
    "128": {"res": 128, "ch": 16, "ch_max": 128, "batch": 32},
}
