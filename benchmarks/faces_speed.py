"""Speed of face extraction (detect + align) on 512 px images: images/s and ms/image (p50, p95).

Run: ``python -m benchmarks.faces_speed --n 50 --device cpu --out benchmarks/results/faces.md``

Inputs are 512x512 photos with faces: the shared-data face sets (``../shared/data``) resized to 512 when present,
else the public-domain astronaut photo from scikit-image with flips and shifts. Each image is timed alone
(detection of one image + alignment of every face found), after a warm-up; a second pass times batched detection
(same-size images in batches of ``--batch``) to show what batching buys. Timings are wall-clock on whatever else
the machine is doing, so the load average is recorded next to them.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class SpeedResult:
    n_images: int
    n_faces: int
    images_per_s: float
    p50_ms: float
    p95_ms: float
    mean_ms: float
    cpu_ms_p50: float
    cpu_ms_p95: float
    batched_images_per_s: float
    batch: int


def load_images(n: int, size: int = 512) -> tuple[list[np.ndarray], str]:
    """``n`` RGB uint8 ``size`` x ``size`` images with faces, and a description of where they came from."""
    import cv2

    from forensics import media
    from forensics.config import shared_data_dir

    d = shared_data_dir()
    paths: list[Path] = []
    if d is not None:
        for sub in ("real_faces/facenet-pytorch_test_images", "gan_faces/tpdne-stylegan2_bhunakit/train",
                    "real_faces/ffhq128_bhunakit/train", "real_faces/utkface_bagashvilit"):
            paths += sorted((d / sub).glob("*.[pj][np]g"))[: max(1, n // 4)]
    imgs: list[np.ndarray] = []
    for p in paths[:n]:
        px = media.load_image(p).pixels
        h, w = px.shape[:2]
        s = min(h, w)
        sq = px[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        imgs.append(cv2.resize(sq, (size, size), interpolation=cv2.INTER_CUBIC))
    source = f"{len(imgs)} shared-data photos (facenet-pytorch test images, tpdne, ffhq128, utkface) resized to {size}"
    if len(imgs) < n:
        from skimage import data

        base = cv2.resize(data.astronaut(), (size, size))
        k = 0
        while len(imgs) < n:
            img = np.roll(base, shift=(k % 7) * 9 - 27, axis=1)
            imgs.append(np.ascontiguousarray(img[:, ::-1] if k % 2 else img))
            k += 1
        source += f" + {n - len(paths[:n])} shifted/flipped scikit-image astronaut photos"
    return imgs, source


def measure(imgs: list[np.ndarray], device: str, batch: int, size: int = 224, margin: float = 0.3) -> SpeedResult:
    from forensics.faces import align_face, get_face_detector

    det = get_face_detector("mtcnn", device=device)
    for img in imgs[:3]:  # warm-up: first calls allocate and (on GPU) compile kernels
        det.detect([img])
    times, cpu_times, n_faces = [], [], 0
    t_all = time.perf_counter()
    for img in imgs:
        t, c = time.perf_counter(), time.process_time()
        faces = det.detect([img])[0]
        for f in faces:
            align_face(img, f.landmarks, size, margin)
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)  # CPU seconds of all threads: robust to a busy machine
        n_faces += len(faces)
    total = time.perf_counter() - t_all
    t = time.perf_counter()
    for start in range(0, len(imgs), batch):
        chunk = imgs[start : start + batch]
        for img, faces in zip(chunk, det.detect(chunk)):
            for f in faces:
                align_face(img, f.landmarks, size, margin)
    batched = time.perf_counter() - t
    ms = np.array(times) * 1000
    cpu_ms = np.array(cpu_times) * 1000
    return SpeedResult(
        n_images=len(imgs), n_faces=n_faces, images_per_s=len(imgs) / total, p50_ms=float(np.percentile(ms, 50)),
        p95_ms=float(np.percentile(ms, 95)), mean_ms=float(ms.mean()),
        cpu_ms_p50=float(np.percentile(cpu_ms, 50)), cpu_ms_p95=float(np.percentile(cpu_ms, 95)),
        batched_images_per_s=len(imgs) / batched,
        batch=batch,
    )


def environment(device: str) -> dict[str, str]:
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    env = {
        "cpu": f"{cpu} ({os.cpu_count()} logical cores visible)",
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "device": device,
    }
    if hasattr(os, "getloadavg"):
        env["load average (1/5/15 min) at start"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def render(res: SpeedResult, env: dict[str, str], source: str, command: str) -> str:
    lines = [
        "# Face extraction speed (MTCNN detect + 5-point align to 224 px, margin 0.3)",
        "",
        f"Command: `{command}`",
        "",
        f"Inputs: {res.n_images} images of 512x512 px: {source}. {res.n_faces} faces found and aligned.",
        "",
        "| device | images/s (one at a time) | wall ms/image p50 | p95 | mean | CPU ms/image p50 | p95 | "
        f"images/s (batch {res.batch}) |",
        "|---|---|---|---|---|---|---|---|",
        f"| {env['device']} | {res.images_per_s:.2f} | {res.p50_ms:.1f} | {res.p95_ms:.1f} | {res.mean_ms:.1f} | "
        f"{res.cpu_ms_p50:.1f} | {res.cpu_ms_p95:.1f} | {res.batched_images_per_s:.2f} |",
        "",
        "Wall-clock numbers include waiting for the CPU on a shared machine (see the load average below); the CPU "
        "ms column is the compute actually spent (all torch threads together).",
        "",
        "Environment:",
        "",
        *[f"- {k}: {v}" for k, v in env.items()],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Example: python -m benchmarks.faces_speed --n 50 --device cpu")
    ap.add_argument("--n", type=int, default=50, help="number of 512 px images")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here (else print it)")
    args = ap.parse_args(argv)
    import sys

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment(args.device)
    imgs, source = load_images(args.n)
    res = measure(imgs, args.device, args.batch)
    command = "python -m benchmarks.faces_speed " + " ".join(sys.argv[1:] if argv is None else argv)
    text = render(res, env, source, command)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
