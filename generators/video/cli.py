"""``forensics reenact``, ``forensics swap`` and ``forensics video``: the video generators' commands."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import click


def _run_training(obj: Any, label: str, total: int, train: Callable[..., Path]) -> None:
    """Run ``train(progress=...)`` under a rich progress bar (hidden by ``--quiet``) fed by the training loops'
    ``progress(step, losses)`` callback, then print the run directory it returns."""
    from rich.progress import Progress

    prog = Progress(disable=obj.quiet if obj else False, transient=True)
    task = prog.add_task(label, total=total)

    def update(step: int, losses: dict[str, float]) -> None:
        desc = " ".join(f"{k}={v:.3f}" for k, v in losses.items() if k != "total")
        prog.update(task, completed=step, description=f"{label} {desc}")

    with prog:
        run = train(progress=update)
    click.echo(str(run))


F = TypeVar("F", bound=Callable[..., Any])

#: the face-size option of the trainers that align faces (swap, landmark2face)
_SIZE_HELP = "Aligned face size (power of two)."


def _run_options(size: str, size_help: str, steps: int, batch: int) -> Callable[[F], F]:
    """``--out``, the face size (64 px), ``--steps`` and ``--batch``, in that order: the options every video
    trainer's command takes before its own. Each trainer names its size flag and help and its step and batch
    defaults."""
    options = [
        click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False)),
        click.option(size, default=64, show_default=True, help=size_help),
        click.option("--steps", default=steps, show_default=True),
        click.option("--batch", default=batch, show_default=True),
    ]

    def apply(f: F) -> F:
        for option in reversed(options):  # decorators apply bottom-up: the last one listed goes on first
            f = option(f)
        return f

    return apply


def _crfs(value: str) -> tuple[int, ...]:
    try:
        crfs = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"'{value}': give comma-separated integers, e.g. 23,40") from None
    if not crfs or any(not 0 <= c <= 51 for c in crfs):
        raise click.BadParameter(f"'{value}': CRF values must be in 0..51")
    return crfs


# ---------------------------------------------------------------------------------------------------------- reenact
@click.group()
def reenact() -> None:
    """Motion-model reenactment: train keypoints + dense motion on real clips, drive a face with another clip.

    Example: forensics reenact train --data clip1.mp4 clip2.mp4 --out runs/ --steps 3000
    """


@reenact.command("train")
@click.option("--data", "videos", multiple=True, required=True, help="Real talking-head clips (repeat or list).")
@click.argument("more", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@_run_options("--res", "Face crop size the model works at.", steps=3000, batch=8)
@click.option("--num-kp", default=10, show_default=True, help="Number of unsupervised keypoints.")
@click.option("--seed", default=0, show_default=True)
@click.option("--resume", type=click.Path(exists=True, file_okay=False), help="Continue a run directory.")
@click.pass_obj
def reenact_train(obj, videos, more, out, res, steps, batch, num_kp, seed, resume) -> None:
    """Train the reenactor self-supervised (reconstruct a frame from another frame of the same clip).

    Example: forensics reenact train --data a.mp4 --data b.mp4 --out runs/ --res 64 --steps 3000
    """
    import torch

    from generators.video.reenact import ReenactConfig
    from generators.video.train import train_reenact

    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = ReenactConfig(res=res, steps=steps, batch=batch, num_kp=num_kp, seed=seed)
    _run_training(obj, "reenact", steps, partial(train_reenact, [*videos, *more], out, cfg, resume=resume))


@reenact.command("drive")
@click.option("--model", "run", required=True, type=click.Path(exists=True, file_okay=False), help="Trained run.")
@click.option("--source", required=True, type=click.Path(exists=True, dir_okay=False), help="Face image to animate.")
@click.option("--driving", required=True, type=click.Path(exists=True, dir_okay=False), help="Driving clip.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .mp4 (H.264).")
@click.option("--relative/--absolute", default=True, show_default=True, help="Transfer relative keypoint motion.")
@click.option("--crf", default=23, show_default=True, help="x264 constant rate factor (23 light, 40 heavy).")
def reenact_drive(run, source, driving, out, relative, crf) -> None:
    """Animate the face in SOURCE with the motion of DRIVING; writes the face-crop video.

    Example: forensics reenact drive --model runs/00000-reenact --source face.png --driving clip.mp4 --out fake.mp4
    """
    import torch

    from forensics_core.errors import UsageError
    from forensics_core.faces.detectors import get_face_detector
    from forensics_core.media import load_image, write_video
    from generators.video.clips import read_clip
    from generators.video.reenact import relative_kp
    from generators.video.runs import load_reenact
    from generators.video.swap import to_tensor, to_uint8
    from generators.video.tracks import track_main_face, warp_to_crop

    net, margin = load_reenact(run)
    res = net.cfg.res
    img = load_image(source).pixels
    faces = get_face_detector("mtcnn").detect([img])[0]
    if not faces:
        raise UsageError(f"{source}: no face found")
    from forensics_core.faces.crops import CropSpec, crop_faces

    src = to_tensor([crop_faces(img, faces[:1], CropSpec(res, "align", margin))[0].pixels])
    clip = read_clip(driving)
    track = track_main_face(clip.frames, res, margin, source=driving)
    frames = []
    with torch.inference_mode():
        kp_s = net.kp(src)
        kp_0 = net.kp(to_tensor([warp_to_crop(clip.frames[0], track.matrices[0], res)]))
        for f, m in zip(clip.frames, track.matrices):
            kp_d = net.kp(to_tensor([warp_to_crop(f, m, res)]))
            frames.append(to_uint8(net.animate(src, kp_s, relative_kp(kp_s, kp_d, kp_0) if relative else kp_d))[0])
    click.echo(str(write_video(out, frames, clip.fps, crf)))


# ------------------------------------------------------------------------------------------------------------- swap
@click.group()
def swap() -> None:
    """Face swap: a shared-encoder, two-decoder autoencoder trained on two people's clips.

    Example: forensics swap train --a alice.mp4 --b bob.mp4 --out runs/ --steps 2000
    """


@swap.command("train")
@click.option("--a", "clip_a", required=True, type=click.Path(exists=True, dir_okay=False), help="Clip of identity A.")
@click.option("--b", "clip_b", required=True, type=click.Path(exists=True, dir_okay=False), help="Clip of identity B.")
@_run_options("--size", _SIZE_HELP, steps=2000, batch=16)
@click.option("--seed", default=0, show_default=True)
@click.option("--resume", type=click.Path(exists=True, file_okay=False))
@click.pass_obj
def swap_train(obj, clip_a, clip_b, out, size, steps, batch, seed, resume) -> None:
    """Train the A<->B swap autoencoder on the aligned faces of two clips.

    Example: forensics swap train --a a.mp4 --b b.mp4 --out runs/ --size 64 --steps 2000
    """
    from generators.video.swap import SwapConfig
    from generators.video.train import train_swap

    cfg = SwapConfig(size=size, steps=steps, batch=batch, seed=seed)
    _run_training(obj, "swap", steps, partial(train_swap, clip_a, clip_b, out, cfg, resume=resume))


@swap.command("apply")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--target", required=True, type=click.Path(exists=True, dir_okay=False), help="Clip to put a face in.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .mp4 (H.264).")
@click.option("--identity", type=click.Choice(["A", "B"]), default="A", show_default=True, help="Face to render.")
@click.option("--blend", type=click.Choice(["soft", "poisson"]), default="soft", show_default=True)
@click.option("--crf", default=23, show_default=True)
@click.option("--max-frames", default=600, show_default=True)
def swap_apply(run, target, out, identity, blend, crf, max_frames) -> None:
    """Swap IDENTITY's face into every frame of TARGET (colour-corrected, blended through a landmark mask).

    Example: forensics swap apply runs/00000-swap --target b.mp4 --out fake.mp4 --identity A
    """
    from forensics_core.media import write_video
    from generators.video.clips import read_clip
    from generators.video.methods import make_swap

    clip = read_clip(target, max_frames)
    fake = make_swap(clip, model=run, blend=blend, identity=identity)
    click.echo(str(write_video(out, fake.frames, clip.fps, crf, audio_from=target if clip.has_audio else None)))


@swap.command("stills")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="A dataset imported with --store source (its real rows and their landmarks are used).")
@click.option("--split", default="val", show_default=True, help="Split of the reals to edit (never train on it).")
@click.option("--n", default=200, show_default=True, help="Reals taken; each gets one edit.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New dataset dir.")
@click.option("--p-splice", default=0.4, show_default=True, help="Share of eye / nose / mouth splices (else swaps).")
@click.option("--seed", default=0, show_default=True)
def swap_stills(data, split, n, out, p_splice, seed) -> None:
    """Still-photo face swaps and eye / nose / mouth splices between real photos, with masks (a held-out test set).

    Each real of SPLIT gets the face (or parts) of another real pasted in through the video pipeline's compositing
    (alignment, LAB colour transfer, Poisson cloning or feathering); reals and edits are saved as JPEG q70-95, each
    edit with its mask under masks/ (see generators/stillswap.py).

    Example: forensics swap stills --data data/shared-src --split val --n 600 --out data/stillswap-val
    """
    from generators.stillswap import StillSwapConfig, make_swap_dataset

    click.echo(str(make_swap_dataset(data, out, split, n, StillSwapConfig(p_splice=p_splice, seed=seed))))


# ------------------------------------------------------------------------------------------------------------ video
@click.group()
def video() -> None:
    """Fake-video datasets: fakes plus identically re-encoded real twins, masks and provenance.

    Example: forensics video make-dataset --method warp --real a.mp4 b.mp4 --out data/warp --crf 23,40
    """


@video.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def video_list(as_json: bool) -> None:
    """List the registered fake-video methods.

    Example: forensics video list --json
    """
    import json

    from generators.video.methods import VIDEO_METHODS

    rows = [{"name": e.name, **{k: v for k, v in e.meta.items()}, "description": e.description}
            for e in VIDEO_METHODS.entries()]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    else:
        for r in rows:
            click.echo(f"{r['name']:<14} model={'yes' if r.get('needs_model') else 'no ':<4} {r['description']}")


@video.command("make-dataset")
@click.option("--method", required=True, help="warp | swap | reenact | landmark2face (see 'forensics video list').")
@click.option("--real", "real", multiple=True, required=True, type=click.Path(exists=True),
              help="Real clips or folders of clips: targets and drivers (repeat, or list after the options). "
                   "Folders are walked like 'forensics scan' does; only files whose content is video are taken.")
@click.argument("more", nargs=-1, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--n", default=4, show_default=True, help="Number of fake clips.")
@click.option("--crf", "crf", default="23,40", show_default=True, help="Comma-separated CRFs; one copy each.")
@click.option("--model", type=click.Path(exists=True, file_okay=False),
              help="Trained run (swap / reenact / landmark2face).")
@click.option("--max-frames", default=100, show_default=True)
@click.option("--blend", type=click.Choice(["soft", "poisson"]), default="soft", show_default=True)
@click.option("--split", default="test", show_default=True)
def make_dataset(method, real, more, out, n, crf, model, max_frames, blend, split) -> None:
    """Write N fake clips (each target driven by the next clip) and their real twins at every CRF.

    Example: forensics video make-dataset --method warp --real a.mp4 --real b.mp4 --out data/warp --n 4 --crf 23,40

    Example: forensics video make-dataset --method warp --real clips/ --out data/warp --n 8
    """
    from forensics_core.inputs import expand_paths
    from generators.video.dataset import VideoDatasetConfig, make_video_dataset

    errors: list[str] = []

    def report(msg: str) -> None:
        errors.append(msg)
        click.echo(f"error: {msg}", err=True)

    cfg = VideoDatasetConfig(method=method, n=n, crfs=_crfs(crf), max_frames=max_frames, model=model, blend=blend,
                             split=split)
    clips = expand_paths([*real, *more], kind="video")
    out_dir = make_video_dataset(clips, Path(out), cfg, on_error=report)
    click.echo(str(out_dir))
    if errors:
        raise SystemExit(2)


@video.command("strip")
@click.option("--method", required=True, help="warp | swap | reenact | landmark2face.")
@click.option("--target", required=True, type=click.Path(exists=True, dir_okay=False), help="Real target clip.")
@click.option("--driving", type=click.Path(exists=True, dir_okay=False),
              help="Driving clip (warp / reenact / landmark2face).")
@click.option("--model", type=click.Path(exists=True, file_okay=False),
              help="Trained run (swap / reenact / landmark2face).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output PNG.")
@click.option("--frames", "n_cols", default=5, show_default=True, help="Time points shown.")
@click.option("--max-frames", default=100, show_default=True)
@click.option("--height", default=160, show_default=True, help="Row height in pixels.")
def strip(method, target, driving, model, out, n_cols, max_frames, height) -> None:
    """A picture that shows a method working: rows = driving, target, result (and mask) at N time points.

    Example: forensics video strip --method warp --target a.mp4 --driving b.mp4 --out docs/img/video/warp.png
    """
    import cv2
    import numpy as np
    from PIL import Image

    from generators.video.clips import read_clip
    from generators.video.methods import VIDEO_METHODS

    tgt = read_clip(target, max_frames)
    drv = read_clip(driving, max_frames) if driving else None
    fake = VIDEO_METHODS.get(method).obj(tgt, drv, model=model)
    idx = np.linspace(0, len(fake.frames) - 1, n_cols).round().astype(int)

    def row(frames) -> np.ndarray:
        cells = [cv2.resize(f, (int(f.shape[1] * height / f.shape[0]), height), interpolation=cv2.INTER_AREA)
                 for f in frames]
        return np.concatenate(cells, 1)

    masks = [np.repeat(fake.masks[i][..., None], 3, 2) for i in idx]
    rows = ([row([drv.frames[i] for i in idx])] if drv else []) + [
        row([tgt.frames[i] for i in idx]), row([fake.frames[i] for i in idx]), row(masks)]
    width = max(r.shape[1] for r in rows)
    grid = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], 0)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out, optimize=True)
    click.echo(out)


@video.command("train-landmark2face")
@click.option("--data", "videos", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help="Real talking-head clips (repeat, or list after the options).")
@click.argument("more", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@_run_options("--size", _SIZE_HELP, steps=2000, batch=8)
@click.option("--shots", default=4, show_default=True, help="K identity frames averaged by the embedder.")
@click.option("--width", default=32, show_default=True, help="Base channel count.")
@click.option("--seed", default=0, show_default=True)
@click.option("--resume", type=click.Path(exists=True, file_okay=False), help="Continue a run directory.")
@click.pass_obj
def train_landmark2face_cmd(obj, videos, more, out, size, steps, batch, shots, width, seed, resume) -> None:
    """Train the landmark-to-face SPADE generator self-supervised (frame t from its map + K frames of the clip).

    Example: forensics video train-landmark2face --data a.mp4 --data b.mp4 --out runs/ --size 64 --steps 2000
    """
    from generators.video.landmark2face import Landmark2FaceConfig
    from generators.video.train import train_landmark2face

    cfg = Landmark2FaceConfig(size=size, steps=steps, batch=batch, shots=shots, width=width, seed=seed)
    _run_training(obj, "landmark2face", steps, partial(train_landmark2face, [*videos, *more], out, cfg, resume=resume))
