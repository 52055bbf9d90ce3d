"""The interface every detector implements, and the preprocessing a model file carries with it.

A detector is an ``nn.Module`` that maps a normalised face batch ``(N, 3, S, S)`` to one logit per face
(``forward``); ``predict_proba`` is the *uncalibrated* sigmoid (calibration lives in the model file, see
:mod:`detectors.calibration`); ``explain`` returns a heatmap per face. Training hooks:

- ``loss(x, y)``: the training objective for one batch (default: BCE on the logit). Detectors that make their own
  positives (``blend``) or need extra heads (``gan-disc`` K+1, ``video``) override it.
- ``post_fit(train, val)``: closed-form / scikit-learn fitting after (or instead of) gradient training
  (``spectrum``'s classifier, ``ensemble``'s stacker).
- ``initialise(**sources)``: load external weights (timm ``--weights``, ``--init-from-gan``). Constructors never
  read files, so a model file rebuilds the exact architecture from its config alone.

Why the preprocessing lives here: like torchvision's ``Weights``, a detector is useless without its input size,
normalisation and crop policy; :class:`PreprocessSpec` is stored in ``model.json`` and used verbatim by ``scan``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from forensics_core.errors import UsageError
from forensics_core.faces.crops import CropSpec


@dataclass(frozen=True)
class PreprocessSpec(CropSpec):
    """How a face must be cropped (the :class:`~forensics_core.faces.crops.CropSpec` fields, validated there) and
    normalised (``mean``, ``std``) before ``forward``.

    ``crop``: ``align`` = 5-point similarity alignment (``forensics_core.faces.align_face(..., size, margin)``);
    ``center`` = centre crop of the face box; ``native`` = the alignment's region cut upright at whole pixels and
    never enlarged (``forensics_core.faces.native_crop``: no warp smooths the pixel-grid traces). ``margin`` is the
    fraction of context added around the face; ``edge`` (``native`` crops): ``clamp`` (model files before v15, where
    the key is absent) or ``reflect`` where the window reaches past the photo's edge.
    """

    size: int = 64
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        super().__post_init__()
        # model.json stores lists: float tuples, set as a frozen dataclass sets its fields
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict[str, Any]:
        """The ``preprocess`` entry of ``model.json``, in the key order model files have always had."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return {k: d[k] for k in ("size", "mean", "std", "crop", "margin", "edge")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_tensor(self, faces: list[np.ndarray] | np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """uint8 RGB faces (any size) -> normalised float tensor ``(N, 3, size, size)``.

        Faces not already at ``size`` are resized with area interpolation (the same as training), but callers
        should crop at ``size`` directly: resampling weakens the upsampling traces artifact detectors look for.
        """
        from forensics_core.degrade import resize_to

        arr = (
            np.stack([resize_to(np.asarray(f), self.size) for f in faces])
            if len(faces)
            else np.zeros((0, self.size, self.size, 3), np.uint8)
        )
        return self.normalise(torch.from_numpy(arr).to(device))

    def normalise(self, batch_uint8_nhwc: torch.Tensor) -> torch.Tensor:
        # contiguous NCHW, not the channels-last view the permute gives: oneDNN's AVX-512 1x1 strided convolution
        # (weight gradient) segfaults on channels-last inputs on Zen 4 CPUs (torch 2.14.1), and NCHW is no slower here
        x = batch_uint8_nhwc.permute(0, 3, 1, 2).contiguous().float().div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


#: the test-time view sets ``DetectorConfig.tta`` names
TTA = ("none", "flip")


@dataclass
class DetectorConfig:
    """Options every detector has; subclasses add their own fields (all JSON-serialisable)."""

    res: int = 64
    crop: str = "align"
    margin: float = 0.3
    #: ``native`` crops: ``clamp`` or ``reflect`` where the window reaches past the photo's edge (see
    #: ``forensics_core.faces.native_crop``; ``reflect`` makes the verdict independent of how tightly a photo is framed)
    edge: str = "clamp"
    seed: int = 0
    #: test-time views averaged at inference (never in training): ``none``, or ``flip`` (the crop and its mirror
    #: image, logits averaged). Why: a face and its mirror image are the same evidence, yet a small CNN scores
    #: them a little differently; averaging the two halves that noise at twice the model cost (the face
    #: detector, not the model, dominates a scan). Mirroring keeps NPR's 2x2 grid on an even-sized crop
    tta: str = "none"

    def input_fields(self) -> dict[str, Any]:
        """The fields a wrapper (``ensemble``, ``video``) gives the detectors it builds: they must see the crops
        the wrapper's model file describes, and start from its seed."""
        return {"res": self.res, "crop": self.crop, "margin": self.margin, "edge": self.edge, "seed": self.seed}


@dataclass
class ArrayData:
    """A batch of already-preprocessed inputs for ``post_fit``: ``x`` (N,3,S,S) float, ``y`` (N,) 0/1."""

    x: torch.Tensor
    y: torch.Tensor


class Detector(nn.Module):
    """Base class: subclasses set ``Config``, build their layers in ``__init__`` and implement ``logits``."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[DetectorConfig]] = DetectorConfig
    #: mean/std used for normalisation; ImageNet-style backbones override
    mean: ClassVar[tuple[float, float, float]] = (0.5, 0.5, 0.5)
    std: ClassVar[tuple[float, float, float]] = (0.5, 0.5, 0.5)
    #: False for detectors that make their own positives (``blend``): training data may be reals only
    needs_fakes: ClassVar[bool] = True

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        if cfg.tta not in TTA:
            raise UsageError(f"{self.name}: tta must be one of {', '.join(TTA)}, got '{cfg.tta}'")
        self.cfg = cfg
        torch.manual_seed(cfg.seed)

    # -- interface ----------------------------------------------------------------------------------------
    @property
    def preprocess(self) -> PreprocessSpec:
        c = self.cfg
        return PreprocessSpec(size=c.res, mean=self.mean, std=self.std, crop=c.crop, margin=c.margin, edge=c.edge)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` normalised -> ``(N,)`` logit of P(fake); in eval mode averaged over ``cfg.tta``'s views."""
        if self.training or self.cfg.tta == "none":
            return self.logits(x)
        return 0.5 * (self.logits(x) + self.logits(x.flip(-1)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` penultimate features (used by ``video``'s temporal model); optional."""
        raise UsageError(f"detector '{self.name}' has no embedding")

    def validation_views(self, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The validation crops (uint8 ``(N, S, S, 3)``) and labels early stopping and calibration use. As given,
        except for detectors that make their own positives (``blend``): their val AUC must measure *that* task."""
        return x, y

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> np.ndarray:
        """Uncalibrated sigmoid of the logit; :class:`detectors.modelfile.Model` applies calibration."""
        self.eval()
        return torch.sigmoid(self(x).float()).cpu().numpy()

    def cam_layer(self) -> nn.Module | None:
        """The conv layer Grad-CAM reads (None -> input-gradient saliency)."""
        return None

    def explain(self, x: torch.Tensor) -> np.ndarray:
        """``(N, S, S)`` heatmaps in [0, 1] aligned to the input (Grad-CAM, or saliency without a conv layer)."""
        from detectors.explain import gradcam, saliency

        layer = self.cam_layer()
        return gradcam(self, x, layer) if layer is not None else saliency(self, x)

    # -- training hooks -----------------------------------------------------------------------------------
    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        z = self(x)
        loss = F.binary_cross_entropy_with_logits(z.float(), y.float())
        return loss, {"bce": float(loss.detach())}

    @property
    def gradient_trained(self) -> bool:
        """False for detectors fitted only in ``post_fit`` (the trainer then skips the SGD loop)."""
        return any(p.requires_grad for p in self.parameters())

    def post_fit(self, train: ArrayData, val: ArrayData) -> None:  # noqa: B027 - optional hook
        """Closed-form fitting after gradient training; default: nothing."""

    def initialise(self, **sources: Any) -> None:
        """Load external weights named in ``sources`` (e.g. ``weights=...``, ``init_from_gan=...``)."""
        unused = {k: v for k, v in sources.items() if v}
        if unused:
            opts = ", ".join("--" + k.replace("_", "-") for k in unused)
            raise UsageError(f"detector '{self.name}' does not take {opts}")

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.cfg)


class LinearHeadDetector(Detector):
    """A detector whose logit is one linear layer on its :meth:`embed` features: subclasses build their feature
    layers, then :meth:`add_head`, and implement ``embed``.

    Why a base: ``embed`` is also what ``video``'s temporal model reads; a logit computed from it, in one place,
    keeps the two from drifting apart.
    """

    def add_head(self, n_features: int, dropout: float = 0.0) -> None:
        """``drop`` (training only) and ``head`` on ``n_features`` embedding dimensions. Call it after the feature
        layers: the seeded generator draws their initial weights first."""
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(n_features, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.embed(x)))[:, 0]


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs + projection shortcut when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = conv_bn(cin, cout, stride)
        self.c2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.c2(self.c1(x)) + self.short(x))


class CompactCNN(nn.Module):
    """A small ResNet-style trunk (about 0.3-1 M parameters) that keeps full resolution in its first layer.

    Artifact detectors must not downsample before looking: upsampling traces live at 1-2 px. ``widths`` gives the
    channels of each stage; every stage after the stem halves the resolution.
    """

    def __init__(self, cin: int = 3, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.stem = conv_bn(cin, widths[0], 1)
        stages = []
        prev = widths[0]
        for w in widths[1:]:
            stages.append(BasicBlock(prev, w, 2))
            prev = w
        self.stages = nn.Sequential(*stages)
        self.out_dim = prev

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_map(x).mean(dim=(2, 3))


class CompactCNNDetector(LinearHeadDetector):
    """A :class:`CompactCNN` trunk (``cfg.widths``) on ``in_channels`` input planes and a linear head after
    ``cfg.dropout``: ``blend`` on the crop itself, ``npr`` on its residual maps."""

    def __init__(self, cfg: Any, in_channels: int) -> None:
        super().__init__(cfg)
        self.trunk = CompactCNN(in_channels, tuple(cfg.widths))
        self.add_head(self.trunk.out_dim, cfg.dropout)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def cam_layer(self) -> nn.Module:
        return self.trunk.stages[-1]
