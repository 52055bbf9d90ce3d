"""Reading clips and turning them into aligned face stacks: the inputs of every video method."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forensics_core.errors import UsageError


@dataclass
class Clip:
    path: Path
    frames: list[np.ndarray]
    fps: float
    sha256: str
    has_audio: bool


def read_clip(path: str | Path, max_frames: int = 600) -> Clip:
    """Decode up to ``max_frames`` RGB frames. A clip with fewer than two frames cannot carry motion."""
    from forensics_core.media import iter_frames, probe

    info = probe(path)
    if info.kind != "video":
        raise UsageError(f"{path}: not a video ({info.container or info.kind})")
    stream = iter_frames(path)
    frames = []
    for fr in stream:
        frames.append(fr.pixels)
        if len(frames) >= max_frames:
            break
    if len(frames) < 2:
        raise UsageError(f"{path}: a clip needs at least 2 frames, it has {len(frames)}")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise UsageError(f"{path}: frame size changes inside the clip ({sorted(shapes)[:2]})")
    return Clip(Path(path), frames, float(info.fps or 25.0), info.sha256, bool(info.has_audio))


def aligned_faces(clip: Clip, size: int, margin: float, detector=None) -> np.ndarray:
    """(T, size, size, 3) uint8: the main face of every frame, aligned to the canonical template."""
    from generators.video.tracks import track_main_face, warp_to_crop

    track = track_main_face(clip.frames, size, margin, detector, source=str(clip.path))
    return np.stack([warp_to_crop(f, m, size) for f, m in zip(clip.frames, track.matrices)])
