"""The transfer protocols' arithmetic, the selection rule, and the README table they feed.

The protocols themselves run ``forensics scan`` over shared data (a benchmark, not a test); what is pinned here is
what their numbers mean: flag rates against the model's own presets, shifts against the raw files, precision at a
prevalence, which candidate the rule picks, and that the README shows exactly what the committed results say.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from benchmarks import transfer as T
from forensics_core.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def test_pair_metrics_flag_rates_and_precision():
    reals = np.r_[np.linspace(0.0, 0.5, 99), 0.95, np.nan]  # one real above the threshold, one unscored
    fakes = np.r_[np.linspace(0.6, 1.0, 50), np.linspace(0.0, 0.4, 50)]
    p = T.pair_metrics("x", reals, fakes, t_fpr1=0.9)
    assert (p.n_real, p.n_fake, p.n_boot) == (100, 100, T.N_BOOT) and p.n_boot >= 1000
    assert p.reals_flagged_fpr1 == pytest.approx(0.01) and p.tpr_fpr1 == pytest.approx(13 / 100)
    fpr, tpr = 0.01, 0.13
    assert p.precision_fpr1["0.5"] == pytest.approx(0.5 * tpr / (0.5 * tpr + 0.5 * fpr), abs=1e-4)
    assert p.precision_fpr1["0.01"] < p.precision_fpr1["0.1"] < p.precision_fpr1["0.5"]
    assert p.auc_ci[0] <= p.auc <= p.auc_ci[1]
    with pytest.raises(DataError, match="no scored"):
        T.pair_metrics("y", np.array([np.nan]), fakes, 0.9)


def test_real_variants_shift_against_raw():
    scores = {"raw": np.full(10, 0.1), "jpeg75": np.r_[np.full(9, 0.3), 0.99]}
    rows = {r.variant: r for r in T.real_variants(scores, {"fpr1": 0.9, "fpr01": 0.995, "balanced": 0.5})}
    assert rows["raw"].median_shift == 0 and rows["jpeg75"].median_shift == pytest.approx(0.2)
    # balanced counts too: the default policy's rate on unseen reals is what a moderation user needs documented
    assert rows["jpeg75"].flagged == {"balanced": pytest.approx(0.1), "fpr01": 0.0, "fpr1": pytest.approx(0.1)}
    assert rows["raw"].flagged == {"balanced": 0.0, "fpr01": 0.0, "fpr1": 0.0}


def test_variants_are_what_their_names_say(tmp_path):
    src = tmp_path / "a.png"
    cv2.imwrite(str(src), np.random.default_rng(0).integers(0, 255, (64, 48, 3), dtype=np.uint8))
    raw = T._write_variant(src, tmp_path / "raw", "raw")
    assert raw.read_bytes() == src.read_bytes()
    j = T._write_variant(src, tmp_path / "j", "jpeg50")
    assert j.suffix == ".jpg" and j.read_bytes()[:2] == b"\xff\xd8"
    d = T._write_variant(src, tmp_path / "d", "down0.5")
    assert cv2.imread(str(d)).shape == (32, 24, 3)
    with pytest.raises(DataError, match="unknown variant"):
        T._write_variant(src, tmp_path / "x", "sharpen")


def _result(
    root: Path, label: str, split: str, worst: float, aucs: tuple[float, float, float], families=("a", "b"),
    members: tuple[str, ...] = (), shift: float = 0.0,
) -> None:
    variants = [{"variant": v, "n": 200, "n_unscored": 0, "median_p": 0.1, "median_shift": d,
                 "flagged": {"fpr1": f, "fpr01": 0.0}} for v, f, d in (("raw", 0.0, 0.0), ("jpeg75", worst, shift))]
    pairs = [{"name": f"stylegan2 vs ffhq, both {v}", "n_real": 200, "n_fake": 200, "auc": a, "auc_ci": [a, a],
              "n_boot": 1000, "reals_flagged_fpr1": 0.0, "tpr_fpr1": 0.5, "precision_fpr1": {}}
             for v, a in zip(("jpeg75", "jpeg50", "down0.5", "raw"), (*aucs, 0.999))]
    res = {"label": label, "split": split,
           "model": {"ref": label, "sha256": label * 8, "name": label, "families": list(families),
                     "members": [m * 8 for m in members]},
           "protocols": {"shortcuts": {"real_variants": variants, "pairs": pairs}}}
    (root / label).mkdir(parents=True)
    (root / label / "results.json").write_text(json.dumps(res))


def test_selection_uses_validation_results_only_and_the_stated_rule(tmp_path):
    _result(tmp_path, "loud", "val", worst=0.10, aucs=(0.99, 0.99, 0.99))  # best AUC, flags 10 % of reals
    _result(tmp_path, "good", "val", worst=0.01, aucs=(0.90, 0.92, 0.94))
    _result(tmp_path, "fair", "val", worst=0.02, aucs=(0.85, 0.85, 0.85))
    _result(tmp_path, "test-only", "crossval", worst=0.0, aucs=(1.0, 1.0, 1.0))  # never a selection input
    _result(tmp_path, "narrow", "val", worst=0.0, aucs=(1.0, 1.0, 1.0), families=("a",))  # saw fewer families
    sel = T.select(tmp_path)
    assert sel["selected"] == "good" and {c["label"] for c in sel["candidates"]} == {"loud", "good", "fair", "narrow"}
    assert {c["label"]: c["eligible"] for c in sel["candidates"]} == {
        "loud": False, "good": True, "fair": True, "narrow": False}
    assert "val" in sel["split"]
    for label in ("good", "fair"):
        (tmp_path / label / "results.json").unlink()
    assert T.select(tmp_path)["selected"] == "loud"  # none quiet enough: the quietest of the widest candidates
    _result(tmp_path, "tied", "val", worst=0.11, aucs=(0.995, 0.995, 0.995))  # 1 point louder: within noise
    _result(tmp_path, "louder", "val", worst=0.20, aucs=(1.0, 1.0, 1.0))  # clearly louder: the AUC cannot buy it
    sel = T.select(tmp_path)
    assert T.flag_tie_band(0.10, 200) == pytest.approx(0.03, abs=1e-3) == sel["tie_band"]
    assert sel["selected"] == "tied"
    assert {c["label"]: c["tied_with_quietest"] for c in sel["candidates"] if c["full_coverage"]} == {
        "loud": True, "tied": True, "louder": False}
    assert T.flag_tie_band(0.0, 200) > 0


def test_retired_validation_rule_ignores_transfer_val_candidates(tmp_path):
    """The validation rule chose up to v14; candidates scored later for the transfer_val rule (their crossval
    result holds transfer-val) must not change what it chose, even when they saw more fake families."""
    _result(tmp_path, "old", "val", worst=0.01, aucs=(0.90, 0.90, 0.90))
    _result(tmp_path, "new", "val", worst=0.01, aucs=(0.99, 0.99, 0.99), families=("a", "b", "sd"))
    assert T.select(tmp_path)["selected"] == "new"  # as a validation candidate it would win (widest, best)
    (tmp_path / "new-crossval").mkdir()
    (tmp_path / "new-crossval" / "results.json").write_text(json.dumps(
        {"label": "new", "split": "crossval", "protocols": {"transfer-val": {}}}))
    sel = T.select(tmp_path)
    assert sel["selected"] == "old" and {c["label"] for c in sel["candidates"]} == {"old"}


def test_quiet_candidates_must_also_hold_still_under_delivery(tmp_path):
    """Held presets make every candidate quiet on validation; the median shift still tells drift apart."""
    _result(tmp_path, "drifty", "val", worst=0.02, aucs=(0.95, 0.95, 0.95), shift=0.39)
    _result(tmp_path, "steady", "val", worst=0.02, aucs=(0.85, 0.85, 0.85), shift=0.09)
    _result(tmp_path, "steadier-but-loud", "val", worst=0.08, aucs=(0.9, 0.9, 0.9), shift=0.01)
    sel = T.select(tmp_path)
    assert sel["selected"] == "steady" and not any(c["eligible"] for c in sel["candidates"])
    _result(tmp_path, "on-goal", "val", worst=0.03, aucs=(0.80, 0.80, 0.80), shift=0.05)
    sel = T.select(tmp_path)
    assert sel["selected"] == "on-goal" and [c["label"] for c in sel["candidates"] if c["eligible"]] == ["on-goal"]


def test_a_fused_model_replaces_its_member_only_when_it_costs_nothing_on_validation(tmp_path):
    _result(tmp_path, "art", "val", worst=0.02, aucs=(0.90, 0.90, 0.90))
    _result(tmp_path, "art2", "val", worst=0.025, aucs=(0.85, 0.85, 0.85))
    _result(tmp_path, "fused-other", "val", worst=0.0, aucs=(0.99, 0.99, 0.99), members=("art2", "bl"))
    _result(tmp_path, "fused-loud", "val", worst=0.08, aucs=(0.90, 0.90, 0.90), members=("art", "bl"))
    sel = T.select(tmp_path)
    assert sel["selected"] == "art" and "selected_base" not in sel  # fused ones never compete as singles
    _result(tmp_path, "fused-ok", "val", worst=0.03, aucs=(0.895, 0.895, 0.895), members=("art", "bl"))
    sel = T.select(tmp_path)
    assert sel["selected"] == "fused-ok" and sel["selected_base"] == "art"
    assert {c["label"]: c["eligible"] for c in sel["candidates"] if c["members"]} == {
        "fused-other": False, "fused-loud": False, "fused-ok": True}
    _result(tmp_path, "fused-blunt", "val", worst=0.02, aucs=(0.88, 0.88, 0.88), members=("art", "bl"))
    assert T.select(tmp_path)["selected"] == "fused-ok"  # 0.02 below its member: more than FUSE_MAX_AUC_LOSS
    _result(tmp_path, "fused-drifty", "val", worst=0.02, aucs=(0.95, 0.95, 0.95), members=("art", "bl"), shift=0.03)
    assert T.select(tmp_path)["selected"] == "fused-ok"  # best AUC, but 0.03 more drift than its member
    with pytest.raises(DataError, match="no --split val"):
        T.select(tmp_path / "test-only")


def test_val_runs_refuse_external_dev(tmp_path):
    with pytest.raises(DataError, match="never a selection input"):
        T.run("default", "x", tmp_path, tmp_path, 10, 1, ["external-dev"], "val")


def test_readme_transfer_block_matches_committed_results():
    """Every number in the README's transfer table comes from a committed results.json (regenerate with
    ``python -m benchmarks.transfer --readme README.md``)."""
    from benchmarks.leaderboard import readme_block

    assert readme_block(REPO / "README.md", "transfer") == T.readme_block(T.RESULTS)


def test_unseen_decoders_pairs_each_autoencoder_with_its_parents(tmp_path, monkeypatch):
    """Each autoencoder's crossval reconstructions meet their parents at the reconstructions' resolution, under
    every matched delivery; the report says which decoders the model trained on."""
    rng = np.random.default_rng(0)
    recon = tmp_path / "work"
    (recon / "edit-inputs" / "crossval").mkdir(parents=True)
    for i in range(6):
        cv2.imwrite(str(recon / "edit-inputs" / "crossval" / f"p{i}.png"), rng.integers(0, 255, (32, 32, 3), np.uint8))
    for fam, side in (("ae-recon", 16), ("ae-convT", 32)):
        d = recon / "fakes" / f"{fam}-crossval" / "images"
        d.mkdir(parents=True)
        for i in range(5):
            cv2.imwrite(str(d / f"{i:06d}.png"), rng.integers(0, 255, (side, side, 3), np.uint8))
    sizes: dict[str, set[int]] = {}

    def fake_score(model, files, threads):
        sizes[str(Path(files[0]).parent.relative_to(tmp_path / "tmp"))] = {cv2.imread(str(f)).shape[0] for f in files}
        return np.array([0.9 if "ae-" in str(f) else 0.1 for f in files])

    monkeypatch.setattr(T.protocols, "_score", fake_score)  # where the protocols look it up
    # trained on ldm only: it decodes through ae-recon's autoencoder, so that decoder counts as seen
    model = SimpleNamespace(thresholds={"fpr1": 0.5}, card={"training": {"families": ["ldm"]}})
    out = T.unseen_decoders(model, tmp_path, 0, 1, tmp_path / "tmp", recon=recon)
    fams = {f["family"]: f for f in out["families"]}
    assert set(fams) == {"ae-recon", "ae-convT"} and fams["ae-recon"]["seen_in_training"]
    assert not fams["ae-convT"]["seen_in_training"] and fams["ae-recon"]["res"] == 16
    assert len(out["pairs"]) == 2 * len(T.DECODER_VARIANTS)
    assert all(p["auc"] == 1.0 and p["n_real"] == 6 for p in out["pairs"])
    assert sizes["real16/raw"] == {16} and sizes["real32/raw"] == {32} and sizes["real16/down0.5"] == {8}
    assert sizes["ae-recon/raw"] == {16} and out["missing"] == ["ae-shuffle"]
    assert "## unseen-decoders" in T.render({
        "label": "x", "model": {"name": "m", "sha256": "0" * 64, "thresholds": {}}, "command": "c", "commit": "c",
        "minutes": 0.0, "protocols": {"unseen-decoders": out},
    })
    with pytest.raises(DataError, match="--recon"):
        T.unseen_decoders(model, tmp_path, 0, 1, tmp_path / "tmp2")


def test_variant_steps_frame_resize_and_encode_once(tmp_path):
    """``centreP`` cuts without resampling, ``downS:kernel`` picks the filter, a final JPEG is the file's only
    encoding (no round trip before it), and a bad step is a one-line error naming it."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (100, 80, 3), dtype=np.uint8)
    src = tmp_path / "a.png"
    cv2.imwrite(str(src), img)
    c = cv2.imread(str(T._write_variant(src, tmp_path / "c", "centre75")))
    assert c.shape == (75, 60, 3) and np.array_equal(c, img[12:87, 10:70])
    area = cv2.imread(str(T._write_variant(src, tmp_path / "a", "down0.5")))
    lanczos = cv2.imread(str(T._write_variant(src, tmp_path / "l", "down0.5:lanczos")))
    assert area.shape == lanczos.shape == (50, 40, 3) and not np.array_equal(area, lanczos)
    assert np.array_equal(area, cv2.resize(img, (40, 50), interpolation=cv2.INTER_AREA))
    j = T._write_variant(src, tmp_path / "j", "down0.25+jpeg75")
    once = cv2.imdecode(cv2.imencode(".jpg", cv2.resize(img, (20, 25), interpolation=cv2.INTER_AREA),
                                     [cv2.IMWRITE_JPEG_QUALITY, 75])[1], cv2.IMREAD_COLOR)
    assert j.suffix == ".jpg" and np.array_equal(cv2.imread(str(j)), once)
    for bad in ("down0.5:nearest-ish", "centrex", "down0.5+jpeg0"):
        with pytest.raises(DataError, match="variant"):
            T._write_variant(src, tmp_path / "x", bad)


def _tv_result(root: Path, label: str, cells: dict[tuple[str, str], float], flag: float = 0.0,
               val: tuple[float, float] | None = (0.01, 0.01)) -> None:
    """A results.json with a transfer-val protocol (and, unless ``val`` is None, its in-distribution val result)."""
    pairs = [{"group": g, "variant": v, "auc": a, "name": f"{g} vs ffhq512-real, both {v}"}
             for (g, v), a in cells.items()]
    reals = [{"variant": v, "n": 150, "median_p": 0.1, "flagged": {"fpr1": flag, "fpr01": 0.0}} for v in T.TV_VARIANTS]
    tv = {"variants": list(T.TV_VARIANTS), "matched": list(T.TV_MATCHED), "cross_source": list(T.TV_CROSS),
          "reals": reals, "pairs": pairs}
    model = {"ref": label, "sha256": label * 8, "name": label}
    (root / label).mkdir(parents=True)
    (root / label / "results.json").write_text(json.dumps(
        {"label": label, "split": "crossval", "model": model, "protocols": {"transfer-val": tv}}))
    if val is not None:
        variants = [{"variant": "raw", "n": 200, "median_shift": 0.0, "flagged": {"fpr1": val[0]}},
                    {"variant": "jpeg75", "n": 200, "median_shift": val[1], "flagged": {"fpr1": val[0]}}]
        (root / f"val-{label}").mkdir()
        (root / f"val-{label}" / "results.json").write_text(json.dumps(
            {"label": label, "split": "val", "model": model,
             "protocols": {"shortcuts": {"real_variants": variants, "pairs": []}}}))


def _cells(base: float, **low: float) -> dict[tuple[str, str], float]:
    """Every transfer_val cell at ``base``; ``group__variant=auc`` keyword arguments lower single cells."""
    out = {(g, v): base for g in (*T.TV_MATCHED, *T.TV_CROSS) for v in T.TV_VARIANTS}
    for k, a in low.items():
        g, v = k.split("__")
        out[(g.replace("_", "-"), {"c75": "centre75", "raw": "raw"}[v])] = a
    return out


def test_transfer_selection_puts_the_worst_cell_first(tmp_path):
    """The declared rule: eligibility (real flag rates on transfer_val and in distribution), then the worst cell,
    ties within TV_TIE broken by the mean; a great mean cannot buy a bad worst case."""
    _tv_result(tmp_path, "mean-hero", _cells(0.99, stylegan2__c75=0.55))  # v14's failure: one collapsed cell
    _tv_result(tmp_path, "even", _cells(0.86))
    _tv_result(tmp_path, "even-better-mean", _cells(0.90, sd1_a_man__raw=0.865))  # tied on the worst cell
    _tv_result(tmp_path, "loud", _cells(0.95), flag=0.05)  # flags 5 % of FFHQ-512 reals
    _tv_result(tmp_path, "drifty", _cells(0.95), val=(0.01, 0.30))  # quiet on transfer_val, drifts in val
    _tv_result(tmp_path, "untested", _cells(0.97), val=None)  # no in-distribution result: not eligible
    sel = T.select_transfer(tmp_path)
    assert sel["selected"] == "even-better-mean" and sel["fallback"] == ""
    by = {c["label"]: c for c in sel["candidates"]}
    assert {k for k, c in by.items() if c["eligible"]} == {"mean-hero", "even", "even-better-mean"}
    assert by["mean-hero"]["worst_cell"] == pytest.approx(0.55) and by["mean-hero"]["mean_auc"] > 0.97
    assert by["mean-hero"]["worst_cell_name"] == "stylegan2 centre75"
    assert by["even-better-mean"]["worst_sd"] == pytest.approx(0.865)
    for label in ("even", "even-better-mean", "mean-hero"):
        for d in (label, f"val-{label}"):
            (tmp_path / d / "results.json").unlink()
    sel = T.select_transfer(tmp_path)  # none eligible: among those quiet in distribution ("loud")
    assert sel["selected"] == "loud" and "quiet in distribution" in sel["fallback"]
    with pytest.raises(DataError, match="no transfer-val"):
        T.select_transfer(tmp_path / "val-loud")


def test_transfer_val_table_reads_the_goal_cells(tmp_path):
    _tv_result(tmp_path, "m", _cells(0.9, pggan__c75=0.61))
    row = T.transfer_val_table(tmp_path).splitlines()[2]
    assert row.startswith("| [m](m/report.md)") and "0.900 / 0.610 / 0.900" in row and "| 0.610 |" in row


def test_transfer_val_files_need_the_labels(tmp_path):
    with pytest.raises(DataError, match="transfer_val"):
        T.transfer_val_files(tmp_path)
    (tmp_path / "transfer_val").mkdir()
    (tmp_path / "transfer_val" / "labels.csv").write_text("path,binary,group\nr/1.jpg,real,ffhq512-real\n")
    with pytest.raises(DataError, match="pggan"):
        T.transfer_val_files(tmp_path)


def test_zero_false_positives_give_a_bound_not_a_perfect_precision():
    """0 of 400 reals flagged is a false-positive rate below 0.92 % (exact bound), so precision at 1 % prevalence is
    a range reaching far below the point estimate of 1.00."""
    p = T.pair_metrics("x", np.full(400, 0.1), np.r_[np.full(300, 0.99), np.full(100, 0.2)], t_fpr1=0.9)
    assert p.reals_flagged_fpr1 == 0 and p.precision_fpr1["0.01"] == 1.0
    assert p.reals_flagged_fpr1_ci[0] == 0 and p.reals_flagged_fpr1_ci[1] == pytest.approx(0.00918, abs=1e-4)
    lo, hi = p.precision_fpr1_range["0.01"]
    assert hi == 1.0 and lo < 0.5  # what a reader may actually count on at 1 % fakes
    assert p.tpr_fpr1_ci[0] < 0.75 < p.tpr_fpr1_ci[1]
    assert "[0.0, 0.9]" in T._pair_table([asdict(p)])  # the table shows the bound


def test_old_results_without_bounds_still_render():
    old = {"name": "x", "n_real": 1, "n_fake": 1, "auc": 0.5, "auc_ci": [0.5, 0.5], "reals_flagged_fpr1": 0.0,
           "tpr_fpr1": 0.0, "precision_fpr1": {"0.01": None}}
    assert "| x | 1 / 1 | 0.500 [0.500, 0.500] | 0.0 % | 0.00 | - |" in T._pair_table([old])


def test_wipecorner_replaces_only_the_bottom_right_corner(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    src = tmp_path / "w.png"
    cv2.imwrite(str(src), img)
    out = cv2.imread(str(T._write_variant(src, tmp_path / "w", "wipecorner")))
    changed = np.argwhere((out != img).any(-1))
    assert changed[:, 0].min() >= 112 and changed[:, 1].min() >= 89  # rows >= 88 %, columns >= 70 %
    assert np.array_equal(out[112:, 89:], img[96:112, 89:][::-1])  # the mirrored rows above it


def test_sample_takes_media_files_only(tmp_path):
    """``--n 0`` scores every file of a folder: a set's ``index.csv`` is not a sample (it was scored as an image)."""
    for name in ("b.png", "a.JPG", "index.csv", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in T._sample(tmp_path, 0)] == ["a.JPG", "b.png"]
    assert [p.name for p in T._sample(tmp_path, 1)] == ["a.JPG"]
    for name in ("a.JPG", "b.png"):
        (tmp_path / name).unlink()
    with pytest.raises(T.DataError, match="no files"):
        T._sample(tmp_path, 0)


def test_reals_summary_counts_unscored_apart():
    """Every reals table reads one summary: unscored files (NaN) are counted, never flagged, never in the median."""
    s = T.reals_summary(np.array([0.1, np.nan, 0.95, 0.3]), {"balanced": 0.2, "fpr1": 0.9})
    assert (s["n"], s["n_unscored"], s["median_p"]) == (3, 1, pytest.approx(0.3))
    assert s["flagged"] == {"balanced": pytest.approx(2 / 3), "fpr1": pytest.approx(1 / 3)}


def test_window_probe_cuts_separate_the_face_share_from_the_window_position():
    """The probe's third cut is the photo's own window cut from the centre crop: where that window lies inside the
    centre, the same pixels as the photo's crop; its fourth has the same side centred on the centre crop's face."""
    from benchmarks.transfer.protocols import _cuts
    from forensics_core.faces.crops import CropSpec
    from forensics_core.faces.types import Face

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    lm = np.array([[185.0, 190.0], [215.0, 190.0], [200.0, 205.0], [188.0, 220.0], [212.0, 220.0]])
    face = Face(box=(175.0, 170.0, 225.0, 235.0), landmarks=lm, prob=0.99)
    off = (400 - 300) // 2
    centre_img = img[off : off + 300, off : off + 300]
    tight = Face(box=(125.0, 120.0, 175.0, 185.0), landmarks=lm - off, prob=0.99)
    spec = CropSpec(size=64, crop="native", margin=0.3, edge="clamp")
    photo, centre, photos_window, face_centred = _cuts(img, centre_img, (off, off), face, tight, spec)
    assert photo.shape == centre.shape == photos_window.shape == face_centred.shape == (64, 64, 3)
    assert np.array_equal(photos_window, photo)  # the window lies inside the centre: nothing is mirrored
    assert np.array_equal(face_centred, photo)  # and the face is where it was: same side, same place
    moved = Face(box=tight.box, landmarks=tight.landmarks + 9.0, prob=0.99)
    # centred on another face position
    assert not np.array_equal(_cuts(img, centre_img, (off, off), face, moved, spec)[3], photo)
    assert _cuts(img, centre_img, (off, off), None, tight, spec) is None
    assert _cuts(img, centre_img, (off, off), face, None, spec) is None
