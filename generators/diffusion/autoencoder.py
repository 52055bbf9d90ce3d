"""The KL-regularised convolutional autoencoder of latent diffusion, and the patch discriminator that sharpens it.

Latent diffusion (Rombach et al. 2022) splits synthesis in two: an autoencoder compresses a face by a factor ``f``
(4 or 8) into a small latent with 4 channels, and the diffusion model works only in that latent. Its decoder is
therefore the last network every latent-diffusion face passes through, and its upsampling trace is what detectors
can learn from real/reconstruction pairs (``ae-recon``). How the decoder upsamples is an option
(:data:`DECODER_UPSAMPLERS`: nearest neighbour + conv, transposed conv, sub-pixel conv / pixel shuffle), because
each leaves its own periodic trace and a detector that met one decoder must be tested on the others (Rajan et al.,
ICLR 2025: real images vs their reconstructions through several autoencoders). The encoder outputs a diagonal
Gaussian; a tiny KL weight keeps the latent roughly unit-scaled without blurring reconstructions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from forensics.errors import UsageError

FACTORS: tuple[int, ...] = (4, 8)


def groups_for(ch: int) -> int:
    """The largest GroupNorm group count <= 32 that divides ``ch`` (small test widths have few channels)."""
    for g in (32, 16, 8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


def norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups_for(ch), ch, eps=1e-6)


class ResBlock(nn.Module):
    """Pre-activation residual block (GroupNorm, SiLU, conv) x 2, 1x1 projection when widths differ."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.n1, self.c1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.n2, self.c2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        h = self.c2(F.silu(self.n2(h)))
        return self.skip(x) + h


class NearestUp(nn.Module):
    """Nearest-neighbour x2 then 3x3 conv: avoids transposed-conv checkerboards; its own trace is blockier."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TransposeUp(nn.Module):
    """4x4 stride-2 transposed conv (DCGAN's upsampler): the kernel overlap is even, but each of the four output
    phases gets its own 2x2 sub-kernel, so whatever differs between them repeats with period 2."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ShuffleUp(nn.Module):
    """Sub-pixel conv: 3x3 conv to 4x the channels, then pixel shuffle (ESPCN / SRGAN's upsampler). ICNR init (the
    four sub-pixel filters start equal) so it starts as nearest upsampling of one conv, without a checkerboard at
    step 0; what training makes of the four phases is its trace."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, 4 * ch, 3, padding=1)
        with torch.no_grad():
            w = torch.empty(ch, ch, 3, 3)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            self.conv.weight.copy_(w.repeat_interleave(4, dim=0))
            self.conv.bias.copy_(self.conv.bias[::4].repeat_interleave(4))
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


#: how a decoder doubles resolution: the ``upsample`` option of :class:`Decoder` / ``AEConfig.ae_upsample``, keyed
#: by the generator registry's upsampler tag (so a family's tag and its decoder are one name)
DECODER_UPSAMPLERS: dict[str, Callable[[int], nn.Module]] = {
    "nearest": NearestUp,
    "convT-k4s2": TransposeUp,
    "pixelshuffle": ShuffleUp,
}


def channel_plan(base: int, factor: int) -> list[int]:
    """Widths per resolution level: level 0 at full resolution, one more level per halving."""
    if factor not in FACTORS:
        raise UsageError(f"autoencoder factor must be one of {FACTORS}, got {factor}")
    levels = int(math.log2(factor)) + 1
    mults = (1, 2, 2, 4)[:levels]
    return [base * m for m in mults]


class Encoder(nn.Module):
    def __init__(self, in_ch: int, base: int, factor: int, z_ch: int, blocks: int) -> None:
        super().__init__()
        chs = channel_plan(base, factor)
        self.conv_in = nn.Conv2d(in_ch, chs[0], 3, padding=1)
        layers: list[nn.Module] = []
        prev = chs[0]
        for i, ch in enumerate(chs):
            for _ in range(blocks):
                layers.append(ResBlock(prev, ch))
                prev = ch
            if i < len(chs) - 1:
                layers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))  # learned downsampling
        self.down = nn.Sequential(*layers)
        self.mid = ResBlock(prev, prev)
        self.out = nn.Sequential(norm(prev), nn.SiLU(), nn.Conv2d(prev, 2 * z_ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.mid(self.down(self.conv_in(x))))


class Decoder(nn.Module):
    def __init__(
        self, out_ch: int, base: int, factor: int, z_ch: int, blocks: int, upsample: str = "nearest"
    ) -> None:
        super().__init__()
        if upsample not in DECODER_UPSAMPLERS:
            raise UsageError(f"decoder upsample must be one of {', '.join(DECODER_UPSAMPLERS)}, got '{upsample}'")
        up = DECODER_UPSAMPLERS[upsample]
        chs = channel_plan(base, factor)[::-1]
        self.conv_in = nn.Conv2d(z_ch, chs[0], 3, padding=1)
        self.mid = ResBlock(chs[0], chs[0])
        layers: list[nn.Module] = []
        prev = chs[0]
        for i, ch in enumerate(chs):
            for _ in range(blocks):
                layers.append(ResBlock(prev, ch))
                prev = ch
            if i < len(chs) - 1:
                layers.append(up(ch))
        self.up = nn.Sequential(*layers)
        self.out = nn.Sequential(norm(prev), nn.SiLU(), nn.Conv2d(prev, out_ch, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.up(self.mid(self.conv_in(z))))


class KLAutoencoder(nn.Module):
    """Encoder -> diagonal Gaussian (mean, log-variance) -> decoder.

    ``latent_std`` is a buffer: a running estimate of the latent's standard deviation, kept during AE training,
    which the diffusion model divides by so its inputs are unit-scaled (LDM's "scale factor"). 0 = not measured.
    """

    def __init__(
        self,
        channels: int = 3,
        base: int = 64,
        factor: int = 4,
        z_channels: int = 4,
        blocks: int = 1,
        upsample: str = "nearest",
    ) -> None:
        super().__init__()
        self.factor = factor
        self.z_channels = z_channels
        self.encoder = Encoder(channels, base, factor, z_channels, blocks)
        self.decoder = Decoder(channels, base, factor, z_channels, blocks, upsample)
        self.register_buffer("latent_std", torch.zeros(()))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance (clamped: exp of a large log-variance overflows in fp16)."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @property
    def latent_scale(self) -> float:
        std = float(self.latent_std)
        return 1.0 / std if std > 0 else 1.0

    @torch.no_grad()
    def observe_latents(self, z: torch.Tensor, momentum: float = 0.99) -> None:
        std = z.detach().float().std()
        if float(self.latent_std) <= 0:
            self.latent_std.copy_(std)
        else:
            self.latent_std.mul_(momentum).add_((1 - momentum) * std)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction through the posterior mean: what ``ae-recon`` writes."""
        return self.decode(self.encode(x)[0]).clamp(-1, 1)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, var) || N(0, 1)) summed over latent elements, averaged over the batch."""
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(1).mean()


class PatchDiscriminator(nn.Module):
    """PatchGAN-style critic: strided 4x4 convs to a map of per-patch real/fake logits.

    Its intermediate activations double as the feature space of the perceptual-style loss when the project's
    feature network is unavailable (``features``).
    """

    def __init__(self, channels: int = 3, base: int = 64, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Sequential(nn.Conv2d(channels, base, 4, 2, 1), nn.LeakyReLU(0.2))]
        ch = base
        for i in range(1, layers):
            nxt = base * min(2**i, 8)
            blocks.append(nn.Sequential(nn.Conv2d(ch, nxt, 4, 2, 1), norm(nxt), nn.LeakyReLU(0.2)))
            ch = nxt
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(ch, 1, 3, padding=1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for b in self.blocks:
            x = b(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1])
