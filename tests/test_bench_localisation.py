"""The ``localisation`` protocol and the still-photo swap set that feeds it: masks in, pixel AUC / IoU out."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from forensics_core.dataset import ManifestRow, read_manifest, write_manifest
from forensics_core.hashing import sha256_file

S = 96


def _photo(rng: np.random.Generator) -> np.ndarray:
    base = cv2.resize(rng.uniform(60, 200, (6, 6, 3)).astype(np.float32), (S, S), interpolation=cv2.INTER_CUBIC)
    return np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)


def _landmarks() -> np.ndarray:
    from forensics_core.faces.crops import canonical_landmarks

    return canonical_landmarks(S, 0.6)


def _source_rows(root: Path, n: int, rng: np.random.Generator, edited: bool) -> list[ManifestRow]:
    """Source-store rows (the whole photo + its landmarks); with ``edited`` each has a smoothed square on the
    cheek, its mask beside it, and a CIPLAB-style name whose region code says 'mouth'."""
    lm = _landmarks()
    rows = []
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for i in range(n):
        img = _photo(rng)
        extra = {"store": "source", "crop_landmarks": lm.tolist(), "src_width": S, "src_height": S}
        name = f"img/easy_{i}_0001.png" if edited else f"img/real_{i}.png"
        if edited:
            mask = np.zeros((S, S), np.uint8)
            y0, x0 = int(lm[3, 1]) - 6, int(lm[3, 0]) - 4  # over the mouth
            mask[y0 : y0 + 14, x0 : x0 + 26] = 255
            soft = cv2.resize(cv2.resize(img, (S // 6, S // 6), interpolation=cv2.INTER_AREA), (S, S))
            img = np.where(mask[..., None] > 0, soft, img)
            cv2.imwrite(str(root / f"masks/{i}.png"), mask)
            extra["mask"] = f"masks/{i}.png"
        cv2.imwrite(str(root / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        rows.append(ManifestRow(name, "fake" if edited else "real", sha256_file(root / name), family="toy-edit"
                                if edited else "", split="test", extra=extra))  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    from detectors.calibration import fit_calibrator
    from detectors.modelfile import save_model
    from detectors.registry import build_detector

    base = tmp_path_factory.mktemp("loc")
    rng = np.random.default_rng(0)
    data = base / "data"
    write_manifest(data, _source_rows(data, 6, rng, edited=True) + _source_rows(data, 4, rng, edited=False))
    torch.set_num_threads(1)
    det = build_detector("surround", res=64, n_trees=4)  # untrained trees: its map needs no training
    model = save_model(base / "model", det, fit_calibrator("none", np.zeros(4), np.array([0, 0, 1, 1])),
                       {"balanced": 0.5, "fpr1": 0.9})  # fmt: skip
    return {"data": data, "model": Path(model), "base": base}


def _cfg(world, path: Path, **options) -> Path:
    cfg = {
        "name": "tiny-localisation", "protocol": "localisation",
        "datasets": [{"path": str(world["data"])}],
        "detectors": [{"model": str(world["model"]), "label": "surround"}],
        "options": {"threshold": 0.5, **options}, "metrics": {"bootstrap": 50},
        "speed": {"n_images": 2, "batch": 2, "latency_samples": 2}, "batch_size": 8,
    }  # fmt: skip
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_localisation_scores_maps_against_masks_beside_the_face_prior(world, tmp_path):
    from benchmarks.localisation_protocol import iou, pixel_auc
    from benchmarks.runner import RunOptions, run

    out = tmp_path / "run"
    res = run(_cfg(world, tmp_path / "c.yaml"), RunOptions(out=out, device="cpu", workers=1, progress=False))
    (cell,) = res["cells"]
    m = cell["metrics"]
    assert cell["level"] == "pixel" and m["n"] == 6 and m["n_defined"] == 6  # edited rows only, reals not needed
    # the smoothed patch stands out against its surround: the map ranks its pixels high
    assert m["pixel_auc"] > 0.7 and m["ci"]["pixel_auc"][0] <= m["pixel_auc"] <= m["ci"]["pixel_auc"][1]
    assert 0 <= m["iou"] <= 1 and 0 <= m["prior_iou"] <= 1 and "prior_pixel_auc" in m
    md = (out / "report.md").read_text()
    assert "## Localisation" in md and "| surround |" in md and "## All cells" not in md
    saved = json.loads(next((out / "cells").glob("*.json")).read_text())
    assert saved["level"] == "pixel" and len(saved["extra"]["iou"]) == 6
    # the metrics come back from the committed per-image values alone
    from benchmarks.report import recompute_metrics

    again = recompute_metrics(out, bootstrap=50)
    assert again["cells"][0]["metrics"]["pixel_auc"] == pytest.approx(m["pixel_auc"])
    # the measures themselves
    truth = np.zeros((4, 4), bool)
    truth[:2] = True
    assert pixel_auc(truth, truth.astype(float)) == 1.0 and np.isnan(pixel_auc(np.ones((2, 2), bool), np.ones((2, 2))))
    assert iou(truth, truth) == 1.0 and iou(truth, ~truth) == 0.0


def test_weak_ground_truth_from_region_codes(world, tmp_path):
    from benchmarks.localisation_protocol import region_code, weak_mask
    from benchmarks.protocols import Item

    rows = read_manifest(world["data"])
    item = Item(world["data"] / rows[0].path, 1, rows[0], "data")
    assert region_code(item) == "0001"
    m = weak_mask((S, S), _landmarks(), "0001")
    lm = _landmarks()
    assert m[int(lm[3:, 1].mean()), int(lm[3:, 0].mean())] and not m[int(lm[0, 1]), int(lm[0, 0])]  # mouth, not eye
    # rows whose mask column is dropped are still scored with weak: true, from the name's code
    data = tmp_path / "weak"
    data.mkdir()
    for r in rows:
        src = world["data"] / r.path
        (data / r.path).parent.mkdir(parents=True, exist_ok=True)
        (data / r.path).write_bytes(src.read_bytes())
        r.extra.pop("mask", None)
    write_manifest(data, rows)
    from benchmarks.config import load_config
    from benchmarks.protocols import BenchPlanError, get_protocol

    strong = _cfg({**world, "data": data}, tmp_path / "s.yaml")
    with pytest.raises(BenchPlanError, match="ground truth"):
        get_protocol("localisation").plan(load_config(strong))
    weak = load_config(_cfg({**world, "data": data}, tmp_path / "w.yaml", weak=True))
    (cell,) = get_protocol("localisation").plan(weak).cells
    assert len(cell.items) == 6


def test_still_swaps_write_edits_masks_and_matched_reals(tmp_path):
    from generators.stillswap import StillSwapConfig, make_swap_dataset

    rng = np.random.default_rng(1)
    src = tmp_path / "src"
    rows = _source_rows(src, 6, rng, edited=False)
    for r in rows:
        r.split = "val"
    write_manifest(src, rows)
    out = make_swap_dataset(src, tmp_path / "swaps", split="val", n=4, cfg=StillSwapConfig(p_splice=0.5, seed=3))
    got = read_manifest(out)
    fakes = [r for r in got if r.label == "fake"]
    assert len(got) == 8 and len(fakes) == 4
    for r in fakes:
        mask = cv2.imread(str(out / r.extra["mask"]), cv2.IMREAD_GRAYSCALE)
        real = cv2.imread(str(out / r.path.replace("fake/", "real/")))
        fake = cv2.imread(str(out / r.path))
        assert mask.shape == (S, S) and 0 < (mask > 127).mean() < 0.6
        assert r.extra["kind"] in ("swap", "splice")
        assert (r.extra["region_code"] == "face") == (r.extra["kind"] == "swap")
        diff = np.abs(real.astype(int) - fake.astype(int)).max(axis=2)
        # edited inside the mask; outside only JPEG noise (both sides were saved as JPEGs of drawn qualities)
        assert diff[mask > 127].mean() > 2 * diff[mask == 0].mean()
        assert r.split == "test" and r.extra["store"] == "source" and len(r.extra["crop_landmarks"]) == 5
