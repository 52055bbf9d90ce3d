"""``reenact``: a compact first-order motion model (the FOMM idea, Siarohin et al. 2019) written for this toolkit.

Three networks, trained self-supervised on frames of real talking-head clips by reconstructing one frame of a
clip (driving) from another frame of the same clip (source):

* a keypoint detector predicts K keypoints as the spatial expectation of softmax heatmaps, each with a local
  affine term (the Jacobian) pooled under its heatmap;
* a dense-motion network turns the K local affine motions (plus the identity, for the background) into one dense
  backward flow by predicting soft assignment masks over the K+1 candidate motions, and predicts an occlusion map
  telling the generator where the warped source cannot explain the driving frame;
* a generator encodes the source, warps its features by the dense flow, multiplies by the occlusion map and
  decodes (inpainting occluded parts).

Losses: multi-scale L1 on an image pyramid plus a feature term from a fixed random-projection pyramid, and the
equivariance constraint (keypoints of a randomly transformed frame equal the transformed keypoints, for values
and Jacobians) that makes keypoints meaningful without labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ReenactConfig:
    res: int = 64
    num_kp: int = 10
    width: int = 32
    batch: int = 8
    lr: float = 2e-4
    steps: int = 3000
    equivariance: float = 10.0
    temperature: float = 0.1
    seed: int = 0


def make_grid(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """(H, W, 2) grid of (x, y) in [-1, 1], the coordinate system of ``grid_sample``."""
    ys = torch.linspace(-1, 1, h, device=device)
    xs = torch.linspace(-1, 1, w, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def _block(cin: int, cout: int) -> nn.Sequential:
    # gcd: the dense-motion hourglass has (num_kp + 1) * 4 input channels (44 for 10 keypoints), not a multiple of 8
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.GroupNorm(math.gcd(8, cout), cout), nn.ReLU(inplace=True))


class Hourglass(nn.Module):
    """A small U-Net: the feature extractor of both the keypoint and the dense-motion networks."""

    def __init__(self, cin: int, width: int, depth: int = 3) -> None:
        super().__init__()
        chans = [cin] + [width * 2**i for i in range(depth)]
        self.down = nn.ModuleList(_block(chans[i], chans[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(_block(chans[i + 1] * (1 if i == depth - 1 else 2), chans[i]) for i in range(depth))
        self.out_channels = chans[0] + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        h = x
        for blk in self.down:
            h = F.avg_pool2d(blk(h), 2)
            skips.append(h)
        skips.pop()
        for i in reversed(range(len(self.up))):
            h = self.up[i](F.interpolate(h, scale_factor=2, mode="nearest"))
            if i > 0:
                h = torch.cat([h, skips[i]], 1)
        return torch.cat([h, x], 1)


class KeypointDetector(nn.Module):
    def __init__(self, cfg: ReenactConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = Hourglass(3, cfg.width)
        self.heat = nn.Conv2d(self.net.out_channels, cfg.num_kp, 7, padding=3)
        self.jac = nn.Conv2d(self.net.out_channels, 4 * cfg.num_kp, 7, padding=3)
        # start every Jacobian at the identity so early training warps rigidly
        nn.init.zeros_(self.jac.weight)
        with torch.no_grad():
            self.jac.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(cfg.num_kp))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.net(x)
        n, _, h, w = feat.shape
        heat = F.softmax(self.heat(feat).flatten(2) / self.cfg.temperature, dim=-1).view(n, -1, h, w)
        grid = make_grid(h, w, x.device)
        value = (heat.unsqueeze(-1) * grid).sum((2, 3))  # (N, K, 2)
        jac = self.jac(feat).view(n, self.cfg.num_kp, 4, h, w)
        jac = (jac * heat.unsqueeze(2)).sum((3, 4)).view(n, self.cfg.num_kp, 2, 2)
        return {"value": value, "jacobian": jac, "heatmap": heat}


def kp_gaussians(value: torch.Tensor, h: int, w: int, sigma: float = 0.1) -> torch.Tensor:
    grid = make_grid(h, w, value.device)
    d = grid[None, None] - value[:, :, None, None, :]
    return torch.exp(-0.5 * (d**2).sum(-1) / sigma**2)


class DenseMotion(nn.Module):
    """Combine K local affine motions + identity into one backward flow driving -> source, plus occlusion."""

    def __init__(self, cfg: ReenactConfig) -> None:
        super().__init__()
        k = cfg.num_kp
        self.net = Hourglass((k + 1) * 4, cfg.width)
        self.mask = nn.Conv2d(self.net.out_channels, k + 1, 7, padding=3)
        self.occlusion = nn.Conv2d(self.net.out_channels, 1, 7, padding=3)

    @staticmethod
    def sparse_motions(src: torch.Tensor, kp_s: dict, kp_d: dict) -> torch.Tensor:
        """(N, K+1, H, W, 2): for each keypoint, z -> kp_s + J_s J_d^-1 (z - kp_d); index 0 is the identity."""
        n, _, h, w = src.shape
        grid = make_grid(h, w, src.device)[None, None]  # (1,1,H,W,2)
        jac = kp_s["jacobian"] @ torch.linalg.inv(kp_d["jacobian"])  # (N,K,2,2)
        rel = grid - kp_d["value"][:, :, None, None, :]
        moved = torch.einsum("nkij,nkhwj->nkhwi", jac, rel) + kp_s["value"][:, :, None, None, :]
        ident = grid.expand(n, 1, h, w, 2)
        return torch.cat([ident, moved], 1)

    def forward(self, src: torch.Tensor, kp_s: dict, kp_d: dict) -> dict[str, torch.Tensor]:
        n, _, h, w = src.shape
        motions = self.sparse_motions(src, kp_s, kp_d)  # (N,K+1,H,W,2)
        k1 = motions.shape[1]
        deformed = F.grid_sample(
            src.repeat_interleave(k1, 0), motions.flatten(0, 1), padding_mode="border", align_corners=True
        ).view(n, k1, 3, h, w)
        heat = kp_gaussians(kp_d["value"], h, w) - kp_gaussians(kp_s["value"], h, w)
        heat = torch.cat([torch.zeros_like(heat[:, :1]), heat], 1).unsqueeze(2)
        feat = self.net(torch.cat([heat, deformed], 2).flatten(1, 2))
        mask = F.softmax(self.mask(feat), dim=1)
        flow = (mask.unsqueeze(-1) * motions).sum(1)
        return {"flow": flow, "occlusion": torch.sigmoid(self.occlusion(feat)), "mask": mask}


class ReenactGenerator(nn.Module):
    def __init__(self, cfg: ReenactConfig) -> None:
        super().__init__()
        w = cfg.width
        self.enc = nn.Sequential(_block(3, w), _block(w, w * 2), nn.AvgPool2d(2), _block(w * 2, w * 4), nn.AvgPool2d(2))
        self.res = nn.Sequential(*[_block(w * 4, w * 4) for _ in range(3)])
        self.dec = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), _block(w * 4, w * 2),
            nn.Upsample(scale_factor=2, mode="nearest"), _block(w * 2, w), nn.Conv2d(w, 3, 7, padding=3),
        )  # fmt: skip

    def forward(self, src: torch.Tensor, motion: dict[str, torch.Tensor]) -> torch.Tensor:
        feat = self.enc(src)
        h, w = feat.shape[2:]
        flow = F.interpolate(motion["flow"].permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=True)
        feat = F.grid_sample(feat, flow.permute(0, 2, 3, 1), padding_mode="border", align_corners=True)
        feat = feat * F.interpolate(motion["occlusion"], size=(h, w), mode="bilinear", align_corners=True)
        return torch.tanh(self.dec(self.res(feat)))


class ReenactModel(nn.Module):
    """Keypoint detector + dense motion + generator; ``forward(source, driving)`` reconstructs ``driving``."""

    def __init__(self, cfg: ReenactConfig) -> None:
        super().__init__()
        if cfg.res < 16 or cfg.res % 8:
            from forensics_core.errors import UsageError

            raise UsageError(f"reenact res {cfg.res}: must be a multiple of 8 and >= 16")
        self.cfg = cfg
        self.kp = KeypointDetector(cfg)
        self.motion = DenseMotion(cfg)
        self.gen = ReenactGenerator(cfg)

    def animate(self, src: torch.Tensor, kp_s: dict, kp_d: dict) -> torch.Tensor:
        return self.gen(src, self.motion(src, kp_s, kp_d))

    def forward(self, src: torch.Tensor, drv: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
        kp_s, kp_d = self.kp(src), self.kp(drv)
        return self.animate(src, kp_s, kp_d), kp_s, kp_d


def relative_kp(kp_src: dict, kp_drv: dict, kp_drv_initial: dict) -> dict:
    """FOMM's relative mode: apply the driving keypoints' motion since its first frame to the source keypoints,
    so a driver with a different face shape does not impose that shape on the source identity."""
    value = kp_src["value"] + (kp_drv["value"] - kp_drv_initial["value"])
    jac = kp_drv["jacobian"] @ torch.linalg.inv(kp_drv_initial["jacobian"]) @ kp_src["jacobian"]
    return {"value": value, "jacobian": jac}


class RandomAffine:
    """A random affine warp of the sampling grid, used by the equivariance loss."""

    def __init__(self, n: int, generator: torch.Generator, sigma: float = 0.05) -> None:
        self.theta = torch.eye(2, 3).repeat(n, 1, 1) + torch.randn(n, 2, 3, generator=generator) * sigma

    def warp_points(self, pts: torch.Tensor) -> torch.Tensor:  # (N,K,2) -> (N,K,2)
        theta = self.theta.to(pts.device)
        return torch.einsum("nij,nkj->nki", theta[:, :, :2], pts) + theta[:, None, :, 2]

    def warp_image(self, x: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(self.theta.to(x.device), list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, padding_mode="reflection", align_corners=True)


class PyramidFeatures(nn.Module):
    """A fixed random-projection conv pyramid: the multi-scale feature loss without downloaded VGG weights.

    Random conv features are a known, cheap stand-in for perceptual features (Ulyanov's deep image prior line of
    work); they are frozen and seeded, so the loss is reproducible.
    """

    def __init__(self, scales: tuple[float, ...] = (1.0, 0.5, 0.25), seed: int = 1234) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.scales = scales
        self.convs = nn.ModuleList()
        for cin, cout in ((3, 16), (16, 32)):
            conv = nn.Conv2d(cin, cout, 3, 1, 1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / (cin * 9) ** 0.5)
                conv.bias.zero_()
            self.convs.append(conv)
        self.requires_grad_(False)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = pred.new_zeros(())
        for s in self.scales:
            p = pred if s == 1.0 else F.interpolate(pred, scale_factor=s, mode="area")
            t = target if s == 1.0 else F.interpolate(target, scale_factor=s, mode="area")
            total = total + F.l1_loss(p, t)
            for conv in self.convs:
                p, t = F.relu(conv(p)), F.relu(conv(t))
                total = total + F.l1_loss(p, t)
        return total


def reenact_losses(
    model: ReenactModel, feats: PyramidFeatures, src: torch.Tensor, drv: torch.Tensor, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    pred, _, kp_d = model(src, drv)
    losses = {"recon": feats.loss(pred, drv)}
    if model.cfg.equivariance > 0:
        tf = RandomAffine(drv.shape[0], generator)
        kp_t = model.kp(tf.warp_image(drv))
        # a point p in the warped image samples the original at theta(p): original keypoints = theta(kp_t)
        value_loss = (tf.warp_points(kp_t["value"]) - kp_d["value"]).abs().mean()
        a = tf.theta[:, None, :, :2].to(drv.device)
        jac_t = a @ kp_t["jacobian"]
        jac_loss = (torch.linalg.inv(kp_d["jacobian"]) @ jac_t - torch.eye(2, device=drv.device)).abs().mean()
        losses["equivariance"] = model.cfg.equivariance * (value_loss + jac_loss)
    losses["total"] = sum(losses.values())
    return losses
