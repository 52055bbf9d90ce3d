"""Throughput of ``forensics scan`` on 512 px photos with faces, and its overhead over the unavoidable work.

The number a moderation pipeline needs is images/s end to end (decode, face detection, alignment, model, output),
and the question an engineer asks is "how much of that is the pipeline's own overhead?". So the script measures,
in the same run, the wall time of the whole scan and the time spent inside the face detector and the model
forward, and reports ``ratio = total / (detect + model)`` (target <= 1.25 with evidence off). Evidence on is
measured separately (it is per-file CPU work an analyst asks for, not pipeline overhead).

Test photos: 512 x 512 JPEGs (q90), each a real face pasted at a random position and scale onto a textured
background: UTKFace crops from ``../shared/data`` when present (never copied into the repo), else scikit-image's
public-domain astronaut photo with random crops. They are written to ``--workdir`` (default: a temp dir).

Example::

    python -m benchmarks.scan_speed --n 200 --device cpu --threads 2 --out benchmarks/results/scan.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from forensics.config import shared_data_dir
from forensics.errors import ForensicsError


def make_photos(out: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct 512 px JPEG photos with one face each (see module docstring)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    data = shared_data_dir()
    faces: list[Path] = sorted((data / "real_faces" / "utkface_bagashvilit").glob("*.jpg"))[:2000] if data else []
    if not faces:
        from skimage import data as skd

        astro = Image.fromarray(skd.astronaut())
    paths = []
    for i in range(n):
        yy, xx = np.mgrid[0:512, 0:512]
        f1, f2 = rng.uniform(0.005, 0.05, 2)
        bg = np.stack([127 + 60 * np.sin(f1 * xx + i), 127 + 60 * np.cos(f2 * yy), 127 + 40 * np.sin(f1 * yy)], -1)
        bg = np.clip(bg + rng.normal(0, 8, bg.shape), 0, 255).astype(np.uint8)
        canvas = Image.fromarray(bg)
        if faces:
            face = Image.open(faces[int(rng.integers(len(faces)))]).convert("RGB")
            side = int(rng.integers(180, 300))
            face = face.resize((side, side), Image.BICUBIC)
        else:
            x0, y0 = int(rng.integers(100, 140)), int(rng.integers(20, 50))
            side = int(rng.integers(200, 260))
            face = astro.crop((x0, y0, x0 + 256, y0 + 256)).resize((side, side), Image.BICUBIC)
        canvas.paste(face, (int(rng.integers(0, 512 - side)), int(rng.integers(0, 512 - side))))
        p = out / f"photo-{i:05d}.jpg"
        canvas.save(p, quality=90)
        paths.append(str(p))
    return paths


def run_once(paths: list[str], model: str, evidence: str, **cfg) -> dict:
    """Scan ``paths`` once (after a warm-up on a few of them) and return the timing breakdown."""
    from forensics.engines import LocalEngine
    from forensics.inputs import InputExpander
    from forensics.scanning.config import ScanConfig

    engine = LocalEngine(model=model, config=ScanConfig(evidence=evidence, **cfg))
    list(engine.run(InputExpander(paths[: min(8, len(paths))], dedupe=False)))  # warm-up: lazy inits, allocator
    sc = engine.scanner
    sc.totals = dict.fromkeys(sc.totals, 0.0)
    t0 = time.perf_counter()
    results = list(engine.run(InputExpander(paths)))
    wall = time.perf_counter() - t0
    ok = [r for r in results if r.status == "ok"]
    core = (sc.totals["detect"] + sc.totals["model"]) / 1000
    return {
        "evidence": evidence,
        "n": len(results),
        "ok": len(ok),
        "with_face": sum(not r.no_face for r in ok),
        "wall_s": wall,
        "images_per_s": len(results) / wall,
        "ms_per_image": 1000 * wall / len(results),
        "detect_s": sc.totals["detect"] / 1000,
        "model_s": sc.totals["model"] / 1000,
        "load_s": sc.totals["load"] / 1000,
        "evidence_s": sc.totals["evidence"] / 1000,
        "ratio": wall / core if core else float("nan"),
        "device": str(getattr(sc.model, "device", "")),
    }


def markdown(rows: list[dict], cmd: str, model_name: str) -> str:
    import torch

    lines = [
        "# forensics scan throughput",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs ({platform.processor() or 'cpu'}), "
        f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, Python {platform.python_version()}; "
        f"model `{model_name}`; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Photos: 512x512 JPEG q90 with one real face each (see `benchmarks/scan_speed.py`). `ratio` = wall time of "
        "the whole scan / (face detection + model forward) time measured in the same run; target <= 1.25 with "
        "evidence off.",
        "",
        "| evidence | device | images | faces found | images/s | ms/image | detect s | model s | decode s (threads) "
        "| evidence s | wall s | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['evidence']} | {r['device']} | {r['n']} | {r['with_face']} | {r['images_per_s']:.2f} | "
            f"{r['ms_per_image']:.1f} | {r['detect_s']:.2f} | {r['model_s']:.2f} | {r['load_s']:.2f} | "
            f"{r['evidence_s']:.2f} | {r['wall_s']:.2f} | {r['ratio']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scan_speed", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="number of photos")
    ap.add_argument("--model", default="default")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--evidence", default="none,all", help="comma list of evidence settings to measure, in order")
    ap.add_argument("--workdir", default=None, help="where the generated photos go (default: a temp dir)")
    ap.add_argument("--out", default=None, help="write a markdown table here (e.g. benchmarks/results/scan.md)")
    args = ap.parse_args(argv)
    try:
        from forensics.scanning.config import resolve_model

        model = resolve_model(args.model, args.device)
        with tempfile.TemporaryDirectory(prefix="scan-speed-") as tmp:
            paths = make_photos(Path(args.workdir or tmp), args.n)
            rows = []
            for ev in args.evidence.split(","):
                ev = "all" if ev == "all" else ("none" if ev == "none" else ev.replace("+", ","))
                r = run_once(paths, model, ev, device=args.device, threads=args.threads, batch=args.batch,
                             workers=args.workers)  # fmt: skip
                rows.append(r)
                print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
    except ForensicsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    md = markdown(rows, "python -m benchmarks.scan_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
                  model.name)  # fmt: skip
    print(md)
    if args.out:
        Path(args.out).write_text(md, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
