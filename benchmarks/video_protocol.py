"""The ``video`` benchmark protocol: clips scored frame by frame, by manipulation method and CRF.

A built-in protocol in its own module: its class and ``@register_protocol`` line here, its module name in
:data:`benchmarks.protocols.BUILTIN_MODULES`. Planning is :class:`~benchmarks.protocols.ScoringProtocol`'s (cells at
``level = "video"``); the runner scores each clip's frames and aggregates them (``benchmarks.runner.score_video``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.protocols import ScoringProtocol, register_protocol


@register_protocol("video", "frame-level and clip-level scores of model files on videos, by method and CRF")
class VideoProtocol(ScoringProtocol):
    level = "video"
    role = None

    @dataclass
    class Options:
        group_by: list[str] = field(default_factory=lambda: ["method", "crf"])
        every: int = 5  # score every N-th frame
        max_frames: int = 64  # per clip
        aggregate: str = "mean"  # clip score from frame scores: mean | median | max | topk
        topk: float = 0.25  # fraction of frames averaged by 'topk'
        faces: str = ""  # face detector used to crop frames ("opencv", "mtcnn"); "" = centre square
