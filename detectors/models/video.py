"""``video``: clip-level scores from an image detector's per-frame (or per-track) scores.

The frame detector (any registered image detector, ``frame_detector``) scores each face crop; the clip score is
an aggregate chosen by ``aggregate``:

- ``mean`` / ``trimmed-mean`` (drop the top and bottom ``trim`` fraction: robust to a few bad crops),
- ``topk`` (mean of the k highest logits: a manipulation visible in a few frames still counts),
- ``temporal`` (a small GRU over the frame embeddings: flicker and identity drift are temporal cues).

``forward`` stays per-frame, so ``scan`` can use a video model like any image model; :meth:`clip_logit` scores a
clip. The temporal head is trained on bags of same-label frames drawn from the batch (``clip_len`` per bag), which
is what a face track is once per-frame labels are known.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from detectors.base import Detector, DetectorConfig
from detectors.registry import build_detector, register_detector
from forensics_core.errors import UsageError
from forensics_core.registry import Registry

AGGREGATORS: Registry[Callable[..., float]] = Registry("clip aggregator")


@AGGREGATORS.register("mean")
def agg_mean(logits: np.ndarray, **_: Any) -> float:
    return float(np.mean(logits))


@AGGREGATORS.register("trimmed-mean")
def agg_trimmed(logits: np.ndarray, trim: float = 0.1, **_: Any) -> float:
    s = np.sort(np.asarray(logits, dtype=np.float64))
    k = int(np.floor(trim * s.size))
    return float(s[k : s.size - k].mean()) if s.size > 2 * k else float(s.mean())


@AGGREGATORS.register("topk")
def agg_topk(logits: np.ndarray, k: int = 3, **_: Any) -> float:
    s = np.sort(np.asarray(logits, dtype=np.float64))[::-1]
    return float(s[: max(1, min(k, s.size))].mean())


def aggregate_scores(logits: np.ndarray, method: str = "trimmed-mean", **kw: Any) -> float:
    """Aggregate per-frame logits to one clip logit with a registered numpy aggregator."""
    if len(logits) == 0:
        raise UsageError("cannot aggregate an empty clip")
    return AGGREGATORS.get(method).obj(np.asarray(logits), **kw)


@dataclass
class VideoConfig(DetectorConfig):
    frame_detector: str = "npr"
    frame_cfg: dict[str, Any] = field(default_factory=dict)
    aggregate: str = "temporal"
    topk: int = 3
    trim: float = 0.1
    clip_len: int = 4
    hidden: int = 32


@register_detector(
    "video", description="Clip-level aggregation of a frame detector (trimmed mean / top-k / GRU).", tags=("video",)
)
class VideoDetector(Detector):
    Config = VideoConfig

    def __init__(self, cfg: VideoConfig) -> None:
        super().__init__(cfg)
        if cfg.aggregate not in ("temporal", *AGGREGATORS.names()):
            raise UsageError(f"video: unknown aggregate '{cfg.aggregate}'")
        if cfg.frame_detector == "video":
            raise UsageError("video: frame_detector cannot be 'video'")
        self.frame = build_detector(cfg.frame_detector, **{**cfg.input_fields(), **cfg.frame_cfg})
        self.mean, self.std = self.frame.mean, self.frame.std
        with torch.no_grad():
            was = self.frame.training
            self.frame.eval()
            dim = self.frame.embed(torch.zeros(2, 3, cfg.res, cfg.res)).shape[1]
            self.frame.train(was)
        self.gru = nn.GRU(dim, cfg.hidden, batch_first=True)
        self.clip_head = nn.Linear(cfg.hidden, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.frame(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.frame.embed(x)

    def cam_layer(self) -> nn.Module | None:
        return self.frame.cam_layer()

    def temporal_logit(self, clips: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, S, S)`` -> ``(B,)`` clip logits from the GRU over frame embeddings."""
        b, t = clips.shape[:2]
        emb = self.frame.embed(clips.flatten(0, 1)).view(b, t, -1)
        _, h = self.gru(emb)
        return self.clip_head(h[-1])[:, 0]

    @torch.no_grad()
    def clip_logit(self, frames: torch.Tensor) -> float:
        """One clip (T, 3, S, S) -> clip logit with the configured aggregation."""
        self.eval()
        if self.cfg.aggregate == "temporal":
            return float(self.temporal_logit(frames[None])[0])
        return aggregate_scores(
            self.frame(frames).cpu().numpy(), self.cfg.aggregate, k=self.cfg.topk, trim=self.cfg.trim
        )

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        frame_loss, logs = self.frame.loss(x, y)
        total = frame_loss
        t = self.cfg.clip_len
        bags, labels = [], []
        for c in (0, 1):
            idx = torch.nonzero(y == c).flatten()
            for i in range(0, idx.numel() - t + 1, t):
                bags.append(x[idx[i : i + t]])
                labels.append(float(c))
        if bags:
            z = self.temporal_logit(torch.stack(bags))
            clip_loss = F.binary_cross_entropy_with_logits(z.float(), torch.tensor(labels, device=x.device))
            total = total + clip_loss
            logs["clip_bce"] = float(clip_loss.detach())
        return total, logs

    def post_fit(self, train, val) -> None:
        self.frame.post_fit(train, val)
