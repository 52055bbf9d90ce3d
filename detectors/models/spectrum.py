"""``spectrum``: hand-crafted frequency features + a logistic-regression classifier (a fast CPU baseline).

Features (all on the luminance of the normalised input, so they are scale-free per image):
- the azimuthally averaged log power spectrum in ``n_radial`` bins (Durall et al. 2020: GAN upsampling leaves
  excess or missing high-frequency energy, and periodic peaks);
- statistics of 8x8 block-DCT coefficients: log mean |coefficient| per frequency (64 values), the JPEG-style view
  of the same traces (Frank et al. 2020).

:class:`SpectrumClassifier` follows the scikit-learn contract (``fit`` returns self, learned attributes end in
``_``); the detector copies its parameters into buffers so the model file is plain safetensors. The public
:func:`azimuthal_spectrum` is also what ``scan``'s frequency evidence can show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from detectors.base import ArrayData, Detector, DetectorConfig
from detectors.registry import register_detector


def _luma(x: torch.Tensor) -> torch.Tensor:
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


def azimuthal_spectrum(x: torch.Tensor, n_bins: int = 32) -> torch.Tensor:
    """``(N, n_bins)`` mean log power per radial frequency band (0 = DC ... last = Nyquist corner)."""
    g = _luma(x)
    g = g - g.mean(dim=(1, 2), keepdim=True)
    h, w = g.shape[-2:]
    win = torch.outer(
        torch.hann_window(h, periodic=False, device=x.device), torch.hann_window(w, periodic=False, device=x.device)
    )
    power = torch.fft.fftshift(torch.fft.fft2(g * win).abs().pow(2), dim=(-2, -1))
    logp = torch.log1p(power)
    yy, xx = torch.meshgrid(
        torch.arange(h, device=x.device) - h // 2, torch.arange(w, device=x.device) - w // 2, indexing="ij"
    )
    r = torch.sqrt(yy.float() ** 2 + xx.float() ** 2)
    idx = torch.clamp((r / r.max() * n_bins).long(), max=n_bins - 1).flatten()
    sums = torch.zeros(g.shape[0], n_bins, device=x.device).index_add_(1, idx, logp.flatten(1))
    counts = torch.bincount(idx, minlength=n_bins).clamp_min(1).float()
    return sums / counts


def _dct_matrix(n: int = 8) -> torch.Tensor:
    k = torch.arange(n).float()
    m = torch.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


def dct_statistics(x: torch.Tensor, block: int = 8) -> torch.Tensor:
    """``(N, block*block)`` log mean |DCT coefficient| of each frequency over all full 8x8 blocks."""
    g = _luma(x)
    n, h, w = g.shape
    h8, w8 = h - h % block, w - w % block
    blocks = g[:, :h8, :w8].reshape(n, h8 // block, block, w8 // block, block).permute(0, 1, 3, 2, 4)
    d = _dct_matrix(block).to(x.device)
    coef = d @ blocks @ d.T
    return torch.log(coef.abs().mean(dim=(1, 2)).flatten(1) + 1e-4)


def spectrum_features(x: torch.Tensor, n_radial: int = 32) -> torch.Tensor:
    return torch.cat([azimuthal_spectrum(x, n_radial), dct_statistics(x)], dim=1)


class SpectrumClassifier:
    """Standardise features, then L2 logistic regression (scikit-learn estimator contract)."""

    def __init__(self, C: float = 1.0, max_iter: int = 2000) -> None:
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: np.ndarray) -> SpectrumClassifier:
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0) + 1e-6
        lr = LogisticRegression(C=self.C, max_iter=self.max_iter).fit((X - self.mean_) / self.scale_, y)
        self.coef_ = lr.coef_[0]
        self.intercept_ = float(lr.intercept_[0])
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X) - self.mean_) / self.scale_) @ self.coef_ + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.stack([1 - p, p], axis=1)


@dataclass
class SpectrumConfig(DetectorConfig):
    n_radial: int = 32
    C: float = 1.0


@register_detector(
    "spectrum",
    description="Azimuthal power spectrum + DCT statistics + logistic regression (CPU).",
    tags=("artifact", "classical", "image"),
)
class SpectrumDetector(Detector):
    """No gradient training: ``post_fit`` fits :class:`SpectrumClassifier` on the (augmented) training features."""

    Config = SpectrumConfig

    def __init__(self, cfg: SpectrumConfig) -> None:
        super().__init__(cfg)
        d = cfg.n_radial + 64
        self.register_buffer("feat_mean", torch.zeros(d))
        self.register_buffer("feat_scale", torch.ones(d))
        self.register_buffer("coef", torch.zeros(d))
        self.register_buffer("intercept", torch.zeros(1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return (spectrum_features(x, self.cfg.n_radial) - self.feat_mean) / self.feat_scale

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x) @ self.coef + self.intercept

    def post_fit(self, train: ArrayData, val: ArrayData) -> None:
        with torch.no_grad():
            feats = torch.cat([spectrum_features(c, self.cfg.n_radial) for c in train.x.split(256)]).double().numpy()
        clf = SpectrumClassifier(C=self.cfg.C).fit(feats, train.y.numpy())
        self.feat_mean.copy_(torch.from_numpy(clf.mean_).float())
        self.feat_scale.copy_(torch.from_numpy(clf.scale_).float())
        self.coef.copy_(torch.from_numpy(clf.coef_).float())
        self.intercept.fill_(clf.intercept_)
