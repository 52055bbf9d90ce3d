"""``gan-disc``: a detector initialised from a GAN-suite discriminator, fine-tuned for real vs fake.

A discriminator has already learnt what its generator gets wrong; reusing it (``--init-from-gan RUN_OR_NAME``,
through ``generators.checkpoints.load_run(...).discriminator()``) is the design card's "detectors reuse the trained
discriminators". The architecture comes from the GAN family (``family`` + ``family_cfg``), so a model file rebuilds
it without the GAN run; ``family="builtin"`` is a DCGAN-shaped discriminator for when no GAN suite is installed.

Semi-supervised mode (``mode="kplus1"``, Salimans et al. 2016, "Improved techniques for training GANs"): the head
has K+1 = 3 outputs ``[real, fake, generated]``. Labelled items train ``real``/``fake`` with cross-entropy;
unlabelled items (label -1) only have to avoid the ``generated`` class, which is fed by samples from the source
GAN's generator when one is available (``set_generator``) or by the NPR-style nearest-upsampled copies of the
unlabelled images otherwise; an entropy term makes the real/fake split confident on unlabelled data. So a few
labelled images plus many unlabelled ones train the detector. P(fake) = 1 - P(real).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detectors.base import Detector, DetectorConfig
from detectors.registry import register_detector
from forensics_core.errors import UsageError

MODES = ("binary", "kplus1")


@dataclass
class GanDiscConfig(DetectorConfig):
    family: str = "builtin"
    family_cfg: dict[str, Any] = field(default_factory=dict)
    mode: str = "binary"
    unlabelled_weight: float = 0.5


def builtin_discriminator(res: int, width: int = 32) -> nn.Sequential:
    """DCGAN discriminator: stride-2 4x4 convs with LeakyReLU down to 4x4, then a 4x4 conv to one logit."""
    layers: list[nn.Module] = []
    c, r = 3, res
    w = width
    while r > 4:
        layers += [nn.Conv2d(c, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        c, w, r = w, min(w * 2, 256), r // 2
    layers += [nn.Conv2d(c, 1, r, 1, 0)]
    return nn.Sequential(*layers)


def _retarget_head(disc: nn.Module, n_out: int) -> nn.Module:
    """Replace the discriminator's last Linear/Conv2d by one with ``n_out`` outputs and drop a final Sigmoid.

    Generic surgery, so any family's ``discriminator()`` works. For one output the old weights are kept.
    """
    disc = copy.deepcopy(disc)
    named = [(n, m) for n, m in disc.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Sigmoid))]
    while named and isinstance(named[-1][1], nn.Sigmoid):
        _set(disc, named.pop()[0], nn.Identity())
    if not named:
        raise UsageError("gan-disc: the discriminator has no Linear or Conv2d layer to use as a head")
    name, last = named[-1]
    if isinstance(last, nn.Linear):
        new: nn.Module = nn.Linear(last.in_features, n_out, bias=True)
    else:
        new = nn.Conv2d(last.in_channels, n_out, last.kernel_size, last.stride, last.padding, bias=True)
    if n_out == getattr(last, "out_features", getattr(last, "out_channels", None)):
        new.load_state_dict(last.state_dict(), strict=False)
    _set(disc, name, new)
    return disc


def _set(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _family_discriminator(family: str, family_cfg: dict[str, Any], res: int) -> nn.Module:
    if family == "builtin":
        return builtin_discriminator(res)
    from generators.registry import get_generator

    cls = get_generator(family)
    cfg = cls.Config(**{"res": res, **family_cfg})
    disc = cls(cfg).discriminator()
    if disc is None:
        raise UsageError(f"gan-disc: generator family '{family}' has no discriminator")
    return disc


@register_detector(
    "gan-disc",
    description="Fine-tuned GAN-suite discriminator (--init-from-gan), K+1 semi-supervised.",
    tags=("discriminator", "image"),
)
class GanDiscDetector(Detector):
    Config = GanDiscConfig

    def __init__(self, cfg: GanDiscConfig) -> None:
        super().__init__(cfg)
        if cfg.mode not in MODES:
            raise UsageError(f"gan-disc: mode must be one of {MODES}, got '{cfg.mode}'")
        self._set_disc(_family_discriminator(cfg.family, cfg.family_cfg, cfg.res))
        self._generator: Any = None

    def _set_disc(self, disc: nn.Module) -> None:
        self.disc = _retarget_head(disc, 1 if self.cfg.mode == "binary" else 3)

    def head_outputs(self, x: torch.Tensor) -> torch.Tensor:
        out = self.disc(x)
        if out.dim() > 2:  # patch discriminators: average the map
            out = out.flatten(2).mean(dim=2)
        return out.reshape(x.shape[0], -1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head_outputs(x)
        if self.cfg.mode == "binary":
            return out[:, 0]
        logp = F.log_softmax(out.float(), dim=1)
        return torch.logsumexp(logp[:, 1:], dim=1) - logp[:, 0]  # log P(not real) - log P(real)

    def cam_layer(self) -> nn.Module | None:
        convs = [m for m in self.disc.modules() if isinstance(m, nn.Conv2d)]
        return convs[-2] if len(convs) >= 2 else None

    def initialise(self, init_from_gan: str | None = None, **sources: Any) -> None:
        """Take the architecture and weights of a trained GAN run's discriminator."""
        super().initialise(**sources)
        if not init_from_gan:
            return
        from generators.checkpoints import load_run

        fam = load_run(init_from_gan)
        disc = fam.discriminator()
        if disc is None:
            raise UsageError(f"--init-from-gan {init_from_gan}: family '{fam.name}' has no discriminator")
        import dataclasses

        self.cfg.family = fam.name
        self.cfg.family_cfg = {k: v for k, v in dataclasses.asdict(fam.cfg).items() if k != "res"}
        self.cfg.res = fam.cfg.res
        self._set_disc(disc.cpu())
        self._generator = fam

    def set_generator(self, family: Any) -> None:
        """Use ``family.sample`` as the source of the K+1 'generated' class."""
        self._generator = family

    def _generated(self, like: torch.Tensor) -> torch.Tensor:
        n = like.shape[0]
        if self._generator is not None:
            g = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,))))
            with torch.no_grad():
                imgs = self._generator.sample(n, g).images.to(like.device, like.dtype)
            if imgs.shape[-1] != like.shape[-1]:
                imgs = F.interpolate(imgs, size=like.shape[-2:], mode="bilinear", align_corners=False)
            return imgs  # generator output is in [-1, 1], the same as our default normalisation
        small = F.interpolate(like, scale_factor=0.5, mode="bilinear", align_corners=False)
        return F.interpolate(small, size=like.shape[-2:], mode="nearest")

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        if self.cfg.mode == "binary":
            return super().loss(x, y)
        lab = y >= 0
        out = self.head_outputs(x).float()
        total = torch.zeros((), device=x.device)
        logs: dict[str, float] = {}
        if lab.any():
            sup = F.cross_entropy(out[lab], y[lab].long())
            total = total + sup
            logs["sup"] = float(sup.detach())
        unl = ~lab
        if unl.any():
            p = F.softmax(out[unl], dim=1)
            not_gen = -torch.log((p[:, 0] + p[:, 1]).clamp_min(1e-6)).mean()
            q = p[:, :2] / (p[:, :2].sum(dim=1, keepdim=True) + 1e-6)
            entropy = -(q * torch.log(q + 1e-6)).sum(dim=1).mean()
            gen_out = self.head_outputs(self._generated(x[unl])).float()
            is_gen = F.cross_entropy(gen_out, torch.full((gen_out.shape[0],), 2, device=x.device))
            unsup = not_gen + is_gen + 0.1 * entropy
            total = total + self.cfg.unlabelled_weight * unsup
            logs["unsup"] = float(unsup.detach())
        return total, logs
