"""Grouping per-frame face detections of a video into tracks with stable ids (:class:`IoUTracker`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


# --------------------------------------------------------------------------------------------------------------
# tracking
# --------------------------------------------------------------------------------------------------------------
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (N,4) and ``b`` (M,4) in ``x1,y1,x2,y2`` form -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class _Track:
    id: int
    box: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    missed: int = 0
    hits: int = 1

    def predicted(self) -> np.ndarray:
        return self.box + self.velocity * (self.missed + 1)


class IoUTracker:
    """Greedy IoU tracker: groups per-frame detections of one video into face tracks with stable ids.

    Each track predicts its next box with a constant-velocity model (so two faces that cross keep their ids as
    long as each moves less per step than the gap between them); detections and predictions are matched greedily
    in order of decreasing IoU above ``min_iou``. Unmatched detections start new tracks; a track unmatched for
    more than ``max_age`` consecutive updates ends. Steps are calls to :meth:`update` (sampled frames), not raw
    frame numbers, so the tracker works at any sampling rate.
    """

    def __init__(self, min_iou: float = 0.3, max_age: int = 5) -> None:
        self.min_iou = float(min_iou)
        self.max_age = int(max_age)
        self._tracks: list[_Track] = []
        self._next_id = 0

    @property
    def n_tracks(self) -> int:
        """How many track ids have been handed out so far."""
        return self._next_id

    def update(self, boxes: Sequence[Sequence[float]]) -> list[int]:
        """Feed the boxes of the next sampled frame; return one track id per box (same order)."""
        dets = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        ids = [-1] * len(dets)
        matched_tracks: set[int] = set()
        if self._tracks and len(dets):
            iou = box_iou(np.stack([t.predicted() for t in self._tracks]), dets)
            for flat in np.argsort(-iou, axis=None):
                ti, di = np.unravel_index(flat, iou.shape)
                if iou[ti, di] < self.min_iou:
                    break
                if ti in matched_tracks or ids[di] != -1:
                    continue
                t = self._tracks[ti]
                steps = t.missed + 1
                step_velocity = (dets[di] - t.box) / steps
                # smooth the velocity once there is one to smooth; the first match sets it outright
                t.velocity = 0.5 * t.velocity + 0.5 * step_velocity if t.hits > 1 else step_velocity
                t.box, t.missed, t.hits = dets[di].copy(), 0, t.hits + 1
                ids[di] = t.id
                matched_tracks.add(int(ti))
        for ti, t in enumerate(self._tracks):
            if ti not in matched_tracks:
                t.missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.max_age]
        for di in range(len(dets)):
            if ids[di] == -1:
                ids[di] = self._next_id
                self._tracks.append(_Track(self._next_id, dets[di].copy()))
                self._next_id += 1
        return ids
