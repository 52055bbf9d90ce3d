"""The registry of fake-video methods: each turns a real target clip (and a driving clip) into a fake clip.

Every method returns the fake frames plus a per-frame manipulation mask (255 = synthesised), which the dataset
writer stores as localisation ground truth. Learned methods take a trained run directory; ``warp`` needs none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forensics_core.errors import UsageError
from forensics_core.registry import Registry
from generators.video.blend import BlendConfig, face_mask, paste_back
from generators.video.clips import Clip

VideoMethod = Callable[..., "FakeClip"]
VIDEO_METHODS: Registry[VideoMethod] = Registry("video method", entry_point_group="forensics.video_methods")


@dataclass
class FakeClip:
    frames: list[np.ndarray]
    masks: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


@VIDEO_METHODS.register("warp", needs_model=False, upsampler="none", family="warp")
def make_warp(target: Clip, driving: Clip, model: str | None = None, blend: str = "soft", **_: Any) -> FakeClip:
    """Training-free dense expression transfer (optical flow of the driver, blended into the target)."""
    from generators.video.tracks import track_main_face
    from generators.video.warp import WarpConfig, warp_frames

    cfg = WarpConfig(blend=BlendConfig(mode=blend))
    tt = track_main_face(target.frames, cfg.size, cfg.margin, source=str(target.path))
    dt = track_main_face(driving.frames, cfg.size, cfg.margin, source=str(driving.path))
    frames, masks = warp_frames(target.frames, tt, driving.frames, dt, cfg)
    return FakeClip(frames, masks, {"blend": blend, "face_coverage": tt.coverage})


def _require(model: str | None, method: str, train: str = "") -> str:
    """The run a learned method needs, or a one-line usage error naming the command that trains one."""
    if not model:
        train = train or f"forensics {method} train"
        raise UsageError(f"--method {method} needs --model RUN (train one with '{train}')")
    return model


def _paste_faces(
    frames: Iterable[np.ndarray], faces: Iterable[np.ndarray], matrices: Iterable[np.ndarray], mask: np.ndarray,
    blend: str,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every learned method's last step: each rendered face (drawn lazily, one per frame, so the caller's
    ``inference_mode`` covers it) pasted back into its frame through the face mask; the frames and their masks."""
    out_frames, masks = [], []
    for frame, face, matrix in zip(frames, faces, matrices):
        out, hard = paste_back(frame, face, mask, matrix, BlendConfig(mode=blend))
        out_frames.append(out)
        masks.append(hard)
    return out_frames, masks


@VIDEO_METHODS.register("swap", needs_model=True, upsampler="pixelshuffle", family="swap")
def make_swap(target: Clip, driving: Clip | None = None, model: str | None = None, blend: str = "soft",
              identity: str = "A", **_: Any) -> FakeClip:
    """Render ``identity``'s face in the target's pose (the target should show the other identity)."""
    import torch

    from forensics_core.faces.crops import canonical_landmarks
    from generators.video.runs import load_swap
    from generators.video.swap import to_tensor, to_uint8
    from generators.video.tracks import track_main_face, warp_to_crop

    net = load_swap(_require(model, "swap"))
    size, margin = net.cfg.size, net.cfg.margin
    track = track_main_face(target.frames, size, margin, source=str(target.path))
    mask = face_mask(size, canonical_landmarks(size, margin))
    with torch.inference_mode():
        faces = (to_uint8(net(to_tensor([warp_to_crop(f, m, size)]), identity))[0]
                 for f, m in zip(target.frames, track.matrices))
        frames, masks = _paste_faces(target.frames, faces, track.matrices, mask, blend)
    return FakeClip(frames, masks, {"identity": identity, "blend": blend, "model": str(model)})


@VIDEO_METHODS.register("reenact", needs_model=True, upsampler="nearest", family="reenact")
def make_reenact(target: Clip, driving: Clip, model: str | None = None, blend: str = "soft",
                 relative: bool = True, **_: Any) -> FakeClip:
    """Animate the target's first-frame face with the driver's motion and paste it into every target frame."""
    import torch

    from forensics_core.faces.crops import canonical_landmarks
    from generators.video.reenact import relative_kp
    from generators.video.runs import load_reenact
    from generators.video.swap import to_tensor, to_uint8
    from generators.video.tracks import track_main_face, warp_to_crop

    net, margin = load_reenact(_require(model, "reenact"))
    res = net.cfg.res
    tt = track_main_face(target.frames, res, margin, source=str(target.path))
    dt = track_main_face(driving.frames, res, margin, source=str(driving.path))
    mask = face_mask(res, canonical_landmarks(res, margin))
    n = min(len(target.frames), len(driving.frames))
    src = to_tensor([warp_to_crop(target.frames[0], tt.matrices[0], res)])
    with torch.inference_mode():
        kp_s = net.kp(src)
        kp_d0 = net.kp(to_tensor([warp_to_crop(driving.frames[0], dt.matrices[0], res)]))

        def face(i: int) -> np.ndarray:
            kp_d = net.kp(to_tensor([warp_to_crop(driving.frames[i], dt.matrices[i], res)]))
            kp = relative_kp(kp_s, kp_d, kp_d0) if relative else kp_d
            return to_uint8(net.animate(src, kp_s, kp))[0]

        frames, masks = _paste_faces(target.frames[:n], map(face, range(n)), tt.matrices, mask, blend)
    return FakeClip(frames, masks, {"relative": relative, "blend": blend, "model": str(model)})


@VIDEO_METHODS.register("landmark2face", needs_model=True, upsampler="nearest", family="landmark2face")
def make_landmark2face(target: Clip, driving: Clip, model: str | None = None, blend: str = "soft",
                       relative: bool = True, **_: Any) -> FakeClip:
    """Re-render the target's face (identity from K of its frames) from maps carrying the driver's motion."""
    import torch

    from forensics_core.faces.crops import canonical_landmarks
    from generators.video.landmark2face import clip_maps, driving_maps, pick_shots
    from generators.video.runs import load_landmark2face
    from generators.video.swap import to_tensor, to_uint8

    net = load_landmark2face(_require(model, "landmark2face", "forensics video train-landmark2face"))
    cfg = net.cfg
    tgt = clip_maps(target.frames, cfg, source=str(target.path))
    drv = clip_maps(driving.frames, cfg, source=str(driving.path))
    n = min(len(target.frames), len(driving.frames))
    maps = torch.from_numpy(driving_maps(tgt, drv, cfg, n, relative=relative))
    mask = face_mask(cfg.size, canonical_landmarks(cfg.size, cfg.margin))
    with torch.inference_mode():
        identity = net.gen.embed(to_tensor(tgt.faces[pick_shots(len(tgt.faces), cfg.shots)])[None])
        faces = (to_uint8(net.gen.render(maps[i : i + 1], identity))[0] for i in range(n))
        frames, masks = _paste_faces(target.frames[:n], faces, tgt.track.matrices, mask, blend)
    return FakeClip(frames, masks, {"relative": relative, "blend": blend, "model": str(model), "shots": cfg.shots,
                                    "face_coverage": tgt.track.coverage})
