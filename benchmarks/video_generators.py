"""Quality and speed of the video generators on held-out real clips.

What is measured, and why each number can be read on its own:

* ``reenact`` reconstruction: FOMM's self-reenactment protocol. The source is the first evaluated frame of a clip
  the model never saw; every later evaluated frame is the driver, and the output is compared with that frame (the
  ground truth) by L1 (on [0, 1] pixels) and SSIM. The ``copy source`` baseline (output = source frame) tells how
  much motion there was to reproduce: a model is only useful where it beats it.
* ``reenact`` keypoint stability: (a) frame-to-frame jitter of the unsupervised keypoints over consecutive frames
  of the held-out clip, in crop pixels, next to the jitter of the MTCNN landmarks in the same aligned crops (the
  motion actually present plus detector noise); (b) on a *static* input (one frame plus independent Gaussian
  pixel noise, sigma 3/255, 16 draws) the keypoints' standard deviation: pure detector noise, motion-free.
* ``swap`` reconstruction: each identity's held-out frames (cut from the end of its clip, never trained on) through
  its own decoder (the autoencoder's reconstruction), and through the *other* decoder as a sanity check (that
  output must be far from the input, or the model is an identity map and cannot swap).
* ``landmark2face`` reconstruction: held-out clip; identity from K frames of its first half, targets from its
  second half rendered from their own maps; baseline ``copy shot`` = the first identity frame.
* frames/s on this machine: the whole method (face tracking of target and driver with MTCNN, synthesis, blending)
  and the model alone (aligned crops in, batch 1), over the same frames.

Example: python -m benchmarks.video_generators --heldout held.mp4 --driving drv.mp4 --reenact runs/00000-reenact
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np


@dataclass
class Recon:
    method: str
    data: str
    frames: int
    l1: float
    ssim: float
    baseline: str = ""
    baseline_l1: float | None = None
    baseline_ssim: float | None = None


@dataclass
class Stability:
    frames: int
    kp_jitter_px: float
    mtcnn_jitter_px: float
    static_std_px: float
    num_kp: int


@dataclass
class Speed:
    method: str
    frames: int
    end_to_end_fps: float
    model_fps: float | None


@dataclass
class VideoBenchResult:
    record: dict[str, Any]  # benchmarks.record.RunRecord: command, commit, environment (every timing is on CPU)
    recon: list[Recon] = field(default_factory=list)
    stability: Stability | None = None
    speed: list[Speed] = field(default_factory=list)


def _metrics(pred: list[np.ndarray], true: list[np.ndarray]) -> tuple[float, float]:
    from generators.video.train import ssim

    l1 = float(np.mean([np.abs(p.astype(np.float32) - t.astype(np.float32)).mean() / 255 for p, t in zip(pred, true)]))
    return l1, float(np.mean([ssim(p, t) for p, t in zip(pred, true)]))


def _crops(frames: list[np.ndarray], landmarks: list[np.ndarray], size: int, margin: float) -> np.ndarray:
    """Aligned crops at any (size, margin) from one landmark track: detection runs once per clip."""
    from forensics_core.faces.crops import canonical_landmarks, similarity_transform
    from generators.video.tracks import warp_to_crop

    tpl = canonical_landmarks(size, margin)
    return np.stack([warp_to_crop(f, similarity_transform(lm, tpl), size) for f, lm in zip(frames, landmarks)])


def bench_reenact(run: str, frames: list[np.ndarray], landmarks: list[np.ndarray], every: int,
                  name: str) -> tuple[Recon, Stability]:
    import torch

    from generators.video.swap import to_tensor, to_uint8
    from generators.video.train import load_reenact

    net, margin = load_reenact(run)
    res = net.cfg.res
    faces = _crops(frames, landmarks, res, margin)
    idx = list(range(every, len(faces), every))
    src = to_tensor(faces[:1])
    with torch.inference_mode():
        kp_s = net.kp(src)
        preds = [to_uint8(net.animate(src, kp_s, net.kp(to_tensor(faces[i : i + 1]))))[0] for i in idx]
        kps = torch.cat([net.kp(to_tensor(faces[i : i + 8]))["value"] for i in range(0, len(faces), 8)])
        g = torch.Generator().manual_seed(0)
        noisy = src + torch.randn((16, *src.shape[1:]), generator=g) * (2 * 3 / 255)
        static = net.kp(noisy.clamp(-1, 1))["value"]
    l1, s = _metrics(preds, [faces[i] for i in idx])
    bl1, bs = _metrics([faces[0]] * len(idx), [faces[i] for i in idx])
    px = res / 2  # keypoints live in [-1, 1]
    from forensics_core.faces.crops import canonical_landmarks, similarity_transform

    tpl = canonical_landmarks(res, margin)
    lm_crop = np.stack([lm @ similarity_transform(lm, tpl)[:, :2].T + similarity_transform(lm, tpl)[:, 2]
                        for lm in landmarks])
    stab = Stability(
        frames=len(faces),
        kp_jitter_px=float((kps[1:] - kps[:-1]).norm(dim=-1).mean() * px),
        mtcnn_jitter_px=float(np.linalg.norm(lm_crop[1:] - lm_crop[:-1], axis=-1).mean()),
        static_std_px=float(static.std(0).norm(dim=-1).mean() * px),
        num_kp=net.cfg.num_kp,
    )
    return Recon("reenact", name, len(idx), l1, s, "copy source", bl1, bs), stab


def bench_swap(run: str, clips: dict[str, tuple[list[np.ndarray], list[np.ndarray]]]) -> list[Recon]:
    import torch

    from generators.video.swap import to_tensor, to_uint8
    from generators.video.train import load_swap

    net = load_swap(run)
    out = []
    for ident, (frames, lms) in clips.items():
        other = "B" if ident == "A" else "A"
        faces = _crops(frames, lms, net.cfg.size, net.cfg.margin)
        with torch.inference_mode():
            own = to_uint8(net(to_tensor(faces), ident))
            cross = to_uint8(net(to_tensor(faces), other))
        l1, s = _metrics(list(own), list(faces))
        cl1, cs = _metrics(list(cross), list(faces))
        out.append(Recon("swap", f"identity {ident}, held-out frames", len(faces), l1, s,
                         f"decoder {other} (must differ)", cl1, cs))
    return out


def bench_landmark2face(run: str, frames: list[np.ndarray], every: int, name: str) -> Recon:
    import torch

    from generators.video.landmark2face import clip_maps, pick_shots
    from generators.video.swap import to_tensor, to_uint8
    from generators.video.train import load_landmark2face

    net = load_landmark2face(run)
    maps = clip_maps(frames, net.cfg, source=name)
    half = len(frames) // 2
    shots = pick_shots(half, net.cfg.shots)
    idx = list(range(half, len(frames), every))
    with torch.inference_mode():
        identity = net.gen.embed(to_tensor(maps.faces[shots])[None])
        preds = [to_uint8(net.gen.render(torch.from_numpy(maps.maps[i : i + 1]), identity))[0] for i in idx]
    l1, s = _metrics(preds, [maps.faces[i] for i in idx])
    bl1, bs = _metrics([maps.faces[shots[0]]] * len(idx), [maps.faces[i] for i in idx])
    return Recon("landmark2face", name, len(idx), l1, s, "copy shot", bl1, bs)


def _model_fps(method: str, run: str, faces64: dict[str, np.ndarray]) -> float | None:
    """Synthesis alone on aligned crops (batch 1): the cost a GPU would cut, without detection or blending."""
    import torch

    from generators.video.swap import to_tensor

    if method == "reenact":
        from generators.video.train import load_reenact

        net, _ = load_reenact(run)
        faces = faces64["reenact"]
        src = to_tensor(faces[:1])
        with torch.inference_mode():
            kp_s = net.kp(src)
            t0 = time.perf_counter()
            for f in faces:
                net.animate(src, kp_s, net.kp(to_tensor(f[None])))
    elif method == "swap":
        from generators.video.train import load_swap

        net = load_swap(run)
        faces = faces64["swap"]
        with torch.inference_mode():
            t0 = time.perf_counter()
            for f in faces:
                net(to_tensor(f[None]), "A")
    elif method == "landmark2face":
        from generators.video.train import load_landmark2face

        net = load_landmark2face(run)
        maps = torch.from_numpy(faces64["landmark2face_maps"])
        faces = faces64["landmark2face"]
        with torch.inference_mode():
            identity = net.gen.embed(to_tensor(faces[: net.cfg.shots])[None])
            t0 = time.perf_counter()
            for i in range(len(maps)):
                net.gen.render(maps[i : i + 1], identity)
    else:
        return None
    return len(faces) / (time.perf_counter() - t0)


def render_markdown(res: VideoBenchResult) -> str:
    lines = ["| method | data | frames | L1 (0-1) | SSIM | baseline | baseline L1 | baseline SSIM |",
             "|---|---|---:|---:|---:|---|---:|---:|"]
    for r in res.recon:
        bl = f"{r.baseline_l1:.4f}" if r.baseline_l1 is not None else "-"
        bs = f"{r.baseline_ssim:.3f}" if r.baseline_ssim is not None else "-"
        lines.append(f"| {r.method} | {r.data} | {r.frames} | {r.l1:.4f} | {r.ssim:.3f} | {r.baseline} | {bl} | {bs} |")
    if res.stability:
        st = res.stability
        lines += ["", "| keypoints | frames | kp jitter (px/frame) | MTCNN landmark jitter (px/frame) | "
                  "static-input kp std (px) |", "|---|---:|---:|---:|---:|",
                  f"| reenact ({st.num_kp} kp) | {st.frames} | {st.kp_jitter_px:.3f} | {st.mtcnn_jitter_px:.3f} | "
                  f"{st.static_std_px:.4f} |"]
    lines += ["", "| method | frames | end-to-end frames/s | model-only frames/s |", "|---|---:|---:|---:|"]
    for sp in res.speed:
        mf = f"{sp.model_fps:.1f}" if sp.model_fps is not None else "-"
        lines.append(f"| {sp.method} | {sp.frames} | {sp.end_to_end_fps:.2f} | {mf} |")
    return "\n".join(lines)


@click.command()
@click.option("--heldout", required=True, type=click.Path(exists=True, dir_okay=False),
              help="A real clip no model was trained on (reenact / landmark2face quality).")
@click.option("--driving", required=True, type=click.Path(exists=True, dir_okay=False), help="Driver for speed.")
@click.option("--reenact", "reenact_run", type=click.Path(exists=True, file_okay=False))
@click.option("--swap", "swap_run", type=click.Path(exists=True, file_okay=False))
@click.option("--swap-test-a", type=click.Path(exists=True, dir_okay=False), help="Held-out frames of identity A.")
@click.option("--swap-test-b", type=click.Path(exists=True, dir_okay=False), help="Held-out frames of identity B.")
@click.option("--landmark2face", "l2f_run", type=click.Path(exists=True, file_okay=False))
@click.option("--frames", default=60, show_default=True, help="Frames read from the held-out clip.")
@click.option("--every", default=5, show_default=True, help="Evaluate every k-th frame.")
@click.option("--speed-frames", default=16, show_default=True)
@click.option("--threads", default=1, show_default=True, help="torch threads (the timing depends on it).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the result as JSON.")
def main(heldout, driving, reenact_run, swap_run, swap_test_a, swap_test_b, l2f_run, frames, every, speed_frames,
         threads, out) -> None:
    """Reconstruction error, keypoint stability and frames/s of the video generators.

    Example: python -m benchmarks.video_generators --heldout held.mp4 --driving drv.mp4 --reenact runs/00000-reenact
    """
    import torch

    from benchmarks.record import command_line, start_record
    from generators.video.clips import read_clip
    from generators.video.landmark2face import track_landmarks
    from generators.video.methods import VIDEO_METHODS

    torch.set_num_threads(threads)  # before the record, so it states the thread count the timings use
    res = VideoBenchResult(record=start_record(command_line("benchmarks.video_generators")).to_dict())
    held = read_clip(heldout, frames)
    name = Path(heldout).name
    lms = track_landmarks(held.frames, 64, 0.3, source=heldout).landmarks
    if reenact_run:
        rec, res.stability = bench_reenact(reenact_run, held.frames, lms, every, name)
        res.recon.append(rec)
    if swap_run and swap_test_a and swap_test_b:
        sets = {}
        for ident, path in (("A", swap_test_a), ("B", swap_test_b)):
            c = read_clip(path, frames)
            sets[ident] = (c.frames, track_landmarks(c.frames, 64, 0.3, source=path).landmarks)
        res.recon += bench_swap(swap_run, sets)
    if l2f_run:
        res.recon.append(bench_landmark2face(l2f_run, held.frames, every, name))

    tgt = read_clip(heldout, speed_frames)
    drv = read_clip(driving, speed_frames)
    models = {"warp": None, "reenact": reenact_run, "swap": swap_run, "landmark2face": l2f_run}
    crops: dict[str, np.ndarray] = {}
    if reenact_run:
        from generators.video.train import load_reenact

        net, margin = load_reenact(reenact_run)
        crops["reenact"] = _crops(tgt.frames, lms[:speed_frames], net.cfg.res, margin)
    if swap_run:
        from generators.video.train import load_swap

        sw = load_swap(swap_run)
        crops["swap"] = _crops(tgt.frames, lms[:speed_frames], sw.cfg.size, sw.cfg.margin)
    if l2f_run:
        from generators.video.landmark2face import clip_maps
        from generators.video.train import load_landmark2face

        m = clip_maps(tgt.frames, load_landmark2face(l2f_run).cfg, source=heldout)
        crops["landmark2face"], crops["landmark2face_maps"] = m.faces, m.maps
    for method, run in models.items():
        if method != "warp" and not run:
            continue
        t0 = time.perf_counter()
        fake = VIDEO_METHODS.get(method).obj(tgt, drv, model=run)
        fps = len(fake.frames) / (time.perf_counter() - t0)
        res.speed.append(Speed(method, len(fake.frames), fps, _model_fps(method, run, crops) if run else None))

    click.echo(render_markdown(res))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(asdict(res), indent=1))


if __name__ == "__main__":
    main()
