"""``cyclegan``: unpaired translation of real faces between two attribute domains (default male <-> female).

Ideas from Zhu et al., "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks" (2017):
- two ResNet generators G_ab, G_ba (7x7 stem, stride-2 downsampling, residual blocks at the bottleneck,
  **transposed conv k3 s2** upsampling, instance norm) and two PatchGAN discriminators that score overlapping
  patches. The paper's 70x70 patch on 256 px faces is scaled to the face size: ``d_layers`` stride-2 layers give a
  16 px (1 layer), 34 px (2) or 70 px (3) receptive field;
- least-squares GAN loss, cycle consistency ||G_ba(G_ab(a)) - a||_1 and the identity loss ||G_ab(b) - b||_1 that
  keeps colours and identity stable.

Domains come from the attribute labels (``Batch.cond``): ``attribute`` names the attribute and ``domain_a`` /
``domain_b`` are comma-separated value lists (e.g. ``attribute="age"``, ``domain_a="10-19,20-29"``,
``domain_b="50-59,60+"``). Each training batch is split by domain; faces in neither domain or with an unknown
label are ignored, and a batch missing one domain is skipped (``skipped = 1`` in metrics) rather than training one
direction on a lopsided batch. A ``Batch.image_b`` (an explicit unpaired second domain) is used as domain b as is.

The output is a *partially manipulated real face*: the whole image passes through G, so ``Samples.masks`` is all
ones, and the trace is the convT-k3s2 upsampler's uneven-overlap pattern on top of a real photo's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from forensics_core.errors import UsageError
from generators.base import ATTRIBUTES, Batch, GenConfig, GeneratorFamily, Samples
from generators.families.cgan import LabelStarvation, check_resolution, need_labels
from generators.layers import GanState, flag_on_any_rank, frozen, optimizer_step
from generators.registry import register_generator


def check_inputs(family: GeneratorFamily, inputs: Any, res: int | tuple[int, ...]) -> torch.Tensor:
    """Validate the real faces an editor is given: a float tensor (N, 3, H, W) in [-1, 1] with H = W in ``res``.

    Resizing is the sampler's job (it knows the source files); an editor that silently resized would change the
    real pixels it promises to keep.
    """
    sizes = (res,) if isinstance(res, int) else res
    if inputs is None:
        raise UsageError(f"{family.name} edits real faces: pass inputs (N, 3, H, W) in [-1, 1] (CLI: --input DIR)")
    x = torch.as_tensor(inputs)
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3] or x.shape[2] not in sizes:
        raise UsageError(f"{family.name}: inputs must have shape (N, 3, H, H) with H in {sizes}, got {tuple(x.shape)}")
    if not x.is_floating_point() or x.numel() and (x.min() < -1.0001 or x.max() > 1.0001):
        raise UsageError(f"{family.name}: inputs must be float images in [-1, 1]")
    return x.float().clamp(-1, 1)


def parse_domain(attribute: str, spec: str) -> list[int]:
    """'10-19,20-29' -> value indices of ``attribute``; one-line error on unknown values."""
    values = ATTRIBUTES[attribute]
    out = []
    for v in (s.strip() for s in spec.split(",")):
        if v not in values:
            raise UsageError(f"cyclegan: unknown {attribute} value {v!r} in a domain (choose from {', '.join(values)})")
        out.append(values.index(v))
    return out


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3),
            nn.InstanceNorm2d(ch, affine=True),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3),
            nn.InstanceNorm2d(ch, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def resnet_generator(ngf: int, n_down: int, n_res: int) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(3, ngf, 7),
        nn.InstanceNorm2d(ngf, affine=True),
        nn.ReLU(True),
    ]
    ch = ngf
    for _ in range(n_down):
        layers += [nn.Conv2d(ch, ch * 2, 3, 2, 1), nn.InstanceNorm2d(ch * 2, affine=True), nn.ReLU(True)]
        ch *= 2
    layers += [ResBlock(ch) for _ in range(n_res)]
    for _ in range(n_down):
        layers += [
            nn.ConvTranspose2d(ch, ch // 2, 3, 2, 1, output_padding=1),  # the convT-k3s2 upsampler
            nn.InstanceNorm2d(ch // 2, affine=True),
            nn.ReLU(True),
        ]
        ch //= 2
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, 3, 7), nn.Tanh()]
    return nn.Sequential(*layers)


def patch_discriminator(ndf: int, n_layers: int) -> nn.Sequential:
    """PatchGAN: k4 convs, ``n_layers`` of stride 2, then two stride-1 layers; outputs a map of patch logits."""
    layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    ch = ndf
    for i in range(1, n_layers + 1):
        nxt = ndf * min(2**i, 8)
        stride = 2 if i < n_layers else 1
        layers += [nn.Conv2d(ch, nxt, 4, stride, 1), nn.InstanceNorm2d(nxt, affine=True), nn.LeakyReLU(0.2, True)]
        ch = nxt
    layers += [nn.Conv2d(ch, 1, 4, 1, 1)]
    return nn.Sequential(*layers)


class PairedGenerator(nn.Module):
    """G_ab and G_ba in one checkpointed module; ``forward(x, direction)`` picks one."""

    def __init__(self, ngf: int, n_down: int, n_res: int) -> None:
        super().__init__()
        self.ab = resnet_generator(ngf, n_down, n_res)
        self.ba = resnet_generator(ngf, n_down, n_res)

    def forward(self, x: torch.Tensor, direction: str = "a2b") -> torch.Tensor:
        return DIRECTIONS[direction](self)(x)


#: direction name -> the generator it uses (a registry, so the CLI can list and validate them)
DIRECTIONS = {"a2b": lambda g: g.ab, "b2a": lambda g: g.ba}


class PairedDiscriminator(nn.Module):
    """D_a and D_b; called on an image (a detector reusing it) it returns the mean patch logit of both."""

    def __init__(self, ndf: int, n_layers: int) -> None:
        super().__init__()
        self.a = patch_discriminator(ndf, n_layers)
        self.b = patch_discriminator(ndf, n_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.a(x).mean((1, 2, 3)) + self.b(x).mean((1, 2, 3))) / 2


def lsgan(pred: torch.Tensor, target: float) -> torch.Tensor:
    return F.mse_loss(pred, torch.full_like(pred, target))


@dataclass
class CycleGANConfig(GenConfig):
    attribute: str = "gender"
    domain_a: str = "male"
    domain_b: str = "female"
    ngf: int = 32
    ndf: int = 32
    n_down: int = 2
    n_res: int = 4
    d_layers: int = 2
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5  # relative to lambda_cycle, as in the paper
    beta1: float = 0.5
    beta2: float = 0.999
    ema_decay: float = 0.999
    batch: int = 16
    max_skipped_batches: int = 50  # fail after this many batches in a row missing a domain (0 = never)


@register_generator(
    "cyclegan",
    upsampler="convT-k3s2",
    kind="image2image",
    description="unpaired attribute editor (male<->female, young<->old): ResNet G, PatchGAN D, cycle + identity",
)
class CycleGAN(GanState, GeneratorFamily):
    """Unpaired attribute translation of real faces.

    ``sample(n, generator, inputs=x, direction="a2b")`` translates each input face (``n`` is ignored: one output
    per input) and returns all-ones masks, since every pixel passed through the generator.
    """

    Config = CycleGANConfig
    presets = {
        "16": {"res": 16, "ngf": 16, "ndf": 16, "n_res": 2, "d_layers": 1, "batch": 16},
        "32": {"res": 32, "ngf": 24, "ndf": 32, "n_res": 3, "d_layers": 1, "batch": 16},
        "64": {"res": 64, "ngf": 32, "ndf": 32, "n_res": 4, "d_layers": 2, "batch": 16},
        "128": {"res": 128, "ngf": 32, "ndf": 64, "n_res": 6, "d_layers": 2, "batch": 8},
    }

    def __init__(self, cfg: CycleGANConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(cfg, device)
        check_resolution(self, cfg.res)
        if cfg.attribute not in ATTRIBUTES:
            raise UsageError(f"cyclegan: unknown attribute {cfg.attribute!r} (choose one of {', '.join(ATTRIBUTES)})")
        self.attr_index = list(ATTRIBUTES).index(cfg.attribute)
        self.dom_a, self.dom_b = parse_domain(cfg.attribute, cfg.domain_a), parse_domain(cfg.attribute, cfg.domain_b)
        if set(self.dom_a) & set(self.dom_b):
            raise UsageError(f"cyclegan: domains {cfg.domain_a!r} and {cfg.domain_b!r} overlap")
        if cfg.res >> cfg.n_down < 4:
            raise UsageError(f"cyclegan: n_down={cfg.n_down} is too deep for {cfg.res} px (bottleneck under 4 px)")
        self.init_gan_state(
            PairedGenerator(cfg.ngf, cfg.n_down, cfg.n_res), PairedDiscriminator(cfg.ndf, cfg.d_layers),
            cfg.lr, cfg.lr, (cfg.beta1, cfg.beta2),
        )
        self.starvation = LabelStarvation(self.name, cfg.max_skipped_batches)

    def split_domains(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Images of domain a and domain b from one batch (see the module docstring)."""
        if batch.image_b is not None:
            return batch.image, batch.image_b
        cond = need_labels(self.name, batch.cond)
        if cond.shape[1] <= self.attr_index:
            raise UsageError(
                f"cyclegan: labels have {cond.shape[1]} columns; {self.cfg.attribute} needs column {self.attr_index}"
            )
        labels = cond[:, self.attr_index].to(batch.image.device)
        in_a = torch.isin(labels, torch.tensor(self.dom_a, device=labels.device))
        in_b = torch.isin(labels, torch.tensor(self.dom_b, device=labels.device))
        return batch.image[in_a], batch.image[in_b]

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        cfg = self.cfg
        real_a, real_b = (t.to(self.device) for t in self.split_domains(batch))
        empty = flag_on_any_rank(len(real_a) == 0 or len(real_b) == 0, self.device)  # all ranks skip together
        self.starvation.update(empty, f"no {cfg.attribute} label in domain {cfg.domain_a!r} or {cfg.domain_b!r}")
        if empty:
            return {"skipped": 1.0, "n_a": float(len(real_a)), "n_b": float(len(real_b))}
        G, D = self.G, self.D
        # Generator step: fool both D's, close both cycles, leave the target domain's own faces unchanged.
        with frozen(D):
            fake_b, fake_a = G.ab(real_a), G.ba(real_b)
            adv = lsgan(D.b(fake_b), 1.0) + lsgan(D.a(fake_a), 1.0)
            cycle = F.l1_loss(G.ba(fake_b), real_a) + F.l1_loss(G.ab(fake_a), real_b)
            ident = F.l1_loss(G.ab(real_b), real_b) + F.l1_loss(G.ba(real_a), real_a)
            loss_g = adv + cfg.lambda_cycle * cycle + cfg.lambda_cycle * cfg.lambda_identity * ident
            self.generator_update(loss_g, step)  # the EMA moves now: the D step below leaves G as it is
        # Discriminator step (LSGAN, halved as in the paper so D learns slower than G).
        loss_d_a = 0.5 * (lsgan(D.a(real_a), 1.0) + lsgan(D.a(fake_a.detach()), 0.0))
        loss_d_b = 0.5 * (lsgan(D.b(real_b), 1.0) + lsgan(D.b(fake_b.detach()), 0.0))
        optimizer_step(self.opt_D, loss_d_a + loss_d_b)
        return {
            "skipped": 0.0,
            "loss_g": float(loss_g.detach()),
            "loss_adv": float(adv.detach()),
            "loss_cycle": float(cycle.detach()),
            "loss_identity": float(ident.detach()),
            "loss_d": float((loss_d_a + loss_d_b).detach()),
            "n_a": float(len(real_a)),
            "n_b": float(len(real_b)),
        }

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, **kwargs: Any) -> Samples:
        direction = kwargs.get("direction") or "a2b"
        if direction not in DIRECTIONS:
            raise UsageError(f"cyclegan: unknown direction {direction!r} (choose one of {', '.join(DIRECTIONS)})")
        x = check_inputs(self, kwargs.get("inputs"), self.cfg.res).to(self.device)
        images = self.G_ema(x, direction).clamp(-1, 1).float()
        src, dst = self.cfg.domain_a, self.cfg.domain_b
        if direction == "b2a":
            src, dst = dst, src
        meta = [
            {"direction": direction, "attribute": self.cfg.attribute, "source_domain": src, "target_domain": dst}
            for _ in range(len(images))
        ]
        return Samples(images=images, meta=meta, masks=torch.ones_like(images[:, :1]))
