"""``ensemble``: calibrated fusion of member detectors by logistic stacking.

Members (``members``, any registered image detectors) are trained together on the same batches (gradient members)
or fitted in ``post_fit`` (closed-form members such as ``spectrum``). The stacker is a logistic regression on the
members' logits fitted on the *validation* split, never on training data the members have memorised:
``logit = sum_i w_i z_i + b``. Each ``w_i`` is a per-member temperature and weight at once, so the fused output is
already calibrated as a whole; :class:`StackingEnsemble` keeps the scikit-learn estimator contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from detectors.base import ArrayData, Detector, DetectorConfig
from detectors.registry import build_detector, register_detector
from forensics_core.errors import UsageError


class StackingEnsemble:
    """Logistic regression on member logits (scikit-learn contract: ``fit`` returns self, attributes end in ``_``)."""

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    def fit(self, Z: np.ndarray, y: np.ndarray) -> StackingEnsemble:
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=self.C, max_iter=1000).fit(np.asarray(Z, dtype=np.float64), y)
        self.coef_ = lr.coef_[0]
        self.intercept_ = float(lr.intercept_[0])
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(Z, dtype=np.float64) @ self.coef_ + self.intercept_

    def predict_proba(self, Z: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(Z)))
        return np.stack([1 - p, p], axis=1)


@dataclass
class EnsembleConfig(DetectorConfig):
    members: tuple[str, ...] = ("npr", "spectrum")
    C: float = 1.0
    #: per-member config overrides (e.g. npr's ``widths`` / ``residual``), in ``members`` order; empty: defaults
    member_cfgs: tuple[dict, ...] = ()
    #: ``stack``: logistic regression on member logits, fitted on val. ``max``: each member's logit standardised
    #: by its *validation reals* (mean / std), then the maximum. Why ``max``: members that look for different
    #: manipulations (GAN artifacts, blending boundaries) are not both present in the validation fakes, and a
    #: stacker fitted there learns to mute the one whose fakes are absent; ``max`` keeps each member's own alarm
    #: while the shared real reference keeps their false-alarm rates comparable
    fusion: str = "stack"


FUSIONS = ("stack", "max")


def _renormalisation(
    mean: tuple[float, ...], std: tuple[float, ...], to_mean: tuple[float, ...], to_std: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(gain, shift)`` with ``(p - to_mean) / to_std == ((p - mean) / std) * gain + shift`` for every pixel."""
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    tm, ts = torch.tensor(to_mean).view(1, 3, 1, 1), torch.tensor(to_std).view(1, 3, 1, 1)
    return s / ts, (m - tm) / ts


@register_detector(
    "ensemble", description="Logistic stacking of member detectors' logits (fitted on val).", tags=("fusion", "image")
)
class EnsembleDetector(Detector):
    Config = EnsembleConfig

    def __init__(self, cfg: EnsembleConfig) -> None:
        super().__init__(cfg)
        if not cfg.members or "ensemble" in cfg.members or "video" in cfg.members:
            raise UsageError("ensemble: members must be one or more image detectors (not ensemble or video)")
        if cfg.fusion not in FUSIONS:
            raise UsageError(f"ensemble: fusion must be one of {', '.join(FUSIONS)}, got '{cfg.fusion}'")
        if cfg.member_cfgs and len(cfg.member_cfgs) != len(cfg.members):
            raise UsageError("ensemble: member_cfgs needs one entry per member")
        from detectors.modelfile import config_from_json

        common = cfg.input_fields()
        overrides = [config_from_json(dict(c)) for c in cfg.member_cfgs] or [{} for _ in cfg.members]
        self.members = nn.ModuleList([build_detector(m, **{**o, **common}) for m, o in zip(cfg.members, overrides)])
        # the ensemble's input is normalised as its first member expects; each other member gets its own
        # normalisation back by an affine map (x * gain + shift), so an ImageNet-normalised backbone and a
        # [-1, 1] residual model share one crop. Not persistent: the map follows from the members' configs
        self.mean, self.std = self.members[0].mean, self.members[0].std
        for k, m in enumerate(self.members):
            gain, shift = _renormalisation(self.mean, self.std, m.mean, m.std)
            self.register_buffer(f"gain_{k}", gain, persistent=False)
            self.register_buffer(f"shift_{k}", shift, persistent=False)
        k = len(cfg.members)
        self.register_buffer("stack_coef", torch.full((k,), 1.0 / k))
        self.register_buffer("stack_intercept", torch.zeros(1))
        if cfg.fusion == "max":  # only then: a ``stack`` model file keeps exactly its tensors
            self.register_buffer("real_mean", torch.zeros(k))
            self.register_buffer("real_std", torch.ones(k))

    def member_input(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """``x`` (normalised as the ensemble's input) normalised as member ``k`` was trained."""
        if k == 0:
            return x
        return x * getattr(self, f"gain_{k}") + getattr(self, f"shift_{k}")

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(self.member_input(k, x)).float() for k, m in enumerate(self.members)], dim=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        z = self.member_logits(x)
        if self.cfg.fusion == "max":
            return ((z - self.real_mean) / self.real_std).max(dim=1).values
        return z @ self.stack_coef + self.stack_intercept

    def explain(self, x: torch.Tensor) -> np.ndarray:
        """Each face's map from the member that carried its fused logit: the loudest standardised member under
        ``max``, the largest weighted contribution under ``stack``. Why not gradients through the fusion: a
        member without gradients (``surround``'s trees) would then explain nothing even when its alarm decided."""
        with torch.no_grad():
            z = self.member_logits(x)
            lead = ((z - self.real_mean) / self.real_std) if self.cfg.fusion == "max" else z * self.stack_coef
            winner = lead.argmax(dim=1).cpu().numpy()
        out = np.zeros((x.shape[0], *x.shape[-2:]), np.float32)
        for k, member in enumerate(self.members):
            idx = np.flatnonzero(winner == k)
            if idx.size:
                out[idx] = member.explain(self.member_input(k, x[torch.from_numpy(idx)]))
        return out

    def fit_real_reference(self, z_real: np.ndarray) -> None:
        """``max`` fusion: each member's logits on validation reals ``(N, k)`` set its mean / std."""
        z = np.asarray(z_real, dtype=np.float64)
        self.real_mean.copy_(torch.from_numpy(z.mean(0)).float())
        self.real_std.copy_(torch.from_numpy(np.maximum(z.std(0), 1e-6)).float())

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        total = torch.zeros((), device=x.device)
        logs: dict[str, float] = {}
        for k, (name, m) in enumerate(zip(self.cfg.members, self.members)):
            if m.gradient_trained:
                l_m, _ = m.loss(self.member_input(k, x), y)
                total = total + l_m
                logs[f"{name}_loss"] = float(l_m.detach())
        return total, logs

    @property
    def gradient_trained(self) -> bool:
        return any(m.gradient_trained for m in self.members)

    def post_fit(self, train: ArrayData, val: ArrayData) -> None:
        for k, m in enumerate(self.members):
            m.post_fit(ArrayData(self.member_input(k, train.x), train.y), ArrayData(self.member_input(k, val.x), val.y))
        self.eval()
        with torch.no_grad():
            z = torch.cat([self.member_logits(c) for c in val.x.split(256)]).double().numpy()
        if self.cfg.fusion == "max":
            self.fit_real_reference(z[val.y.numpy() == 0])
            return
        st = StackingEnsemble(C=self.cfg.C).fit(z, val.y.numpy())
        self.stack_coef.copy_(torch.from_numpy(st.coef_).float())
        self.stack_intercept.fill_(st.intercept_)
