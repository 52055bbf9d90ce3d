"""Fake-video datasets: fakes plus their real counterparts, encoded identically, with per-frame masks.

A real clip and its fake differ in the manipulation only when both pass through the same encoder at the same
CRF; otherwise a detector learns "re-encoded = fake". Every fake therefore has a real twin cut to the same frames
and written with the same codec settings, and both rows name their parent (the source clip's sha256).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forensics_core.dataset import ManifestRow, ManifestWriter
from forensics_core.errors import ForensicsError, UsageError
from forensics_core.hashing import sha256_file
from generators.video.clips import Clip, read_clip
from generators.video.methods import VIDEO_METHODS

log = logging.getLogger(__name__)


@dataclass
class VideoDatasetConfig:
    method: str
    n: int = 4
    crfs: tuple[int, ...] = (23, 40)
    max_frames: int = 100
    model: str | None = None
    blend: str = "soft"
    split: str = "test"


def _stem(clip: Clip) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in clip.path.stem)[:60]


def _save_masks(path: Path, masks: list[np.ndarray]) -> None:
    """Boolean (T, H, W) masks, bit-packed: a 200-frame 512 px clip costs a few kB."""
    arr = np.stack([m > 0 for m in masks])
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, shape=np.array(arr.shape), bits=np.packbits(arr))
    tmp.replace(path)


def load_masks(path: str | Path) -> np.ndarray:
    with np.load(path) as z:
        shape = tuple(int(v) for v in z["shape"])
        return np.unpackbits(z["bits"], count=int(np.prod(shape))).reshape(shape).astype(bool)


def make_video_dataset(real: list[str], out: str | Path, cfg: VideoDatasetConfig,
                       on_error: Callable[[str], None] | None = None) -> Path:
    """Write ``cfg.n`` fakes (target i driven by clip i+1) at every CRF, plus re-encoded real twins.

    Resumable: outputs already in the manifest are skipped. A clip that fails (no face, one frame, not a video)
    is reported through ``on_error`` and skipped; the batch goes on.
    """
    from forensics_core.media import write_video

    entry = VIDEO_METHODS.get(cfg.method)
    if len(real) < 2 and cfg.method != "swap":
        raise UsageError(f"--method {cfg.method} needs at least 2 real clips (target and driver), got {len(real)}")
    if entry.meta.get("needs_model") and not cfg.model:
        raise UsageError(f"--method {cfg.method} needs --model RUN")
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    cache: dict[str, Clip] = {}

    def clip(p: str) -> Clip:
        if p not in cache:
            c = read_clip(p, cfg.max_frames)
            cache[p] = c
        return cache[p]

    with ManifestWriter(out) as mw:
        for i in range(cfg.n):
            tgt_path, drv_path = real[i % len(real)], real[(i + 1) % len(real)]
            names = {crf: f"videos/{cfg.method}-{i:04d}-crf{crf}.mp4" for crf in cfg.crfs}
            if all(n in mw.done for n in names.values()):
                continue
            try:
                target, driving = clip(tgt_path), clip(drv_path)
                fake = entry.obj(target, driving, model=cfg.model, blend=cfg.blend)
            except ForensicsError as exc:
                (on_error or log.error)(f"{tgt_path}: {exc}")
                continue
            mask_rel = f"masks/{cfg.method}-{i:04d}.npz"
            _save_masks(out / mask_rel, fake.masks)
            n_frames = len(fake.frames)
            for crf, name in names.items():
                real_name = f"videos/real-{_stem(target)}-{n_frames}f-crf{crf}.mp4"
                if real_name not in mw.done:
                    write_video(out / real_name, target.frames[:n_frames], target.fps, crf,
                                audio_from=target.path if target.has_audio else None)
                    mw.write(ManifestRow(
                        path=real_name, label="real", sha256=sha256_file(out / real_name), method="real",
                        family="real", source=str(target.path), split=cfg.split, parent=target.sha256,
                        licence="derived from the source clip; its licence applies",
                        extra={"crf": crf, "frames": n_frames, "fps": target.fps, "identity": _stem(target)},
                    ))
                if name in mw.done:
                    continue
                write_video(out / name, fake.frames, target.fps, crf,
                            audio_from=target.path if target.has_audio else None)
                mw.write(ManifestRow(
                    path=name, label="fake", sha256=sha256_file(out / name), generator=f"video-{cfg.method}",
                    family=entry.meta.get("family", cfg.method), upsampler=entry.meta.get("upsampler", ""),
                    method=cfg.method, source=str(target.path), split=cfg.split, parent=target.sha256,
                    licence="synthetic; derived from the source clips, whose licences apply",
                    extra={"crf": crf, "frames": n_frames, "fps": target.fps, "mask": mask_rel,
                           "driving_sha256": driving.sha256, "source_sha256": target.sha256,
                           "identities": {"target": _stem(target), "driving": _stem(driving)}, **fake.meta},
                ))
    return out
