"""What a training step sees: :class:`TrainingView` turns a cached file into the crop a detector trains on (random
framing, degradation and delivery chains on reals and fakes alike), plus the self-blended fakes (``sbi``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class _AugDataset:
    """Map-style dataset over a schedule of item indices; the chain for position i is seeded by (seed, epoch, i)."""

    def __init__(
        self, cache: Any, order: np.ndarray, view: TrainingView, seed: int, epoch: int,
        p_tight: np.ndarray | None = None,
    ) -> None:
        self.cache, self.order, self.view = cache, order, view
        self.p_tight = p_tight  # per-item tight-cut rates (class-balanced framings) or None
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        j = int(self.order[i])
        rng = np.random.default_rng((self.seed, self.epoch, i))
        item = self.cache.items[j]
        view = self.view(self.cache.image(j), item, rng, None if self.p_tight is None else float(self.p_tight[j]))
        return view, item.y


@dataclass(eq=False)
class TrainingView:
    """What the detector sees of one training item: a real's resolution matched to a drawn fake size (when
    ``fake_sizes``, (sides, probabilities), is given), a framing, a delivery history and the face crop (``source``
    items, see :func:`detectors.data.face_view`), then the random augmentation chain, all alike for both classes.
    One recipe object, so the training loader and the ``post_fit`` sample draw their views the same way."""

    size: int
    aug_cfg: Any
    fake_sizes: tuple[np.ndarray, np.ndarray] | None = None
    margin: float = 0.3
    delivery: Any = None
    crop: str = "align"
    edge: str = "clamp"
    framing: Any = None

    def __call__(
        self, img: np.ndarray, item: Any, rng: np.random.Generator, p_tight: float | None = None
    ) -> np.ndarray:
        from detectors.augment import augment, match_real_resolution
        from detectors.data import face_view

        if self.fake_sizes is not None and item.y == 0:
            side = int(rng.choice(self.fake_sizes[0], p=self.fake_sizes[1]))
            img, item = match_real_resolution(img, item, side, self.crop)
        if item.store == "source":
            img = face_view(img, item, self.size, self.margin, rng, self.delivery, crop=self.crop, edge=self.edge,
                            framing=self.framing, p_tight=p_tight)
        return augment(img, self.size, rng, self.aug_cfg)


def add_self_blends(x: Any, y: Any, share: float, margin: float, rng: np.random.Generator) -> tuple[Any, Any]:
    """The batch plus self-blends of ``share`` of its reals as extra positives (labels 1)."""
    import torch

    from detectors.models.blend import self_blend

    reals = x[y == 0]
    k = int(round(share * reals.shape[0]))
    if k == 0:
        return x, y
    blends = self_blend(reals[:k], margin, rng)
    return torch.cat([x, blends]), torch.cat([y, torch.ones(k, dtype=y.dtype, device=y.device)])


def _collate(batch: list[tuple[np.ndarray, int]]):
    import torch

    return torch.from_numpy(np.stack([b[0] for b in batch])), torch.tensor([b[1] for b in batch])
