"""The README-number tools: ``benchmarks.scan_auc`` (AUC of a scan JSONL) and ``benchmarks.leaderboard``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.leaderboard import END, START, render, update_readme
from benchmarks.scan_auc import cli as scan_auc_cli
from benchmarks.scan_auc import labels_from_csv, labels_from_globs, read_records, scan_auc
from forensics_core.errors import DataError


def _rec(path: str, p: float | None, status: str = "ok", thr: float = 0.5) -> dict:
    verdict = None if p is None else ("flagged" if p >= thr else "not_flagged")
    return {"path": path, "status": status, "fake_probability": p, "verdict": verdict,
            "threshold": {"policy": "balanced", "value": thr}, "sha256": path}


@pytest.fixture
def scan_jsonl(tmp_path) -> Path:
    recs = [_rec(f"/d/gan_faces/f{i}.jpg", p) for i, p in enumerate([0.9, 0.8, 0.4])]
    recs += [_rec(f"/d/real_faces/r{i}.png", p) for i, p in enumerate([0.1, 0.5, 0.3])]
    recs += [_rec("/d/gan_faces/broken.jpg", None, status="error"), _rec("/d/other/x.jpg", 0.7)]
    f = tmp_path / "scan.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in recs) + "\n" + '{"path": "/d/torn', encoding="utf-8")
    return f


def test_scan_auc_hand_computed(scan_jsonl):
    recs = read_records(scan_jsonl)  # the torn last line of a killed scan is ignored
    labels = labels_from_globs(recs, ["*/gan_faces/*"], ["*/real_faces/*"])
    res = scan_auc(recs, labels, n_boot=200)
    # fakes 0.9, 0.8, 0.4 vs reals 0.1, 0.5, 0.3: 8 of 9 pairs ordered correctly
    assert res.auc == pytest.approx(8 / 9)
    assert (res.n_real, res.n_fake, res.n_unscored, res.n_unlabelled) == (3, 3, 1, 1)
    assert res.unscored == ["/d/gan_faces/broken.jpg"]
    # verdicts at the stored threshold 0.5: 0.4 missed, 0.5 flagged -> 4 of 6 right
    assert res.accuracy_at_verdict == pytest.approx(4 / 6)
    assert res.auc_ci[0] <= res.auc <= res.auc_ci[1]


def test_scan_auc_labels_csv_and_cli(scan_jsonl, tmp_path, capsys):
    csv = tmp_path / "labels.csv"
    csv.write_text("path,binary\ngan_faces/f0.jpg,fake\ngan_faces/f1.jpg,fake\nreal_faces/r0.png,real\n")
    labels = labels_from_csv(read_records(scan_jsonl), csv)
    assert labels == {"/d/gan_faces/f0.jpg": 1, "/d/gan_faces/f1.jpg": 1, "/d/real_faces/r0.png": 0}
    assert scan_auc_cli([str(scan_jsonl), "--fake", "*/gan_faces/*", "--real", "*/real_faces/*", "--json",
                         "--bootstrap", "50"]) == 0
    assert json.loads(capsys.readouterr().out)["n_fake"] == 3
    assert scan_auc_cli([str(scan_jsonl), "--fake", "*/gan_faces/*", "--real", "*/nothing/*"]) == 2
    assert "both classes" in capsys.readouterr().err


def _cell(det, group, auc, pert="none", tpr=0.5, ece=0.04):
    return {"detector": det, "group": group, "perturbation": pert, "level": "image", "n_real": 300, "n_fake": 200,
            "model_sha256": "ab" * 32,
            "metrics": {"auc": auc, "tpr_at_fpr1": tpr, "ece": ece, "ci": {"auc": [auc - 0.01, auc + 0.01]}}}


def test_leaderboard_from_results(tmp_path):
    loo = {"protocol": "leave-one-family-out", "speed": {"npr": {"images_per_s": 812.4, "device": "cpu"}}, "cells": [
        _cell("npr", {"held_out": "dcgan", "tested": "dcgan"}, 0.90),
        _cell("npr", {"held_out": "stylegan", "tested": "stylegan"}, 0.80),
        _cell("npr", {"held_out": "dcgan", "tested": "stylegan"}, 0.99),  # not held out: ignored
    ]}
    cross = {"protocol": "cross-dataset", "cells": [_cell("npr", {"dataset": "sg2-vs-ffhq"}, 0.71)]}
    for name, res in (("loo-gan", loo), ("cross-dataset", cross)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(res))
    table = render(tmp_path)
    trained = next(line for line in table.splitlines() if line.startswith("| npr (trained per cell) |"))
    scored = next(line for line in table.splitlines() if line.startswith("| npr `abababababab` |"))
    assert "0.850" in trained and "812 (cpu)" in trained and "0.850" not in scored
    assert "0.710 [0.700, 0.720] (n=300/200)" in scored
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nstale table\n{END}\noutro\n")
    update_readme(readme, table)
    text = readme.read_text()
    assert "stale table" not in text and "0.850" in text and text.startswith("intro") and text.endswith("outro\n")
    with pytest.raises(DataError, match="no '"):
        update_readme(tmp_path / "loo-gan" / "results.json", table)


def test_every_protocol_is_registered_with_its_name_and_supplies_its_own_columns():
    """A protocol is one module plus its registration: the class carries its name, built-ins in their own module
    (``video``) are found through ``BUILTIN_MODULES``, and the leaderboard asks each one for its columns."""
    from benchmarks.protocols import BUILTIN_MODULES, PROTOCOLS, Column

    assert {"leave-one-family-out", "leave-one-upsampler-out", "leave-one-group-out", "cross-dataset",
            "robustness", "video"} <= set(PROTOCOLS.names())  # fmt: skip
    assert PROTOCOLS.get("video").obj.__module__ in BUILTIN_MODULES
    for e in PROTOCOLS.entries():
        assert e.obj.name == e.name and e.description, e.name
        cols = e.obj().leaderboard({"protocol": e.name, "cells": []}, "run")
        assert isinstance(cols, list) and all(isinstance(c, Column) for c in cols), e.name


def test_scan_speed_times_every_evidence_analysis_alone(tiny_model, tmp_path, one_torch_thread):
    pytest.importorskip("skimage.data")  # make_photos' fallback face without ../shared/data
    from benchmarks.scan_speed import analyses_markdown, make_photos, time_analyses
    from detectors.modelfile import load_model
    from forensics.evidence import EVIDENCE

    paths = make_photos(tmp_path, 2)
    ms = time_analyses(paths, load_model(tiny_model), "cpu")
    assert set(ms) == set(EVIDENCE.names()) and all(v > 0 for v in ms.values())
    assert list(ms.values()) == sorted(ms.values(), reverse=True)  # slowest first
    md = analyses_markdown(ms, 2)
    assert "(2 photos" in md and all(f"| {name} |" in md for name in ms)
