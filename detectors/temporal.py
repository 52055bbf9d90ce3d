"""Temporal consistency of a face track: a swapped face is re-made every frame, the photo around it is not.

A face swap or reenactment renders the face frame by frame and blends it into frames that were filmed: the
rendered region's noise, sharpness and colour wander from frame to frame on their own (the boundary flickers),
and its appearance drifts in ways the head's motion does not explain, while the surround changes only with the
camera and the scene. Per frame of a track (the model's crops, face at the crop template) this measures:

- the **face-vs-surround contrasts** of :func:`detectors.inconsistency.features.region_stats` (inner face and band
  against the surround: log noise level, the residual spectrum's bands, skin tone), whose frame-to-frame change,
  over the surround's own change, is the **boundary flicker**;
- a coarse **appearance** descriptor of the inner face and of the surround (zero-mean, unit-norm 8x8 luma grids),
  whose frame-to-frame decorrelation, the face's over the surround's, is the **appearance drift** (a stand-in for
  identity drift: no face-recognition weights are needed, or shipped).

:class:`TrackAccumulator` takes one crop at a time and keeps only these small vectors, so a scanner can feed it
while it streams frames. Both statistics are ratios against the track's own surround, near 1 when face and
surround change together; they are *scores*, not probabilities: the ``video`` benchmark protocol reports their
AUC on the project's own swap / warp clips (``options.temporal``), and a model may calibrate them once clips to
fit on exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

#: the contrasts that flicker: (region, statistic) against the surround's same statistic
CONTRASTS = (("core", "noise"), ("core", "e1"), ("core", "e2"), ("band", "noise"), ("band", "e1"),
             ("core", "cb"), ("core", "cr"))  # fmt: skip
#: the smallest frame-to-frame change of each surround statistic that counts (its units): a static shot's
#: surround hardly changes, and a flicker ratio over ~0 would be noise
CHANGE_FLOOR = {"noise": 0.02, "e1": 0.05, "e2": 0.05, "cb": 0.5, "cr": 0.5}
GRID = 8


def _appearance(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm GRID x GRID mean luma over ``mask``'s bounding box (empty cells: 0)."""
    ys, xs = np.nonzero(mask)
    if ys.size < GRID * GRID:
        return np.zeros(GRID * GRID)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    g, m = gray[y0:y1, x0:x1], mask[y0:y1, x0:x1].astype(np.float64)
    iy = np.minimum((np.arange(g.shape[0]) * GRID) // g.shape[0], GRID - 1)
    ix = np.minimum((np.arange(g.shape[1]) * GRID) // g.shape[1], GRID - 1)
    cell = (iy[:, None] * GRID + ix[None, :]).ravel()
    s = np.bincount(cell, (g * m).ravel(), minlength=GRID * GRID)
    c = np.bincount(cell, m.ravel(), minlength=GRID * GRID)
    v = np.where(c > 0, s / np.maximum(c, 1e-9), 0.0)
    v = np.where(c > 0, v - v[c > 0].mean(), 0.0)
    return v / (np.linalg.norm(v) + 1e-9)


@dataclass
class TrackConsistency:
    """One track's temporal statistics (see the module docstring); ``n_frames`` < 3 leaves them at 1."""

    n_frames: int
    boundary_flicker: float = 1.0
    appearance_drift: float = 1.0
    #: the flicker of each contrast of :data:`CONTRASTS`, by ``region-statistic`` name
    flicker_by_contrast: dict[str, float] = field(default_factory=dict)


class TrackAccumulator:
    """Feed a track's crops in frame order (``add``); ``result()`` gives its :class:`TrackConsistency`."""

    def __init__(self, margin: float) -> None:
        self.margin = margin
        self._contrast: list[np.ndarray] = []
        self._surround: list[np.ndarray] = []
        self._face_look: list[np.ndarray] = []
        self._surround_look: list[np.ndarray] = []

    def add(self, crop: np.ndarray) -> None:
        from detectors.inconsistency.features import crop_face_regions, region_stats
        from detectors.inconsistency.maps import compute_maps

        rgb = np.asarray(crop, dtype=np.float32)
        regions = crop_face_regions(rgb, self.margin)
        mp = compute_maps(rgb)
        st = region_stats(mp, regions)
        self._contrast.append(np.array([st[r][k] - st["surround"][k] for r, k in CONTRASTS]))
        self._surround.append(np.array([st["surround"][k] for _, k in CONTRASTS]))
        self._face_look.append(_appearance(mp.gray, regions.masks["core"]))
        self._surround_look.append(_appearance(mp.gray, regions.masks["surround"]))

    def extend(self, crops: Iterable[np.ndarray]) -> TrackAccumulator:
        for c in crops:
            self.add(c)
        return self

    def result(self) -> TrackConsistency:
        n = len(self._contrast)
        if n < 3:
            return TrackConsistency(n)
        dc = np.nanmean(np.abs(np.diff(np.stack(self._contrast), axis=0)), axis=0)
        ds = np.nanmean(np.abs(np.diff(np.stack(self._surround), axis=0)), axis=0)
        floor = np.array([CHANGE_FLOOR[k] for _, k in CONTRASTS])
        ratio = np.nan_to_num(dc / np.maximum(ds, floor), nan=1.0)
        names = [f"{r}-{k}" for r, k in CONTRASTS]
        face, sur = np.stack(self._face_look), np.stack(self._surround_look)
        d_face = np.mean(1.0 - np.sum(face[1:] * face[:-1], axis=1))
        d_sur = np.mean(1.0 - np.sum(sur[1:] * sur[:-1], axis=1))
        return TrackConsistency(
            n_frames=n,
            boundary_flicker=float(np.median(ratio)),
            appearance_drift=float((d_face + 0.005) / (d_sur + 0.005)),
            flicker_by_contrast={k: float(v) for k, v in zip(names, ratio)},
        )


def track_consistency(crops: Iterable[np.ndarray], margin: float) -> TrackConsistency:
    """:class:`TrackConsistency` of a track's crops in frame order."""
    return TrackAccumulator(margin).extend(crops).result()
