"""``inpaint``: masked face inpainting of eyes, nose, mouth or free-form strokes, writing the mask it filled.

Ideas from Yu et al., "Free-Form Image Inpainting with Gated Convolution" (DeepFill v2, 2019) and Iizuka et al.,
"Globally and Locally Consistent Image Completion" (2017):
- **gated convolutions**: every layer computes features and a soft gate sigmoid(g) per pixel and channel, a learned
  generalisation of partial convolution's hard validity mask, so the network learns where the hole is at each depth;
- a coarse network followed by an optional refinement network (coarse-to-fine), both encoder / dilated-bottleneck /
  decoder with **nearest x2 + gated conv** upsampling (tag ``nearest``, as in DeepFill);
- a *global* spectrally normalised PatchGAN discriminator on the whole completed face and a *local* one on the
  hole's bounding crop (resampled to a fixed size with ``roi_align``), hinge loss, plus an L1 reconstruction
  that weights the hole 6x.

Output is always composited: pixels outside the mask are the input's, bit for bit (``torch.where``), so the mask in
``Samples.masks`` is exact localisation ground truth. The trace is local: a nearest-upsampled synthetic patch with
its seam, inside an otherwise real face. Training holes are drawn per image from ``train_regions`` with jitter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from forensics_core.errors import UsageError
from generators.base import Batch, GenConfig, GeneratorFamily, Samples
from generators.families.cgan import check_resolution
from generators.families.cyclegan import check_inputs
from generators.layers import GanState, frozen, optimizer_step, requires_grad, sn
from generators.masks import MASK_KINDS, framing_landmarks, make_masks, mask_boxes, normalize_kind, pick_regions
from generators.registry import register_generator


class GatedConv(nn.Module):
    """conv -> (features, gate); out = ELU(features) * sigmoid(gate). ``act=False`` on the output layer."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 2 * cout, k, stride, dilation * (k - 1) // 2, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, g = self.conv(x).chunk(2, 1)
        return F.elu(f) * torch.sigmoid(g)


class GatedNet(nn.Module):
    """Gated-conv encoder (x4 down) -> dilated bottleneck -> decoder with nearest x2 upsampling -> RGB."""

    def __init__(self, cin: int, ch: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        c1, c2, c4 = ch, 2 * ch, 4 * ch
        self.encoder = nn.Sequential(
            GatedConv(cin, c1, 5),
            GatedConv(c1, c2, 3, 2),
            GatedConv(c2, c2),
            GatedConv(c2, c4, 3, 2),
            GatedConv(c4, c4),
        )
        self.bottleneck = nn.Sequential(*(GatedConv(c4, c4, 3, dilation=d) for d in dilations), GatedConv(c4, c4))
        self.up1 = nn.Sequential(GatedConv(c4, c2), GatedConv(c2, c2))
        self.up2 = nn.Sequential(GatedConv(c2, c1), GatedConv(c1, max(c1 // 2, 8)))
        self.to_rgb = nn.Conv2d(max(c1 // 2, 8), 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bottleneck(self.encoder(x))
        h = self.up1(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.up2(F.interpolate(h, scale_factor=2, mode="nearest"))
        return torch.tanh(self.to_rgb(h))


class InpaintGenerator(nn.Module):
    """Coarse (and optionally refine) gated networks. Input: hole-zeroed image, mask, ones (marks the border)."""

    def __init__(self, ch: int, dilations: tuple[int, ...], refine: bool) -> None:
        super().__init__()
        self.coarse = GatedNet(5, ch, dilations)
        self.refine = GatedNet(5, ch, dilations) if refine else None

    @staticmethod
    def _inputs(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([x * (1 - mask), mask, torch.ones_like(mask)], 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(coarse, final) raw predictions for the whole image; callers composite them into the hole."""
        coarse = self.coarse(self._inputs(x, mask))
        if self.refine is None:
            return coarse, coarse
        merged = coarse * mask + x * (1 - mask)
        # The refine stage sees the coarse guess inside the hole (not zeros): it only has to sharpen it.
        return coarse, self.refine(torch.cat([merged, mask, torch.ones_like(mask)], 1))


def composite(x: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Generated pixels inside the mask, the input's exact pixels outside it."""
    return torch.where(mask > 0.5, generated, x)


def sn_patch_discriminator(ch: int, res: int, min_res: int = 4) -> nn.Sequential:
    """SN-PatchGAN: stride-2 k5 SN convs down to ``min_res`` px, a 3x3 conv to one logit per patch."""
    layers: list[nn.Module] = []
    cin, c, size = 3, ch, res
    while size > min_res:
        layers += [sn(nn.Conv2d(cin, c, 5, 2, 2)), nn.LeakyReLU(0.2, True)]
        cin, c, size = c, min(c * 2, ch * 4), size // 2
    layers += [sn(nn.Conv2d(cin, 1, 3, 1, 1))]
    return nn.Sequential(*layers)


class InpaintDiscriminator(nn.Module):
    """Global + local discriminators; called on an image alone it returns the global mean patch logit."""

    def __init__(self, ch: int, res: int, local_res: int) -> None:
        super().__init__()
        self.local_res = local_res
        self.global_ = sn_patch_discriminator(ch, res)
        self.local = sn_patch_discriminator(ch, local_res, min_res=min(4, local_res))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.global_(x).mean((1, 2, 3))


def local_crops(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Differentiable crops of each image's box, resampled to size x size (bilinear ``roi_align``)."""
    idx = torch.arange(len(x), device=x.device, dtype=x.dtype)[:, None]
    return roi_align(x, torch.cat([idx, boxes.to(x)], 1), output_size=size, spatial_scale=1.0, aligned=True)


def masked_l1(out: torch.Tensor, real: torch.Tensor, mask: torch.Tensor, hole_weight: float) -> torch.Tensor:
    """L1 outside the hole + ``hole_weight`` x L1 inside it, each averaged over its own pixels.

    A plain image-wide L1 is dominated by the ~95% of pixels that are copied back anyway; weighting the hole
    (Liu et al.'s partial-conv loss uses 6) puts the reconstruction effort where the output is actually used.
    """
    err = (out - real).abs()
    valid = (err * (1 - mask)).sum() / ((1 - mask).sum() * 3).clamp_min(1)
    hole = (err * mask).sum() / (mask.sum() * 3).clamp_min(1)
    return valid + hole_weight * hole


@dataclass
class InpaintConfig(GenConfig):
    ch: int = 32
    ndf: int = 32
    dilations: tuple[int, ...] = (2, 4)
    refine: bool = True
    train_regions: str = "eyes,nose,mouth,freeform"
    framing: str = "aligned"  # where the face sits in the crop (generators.masks.FRAMINGS): aligned | utkface
    mask_jitter: float = 0.15
    lambda_l1: float = 1.0
    hole_weight: float = 6.0
    lambda_adv: float = 0.1
    lambda_local: float = 1.0  # weight of the local D inside the adversarial term
    beta1: float = 0.5
    beta2: float = 0.999
    ema_decay: float = 0.999
    batch: int = 16


@register_generator(
    "inpaint",
    upsampler="nearest",
    kind="image2image",
    description="face inpainting (eyes/nose/mouth/free-form) with gated convs and global + local D; writes masks",
    # the region masks (generators.masks.make_masks) are ldm-inpaint's too; the borrowed check_* helpers only
    # validate inputs and leave no trace in the images
    components=("face-masks",),
)
class Inpaint(GanState, GeneratorFamily):
    """Fills a face region of real faces.

    ``sample(n, generator, inputs=x, region="mouth")`` (region: eyes, nose, mouth, freeform or random; or pass
    ``masks=`` (N,1,H,W) directly) returns the composited faces and the binary masks; ``n`` is ignored (one output
    per input).
    """

    Config = InpaintConfig
    presets = {
        "16": {"res": 16, "ch": 16, "ndf": 16, "dilations": (2,), "batch": 16},
        "32": {"res": 32, "ch": 24, "ndf": 32, "dilations": (2, 4), "batch": 16},
        "64": {"res": 64, "ch": 32, "ndf": 32, "dilations": (2, 4, 8), "batch": 16},
        "128": {"res": 128, "ch": 32, "ndf": 48, "dilations": (2, 4, 8, 16), "batch": 8},
    }

    def __init__(self, cfg: InpaintConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(cfg, device)
        check_resolution(self, cfg.res)
        self.train_regions = tuple(normalize_kind(r) for r in cfg.train_regions.split(",") if r.strip())
        pick_regions(0, None, self.train_regions)  # validates the names now, not at step 1
        framing_landmarks(cfg.framing)
        self.init_gan_state(
            InpaintGenerator(cfg.ch, tuple(cfg.dilations), cfg.refine),
            InpaintDiscriminator(cfg.ndf, cfg.res, max(cfg.res // 2, 8)),
            cfg.lr, cfg.lr, (cfg.beta1, cfg.beta2),
        )

    def _hole_boxes(self, mask: torch.Tensor) -> torch.Tensor:
        """The mask's bounding box grown by 1/8 of the image on each side: the local D sees the seam's context."""
        boxes = mask_boxes(mask)
        pad = self.cfg.res / 8
        return (boxes + torch.tensor([-pad, -pad, pad, pad], device=boxes.device)).clamp(0, self.cfg.res)

    def _d_logits(self, img: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.D.global_(img), self.D.local(local_crops(img, boxes, self.D.local_res))

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        cfg = self.cfg
        real = batch.image.to(self.device)
        mask = make_masks(
            "random", len(real), cfg.res, jitter=cfg.mask_jitter, choices=self.train_regions, framing=cfg.framing
        )
        mask = mask.to(self.device)
        boxes = self._hole_boxes(mask)
        coarse, final = self.G(real, mask)
        completed = composite(real, final, mask)
        # D step: hinge on global and local views.
        requires_grad(self.D, True)
        rg, rl = self._d_logits(real, boxes)
        fg, fl = self._d_logits(completed.detach(), boxes)
        loss_d = (F.relu(1 - rg).mean() + F.relu(1 + fg).mean()) + cfg.lambda_local * (
            F.relu(1 - rl).mean() + F.relu(1 + fl).mean()
        )
        optimizer_step(self.opt_D, loss_d)
        with frozen(self.D):  # G step: reconstruction of both stages + fooling both views of the completed face
            fg, fl = self._d_logits(completed, boxes)
            adv = -fg.mean() - cfg.lambda_local * fl.mean()
            l1 = sum(masked_l1(out, real, mask, cfg.hole_weight) for out in (coarse, final))
            hole_l1 = ((final - real).abs() * mask).sum() / (mask.sum() * 3).clamp_min(1)
            loss_g = cfg.lambda_l1 * l1 + cfg.lambda_adv * adv
            self.generator_update(loss_g, step)
        return {
            "loss_g": float(loss_g.detach()),
            "loss_l1": float(l1.detach()),
            "loss_hole_l1": float(hole_l1.detach()),
            "loss_adv": float(adv.detach()),
            "loss_d": float(loss_d.detach()),
            "mask_fraction": float(mask.mean()),
        }

    def _sample_masks(self, n: int, generator: torch.Generator, kwargs: dict[str, Any]) -> tuple[torch.Tensor, list]:
        given = kwargs.get("masks")
        if given is not None:
            m = torch.as_tensor(given).float()
            if m.shape != (n, 1, self.cfg.res, self.cfg.res):
                raise UsageError(f"inpaint: masks must have shape ({n}, 1, {self.cfg.res}, {self.cfg.res})")
            return (m > 0.5).float(), ["given"] * n
        region = normalize_kind(str(kwargs.get("region") or "random"))
        framing = kwargs.get("framing") or self.cfg.framing
        if region not in MASK_KINDS:
            raise UsageError(f"inpaint: unknown region {region!r} (choose one of {', '.join(MASK_KINDS)})")
        names = pick_regions(n, generator, self.train_regions) if region == "random" else [region] * n
        masks = torch.zeros(n, 1, self.cfg.res, self.cfg.res)
        jitter = float(kwargs.get("mask_jitter") or 0.0)
        for name in dict.fromkeys(names):
            idx = torch.tensor([i for i, r in enumerate(names) if r == name])
            masks[idx] = make_masks(name, len(idx), self.cfg.res, generator, jitter=jitter, framing=framing)
        return masks, names

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, **kwargs: Any) -> Samples:
        x = check_inputs(self, kwargs.get("inputs"), self.cfg.res).to(self.device)
        masks, names = self._sample_masks(len(x), generator, kwargs)
        masks = masks.to(self.device)
        framing = "given" if kwargs.get("masks") is not None else kwargs.get("framing") or self.cfg.framing
        _, final = self.G_ema(x, masks)
        images = composite(x, final.clamp(-1, 1).float(), masks)
        meta = [
            {"region": r, "framing": framing, "mask_fraction": round(float(m.mean()), 5)} for r, m in zip(names, masks)
        ]
        return Samples(images=images, meta=meta, masks=masks)
