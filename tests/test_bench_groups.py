"""What the headline numbers rest on: split exclusion, grouped hold-outs, crops like scan, honest labels, and a
README leaderboard that matches the committed results.

Data are tiny PNGs written here (see ``tests/test_bench.py`` for the generated families ``nn`` / ``tconv``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.config import load_config
from benchmarks.leaderboard import DEFAULT_RESULTS, END, START, apply, readme_block
from benchmarks.protocols import Item, LeaveOneGroupOut, get_protocol
from benchmarks.report import MIN_REALS_FPR01, markdown
from benchmarks.runner import detector_input
from detectors.data import face_view, item_from_row, load_items
from forensics_core.dataset import ManifestRow, read_manifest, write_manifest
from forensics_core.errors import DataError
from forensics_core.hashing import sha256_file
from generators.registry import family_components, family_groups
from tests.test_bench import make_dataset, opts, robustness_cfg, world, write_cfg  # noqa: F401 (world: fixture)

REPO = Path(__file__).resolve().parents[1]


# -- components and groups ---------------------------------------------------------------------------------------


def test_groups_are_connected_components_and_unknown_families_stand_alone():
    comps = {"a": {"x"}, "b": {"x", "y"}, "c": {"y"}, "d": {"z"}, "e": set()}
    # a-b share x, b-c share y: one group although a and c share nothing directly
    assert family_groups(["c", "a", "e", "b", "d", "unknown"], comps) == [["a", "b", "c"], ["d"], ["e"], ["unknown"]]
    # a group is only what is present: without b, a and c are no longer connected
    assert family_groups(["a", "c"], comps) == [["a"], ["c"]]


def test_registered_suite_groups():
    """The shipped families declare what they share; the latent-diffusion families and inpaint are one group."""
    comps = family_components()
    assert "ldm-autoencoder" in comps["ae-recon"] and {"ldm-autoencoder", "ldm-unet"} <= comps["sdedit"]
    suite = ["dcgan", "pixelshuffle", "resgan", "stylegan2", "cgan", "cyclegan", "inpaint", "srgan", "ae-recon",
             "ldm", "sdedit", "ldm-inpaint"]
    groups = family_groups(suite)
    assert ["ae-recon", "inpaint", "ldm", "ldm-inpaint", "sdedit"] in groups
    assert ["cgan", "dcgan", "pixelshuffle", "resgan"] in groups  # DCGAN's discriminator trained all four
    assert ["stylegan2"] in groups and sum(len(g) for g in groups) == len(suite)


# -- leave-one-group-out -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_families(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("groups") / "data", n=4, families=("nn", "tconv", "solo"))


def _loo_cfg(tmp_path: Path, data: Path, protocol: str = "leave-one-group-out", **options):
    return load_config(write_cfg(tmp_path / "loo.yaml", protocol=protocol, datasets=[str(data)],
                                 detectors=["spectrum"], options=options or None))


def test_leave_one_group_out_holds_out_every_family_of_the_group(three_families, tmp_path):
    cfg = _loo_cfg(tmp_path, three_families)
    plan = LeaveOneGroupOut(components={"nn": {"shared-decoder"}, "tconv": {"shared-decoder"}}).plan(cfg)
    assert sorted(j.held_out for j in plan.jobs) == ["nn+tconv", "solo"]
    for job in plan.jobs:
        held = set(job.held_out.split("+"))
        for part in (job.train, job.val):
            assert not held & {i.row.family for i in part if i.y == 1}  # no family of the group trains
            assert any(i.y == 0 for i in part)  # reals join every training set
    cell = next(c for c in plan.cells if c.group["tested"] == "nn+tconv")
    assert {i.row.family for i in cell.items if i.y} == {"nn", "tconv"} and any(i.y == 0 for i in cell.items)
    assert cell.group["families"] == "nn, tconv" and cell.group["components"] == "shared-decoder"
    assert cell.group["key"] == "group"


def test_unregistered_families_are_their_own_groups(three_families, tmp_path):
    """With the registry's declarations (which know none of these names) the protocol is leave-one-family-out."""
    plan = get_protocol("leave-one-group-out").plan(_loo_cfg(tmp_path, three_families))
    family = get_protocol("leave-one-family-out").plan(_loo_cfg(tmp_path, three_families, "leave-one-family-out"))
    assert sorted(j.held_out for j in plan.jobs) == sorted(j.held_out for j in family.jobs) == ["nn", "solo", "tconv"]


@pytest.mark.parametrize("protocol", ["leave-one-family-out", "leave-one-group-out"])
def test_planning_never_trains_on_a_test_item(three_families, tmp_path, protocol):
    plan = get_protocol(protocol).plan(_loo_cfg(tmp_path, three_families, protocol))
    tested = {i.key for c in plan.cells for i in c.items}
    for job in plan.jobs:
        assert not tested & {i.key for i in job.train + job.val}
        assert {i.row.split for i in job.train} == {"train"} and {i.row.split for i in job.val} == {"val"}


# -- split exclusion in dataset loading ----------------------------------------------------------------------------


def _split_dataset(root: Path, splits: tuple[str, ...]) -> Path:
    root.mkdir(parents=True)
    rows = []
    for k, split in enumerate(s for s in splits for _ in range(2)):
        for label in ("real", "fake"):
            rel = f"{split or 'none'}_{label}_{k}.png"
            Image.fromarray(np.full((8, 8, 3), k * 10, np.uint8)).save(root / rel)
            rows.append(ManifestRow(rel, label, sha256_file(root / rel), family="f" if label == "fake" else "",
                                    split=split))
    write_manifest(root, rows)
    return root


@pytest.mark.parametrize("with_val", [True, False])
def test_load_items_never_trains_or_validates_on_crossval_or_test(tmp_path, with_val):
    splits = ("train", "", "crossval", "test") + (("val",) if with_val else ())
    ds = _split_dataset(tmp_path / "ds", splits)
    by_path = {str(ds / r.path): r.split for r in read_manifest(ds)}
    train, _ = load_items([str(ds)], "train")
    val, _ = load_items([str(ds)], "val")
    assert {by_path[str(i.path)] for i in train} == {"train", ""}
    assert {by_path[str(i.path)] for i in val} == ({"val"} if with_val else {"train", ""})
    held, _ = load_items([str(ds)], "eval", splits=("crossval",))
    assert {by_path[str(i.path)] for i in held} == {"crossval"}
    with pytest.raises(DataError, match="no usable rows"):
        load_items([str(_split_dataset(tmp_path / "held", ("crossval", "test")))], "train")


# -- the runner crops like scan ------------------------------------------------------------------------------------


def _source_item(tmp_path: Path, label: str = "real", native: int = 0) -> tuple[Item, np.ndarray]:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (96, 120, 3), dtype=np.uint8)
    path = tmp_path / f"{label}.png"
    Image.fromarray(img).save(path)
    lm = [[45.0, 40.0], [75.0, 40.0], [60.0, 55.0], [48.0, 70.0], [72.0, 70.0]]
    extra = {"store": "source", "crop_landmarks": lm, **({"res": native} if native else {})}
    row = ManifestRow(path.name, label, sha256_file(path), family="" if label == "real" else "f", extra=extra)
    return Item(path, row.y, row, "ds"), img


def test_source_stored_items_are_aligned_like_scan(tmp_path):
    item, img = _source_item(tmp_path)
    out = detector_input(item, img, 32, 0.3)
    expected = face_view(img, item_from_row(item.path, item.row, "ds"), 32, 0.3)
    assert out.shape == (32, 32, 3) and np.array_equal(out, expected)
    from forensics_core.degrade import resize_to

    assert not np.array_equal(out, resize_to(img, 32))  # not the whole region squashed


def test_match_res_shrinks_reals_only(tmp_path):
    real, img = _source_item(tmp_path, "real")
    fake, _ = _source_item(tmp_path, "fake", native=64)
    assert not np.array_equal(detector_input(real, img, 32, 0.3, match_res=24), detector_input(real, img, 32, 0.3))
    assert np.array_equal(detector_input(fake, img, 32, 0.3, match_res=24), detector_input(fake, img, 32, 0.3))
    # a native-crop model: the real stays at the matched size (landmarks follow) and is cut as training cuts it
    from detectors.augment import shrink_to_fake_size
    from detectors.data import item_from_row
    from forensics_core.faces.crops import native_crop

    ditem = item_from_row(real.path, real.row, real.dataset)
    small, lm = shrink_to_fake_size(img, ditem.landmarks, ditem.native, 24)
    out = detector_input(real, img, 32, 0.3, match_res=24, crop="native")
    assert small.shape[0] < img.shape[0] and np.array_equal(out, native_crop(small, lm, 32, 0.3))


def test_pooled_sets_by_family_with_matched_reals(tmp_path):
    fakes = make_dataset(tmp_path / "fakes", n=2)
    rows = read_manifest(fakes)
    for r in rows:
        r.extra["res"] = 16 if r.label == "fake" else 0
    write_manifest(fakes, rows)
    cfg = load_config(write_cfg(
        tmp_path / "sanity.yaml", protocol="cross-dataset", detectors=[{"model": str(tmp_path), "label": "m"}],
        datasets=[{"path": str(fakes), "where": {"label": "fake"}}, {"path": str(fakes), "where": {"label": "real"}}],
        options={"pool": True, "group_by": ["family"], "match_res": True},
    ))
    plan = get_protocol(cfg.protocol).plan(cfg)
    by = {c.group.get("family", "all"): c for c in plan.cells}
    assert sorted(by) == ["all", "nn", "tconv"] and all(c.match_res == 16 for c in plan.cells)
    assert {i.row.family for i in by["nn"].items if i.y} == {"nn"} and sum(1 - i.y for i in by["nn"].items) == 12


def test_relation_must_be_named(tmp_path):
    """A set is only called external when the benchmark file says so, and only with a known word."""
    from benchmarks.config import BenchConfigError

    ds = make_dataset(tmp_path / "d", n=1)
    base = {"protocol": "cross-dataset", "datasets": [str(ds)], "detectors": [{"model": str(tmp_path), "label": "m"}]}
    assert load_config(write_cfg(tmp_path / "a.yaml", **base)).options.relation == "same-source"
    with pytest.raises(BenchConfigError, match="relation must be one of same-source, external"):
        load_config(write_cfg(tmp_path / "b.yaml", **base, options={"relation": "cross"}))


# -- labels and statistics in reports ------------------------------------------------------------------------------


def _results(n_real: int) -> dict:
    m = {"auc": 0.9, "ap": 0.9, "eer": 0.1, "tpr_at_fpr1": 0.5, "tpr_at_fpr01": 0.25, "ece": 0.05, "brier": 0.1,
         "accuracy": {}, "balanced_accuracy": {}, "ci": {"auc": [0.85, 0.95]}}
    cell = {"id": "x", "detector": "m", "level": "image", "group": {"dataset": "sg2"}, "perturbation": "none",
            "perturbation_family": "none", "perturbation_level": None, "model": "m", "model_sha256": "ab" * 32,
            "n_real": n_real, "n_fake": 100, "n_errors": 0, "metrics": m}
    return {"benchmark": "b", "protocol": "cross-dataset", "config_file": "b.yaml", "config": {}, "run": {},
            "metrics_config": {"presets": [], "bootstrap": 1000, "ci": 0.95}, "speed": {}, "cells": [cell]}


@pytest.mark.parametrize("n_real", [MIN_REALS_FPR01 - 1, MIN_REALS_FPR01])
def test_report_words_relation_and_hides_tpr01_without_enough_reals(n_real):
    text = markdown(_results(n_real), [])
    row = next(line for line in text.splitlines() if line.startswith("| m | sg2"))
    assert ("0.250" in row) == (n_real >= MIN_REALS_FPR01)
    assert text.startswith("# Benchmark `b` (cross-dataset protocol; same-source held-out test sets)")
    assert "- test sets: **same-source held-out**" in text
    assert "1000 resamples" in text and f"sha256 {'ab' * 6}" in text


def test_leaderboard_rows_name_the_exact_model_and_intervals_their_n(tmp_path):
    for name, sha in (("v1", "11" * 32), ("v2", "22" * 32)):
        res = _results(1000)
        res["cells"][0]["model_sha256"] = sha
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(res))
    table = apply(tmp_path, None)
    assert "| m `111111111111` | 0.900 [0.850, 0.950] (n=1000/100) |" in table
    assert "| m `222222222222` | - | - | - | 0.900 [0.850, 0.950] (n=1000/100) |" in table
    assert "sg2 AUC, same-source held-out (v1)" in table


def test_intervals_recomputed_from_committed_scores(world, tmp_path):  # noqa: F811 (world: fixture)
    """A run made with too few resamples is brought up to the rule from its cells/ (no model, no data)."""
    from benchmarks.report import recompute_metrics, write_report
    from benchmarks.runner import run

    out = tmp_path / "run"
    before = run(robustness_cfg(world, tmp_path / "rob.yaml", perturbations=["none"]), opts(out))
    after = recompute_metrics(out, 120, "forensics bench report run --bootstrap 120")
    a, b = before["cells"][0]["metrics"], after["cells"][0]["metrics"]
    assert a["auc"] == b["auc"] and a["n_boot"] == 50 and b["n_boot"] == 120
    assert after["metrics_config"]["bootstrap"] == 120
    write_report(out, after)
    text = (out / "report.md").read_text()
    assert "(120 resamples)" in text and "--bootstrap 120" in text and "rerun before quoting" in text


def test_robustness_headline_starts_from_the_reference(tmp_path):
    """A --store source set is normalised by a reference perturbation; the leaderboard quotes the grid from it."""
    res = _results(1000)
    res.update(protocol="robustness", config={"options": {"reference": "jpeg(q=90)"}})
    raw = res["cells"][0]
    res["cells"] = [raw, {**raw, "perturbation": "jpeg(q=50)"},
                    {**raw, "perturbation": "jpeg(q=90)>jpeg(q=50)", "metrics": {**raw["metrics"], "auc": 0.7}}]
    (tmp_path / "rob").mkdir()
    (tmp_path / "rob" / "results.json").write_text(json.dumps(res))
    table = apply(tmp_path, None)
    assert "AUC after JPEG q50 from jpeg(q=90) (rob)" in table and "| m `abababababab` | 0.700 |" in table


# -- traceability: the README table is what the committed results give ----------------------------------------------


def test_readme_leaderboard_matches_committed_results():
    """Fails when a README leaderboard number differs from benchmarks/results (regenerate with
    ``python -m benchmarks.leaderboard --readme README.md``)."""
    assert apply(DEFAULT_RESULTS, REPO / "README.md", check=True).endswith("matches " + str(DEFAULT_RESULTS))


def test_stale_readme_block_fails(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\n| made up | 0.999 |\n{END}\n", encoding="utf-8")
    assert readme_block(readme) == "| made up | 0.999 |"
    with pytest.raises(DataError, match="differs"):
        apply(DEFAULT_RESULTS, readme, check=True)
