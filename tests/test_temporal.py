"""Temporal consistency of face tracks (``detectors.temporal``) and the video protocol's temporal levels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from detectors.inconsistency.regions import crop_regions
from detectors.temporal import TrackAccumulator, track_consistency

S = 64


def _frame(rng: np.random.Generator, base: np.ndarray, face_noise: float, face_shift: int = 0) -> np.ndarray:
    """``base`` with fresh sensor noise; the inner face re-made with its own noise level (and moved content)."""
    img = base + rng.normal(0, 3.0, base.shape)
    inner = crop_regions(S, 0.3).rho <= 1.0
    face = np.roll(base, face_shift, axis=1) + rng.normal(0, face_noise, base.shape)
    img[inner] = face[inner]
    return np.clip(img, 0, 255).astype(np.uint8)


def _base(rng: np.random.Generator) -> np.ndarray:
    return cv2.resize(rng.uniform(60, 200, (6, 6, 3)).astype(np.float32), (S, S), interpolation=cv2.INTER_CUBIC)


def test_a_re_rendered_face_flickers_and_drifts_against_a_steady_surround():
    rng = np.random.default_rng(0)
    base = _base(rng)
    steady = [_frame(rng, base, 3.0) for _ in range(8)]
    # a swap: each frame's face rendered anew, its noise level and content jumping while the surround holds still
    swapped = [_frame(rng, base, [0.5, 6.0][i % 2], face_shift=[0, 3][i % 2]) for i in range(8)]
    a, b = track_consistency(steady, 0.3), track_consistency(swapped, 0.3)
    assert a.n_frames == 8 and set(a.flicker_by_contrast) == {"core-noise", "core-e1", "core-e2", "band-noise",
                                                               "band-e1", "core-cb", "core-cr"}  # fmt: skip
    assert b.boundary_flicker > 2 * a.boundary_flicker
    assert b.appearance_drift > 2 * a.appearance_drift
    assert TrackAccumulator(0.3).extend(steady[:2]).result().boundary_flicker == 1.0  # too short to say


def test_video_protocol_reports_temporal_levels(tmp_path):
    from benchmarks.runner import RunOptions, run
    from detectors.calibration import fit_calibrator
    from detectors.modelfile import save_model
    from detectors.registry import build_detector
    from forensics_core.dataset import ManifestRow, write_manifest
    from forensics_core.hashing import sha256_file
    from forensics_core.media import write_video

    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    root = tmp_path / "clips"
    root.mkdir()
    rows = []
    for k in range(6):
        fake = k % 2 == 1
        base = _base(rng)
        frames = [_frame(rng, base, [0.5, 8.0][i % 2] if fake else 3.0, [0, 4][i % 2] if fake else 0) for i in range(8)]
        rel = f"clip_{k}.mp4"
        write_video(root / rel, frames, fps=10, crf=5)
        rows.append(ManifestRow(rel, "fake" if fake else "real", sha256_file(root / rel), method="swap" if fake else "",
                                split="test"))  # fmt: skip
    write_manifest(root, rows)
    det = build_detector("surround", res=S, n_trees=4)
    model = save_model(tmp_path / "m", det, fit_calibrator("none", np.zeros(4), np.array([0, 0, 1, 1])),
                       {"balanced": 0.5, "fpr1": 0.9})  # fmt: skip
    cfg = {
        "name": "tiny-temporal", "protocol": "video", "datasets": [str(root)],
        "detectors": [{"model": str(model), "label": "surround"}],
        "options": {"every": 1, "max_frames": 8, "aggregate": "mean", "temporal": True, "group_by": []},
        "metrics": {"bootstrap": 20}, "speed": {"n_images": 2, "batch": 2, "latency_samples": 2},
    }  # fmt: skip
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    res = run(path, RunOptions(out=tmp_path / "run", device="cpu", workers=1, progress=False))
    levels = {c["level"]: c for c in res["cells"]}
    assert set(levels) == {"frame", "clip", "flicker", "drift"}
    assert levels["flicker"]["metrics"]["auc"] == 1.0 and "ece" not in levels["flicker"]["metrics"]
    assert (levels["drift"]["n_real"], levels["drift"]["n_fake"]) == (3, 3)
    assert "| surround |" in (Path(tmp_path / "run") / "report.md").read_text()
