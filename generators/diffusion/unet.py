"""A small denoising UNet for latents: residual blocks with a timestep embedding, self-attention at the lowest
resolution, and optional attribute conditioning for classifier-free guidance.

Attention only at the lowest resolution is where it is cheap (a 64 px face at factor 4 is a 16x16 latent; the
bottom level is 4x4) and where global structure (face symmetry, pose) is decided. Conditioning adds one learned
embedding per attribute to the time embedding; each attribute has an extra "null" index, which is both the
"unknown" label and the token used when conditioning is dropped, so one network learns p(x) and p(x | c).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from generators.diffusion.autoencoder import norm


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Transformer positional encoding), shape (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class TimeResBlock(nn.Module):
    """Residual block whose first activation is shifted by a projection of the time (+ condition) embedding."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n1, self.c1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.n2, self.c2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.c2.weight)  # each block starts as identity: stable early training
        nn.init.zeros_(self.c2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.c2(self.drop(F.silu(self.n2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over spatial positions with a residual connection."""

    def __init__(self, ch: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = max(1, min(heads, ch))
        while ch % self.heads:
            self.heads -= 1
        self.norm = norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(n, c, h, w))


class UNet(nn.Module):
    """Latent denoiser ``eps_theta(z_t, t, cond)`` (or ``v_theta``).

    ``mults`` gives the width per level; levels that would shrink the latent below 2x2 are dropped, so the same
    config runs on the 4x4 latents of 16 px tests and the 16x16 latents of 64 px training.
    ``cond_sizes`` is the number of values per attribute (UTKFace: gender, age, race); empty = unconditional.
    """

    def __init__(
        self,
        in_ch: int = 4,
        base: int = 64,
        mults: tuple[int, ...] = (1, 2, 2),
        blocks: int = 1,
        latent_res: int = 16,
        heads: int = 4,
        cond_sizes: tuple[int, ...] = (),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        max_levels = max(1, int(math.log2(max(latent_res, 2))))  # 16 -> 4 levels (16, 8, 4, 2)
        mults = tuple(mults)[:max_levels]
        chs = [base * m for m in mults]
        emb_dim = base * 4
        self.base = base
        self.cond_sizes = tuple(cond_sizes)
        self.time_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # index size = null token for "unknown or dropped"
        self.cond_emb = nn.ModuleList(nn.Embedding(s + 1, emb_dim) for s in self.cond_sizes)
        self.conv_in = nn.Conv2d(in_ch, chs[0], 3, padding=1)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = chs[0]
        for i, ch in enumerate(chs):
            level = nn.ModuleList(TimeResBlock(prev if b == 0 else ch, ch, emb_dim, dropout) for b in range(blocks))
            self.down.append(level)
            prev = ch
            last = i == len(chs) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid1 = TimeResBlock(prev, prev, emb_dim, dropout)
        self.mid_attn = SelfAttention(prev, heads)
        self.mid2 = TimeResBlock(prev, prev, emb_dim, dropout)
        self.bottom_attn = SelfAttention(chs[-1], heads)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(chs))):
            ch = chs[i]
            level = nn.ModuleList(
                TimeResBlock((prev + ch) if b == 0 else ch, ch, emb_dim, dropout) for b in range(blocks)
            )
            self.up.append(level)
            prev = ch
            self.upsample.append(
                nn.Identity() if i == 0 else nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"),
                                                           nn.Conv2d(ch, chs[i - 1], 3, padding=1))
            )
            if i > 0:
                prev = chs[i - 1]
        self.out = nn.Sequential(norm(prev), nn.SiLU(), nn.Conv2d(prev, in_ch, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def embed(self, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base))
        for j, table in enumerate(self.cond_emb):
            null = self.cond_sizes[j]
            if cond is None:
                idx = torch.full((t.shape[0],), null, dtype=torch.long, device=t.device)
            else:
                idx = cond[:, j].long()
                idx = torch.where((idx < 0) | (idx >= null), torch.full_like(idx, null), idx)
            emb = emb + table(idx)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(t, cond)
        h = self.conv_in(x)
        skips = []
        n_levels = len(self.down)
        for i, (level, down) in enumerate(zip(self.down, self.downsample)):
            for block in level:
                h = block(h, emb)
            if i == n_levels - 1:
                h = self.bottom_attn(h)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level, up in zip(self.up, self.upsample):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in level:
                h = block(h, emb)
            h = up(h)
        return self.out(h)
