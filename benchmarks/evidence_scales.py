"""What the face-vs-surround evidence analyses measure on *real* photos: the scales their strengths are read on.

An evidence strength an analyst reads as "strong" must be rare on real photos. Each of the four analyses that
compare a face with its surround (``surround-noise``, ``blend-boundary``, ``cooccurrence``, ``jpeg-grid``)
reports raw statistics in its details; this tool runs them on real training photos of a ``--store source`` import
(each saved as the JPEG an analyst would scan, q85, with its stored landmarks) and prints the median and the 99th
percentile of each statistic. The analyses map a statistic to strength 0 at the real median and 1 at the real 99th
percentile (``forensics.evidence._common.real_scale``), with these numbers as their constants.

Example::

    python -m benchmarks.evidence_scales --data $FORENSICS_WORK/data/shared-src --n 300
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

#: analysis -> {statistic: function of the largest face's details}
STATISTICS: dict[str, dict[str, Any]] = {
    "surround-noise": {
        "noise_log_ratio": lambda f: abs(float(np.log(f["noise_ratio"]))),
        "slope_difference": lambda f: abs(float(f["slope_difference"])),
    },
    "blend-boundary": {"seam_step": lambda f: max(v["step_vs_typical"] for v in f["steps"].values())},
    "cooccurrence": {"core_median_z": lambda f: float(f["core_median_z"])},
    "jpeg-grid": {
        "off_grid_share": lambda f: float(f["face_windows_off_grid"]),
        "ghost_distance": lambda f: float(f["ghost_distance_core"]),
    },
}


def measure(data: Path, n: int = 300, split: str = "train", seed: int = 0, quality: int = 85) -> dict[str, Any]:
    """Median and 99th percentile of every statistic of :data:`STATISTICS` over ``n`` real photos of ``split``."""
    from PIL import Image

    from forensics.evidence import EvidenceSubject, run_file_evidence
    from forensics_core.dataset import read_manifest

    rows = [r for r in read_manifest(data) if r.label == "real" and r.split == split
            and r.extra.get("store") == "source" and r.extra.get("crop_landmarks") is not None]  # fmt: skip
    rng = np.random.default_rng(seed)
    rows = [rows[i] for i in sorted(rng.choice(len(rows), size=min(n, len(rows)), replace=False))]
    values: dict[str, dict[str, list[float]]] = {a: {s: [] for s in st} for a, st in STATISTICS.items()}
    with tempfile.TemporaryDirectory(prefix="evidence-scales-") as tmp:
        for i, r in enumerate(rows):
            with Image.open(data / r.path) as im:
                buf = io.BytesIO()
                im.convert("RGB").save(buf, "JPEG", quality=quality)
            path = Path(tmp) / f"{i}.jpg"
            path.write_bytes(buf.getvalue())
            with Image.open(path) as im:
                px = np.asarray(im.convert("RGB"))
            lm = np.asarray(r.extra["crop_landmarks"], np.float64).reshape(5, 2)
            pad = 0.6 * float(np.ptp(lm[:, 0]))
            subject = EvidenceSubject(str(path), "image", px, [(*(lm.min(0) - pad), *(lm.max(0) + pad))],
                                      face_landmarks=[lm])  # fmt: skip
            for res in run_file_evidence(list(STATISTICS), subject):
                faces = res.details.get("faces")
                if res.error is None and faces:
                    for stat, fn in STATISTICS[res.name].items():
                        values[res.name][stat].append(fn(faces[0]))
    return {
        "data": str(data), "split": split, "n": len(rows), "jpeg_quality": quality,
        "statistics": {a: {s: _summary(v) for s, v in st.items() if v} for a, st in values.items()},
    }


def _summary(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return {"median": float(np.median(v)), "p99": float(np.percentile(v, 99)), "n": int(v.size)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.evidence_scales",
        description="Median and 99th percentile of the face-vs-surround evidence statistics on real photos. "
        "Example: python -m benchmarks.evidence_scales --data $FORENSICS_WORK/data/shared-src --n 300",
    )
    ap.add_argument("--data", type=Path, required=True, help="a --store source import with real rows")
    ap.add_argument("--n", type=int, default=300, help="real photos measured")
    ap.add_argument("--split", default="train", help="their split (never a test split)")
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.data, args.n, args.split), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
