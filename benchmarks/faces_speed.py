"""The face stage of a scan, measured: recall and box IoU on hand-checked boxes and against MTCNN at full
resolution, and time per image at 256 / 512 / 1024 / 2048 px.

Run (the committed ``benchmarks/results/faces.md``)::

    python -m benchmarks.faces_speed --threads 1 --out benchmarks/results/faces.md

A *stage* is a face detector plus the side the scan downscales images to before detecting
(``ScanConfig.detect_max_side``), written ``NAME[@SIDE|@full][:key=value,...]``: ``mtcnn@full`` (the reference:
facenet-pytorch's MTCNN on the full image), ``mtcnn@1024`` (the scan's face stage before issue #34),
``mtcnn-fast@1024:factor=0.6``. Faces found on the downscaled copy are mapped back to full resolution
(:func:`forensics.scanning.pixels.detect_full_res`), as the scan does before cutting crops.

What is measured (needs ``../shared/data``; without it only the speed table runs, on scikit-image's astronaut):

* **labelled set** (``benchmarks/configs/faces_labelled.json``): hand-checked boxes on the group photo (full size
  and halved: small faces), four 1080p street-video frames with several small, turned, blurred and occluded faces,
  talking-head frames, UTKFace crops, aligned crops and FFHQ photos. A detection matches a labelled face at IoU >=
  ``--iou`` (greedy, best IoU first; boxes clipped to the image). ``recall / ref`` is the stage's recall over the
  reference stage's: the issue's goal is >= 0.98. Detections on no labelled face and no ``ignore`` box are counted
  as false positives. ``--draw DIR`` writes each labelled image with its boxes (green: labelled; yellow: drawn by
  hand; red: each stage's detections) to check the labels by eye.
* **agreement with the reference**: on the same images, the share of the reference's faces each stage finds
  (IoU >= 0.5), their mean box IoU and the mean landmark distance over the inter-ocular distance (what moves a
  ``native`` / ``align`` crop).
* **speed**: ``--n`` FFHQ photos (512 px) resized to each ``--sizes`` side; each stage runs them in chunks of
  ``--batch`` (as a scan chunk) ``--repeat`` times, interleaved with the other stages; the table gives the best
  run's wall ms / image and its CPU ms / image (all threads: robust to other load on the machine), and the
  time of one image alone (median).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LABELS = Path(__file__).resolve().parent / "configs" / "faces_labelled.json"
DEFAULT_SIZES = (256, 512, 1024, 2048)


# ----------------------------------------------------------------------------------------------------------------
# stages
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Stage:
    """A face detector and the detection side: ``mtcnn-fast@1024:factor=0.6``."""

    spec: str
    name: str
    max_side: int | None  # None: detect on the full image
    options: dict[str, Any] = field(default_factory=dict)
    detector: Any = None

    @classmethod
    def parse(cls, spec: str) -> Stage:
        from forensics_core.config import parse_sets

        head, _, opts = spec.partition(":")
        name, _, side = head.partition("@")
        max_side = None if side in ("", "full") else int(side)
        pairs = re.split(r",(?=[A-Za-z_]\w*=)", opts) if opts else []  # commas inside a value ([0.6,0.7,0.7]) stay
        options = parse_sets([kv for kv in pairs if kv], json_values=True)
        return cls(spec, name, max_side, options)

    def load(self, device: str) -> Stage:
        from forensics_core.faces.detectors import get_face_detector

        self.detector = get_face_detector(self.name, device=device, **self.options)
        return self

    def detect(self, images: list[np.ndarray]) -> list[list[Any]]:
        from forensics.scanning.pixels import detect_full_res

        if self.max_side is None:
            return self.detector.detect(images)
        return detect_full_res(self.detector, images, self.max_side)


def default_stages() -> list[str]:
    """The reference, the scan's face stage before issue #34, the scan's default now, and the OpenCV cascade."""
    from forensics.scanning.config import ScanConfig

    cfg = ScanConfig(evidence="none")
    new = f"{cfg.face_detector}@{cfg.detect_max_side}"
    return list(dict.fromkeys(["mtcnn@full", "mtcnn@1024", new, "opencv@1024"]))


# ----------------------------------------------------------------------------------------------------------------
# the labelled set
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Labelled:
    """One labelled image: pixels (after ``scale``), boxes in those pixels, and tags."""

    name: str
    pixels: np.ndarray
    boxes: np.ndarray  # (K, 4)
    face_tags: list[list[str]]
    tags: list[str]
    hand: list[bool]
    ignore: np.ndarray  # (M, 4)


def load_labelled(path: Path = LABELS, data: Path | None = None) -> list[Labelled]:
    """The labelled images of ``path`` read from the shared data (``[]`` when it is absent)."""
    import cv2

    from forensics_core import media
    from forensics_core.config import shared_data_dir

    data = data or shared_data_dir()
    if data is None:
        return []
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    out = []
    frames: dict[tuple[str, int], np.ndarray] = {}
    wanted: dict[str, set[int]] = {}
    for e in doc["images"]:
        if e.get("frame") is not None:
            wanted.setdefault(e["path"], set()).add(int(e["frame"]))
    for rel, idx in wanted.items():
        for fr in media.iter_frames(data / rel):
            if fr.index in idx:
                frames[(rel, fr.index)] = fr.pixels
            if fr.index >= max(idx):
                break
    for e in doc["images"]:
        frame = e.get("frame")
        px = frames[(e["path"], int(frame))] if frame is not None else media.load_image(data / e["path"]).pixels
        scale = float(e.get("scale", 1.0))
        h, w = px.shape[:2]
        if scale != 1.0:
            px = cv2.resize(px, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        boxes = np.array([f["box"] for f in e["faces"]], dtype=np.float64).reshape(-1, 4) * scale
        name = e["path"] + (f"#{frame}" if frame is not None else "") + (f"@{scale:g}x" if scale != 1.0 else "")
        out.append(
            Labelled(
                name=name, pixels=np.ascontiguousarray(px), boxes=_clip(boxes, px.shape),
                face_tags=[list(f.get("tags", [])) for f in e["faces"]], tags=list(e.get("tags", [])),
                hand=["hand" in f.get("tags", []) for f in e["faces"]],
                ignore=np.array(e.get("ignore", []), dtype=np.float64).reshape(-1, 4) * scale,
            )
        )  # fmt: skip
    return out


def _clip(boxes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, shape[1])
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, shape[0])
    return b


def match(truth: np.ndarray, found: np.ndarray, min_iou: float) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching, best IoU first: ``(truth index, found index, IoU)`` for pairs >= ``min_iou``."""
    from forensics_core.faces.tracking import box_iou

    if not len(truth) or not len(found):
        return []
    iou = box_iou(truth, found)
    pairs, used_t, used_f = [], set(), set()
    for flat in np.argsort(-iou, axis=None):
        t, f = np.unravel_index(flat, iou.shape)
        if iou[t, f] < min_iou:
            break
        if t in used_t or f in used_f:
            continue
        used_t.add(int(t))
        used_f.add(int(f))
        pairs.append((int(t), int(f), float(iou[t, f])))
    return pairs


@dataclass
class Matched:
    """A stage's detections matched against reference faces (:func:`match`): how many faces, how many of them it
    found and the IoU of each found one; the labelled set and the agreement with the reference stage both count so."""

    faces: int = 0
    found: int = 0
    ious: list[float] = field(default_factory=list)

    def add(self, faces: int, pairs: list[tuple[int, int, float]]) -> None:
        """Count one image: ``faces`` reference faces, ``pairs`` from :func:`match`."""
        self.faces += faces
        self.found += len(pairs)
        self.ious += [iou for _, _, iou in pairs]

    @property
    def recall(self) -> float:
        return self.found / self.faces if self.faces else float("nan")

    @property
    def mean_iou(self) -> float:
        return float(np.mean(self.ious)) if self.ious else float("nan")


@dataclass
class LabelScore(Matched):
    """A stage on the labelled set."""

    false_pos: int = 0
    by_tag: dict[str, list[int]] = field(default_factory=dict)  # tag -> [found, total]


def score_labelled(found: list[list[Any]], labelled: list[Labelled], min_iou: float) -> LabelScore:
    from forensics_core.faces.tracking import box_iou

    s = LabelScore()
    for faces, lab in zip(found, labelled):
        boxes = _clip(np.array([f.box for f in faces]), lab.pixels.shape)
        pairs = match(lab.boxes, boxes, min_iou)
        hit = {t for t, _, _ in pairs}
        s.add(len(lab.boxes), pairs)
        matched_f = {f for _, f, _ in pairs}
        for k in range(len(boxes)):
            if k in matched_f:
                continue
            on_ignore = len(lab.ignore) and box_iou(boxes[k : k + 1], lab.ignore).max() >= min_iou
            s.false_pos += int(not on_ignore)
        for t in range(len(lab.boxes)):
            for tag in {*lab.tags, *lab.face_tags[t]}:
                cell = s.by_tag.setdefault(tag, [0, 0])
                cell[0] += int(t in hit)
                cell[1] += 1
    return s


@dataclass
class Agreement(Matched):
    """A stage against the reference's detections on the same images (``faces``: the reference's)."""

    landmark_err: list[float] = field(default_factory=list)  # mean point distance / inter-ocular distance


def agreement(found: list[list[Any]], ref: list[list[Any]], shapes: list[tuple[int, ...]]) -> Agreement:
    a = Agreement()
    for faces, rfaces, shape in zip(found, ref, shapes):
        rb = _clip(np.array([f.box for f in rfaces]), shape)
        fb = _clip(np.array([f.box for f in faces]), shape)
        pairs = match(rb, fb, 0.5)
        a.add(len(rb), pairs)
        for t, f, _ in pairs:
            if not getattr(faces[f], "approx_landmarks", False):
                lm_r = np.asarray(rfaces[t].landmarks)
                iod = max(float(np.linalg.norm(lm_r[0] - lm_r[1])), 1e-6)
                a.landmark_err.append(float(np.linalg.norm(lm_r - np.asarray(faces[f].landmarks), axis=1).mean() / iod))
    return a


def draw(out_dir: Path, labelled: list[Labelled], results: dict[str, list[list[Any]]]) -> list[Path]:
    """Each labelled image with its labels (green; drawn by hand: yellow; ignore: grey) and every stage's detections
    (red, thin, numbered by stage) as PNG: how the labels were checked, and how to check them again."""
    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, lab in enumerate(labelled):
        im = cv2.cvtColor(lab.pixels, cv2.COLOR_RGB2BGR).copy()
        for b in lab.ignore.astype(int):
            cv2.rectangle(im, (b[0], b[1]), (b[2], b[3]), (128, 128, 128), 2)
        for b, hand in zip(lab.boxes.astype(int), lab.hand):
            cv2.rectangle(im, (b[0], b[1]), (b[2], b[3]), (0, 255, 255) if hand else (0, 200, 0), 2)
        for s, found in enumerate(results.values()):
            for f in found[k]:
                b = [int(round(v)) for v in f.box]
                cv2.rectangle(im, (b[0], b[1]), (b[2], b[3]), (0, 0, 255), 1)
                cv2.putText(im, str(s), (b[0] + 2, b[3] - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 255), 1)
        p = out_dir / f"{k:02d}-{lab.name.replace('/', '_').replace('#', '-')}.png"
        cv2.imwrite(str(p), im)
        paths.append(p)
    legend = "\n".join(f"{s}: {spec}" for s, spec in enumerate(results))
    (out_dir / "stages.txt").write_text(legend + "\n", encoding="utf-8")
    return paths


# ----------------------------------------------------------------------------------------------------------------
# speed
# ----------------------------------------------------------------------------------------------------------------
def load_images(n: int, size: int = 512) -> tuple[list[np.ndarray], str]:
    """``n`` RGB ``size`` x ``size`` photos with faces and where they came from: FFHQ photos from the shared data
    (512 px, resized), else scikit-image's public-domain astronaut with shifts and flips."""
    import cv2

    from forensics_core import media
    from forensics_core.config import shared_data_dir

    d = shared_data_dir()
    paths = sorted((d / "transfer_val" / "lago2022" / "ffhq-real").glob("*.jpg"))[:n] if d else []
    imgs = [cv2.resize(media.load_image(p).pixels, (size, size), interpolation=cv2.INTER_AREA if size < 512
                       else cv2.INTER_CUBIC) for p in paths]  # fmt: skip
    source = f"{len(imgs)} FFHQ photos (transfer_val/lago2022/ffhq-real, 512 px) resized to {size}"
    if len(imgs) < n:
        from skimage import data

        base = cv2.resize(data.astronaut(), (size, size))
        k = 0
        while len(imgs) < n:
            img = np.roll(base, shift=(k % 7) * size // 56 - 3 * size // 56, axis=1)
            imgs.append(np.ascontiguousarray(img[:, ::-1] if k % 2 else img))
            k += 1
        source += f" + {n - len(paths)} shifted/flipped scikit-image astronaut photos"
    return imgs, source


@dataclass
class Timing:
    wall_ms: float = float("inf")  # best run, per image, chunks of `batch`
    cpu_ms: float = float("inf")
    single_ms: float = float("nan")  # one image alone, median
    faces: int = 0


def time_stages(stages: list[Stage], sizes: list[int], n: int, batch: int, repeat: int) -> dict[int, dict[str, Timing]]:
    out: dict[int, dict[str, Timing]] = {}
    for size in sizes:
        imgs, _ = load_images(n, size)
        row = {s.spec: Timing() for s in stages}
        for st in stages:  # warm-up: lazy inits, allocator
            st.detect(imgs[:2])
        for _ in range(repeat):
            for st in stages:  # interleaved, so a burst of load on the machine hits every stage alike
                t, c = time.perf_counter(), time.process_time()
                faces = 0
                for i in range(0, len(imgs), batch):
                    faces += sum(len(f) for f in st.detect(imgs[i : i + batch]))
                tm = row[st.spec]
                tm.wall_ms = min(tm.wall_ms, (time.perf_counter() - t) * 1000 / len(imgs))
                tm.cpu_ms = min(tm.cpu_ms, (time.process_time() - c) * 1000 / len(imgs))
                tm.faces = faces
        for st in stages:
            singles = []
            for img in imgs[: min(8, len(imgs))]:
                t = time.perf_counter()
                st.detect([img])
                singles.append((time.perf_counter() - t) * 1000)
            row[st.spec].single_ms = float(np.median(singles))
        out[size] = row
    return out


# ----------------------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------------------
def _f(x: float, nd: int = 3) -> str:
    return "-" if x != x else f"{x:.{nd}f}"  # NaN -> "-"


def render(
    stages: list[Stage],
    labels: dict[str, LabelScore],
    agree: dict[str, Agreement],
    speed: dict[int, dict[str, Timing]],
    meta: dict[str, Any],
) -> str:
    ref = stages[0].spec
    lines = [
        "# Face stage: recall, agreement with MTCNN at full resolution, time per image",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Commit {meta['commit']}; {meta['env']}; load average at start {meta['load']}. Stage = detector @ detection "
        "side (the scan downscales the image to it, detects, maps faces back to full resolution); "
        f"`{ref}` is the reference.",
        "",
    ]
    if labels:
        tags = sorted({t for s in labels.values() for t in s.by_tag})
        n_img = meta["labelled_images"]
        lines += [
            f"## Labelled set ({n_img} images, {labels[ref].faces} faces; `benchmarks/configs/faces_labelled.json`)",
            "",
            f"A detection finds a labelled face at IoU >= {meta['iou']}. `recall / ref`: the stage's recall over the "
            f"reference's (goal >= 0.98). False positives: detections on no labelled face and no ignore box.",
            "",
            "| stage | found | recall | recall / ref | mean IoU | false pos. | " + " | ".join(tags) + " |",
            "|---|---|---|---|---|---|" + "---|" * len(tags),
        ]
        for st in stages:
            s = labels[st.spec]
            cells = [f"{s.by_tag[t][0]}/{s.by_tag[t][1]}" if t in s.by_tag else "-" for t in tags]
            ratio = s.recall / labels[ref].recall if labels[ref].recall else float("nan")
            lines.append(
                f"| `{st.spec}` | {s.found}/{s.faces} | {_f(s.recall)} | {_f(ratio)} | {_f(s.mean_iou)} "
                f"| {s.false_pos} | " + " | ".join(cells) + " |"
            )
        lines += [
            "",
            "## Agreement with the reference (same images)",
            "",
            "Share of the reference's faces found (IoU >= 0.5), their mean box IoU, and the mean distance of the 5 "
            "landmarks over the inter-ocular distance (`-`: landmarks estimated from the box). For scale: MTCNN "
            "against itself on the same photos shifted by one pixel measured IoU 0.94 and landmark error 0.032.",
            "",
            "| stage | reference faces found | mean IoU | landmark error / IOD (mean) | p90 |",
            "|---|---|---|---|---|",
        ]
        for st in stages:
            a = agree[st.spec]
            lm = np.array(a.landmark_err) if a.landmark_err else np.array([np.nan])
            lines.append(
                f"| `{st.spec}` | {a.found}/{a.faces} | {_f(a.mean_iou)} | "
                f"{_f(float(np.mean(lm)))} | {_f(float(np.percentile(lm, 90)))} |"
            )
        lines.append("")
    if speed:
        lines += [
            f"## Time per image ({meta['speed_source']}; chunks of {meta['batch']}, best of {meta['repeat']})",
            "",
            "Wall and CPU (all threads) ms per image in chunks, and one image alone (median of 8). On a shared "
            "machine the CPU column is the steadier one.",
            "",
            "| stage | " + " | ".join(f"{s} px wall / CPU / alone" for s in speed) + " | faces at 512 |",
            "|---|" + "---|" * len(speed) + "---|",
        ]
        for st in stages:
            cells = [
                f"{speed[s][st.spec].wall_ms:.1f} / {speed[s][st.spec].cpu_ms:.1f} / {speed[s][st.spec].single_ms:.1f}"
                for s in speed
            ]
            faces = speed[512][st.spec].faces if 512 in speed else "-"
            lines.append(f"| `{st.spec}` | " + " | ".join(cells) + f" | {faces} |")
        lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace, argv: list[str]) -> str:
    from benchmarks.record import command_line, start_record

    rec = start_record(command_line("benchmarks.faces_speed", argv))
    stages = [Stage.parse(s).load(args.device) for s in (args.stages.split(";") if args.stages else default_stages())]
    labelled = load_labelled(Path(args.labels)) if args.labels else []
    labels: dict[str, LabelScore] = {}
    agree: dict[str, Agreement] = {}
    if labelled:
        results = {st.spec: [st.detect([lab.pixels])[0] for lab in labelled] for st in stages}
        shapes = [lab.pixels.shape for lab in labelled]
        ref = results[stages[0].spec]
        for st in stages:
            labels[st.spec] = score_labelled(results[st.spec], labelled, args.iou)
            agree[st.spec] = agreement(results[st.spec], ref, shapes)
        if args.draw:
            draw(Path(args.draw), labelled, results)
    sizes = [int(s) for s in args.sizes.split(",") if s] if args.sizes else []
    speed = time_stages(stages, sizes, args.n, args.batch, args.repeat) if sizes else {}
    env = rec.environment
    meta = {
        "command": rec.command,
        "commit": rec.commit,
        "env": f"{env['cpu_count']} logical CPUs, torch {env.get('torch')} with {env.get('torch_threads')} threads, "
        f"Python {env['python']}",
        "load": rec.load(),
        "iou": args.iou,
        "labelled_images": len(labelled),
        "batch": args.batch,
        "repeat": args.repeat,
        "speed_source": f"{args.n} photos: FFHQ 512 px resized to each side (astronaut without the shared data)",
    }
    return render(stages, labels, agree, speed, meta)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.faces_speed", description=__doc__.splitlines()[0],
        epilog="Example: python -m benchmarks.faces_speed --threads 1 --out benchmarks/results/faces.md",
    )  # fmt: skip
    ap.add_argument("--stages", default=None,
                    help="';'-separated stages NAME[@SIDE|@full][:k=v,...], the first is the reference "
                         "(default: mtcnn@full;mtcnn@1024;<scan default>;opencv@1024)")  # fmt: skip
    ap.add_argument("--labels", default=str(LABELS), help="labelled boxes (JSON); '' to skip the labelled set")
    ap.add_argument("--iou", type=float, default=0.4, help="IoU at which a detection finds a labelled face")
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="image sides to time ('' to skip)")
    ap.add_argument("--n", type=int, default=24, help="photos per timed size")
    ap.add_argument("--batch", type=int, default=16, help="images per detector call when timing (a scan chunk)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per stage and size; the best is reported")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--draw", default=None, help="write the labelled images with every box drawn into this folder")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown report here (else print it)")
    args = ap.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    text = run(args, argv)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
