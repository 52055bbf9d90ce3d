"""Shortcut-free training data: delivery histories drawn alike for both classes, before the face is cropped.

What these pin: a source-stored import keeps the pixels and the face landmarks such that cropping the stored
region gives the crop ``scan`` takes of the original file; a history's resize carries the landmarks along; one
seed gives one history; validation views get a fixed history per item; training with ``delivery`` runs and the
model card states the distribution; the importer gives every source with training rows validation rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from detectors.augment import DeliveryConfig, deliver, random_delivery
from detectors.data import ByteCache, Item, eval_array, face_view, load_items
from forensics_core import degrade as D
from forensics_core.dataset import ManifestRow, write_manifest
from forensics_core.errors import UsageError
from forensics_core.faces.crops import align_face, canonical_landmarks, native_crop
from forensics_core.hashing import sha256_file
from forensics_core.importers import NormaliseConfig, face_region, split_for

if TYPE_CHECKING:
    import torch

LM = canonical_landmarks(100, 0.3) + [150, 90]  # a face whose crop footprint lies inside a 400 x 300 image


def _photo(rng: np.random.Generator, h: int = 300, w: int = 400) -> np.ndarray:
    small = rng.integers(0, 255, (h // 8, w // 8, 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def test_source_region_crops_like_the_original_file():
    img = _photo(np.random.default_rng(0))
    x0, y0, x1, y1 = face_region(img.shape, LM, 128, 0.3)
    assert x0 % 8 == 0 and y0 % 8 == 0 and 0 <= x0 < x1 <= 400 and 0 <= y0 < y1 <= 300
    assert (x1 - x0) * (y1 - y0) < img.shape[0] * img.shape[1]  # a region, not the whole image
    full = align_face(img, LM, 128, 0.3)
    region = align_face(img[y0:y1, x0:x1], LM - [x0, y0], 128, 0.3)
    assert np.abs(full.astype(int) - region.astype(int)).max() <= 1


def test_a_resize_in_the_history_carries_the_landmarks():
    img = _photo(np.random.default_rng(1))
    ops = [D.op("resize", scale=0.5, interp="area"), D.op("jpeg", q=90)]
    small, lm = deliver(img, LM, ops)
    assert small.shape[:2] == (150, 200)
    assert np.allclose(lm, (LM + 0.5) * 0.5 - 0.5)
    # the face lands where it did: the aligned crops of the original and the downscaled copy agree
    a, b = align_face(img, LM, 64, 0.3), align_face(small, lm, 64, 0.3)
    assert np.abs(a.astype(float) - b.astype(float)).mean() < 12


def test_histories_are_seeded_and_cover_none_jpeg_and_resample():
    cfg = DeliveryConfig()
    draw = lambda s: [str(o) for o in random_delivery(np.random.default_rng(s), cfg)]  # noqa: E731
    assert draw(5) == draw(5)
    hist = [draw(s) for s in range(400)]
    share_none = np.mean([h == [] for h in hist])
    assert 0.12 < share_none < 0.28  # p_none = 0.2
    qualities = [int(o.split("q=")[1]) for h in hist for o in h if o.startswith("jpeg")]
    assert min(qualities) >= 40 and max(qualities) <= 100 and len(set(qualities)) > 30
    assert any(o.startswith("resize") for h in hist for o in h)
    assert DeliveryConfig.preset("none") is None
    with pytest.raises(UsageError, match="unknown delivery preset"):
        DeliveryConfig.preset("heavy")


def test_halving_resizes_by_exactly_one_half_and_leaves_other_presets_streams_alone():
    """``p_halve`` puts a point mass at 0.5 among the drawn factors; presets without it must draw the very same
    histories as before it existed (shipped models record their preset, and a reproduced run must match)."""

    def scales(preset: str, seed: int) -> list[float]:
        cfg = DeliveryConfig.preset(preset)
        rng = np.random.default_rng(seed)
        ops = [o for _ in range(600) for o in random_delivery(rng, cfg, lossless=True)]
        return [dict(o.params)["scale"] for o in ops if o.name == "resize"]

    halving, rescaled = scales("halving", 3), scales("rescaled", 3)
    exact = np.mean([s == 0.5 for s in halving])
    assert 0.3 < exact < 0.5  # p_halve 0.4 of the resized files
    assert np.mean([s == 0.5 for s in rescaled]) == 0.0
    lo, hi = DeliveryConfig.preset("rescaled").resample_range
    assert all(lo <= s <= hi for s in halving)
    # the draw for p_halve happens only when it is set: rescaled's stream is the one drawn before p_halve existed
    assert len(rescaled) == 371 and rescaled[:3] == [0.6031888581655316, 0.9693870783852689, 0.6299167656272819]


def test_the_importer_puts_a_tenth_of_train_folders_into_val_and_keeps_crossval():
    rels = [f"real_faces/ffhq/train/{i}.png" for i in range(2000)]
    splits = [split_for(r, 0.1) for r in rels]
    assert 0.07 < splits.count("val") / len(rels) < 0.13 and set(splits) == {"train", "val"}
    assert split_for("gan_faces/x/crossval/1.jpg", 0.1) == "crossval"
    assert split_for("real_faces/utk/1.jpg", 0.1) in ("train", "val")
    assert NormaliseConfig(store="source").suffix == ".png"
    with pytest.raises(UsageError, match="--store"):
        NormaliseConfig(store="raw")


def _source_dataset(root: Path, n: int = 16) -> Path:
    """A source-stored dataset: uncropped regions with landmarks (fakes carry a period-2 pattern)."""
    rng = np.random.default_rng(3)
    root.mkdir(parents=True)
    rows = []
    for i in range(n):
        for label in ("real", "fake"):
            img = _photo(rng, 160, 160)
            if label == "fake":
                cb = ((np.indices((160, 160)).sum(0) % 2) * 2 - 1) * 10
                img = np.clip(img.astype(int) + cb[..., None], 0, 255).astype(np.uint8)
            p = f"{label}_{i}.png"
            cv2.imwrite(str(root / p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            lm = canonical_landmarks(100, 0.3) + 30
            rows.append(ManifestRow(
                path=p, label=label, sha256=sha256_file(root / p), split="val" if i % 4 == 0 else "train",
                family="checker" if label == "fake" else "", generator=f"toy{i % 2}" if label == "fake" else "toy",
                extra={"store": "source", "crop_landmarks": lm.tolist(), "src_width": 160, "src_height": 160,
                       "source_format": "png" if label == "fake" else "jpeg"},
            ))
    write_manifest(root, rows)
    return root


def test_views_of_source_items_crop_like_scan_and_val_histories_are_fixed(tmp_path):
    ds = _source_dataset(tmp_path / "ds", n=4)
    items, _ = load_items([str(ds)], "eval")
    assert all(it.store == "source" and it.landmarks.shape == (5, 2) for it in items)
    assert [it.lossless for it in items] == [it.y == 1 for it in items]  # the manifest's source_format reaches it
    cache = ByteCache(items)
    plain = eval_array(cache, 64)
    assert np.array_equal(plain[0], align_face(cache.image(0), items[0].landmarks, 64, 0.3))
    native = eval_array(cache, 64, crop="native")  # the model's crop policy reaches every view
    assert np.array_equal(native[0], native_crop(cache.image(0), items[0].landmarks, 64, 0.3))
    cfg = DeliveryConfig(p_none=0.0, p_jpeg=1.0, jpeg_range=(40, 40))
    hist = eval_array(cache, 64, delivery=cfg, seed=1)
    assert np.array_equal(hist, eval_array(cache, 64, delivery=cfg, seed=1))
    assert not np.array_equal(hist, plain) and np.abs(hist.astype(int) - plain.astype(int)).mean() < 20
    # an already-cropped (aligned) item is only resized: no history is stacked on its importer's JPEG
    aligned = Item(Path("x"), 0, "g", "", "ds")
    out = face_view(cache.image(0), aligned, 64, 0.3, np.random.default_rng(0), cfg)
    assert out.shape == (64, 64, 3) and np.array_equal(out, D.resize_to(cache.image(0), 64))


def test_training_with_delivery_records_the_distribution(tmp_path):
    from detectors.train.loop import train
    from detectors.train.options import TrainOptions

    ds = _source_dataset(tmp_path / "ds")
    run = train(TrainOptions(
        detector="npr", data=[str(ds)], val=[str(ds)], res=32, epochs=1, batch=8, steps_per_epoch=2,
        progress=False, augment="flip", delivery="mixed", out=str(tmp_path / "runs"),
        detector_cfg={"widths": (8, 16, 32)},
    ))
    card = json.loads((run / "model" / "model.json").read_text())
    d = card["training"]["delivery"]
    assert d["preset"] == "mixed" and d["jpeg_range"] == [40, 100] and d["p_none"] == 0.2
    assert set(card["thresholds"]) >= {"balanced", "fpr1", "fpr01"}
    from detectors.calibration import HOLD_UNDER

    hold = card["training"]["threshold_hold"]["fpr1"]  # the val reals re-delivered every common way
    assert set(HOLD_UNDER) <= set(hold) and card["thresholds"]["fpr1"] == max(hold[v] for v in [*HOLD_UNDER, "mixed"])


def test_held_presets_keep_their_promise_under_every_delivery(tmp_path):
    """A preset fitted on reals with mixed histories can flag far more than 1 % of reals that all share one
    history; held presets keep every listed history at or under the preset's FPR, and name which one set it."""
    from detectors.calibration import hold_presets, threshold_presets

    rng = np.random.default_rng(0)
    mixed = rng.random(1000) * 0.5
    shifted = mixed + 0.2  # the same reals, all re-saved the one way the model drifts on
    thr = threshold_presets(np.r_[mixed, rng.random(1000) * 0.5 + 0.5], np.r_[np.zeros(1000), np.ones(1000)])
    assert (shifted >= thr["fpr1"]).mean() > 0.05
    out, table = hold_presets(thr, {"raw": mixed, "jpeg50": shifted})
    assert (shifted >= out["fpr1"]).mean() <= 0.01 and (mixed >= out["fpr1"]).mean() <= 0.01
    assert table["fpr1"]["held_by"] == "jpeg50" and table["fpr1"]["mixed"] == thr["fpr1"]
    assert out["balanced"] == thr["balanced"] and out["fpr01"] >= out["fpr1"]
    calm, _ = hold_presets(thr, {"raw": mixed * 0.5})
    assert calm == thr  # a history quieter than the mixed one never lowers a preset

    # per source: an easy large source (UTKFace-like) no longer hides a hard small one (FFHQ-like) in the pool
    easy, hard = rng.random(1000) * 0.2, 0.3 + rng.random(200) * 0.45
    pooled = np.r_[easy, hard]
    src = np.array(["real_faces/utk"] * 1000 + ["real_faces/ffhq"] * 200)
    pool_only, _ = hold_presets(thr, {"jpeg50": pooled})
    assert (hard >= pool_only["fpr1"]).mean() > 0.02
    each, table = hold_presets(thr, {"jpeg50": pooled}, {"jpeg50": src})
    assert (hard >= each["fpr1"]).mean() <= 0.01 and table["fpr1"]["held_by"] == "jpeg50 (ffhq)"
    assert table["fpr1"]["n_real"] == 200  # the binding source's own reals, not the pool's 1200
    small, _ = hold_presets(thr, {"jpeg50": pooled}, {"jpeg50": src}, min_source=500)
    assert small == pool_only  # a source too small to place a 1 % tail is held only in the pool


def test_calibrate_command_holds_presets_on_source_reals(tmp_path):
    from click.testing import CliRunner

    from cli import root
    from detectors.train.loop import train
    from detectors.train.options import TrainOptions

    ds = _source_dataset(tmp_path / "ds")
    run = train(TrainOptions(
        detector="npr", data=[str(ds)], val=[str(ds)], res=32, epochs=1, batch=8, steps_per_epoch=2,
        progress=False, delivery="mixed", out=str(tmp_path / "runs"), detector_cfg={"widths": (8, 16, 32)},
    ))
    args = ["detector", "calibrate", str(run / "model"), "--data", str(ds), "--split", "train", "--split", "val"]
    res = CliRunner().invoke(root, [*args, "--out", str(tmp_path / "held")])
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "held" / "model.json").read_text())
    assert card["thresholds"]["fpr1"] >= card["training"]["threshold_hold"]["fpr1"]["raw"]
    from detectors.model_card import write_model_card

    text = write_model_card(tmp_path / "held", card, "forensics detector calibrate ...").read_text()
    assert "## Presets held under every common delivery" in text and "| fpr1 | " in text and "half-jpeg75" in text
    assert card["training"]["recalibrated_by"].startswith("forensics ") and "refits calibration" in text
    res = CliRunner().invoke(root, [*args, "--no-hold", "--out", str(tmp_path / "plain")])
    assert res.exit_code == 0, res.output
    assert "threshold_hold" not in json.loads((tmp_path / "plain" / "model.json").read_text())["training"]
    # --tta flip: set before calibrating, written into the config the model file loads with
    from detectors.modelfile import load_model

    assert load_model(tmp_path / "plain", device="cpu").detector.cfg.tta == "none"
    res = CliRunner().invoke(root, [*args, "--no-hold", "--tta", "flip", "--out", str(tmp_path / "flip")])
    assert res.exit_code == 0, res.output
    flip = load_model(tmp_path / "flip", device="cpu")
    assert flip.detector.cfg.tta == "flip" and flip.card["config"]["tta"] == "flip"
    assert flip.card["calibration"] != json.loads((tmp_path / "plain" / "model.json").read_text())["calibration"]


def test_lossless_sources_get_a_camera_jpeg_whatever_their_class():
    """``camera``: a PNG source (FFHQ reals, generator samples) is as rarely 'never compressed' as a JPEG source."""
    cfg = DeliveryConfig.preset("camera")
    first_jpeg = lambda lossless: np.mean([  # noqa: E731
        bool(h) and str(h[0]).startswith("jpeg")
        for h in (random_delivery(np.random.default_rng(s), cfg, lossless) for s in range(400))
    ])
    never_compressed = lambda lossless: np.mean([  # noqa: E731
        not any(str(o).startswith("jpeg") for o in random_delivery(np.random.default_rng(s), cfg, lossless))
        for s in range(400)
    ])
    assert first_jpeg(True) > 0.8 and never_compressed(True) < 0.1
    assert never_compressed(False) > 0.2  # a JPEG source already carries its own history: nothing added
    assert DeliveryConfig.preset("mixed").p_lossless_jpeg == 0.0  # mixed keeps its recorded meaning
    # ``quarter-matched``: every lossless source first gets a JPEG of the fake scrape's quality (q70-80)
    matched = DeliveryConfig.preset("quarter-matched")
    firsts = [random_delivery(np.random.default_rng(s), matched, True, side=512)[0] for s in range(200)]
    assert all(o.name == "jpeg" and 70 <= dict(o.params)["q"] <= 80 for o in firsts)


def test_model_card_lineage_follows_recorded_hashes_and_paths_are_portable(tmp_path):
    """The card's fine-tuned-from chain is read from the ancestors' own model files while the recorded reference
    still holds the recorded weights; machine paths never reach the card."""
    from detectors.calibration import TemperatureScaling
    from detectors.model_card import lineage, portable
    from detectors.modelfile import load_model, save_model
    from detectors.registry import build_detector
    from forensics_core.config import REPO_ROOT

    cal = TemperatureScaling().fit(np.r_[-1.0, 1.0], np.r_[0, 1])
    det = build_detector("npr", res=32, widths=(8, 16, 32))
    a = save_model(tmp_path / "a", det, cal, {"balanced": 0.5}, name="a", training={"command": "train a"})
    sha_a = load_model(a).sha256
    b = save_model(tmp_path / "b", det, cal, {"balanced": 0.5}, name="b",
                   training={"command": "train b", "init_from": {"model": str(a), "name": "a", "sha256": sha_a}})
    card_c = {"training": {"init_from": {"model": str(b), "name": "b", "sha256": load_model(b).sha256}}}
    chain = lineage(card_c)
    assert [(e["name"], e["command"]) for e in chain] == [("b", "train b"), ("a", "train a")]
    stale = {"training": {"init_from": {"model": str(a), "name": "a", "sha256": "0" * 64}}}
    assert lineage(stale) == [{"name": "a", "sha256": "0" * 64, "command": ""}]  # a moved on: stop at the hash
    assert lineage({"training": {}}) == []
    scratch = str(REPO_ROOT.parent / "scratch")
    cmd = f"--data {scratch}/data/x --install-to {REPO_ROOT}/forensics"
    assert portable(cmd) == "--data $W/data/x --install-to ./forensics"
    # a scratch folder recorded on another machine (not beside this checkout) renders the same from any clone
    assert portable("--out /elsewhere/scratch/runs-A --recon /elsewhere/scratch") == "--out $W/runs-A --recon $W"
    assert portable("/tmp/scratchpad/x") == "/tmp/scratchpad/x"


#: a colour change of zero luma (BT.601: 0.299 * 0.114 - 0.114 * 0.299 = 0)
ZERO_LUMA = [0.114, 0.0, -0.299]


def _assert_only_seen_by(
    seeing: torch.nn.Module, blind: torch.nn.Module, x: torch.Tensor, change: torch.Tensor
) -> None:
    """Two detectors with the same weights: ``blind`` embeds ``x`` and ``x + change`` alike, ``seeing`` does not."""
    import torch

    with torch.no_grad():
        assert torch.allclose(blind.embed(x), blind.embed(x + change), atol=1e-5)
        assert not torch.allclose(seeing.embed(x), seeing.embed(x + change), atol=1e-3)


def test_luma_npr_ignores_colour_planes_and_loads_rgb_weights():
    """``residual=luma``: JPEG's chroma subsampling (any zero-luma colour change) cannot move the residual stream;
    the weights of an ``rgb`` model load unchanged (same shapes), which is how v3 is fine-tuned into it."""
    import torch

    from detectors.registry import build_detector

    rgb = build_detector("npr", res=32, widths=(8, 16, 32), unshuffle=2)
    luma = build_detector("npr", res=32, widths=(8, 16, 32), unshuffle=2, residual="luma")
    luma.load_state_dict(rgb.state_dict())
    luma.eval()
    x = torch.rand(2, 3, 32, 32)
    # a half-resolution colour plane brought back by a smooth upsampler, as a JPEG decoder does with 4:2:0 chroma
    up = torch.nn.functional.interpolate(torch.randn(2, 1, 16, 16), scale_factor=2, mode="bilinear")
    _assert_only_seen_by(rgb, luma, x, up * torch.tensor(ZERO_LUMA).view(1, 3, 1, 1))
    with pytest.raises(UsageError, match="residual must be"):
        build_detector("npr", res=32, residual="hsv")


def test_half_chroma_hides_full_resolution_colour_from_both_streams():
    """``chroma=half``: colour detail finer than 2 px (what a lossless source has and a 4:2:0 JPEG has lost) moves
    neither the residual nor the RGB stream; luma passes untouched; bad values are refused in one line."""
    import torch

    from detectors.models.npr import LUMA, half_chroma
    from detectors.registry import build_detector

    x = torch.rand(2, 3, 32, 32) * 2 - 1
    luma = (x * LUMA.view(1, 3, 1, 1)).sum(1)
    assert torch.allclose((half_chroma(x) * LUMA.view(1, 3, 1, 1)).sum(1), luma, atol=1e-5)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    checker = ((yy + xx) % 2 * 2 - 1).float()  # averages to zero over every 2x2 block
    fine = checker * torch.tensor(ZERO_LUMA).view(3, 1, 1) * 0.5
    kw = dict(res=32, widths=(8, 16, 32), unshuffle=2, with_rgb=True, residual="luma")
    half = build_detector("npr", chroma="half", **kw).eval()
    full = build_detector("npr", **kw).eval()
    full.load_state_dict(half.state_dict())
    _assert_only_seen_by(full, half, x, fine)
    with pytest.raises(UsageError, match="chroma must be"):
        build_detector("npr", res=32, chroma="quarter")


def test_md_sections_nests_a_report_under_a_card_section():
    from detectors.model_card import md_sections

    report = "# Title\n\nCommand: `x`\n\n## a\n\none\n\n## b (n)\n\ntwo\n### b1\n"
    assert md_sections(report) == ["### a", "", "one", "", "### b (n)", "", "two", "### b1"]
    assert md_sections(report, "## b") == ["### b (n)", "", "two", "### b1"]
    assert md_sections(report, "## c") == []


def test_exclude_generator_drops_one_source_of_a_family_and_is_recorded(tmp_path):
    """Cross-source protocol: the shared StyleGAN2 files can be left out while the family's other generator stays."""
    from detectors.train.loop import train
    from detectors.train.options import TrainOptions

    ds = _source_dataset(tmp_path / "ds")
    items, _ = load_items([str(ds)], "train", exclude_generators=["toy1"])
    fakes = {it.generator for it in items if it.y == 1}
    assert fakes == {"toy0"} and any(it.y == 0 for it in items)
    run = train(TrainOptions(
        detector="npr", data=[str(ds)], val=[str(ds)], res=32, epochs=1, batch=8, steps_per_epoch=1,
        progress=False, exclude_generators=["toy1"], out=str(tmp_path / "runs"), detector_cfg={"widths": (8, 16, 32)},
    ))
    card = json.loads((run / "model" / "model.json").read_text())
    assert card["training"]["exclude_generators"] == ["toy1"]


def test_blend_validation_measures_self_blends_not_gan_faces():
    from detectors.registry import build_detector

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    y = np.array([0, 0, 0, 0, 1, 1])
    det = build_detector("blend", res=32, widths=(8, 16), use_fakes=False)
    vx, vy = det.validation_views(x, y, seed=3)
    assert vy.tolist() == [0] * 4 + [1] * 4 and np.array_equal(vx[:4], x[:4])  # the GAN fakes are dropped
    assert np.array_equal(vx, det.validation_views(x, y, seed=3)[0])  # fixed per seed
    assert not np.array_equal(vx[4:], x[:4])
    with_fakes = build_detector("blend", res=32, widths=(8, 16), use_fakes=True).validation_views(x, y, 3)[1]
    assert with_fakes.tolist() == [0] * 4 + [1] * 6
    npr = build_detector("npr", res=32, widths=(8, 16))
    assert npr.validation_views(x, y, 3)[0] is x


def _assert_max_of_standardised_members(fused, ma, mb) -> None:
    """The fused logit of random faces is the larger of the two members' own logits, each standardised by the
    real reference the fused model stored."""
    faces = list(np.random.default_rng(1).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8))
    det = fused.detector
    za, zb = ma.logits(faces), mb.logits(faces)
    expect = np.maximum((za - float(det.real_mean[0])) / float(det.real_std[0]),
                        (zb - float(det.real_mean[1])) / float(det.real_std[1]))
    assert np.allclose(fused.logits(faces), expect, atol=1e-4)


def test_fuse_keeps_each_members_alarm_and_loads_as_one_model(tmp_path, capsys):
    """``detector fuse``: an artifact model and a blending model become one model file whose logit is the larger
    of the two members' logits, each standardised by the validation reals; mismatched inputs are refused."""
    import torch
    from click.testing import CliRunner

    from cli import main, root
    from detectors.modelfile import load_model
    from detectors.train.loop import train
    from detectors.train.options import TrainOptions

    ds = _source_dataset(tmp_path / "ds")
    common = dict(data=[str(ds)], val=[str(ds)], res=32, epochs=1, batch=8, steps_per_epoch=2, progress=False,
                  delivery="mixed")
    a = train(TrainOptions(detector="npr", out=str(tmp_path / "a"), detector_cfg={"widths": (8, 16, 32)}, **common))
    b = train(TrainOptions(detector="blend", out=str(tmp_path / "b"),
                           detector_cfg={"widths": (8, 16), "use_fakes": False}, **common))
    res = CliRunner().invoke(root, ["detector", "fuse", str(a / "model"), str(b / "model"), "--data", str(ds),
                                    "--split", "train", "--split", "val", "--out", str(tmp_path / "fused")])
    assert res.exit_code == 0, res.output
    fused = load_model(str(tmp_path / "fused"))
    ma, mb = load_model(str(a / "model")), load_model(str(b / "model"))
    assert fused.card["config"]["fusion"] == "max" and [m["sha256"] for m in fused.card["training"]["fused_from"]] == [
        ma.sha256, mb.sha256]
    assert "threshold_hold" in fused.card["training"] and set(fused.card["training"]["families"]) == {"checker"}
    _assert_max_of_standardised_members(fused, ma, mb)
    assert torch.all(fused.detector.real_std > 0)
    c = train(TrainOptions(detector="npr", out=str(tmp_path / "c"), **{**common, "res": 48},
                           detector_cfg={"widths": (8, 16, 32)}))
    code = main(["detector", "fuse", str(a / "model"), str(c / "model"), "--data", str(ds), "--out",
                 str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "share one input size" in err[0]


def test_fuse_maps_the_input_to_each_members_normalisation_and_edge(tmp_path, capsys):
    """Members trained with other normalisations (an ImageNet-normalised timm backbone beside a [-1, 1] NPR) each
    see their own input inside the fused model; members with other edge policies need ``--edge``."""
    from cli import main
    from detectors.modelfile import load_model
    from detectors.train.loop import train
    from detectors.train.options import TrainOptions

    ds = _source_dataset(tmp_path / "ds")
    common = dict(data=[str(ds)], val=[str(ds)], res=32, epochs=1, batch=8, steps_per_epoch=2, progress=False)
    a = train(TrainOptions(detector="npr", out=str(tmp_path / "a"), **common,
                           detector_cfg={"widths": (8, 16, 32), "crop": "native"}))
    b = train(TrainOptions(detector="timm", out=str(tmp_path / "b"), **common,
                           detector_cfg={"backbone": "resnet10t", "crop": "native", "edge": "reflect"}))
    ma, mb = load_model(str(a / "model")), load_model(str(b / "model"))
    assert ma.preprocess.mean != mb.preprocess.mean and (ma.preprocess.edge, mb.preprocess.edge) == ("clamp", "reflect")
    args = ["detector", "fuse", str(a / "model"), str(b / "model"), "--data", str(ds), "--split", "train", "--split",
            "val", "--no-hold"]
    assert main([*args, "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--edge" in err[0] and "reflect" in err[0]
    assert main([*args, "--edge", "reflect", "--out", str(tmp_path / "fused")]) == 0
    fused = load_model(str(tmp_path / "fused"))
    assert fused.preprocess.edge == "reflect" and fused.preprocess.mean == ma.preprocess.mean
    # a max logit is centred on the validation reals: calibrated with an intercept, not a scale that pins them at 0.5
    assert fused.card["calibration"]["kind"] == "platt"
    _assert_max_of_standardised_members(fused, ma, mb)


def test_blend_trains_and_validates_on_reals_alone(tmp_path):
    """A blending detector needs no labelled fakes, in training or validation (its positives are self-blends)."""
    from detectors.train.loop import train
    from detectors.train.options import TrainOptions

    ds = _source_dataset(tmp_path / "ds")
    run = train(TrainOptions(
        detector="blend", data=[str(ds)], val=[str(ds)], res=32, epochs=1, batch=8, steps_per_epoch=1,
        progress=False, exclude_families=["checker"], out=str(tmp_path / "runs"),
        detector_cfg={"widths": (8, 16), "use_fakes": False},
    ))
    card = json.loads((run / "model" / "model.json").read_text())
    assert card["training"]["families"] == [] and card["metrics"]["val_heldout_half"]["n_fake"] > 0


def test_held_pass_scores_each_source_real_under_every_delivery():
    """One held pass for training and ``detector calibrate``: only source-stored reals are re-delivered, each
    delivery's chain reaches the scorer, unscorable reals (NaN) are dropped with their source kept aligned."""
    from detectors.calibration import HOLD_UNDER, held_real_logits

    items = [
        Item(Path(f"r{i}.png"), 0, "real_faces/a" if i < 3 else "real_faces/b", "", "", store="source")
        for i in range(5)
    ]
    items += [Item(Path("f.png"), 1, "gan", "", "", store="source"), Item(Path("old.jpg"), 0, "real", "", "")]
    seen = []

    def score(reals, chain):
        seen.append((len(reals), str(chain)))
        z = np.arange(len(reals), dtype=float)
        z[1] = np.nan  # one file that fails to decode under every delivery
        return z

    held, sources = held_real_logits(items, score)
    assert [n for n, _ in seen] == [5] * len(HOLD_UNDER) and set(held) == set(HOLD_UNDER)
    assert seen[[*HOLD_UNDER].index("jpeg50")][1] == str(D.parse_chain("jpeg:q=50"))
    for name in HOLD_UNDER:
        assert held[name].tolist() == [0.0, 2.0, 3.0, 4.0]
        assert sources[name].tolist() == ["real_faces/a", "real_faces/a", "real_faces/b", "real_faces/b"]
    assert held_real_logits(items[-1:], score) == ({}, {})  # an aligned crop cannot be re-delivered


def test_crop_policy_gap_names_items_a_policy_cannot_cut():
    from detectors.data import crop_policy_gap

    items = [Item(Path("a.png"), 0, "g", "", "", store="source"), Item(Path("b.jpg"), 1, "g", "", "")]
    assert crop_policy_gap(items, "align") is None and crop_policy_gap(items[:1], "native") is None
    gap = crop_policy_gap(items, "native")
    assert gap is not None and "1 of 2" in gap and "--store source" in gap


def test_resample_floor_and_quarter_preset():
    """``min_side`` keeps a resample from taking a photo below that many pixels (given its side); ``quarter``
    reaches 0.25x on 512 px photos but never shrinks a 128 px thumbnail below 96 px."""
    cfg = DeliveryConfig.preset("quarter")
    scales = lambda side: [  # noqa: E731
        dict(o.params)["scale"] for s in range(300)
        for o in random_delivery(np.random.default_rng(s), cfg, side=side) if o.name == "resize"
    ]
    big, thumb = scales(512), scales(128)
    assert min(big) < 0.25 + 0.05 and min(big) >= 96 / 512 - 1e-9 and sum(s == 0.5 for s in big) > 10
    assert min(thumb) == pytest.approx(0.75)
    # without a side the floor is off: the stream of a preset without min_side is untouched
    assert [str(o) for o in random_delivery(np.random.default_rng(7), cfg)] == [
        str(o) for o in random_delivery(np.random.default_rng(7), cfg, side=0)]


def test_framings_cut_tight_photos_and_move_the_window(tmp_path):
    """A tight draw cuts the source around the face (landmarks follow) and the reflect window then keeps the face's
    place and share; a plain view of the same item with no framing is scan's crop; framings need crop=native."""
    from detectors.augment import Framing, FramingConfig, cut_tight, random_framing
    from detectors.train.loop import train
    from detectors.train.options import TrainOptions
    from forensics_core.faces.crops import native_window

    img = _photo(np.random.default_rng(4))
    fr = Framing(tight=0.6)
    small, lm = cut_tight(img, LM, fr, 64, 0.3)
    x0, y0, side = native_window(img.shape, LM, 64, 0.3, "reflect")
    assert abs(small.shape[0] - 0.6 * side) <= 2 and abs(small.shape[1] - 0.6 * side) <= 2
    xs, ys, side_s = native_window(small.shape, lm, 64, 0.3, "reflect")
    assert side_s == side and np.allclose(lm, LM - (np.asarray(LM) - lm)[0])
    assert cut_tight(img, LM, Framing(), 64, 0.3)[0] is img
    draws = [random_framing(np.random.default_rng(s), FramingConfig()) for s in range(400)]
    assert 0.12 < np.mean([d.tight > 0 for d in draws]) < 0.28 and 0.5 < np.mean([d.zoom != 1 for d in draws]) < 0.7
    assert all(0.8 <= d.zoom <= 1.3 for d in draws)
    ds = _source_dataset(tmp_path / "ds", n=4)
    items, _ = load_items([str(ds)], "eval")
    cache = ByteCache(items)
    plain = face_view(cache.image(0), items[0], 64, crop="native", edge="reflect")
    assert np.array_equal(plain, native_crop(cache.image(0), items[0].landmarks, 64, 0.3, "reflect"))
    views = {face_view(cache.image(0), items[0], 64, rng=np.random.default_rng(s), crop="native", edge="reflect",
                       framing=FramingConfig(p_tight=1.0)).tobytes() for s in range(4)}
    assert len(views) == 4
    opts = TrainOptions(detector="npr", data=[str(ds)], framing="photos", res=32, out=str(tmp_path / "runs"))
    with pytest.raises(UsageError, match="crop=native"):
        train(opts)
    with pytest.raises(UsageError, match="framing"):
        FramingConfig.preset("portrait")


def test_tight_framings_are_balanced_between_the_classes():
    """A source whose window mostly lies outside its photos (UTKFace's tight crops) must not make "tightly framed"
    a trait of its class: the other class's wide items are cut tight until both classes share one tight share."""
    from detectors.augment import FramingConfig, balanced_tight_rates
    from detectors.data import window_outside

    outside = np.r_[np.full(40, 0.7), np.full(60, 0.02), np.full(90, 0.02), np.full(10, 0.5)]  # 40 % tight reals
    y = np.r_[np.zeros(100, int), np.ones(100, int)]
    w = np.full(200, 1 / 200)
    cfg = FramingConfig()
    rates = balanced_tight_rates(outside, y, w, cfg)
    tight = outside >= cfg.tight_at
    share = {c: float(np.mean(tight[y == c] + (~tight[y == c]) * rates[y == c])) for c in (0, 1)}
    assert share[0] == pytest.approx(share[1]) == pytest.approx(0.4 + 0.6 * cfg.p_tight)
    assert (rates[tight] == 0).all()  # already tight: no extra cut
    item = Item(Path("x.png"), 0, "g", "", "d", store="source", landmarks=LM - [100, 50], shape=(100, 100))
    assert 0.5 < window_outside(item, 128, 0.3) < 1  # a 100 px photo around a face whose window is ~200 px
    assert window_outside(Item(Path("x.png"), 0, "g", "", "d"), 128, 0.3) == 0.0  # an aligned crop: unknown


def test_max_face_brings_big_sources_to_one_scale():
    """``max_face``: a face window over the cap is first resized into [cap / 2, cap]; smaller ones are untouched
    and draw nothing (the stream of the rest of the history is unchanged)."""
    cfg = DeliveryConfig.preset("quarter-faces")
    first = [random_delivery(np.random.default_rng(s), cfg, side=512, face=400)[0] for s in range(50)]
    assert all(o.name == "resize" and 96 / 400 - 1e-9 <= dict(o.params)["scale"] <= 192 / 400 for o in first)
    small = [str(o) for o in random_delivery(np.random.default_rng(3), cfg, side=128, face=120)]
    assert small == [str(o) for o in random_delivery(np.random.default_rng(3), DeliveryConfig.preset("quarter"),
                                                      side=128)]
