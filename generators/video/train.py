"""Training loops for the learned video generators: ``swap`` (two identities), ``reenact`` and ``landmark2face``
(many clips)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forensics_core.runs import next_run_dir
from forensics_core.training import Every, run_steps
from generators.layers import optimizer_step
from generators.video.clips import aligned_faces, read_clip
from generators.video.landmark2face import Landmark2FaceConfig, Landmark2FaceModel, clip_maps
from generators.video.landmark2face import train_step as l2f_step
from generators.video.reenact import PyramidFeatures, ReenactConfig, ReenactModel, reenact_losses
from generators.video.runs import (  # the loaders are re-exported (__all__): they lived here before the split
    append_metrics,
    load_checkpoint,
    load_landmark2face,
    load_reenact,
    load_swap,
    save_checkpoint,
    write_options,
)
from generators.video.swap import SwapAutoencoder, SwapConfig, to_tensor, train_step

Progress = Callable[[int, dict[str, float]], None]


def _open_run(out: str | Path, kind: str, resume: str | None, cfg: Any, model: torch.nn.Module,
              opt: torch.optim.Optimizer, gen: torch.Generator, **options: Any) -> tuple[Path, int]:
    """A fresh numbered run (options written) or the run being resumed (weights, optimiser, RNG restored)."""
    if resume:
        run = Path(resume)
        return run, load_checkpoint(run, model, opt, gen)
    run = next_run_dir(out, kind)
    write_options(run, cfg, kind=kind, **options)
    return run, 0


def _train(run: Path, steps: int, start: int, step_fn: Callable[[int], dict[str, float]], save: Callable[[int], None],
           every: int, progress: Progress | None) -> None:
    """Steps ``start``..``steps`` on the shared loop (:func:`forensics_core.training.run_steps`): every ``every``
    steps and at
    the last, a metrics line (that step's losses, steps per second since the previous line) and the checkpoint;
    after every step, ``progress``."""
    t0, done = time.perf_counter(), start

    def log_and_save(step: int, losses: dict[str, float], last: bool) -> None:
        nonlocal t0, done
        dt = time.perf_counter() - t0
        append_metrics(run, {"step": step, **losses, "steps_per_s": (step - done) / max(dt, 1e-9)})
        save(step)
        t0, done = time.perf_counter(), step

    tasks = [Every(every, log_and_save)]
    if progress:
        tasks.append(Every(1, lambda step, losses, last: progress(step, losses)))
    run_steps(start, steps, step_fn, tasks)


def train_swap(clip_a: str, clip_b: str, out: str | Path, cfg: SwapConfig, resume: str | None = None,
               save_every: int = 200, progress: Progress | None = None) -> Path:
    """Train A<->B on the aligned main-face tracks of two clips; returns the run directory."""
    faces = {
        "A": to_tensor(aligned_faces(read_clip(clip_a), cfg.size, cfg.margin)),
        "B": to_tensor(aligned_faces(read_clip(clip_b), cfg.size, cfg.margin)),
    }
    torch.manual_seed(cfg.seed)
    model = SwapAutoencoder(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(cfg.seed)
    run, start = _open_run(out, "swap", resume, cfg, model, opt, gen, clip_a=str(clip_a), clip_b=str(clip_b))
    _train(run, cfg.steps, start, lambda s: train_step(model, opt, faces, cfg, gen),
           lambda s: save_checkpoint(run, model, opt, s, gen), save_every, progress)
    return run


def train_reenact(videos: list[str], out: str | Path, cfg: ReenactConfig, resume: str | None = None,
                  save_every: int = 200, progress: Progress | None = None, margin: float = 0.4) -> Path:
    """Self-supervised: reconstruct a random frame of a clip from another random frame of the same clip."""
    stacks = [to_tensor(aligned_faces(read_clip(v), cfg.res, margin)) for v in videos]
    torch.manual_seed(cfg.seed)
    model = ReenactModel(cfg)
    feats = PyramidFeatures()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(cfg.seed)
    run, start = _open_run(out, "reenact", resume, cfg, model, opt, gen, videos=[str(v) for v in videos], margin=margin)

    def step_fn(step: int) -> dict[str, float]:
        clip_idx = torch.randint(len(stacks), (cfg.batch,), generator=gen)
        src, drv = [], []
        for c in clip_idx.tolist():
            pair = torch.randint(len(stacks[c]), (2,), generator=gen)
            src.append(stacks[c][pair[0]])
            drv.append(stacks[c][pair[1]])
        losses = reenact_losses(model, feats, torch.stack(src), torch.stack(drv), gen)
        optimizer_step(opt, losses["total"])
        return {k: float(v.detach()) for k, v in losses.items()}

    model.train()
    _train(run, cfg.steps, start, step_fn, lambda s: save_checkpoint(run, model, opt, s, gen), save_every, progress)
    return run


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Gaussian 11x11 window, sigma 1.5, as in Wang et al. 2004) of two uint8 images of equal shape."""
    import cv2

    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda t: cv2.GaussianBlur(t, (11, 11), 1.5)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(m.mean())


def train_landmark2face(videos: list[str], out: str | Path, cfg: Landmark2FaceConfig, resume: str | None = None,
                        save_every: int = 200, progress: Progress | None = None) -> Path:
    """Self-supervised: reconstruct frame t of a clip from its own landmark/edge map and K other frames of the clip.

    Tracks, aligned faces and maps are computed once per clip; a step samples (clip, target frame, K shots) per
    batch item, shots drawn from the same clip but never the target frame itself (else the embedder could copy).
    """
    clips = []
    for v in videos:
        m = clip_maps(read_clip(v).frames, cfg, source=str(v))
        clips.append((to_tensor(m.faces), torch.from_numpy(m.maps)))
    torch.manual_seed(cfg.seed)
    model = Landmark2FaceModel(cfg)
    feats = PyramidFeatures()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.0, 0.999))
    gen = torch.Generator().manual_seed(cfg.seed)
    run, start = _open_run(out, "landmark2face", resume, cfg, model, opt, gen, videos=[str(v) for v in videos])

    def step_fn(step: int) -> dict[str, float]:
        target, cond, shots = [], [], []
        for c in torch.randint(len(clips), (cfg.batch,), generator=gen).tolist():
            faces, maps = clips[c]
            t = int(torch.randint(len(faces), (1,), generator=gen))
            others = torch.randint(len(faces) - 1, (cfg.shots,), generator=gen)
            others = others + (others >= t).long()  # skip the target frame
            target.append(faces[t])
            cond.append(maps[t])
            shots.append(faces[others])
        return l2f_step(model, feats, opt, torch.stack(cond), torch.stack(shots), torch.stack(target))

    model.train()
    _train(run, cfg.steps, start, step_fn, lambda s: save_checkpoint(run, model, opt, s, gen), save_every, progress)
    return run


__all__ = [
    "load_landmark2face", "load_reenact", "load_swap", "ssim", "train_landmark2face", "train_reenact", "train_swap",
]
