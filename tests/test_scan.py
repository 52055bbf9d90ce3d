"""``forensics scan``: record schema, exit codes, no-face fallback, duplicates, hostile files, resume, HTML escaping.

One folder of generated media is scanned once through the real CLI (module fixture) and most tests assert on its
outputs; the model is a tiny untrained detector written through the detectors model-file API, so the tests check
the pipeline, not accuracy.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli
from forensics.scanning.config import ScanConfig
from forensics.scanning.results import SCHEMA_VERSION, FileResult
from forensics.scanning.video import top_half_mean
from forensics_core.thresholds import ThresholdPolicy

SCRIPT_NAME = "<script>alert(1)<b>.jpg"  # "/" cannot occur in a file name


def _face_image(side: int = 256) -> np.ndarray:
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((side, side), Image.LANCZOS)
    return np.asarray(img)


def _no_face_image() -> np.ndarray:
    y, x = np.mgrid[0:160, 0:200]
    return np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("batch")
    Image.fromarray(_face_image()).save(d / "face.jpg", quality=92)
    shutil.copy(d / "face.jpg", d / "face-copy.jpg")  # duplicate by content
    Image.fromarray(_no_face_image()).save(d / "gradient.png")
    Image.fromarray(_no_face_image()[:, ::-1].copy()).save(d / SCRIPT_NAME, quality=90)
    (d / "zero.jpg").write_bytes(b"")
    good = (d / "face.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (d / "text.jpg").write_text("this is not a picture\n")
    (d / "notes.txt").write_text("not media and not named like media: skipped\n")
    (d / ".hidden.jpg").write_bytes(good)
    return d


@pytest.fixture(scope="module")
def batch_run(batch_dir: Path, tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("out")
    rc = cli.main([
        "-q", "scan", str(batch_dir), "--model", tiny_model, "--device", "cpu", "--threshold", "0.0",
        "--jsonl", str(out / "r.jsonl"), "--csv", str(out / "r.csv"), "--report", str(out / "r.html"),
        "--workers", "2", "--no-table", "--threads", "1",
    ])  # fmt: skip
    records = [json.loads(line) for line in (out / "r.jsonl").read_text().splitlines()]
    return {"rc": rc, "out": out, "records": {Path(r["path"]).name: r for r in records}, "lines": records}


def test_batch_lists_every_candidate_once_and_skips_non_media(batch_run: dict) -> None:
    names = set(batch_run["records"])
    assert names == {"face.jpg", "face-copy.jpg", "gradient.png", SCRIPT_NAME, "zero.jpg", "truncated.jpg", "text.jpg"}
    assert "notes.txt" not in names and ".hidden.jpg" not in names


def test_record_schema(batch_run: dict) -> None:
    required = {
        "schema_version": str, "path": str, "sha256": str, "status": str, "fake_probability": (float, type(None)),
        "verdict": (str, type(None)), "faces": list, "model": dict, "threshold": dict, "timings_ms": dict,
        "no_face": bool, "tracks": list, "evidence": list, "duplicate_of": (str, type(None)),
        "error": (str, type(None)), "media_type": (str, type(None)),
    }  # fmt: skip
    for rec in batch_run["lines"]:
        for key, typ in required.items():
            assert key in rec, key
            assert isinstance(rec[key], typ), (key, rec[key])
        assert rec["schema_version"] == SCHEMA_VERSION
        assert rec["status"] in ("ok", "error")
        assert os.path.isabs(rec["path"])
        if rec["status"] == "ok":
            assert rec["error"] is None and len(rec["sha256"]) == 64
            assert 0.0 <= rec["fake_probability"] <= 1.0
            assert rec["verdict"] in ("flagged", "not_flagged")
            assert rec["model"]["name"] == "tiny-npr" and len(rec["model"]["sha256"]) == 64
            assert rec["threshold"] == {"policy": "custom", "value": 0.0}
            if rec["duplicate_of"] is None:
                assert set(rec["timings_ms"]) >= {"load", "detect", "model", "evidence", "total"}
                assert rec["timings_ms"]["total"] >= rec["timings_ms"]["model"] >= 0
            assert rec["faces"], "every ok record has at least one scored crop"
            for f in rec["faces"]:
                assert len(f["box"]) == 4 and isinstance(f["track"], int) and isinstance(f["frame"], int)
                assert 0.0 <= f["fake_probability"] <= 1.0
        else:
            assert rec["fake_probability"] is None and rec["verdict"] is None
            assert rec["error"] and "\n" not in rec["error"]
    # a record round-trips through the typed dataclass
    face = batch_run["records"]["face-copy.jpg"]
    assert FileResult.from_dict(face).to_dict() == face


def test_face_found_and_scored(batch_run: dict) -> None:
    rec = batch_run["records"]["face-copy.jpg"]
    assert rec["status"] == "ok" and rec["no_face"] is False and rec["n_faces"] >= 1
    f = rec["faces"][0]
    x1, y1, x2, y2 = f["box"]
    assert 0 <= x1 < x2 <= 256 and 0 <= y1 < y2 <= 256 and f["aligned"] and f["detection_prob"] > 0.9
    assert rec["fake_probability"] == pytest.approx(max(x["fake_probability"] for x in rec["faces"]))


def test_no_face_fallback_flag(batch_run: dict) -> None:
    rec = batch_run["records"]["gradient.png"]
    assert rec["status"] == "ok" and rec["no_face"] is True
    assert len(rec["faces"]) == 1 and rec["faces"][0]["no_face"] is True and rec["faces"][0]["detection_prob"] is None
    assert rec["faces"][0]["box"] == [0.0, 0.0, 200.0, 160.0]
    assert rec["fake_probability"] == pytest.approx(rec["faces"][0]["fake_probability"])


def test_duplicate_scanned_once(batch_run: dict) -> None:
    # directories are walked in sorted order: "face-copy.jpg" < "face.jpg", so the copy is the first one seen
    first, dup = batch_run["records"]["face-copy.jpg"], batch_run["records"]["face.jpg"]
    assert dup["duplicate_of"] == first["path"] and first["duplicate_of"] is None
    assert dup["sha256"] == first["sha256"] and dup["fake_probability"] == first["fake_probability"]
    assert dup["timings_ms"]["total"] == 0.0  # not scanned a second time


def test_hostile_files_reported_per_file(batch_run: dict) -> None:
    recs = batch_run["records"]
    for name, word in (("zero.jpg", "empty"), ("truncated.jpg", ""), ("text.jpg", "")):
        rec = recs[name]
        assert rec["status"] == "error", name
        assert rec["path"] in rec["error"], rec["error"]
        assert word in rec["error"]
    assert recs["text.jpg"]["error_type"] == "UnsupportedMediaError"
    # good files were scored despite the bad ones, and the exit code reflects the verdicts (threshold 0 -> flagged)
    assert recs["face.jpg"]["status"] == "ok" and batch_run["rc"] == 1


def test_html_report_escapes_file_names(batch_run: dict) -> None:
    html = (batch_run["out"] / "r.html").read_text(encoding="utf-8")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;b&gt;.jpg" in html
    assert html.count("data:image/png;base64,") >= 3  # face crop, Grad-CAM overlay, evidence maps
    assert "Model card" in html and "tiny-npr" in html and "evidence, not proof" in html
    assert "built-in method" not in html and "6 errors" not in html


def test_html_report_captions_come_from_the_evidence_registry(batch_run: dict) -> None:
    from forensics.evidence import EVIDENCE

    html = (batch_run["out"] / "r.html").read_text(encoding="utf-8")
    for e in EVIDENCE.entries():
        if e.meta["scope"] == "file" and e.meta.get("label") and "image" in e.meta["media"]:
            assert f"<figcaption>{e.meta['label']}</figcaption>" in html, e.name
    assert "<figcaption>detector heatmap (Grad-CAM)</figcaption>" in html
    assert '<td class="name">gradcam (face 0)</td>' in html


def test_csv_has_one_row_per_file(batch_run: dict) -> None:
    with open(batch_run["out"] / "r.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(batch_run["lines"])
    assert {r["status"] for r in rows} == {"ok", "error"}


def test_exit_codes(tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.fromarray(_no_face_image()).save(tmp_path / "a.png")
    base = ["-q", "scan", str(tmp_path / "a.png"), "--model", tiny_model, "--device", "cpu", "--no-table",
            "--threads", "1"]  # fmt: skip
    assert cli.main([*base, "--threshold", "0"]) == 1  # flagged
    assert cli.main([*base, "--threshold", "1"]) == 0  # nothing can reach p >= 1
    assert cli.main([*base, "--threshold", "nonsense"]) == 2  # usage
    unknown = capsys.readouterr().err.strip().splitlines()
    assert len(unknown) == 1 and "'nonsense'" in unknown[0] and "balanced, fpr1, fpr01" in unknown[0]
    assert cli.main([*base, "--threshold", "FPR1"]) in (0, 1)  # the help's spelling is accepted, any case
    capsys.readouterr()
    # -q as the pipeline example in docs/scan.md uses it: records go to the file, stdout stays empty (no table)
    assert cli.main(["scan", str(tmp_path / "a.png"), "--model", tiny_model, "--device", "cpu", "--threads", "1",
                     "--threshold", "1", "--jsonl", str(tmp_path / "q.jsonl"), "-q"]) == 0  # fmt: skip
    assert capsys.readouterr().out == "" and len((tmp_path / "q.jsonl").read_text().splitlines()) == 1
    assert cli.main([*base[:3], "--model", str(tmp_path / "missing-model")]) == 2  # fatal: no model
    (tmp_path / "bad.jpg").write_bytes(b"")
    assert cli.main(["-q", "scan", str(tmp_path / "bad.jpg"), "--model", tiny_model, "--no-table"]) == 2  # all failed
    err = capsys.readouterr().err
    assert "missing-model" in err


@pytest.mark.parametrize("engine", ["auto", "local"])
def test_bad_model_or_device_fails_in_one_line_and_leaves_outputs_untouched(
    engine: str, tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model without weights, a pickle-based model, a device that does not exist or is absent: exit 2 with one
    line naming the cause, and an output file from an earlier run left as it was (``auto`` loads its engine only
    after listing the inputs, so the check must come before any output is opened)."""
    import shutil

    monkeypatch.setattr("forensics.engines.usable_cpus", lambda: 2)  # `auto` takes its listing path on any runner
    Image.fromarray(_no_face_image()).save(tmp_path / "a.png")
    shutil.copytree(tiny_model, tmp_path / "no-weights")
    (tmp_path / "no-weights" / "model.safetensors").unlink()
    (tmp_path / "pickled").mkdir()
    shutil.copy(Path(tiny_model) / "model.json", tmp_path / "pickled" / "model.json")
    (tmp_path / "pickled" / "weights.pt").write_bytes(b"not read")
    out = tmp_path / "earlier.json"
    for opts, cause in (
        (["--model", str(tmp_path / "no-weights")], "weights file does not exist"),
        (["--model", str(tmp_path / "pickled" / "weights.pt")], "pickle-based"),
        (["--model", tiny_model, "--device", "gpu"], "not a device"),
        (["--model", tiny_model, "--device", "xpu"], "not available on this machine"),
    ):
        out.write_text('["kept"]')
        rc = cli.main(["-q", "scan", str(tmp_path / "a.png"), "--engine", engine, "--json", str(out), *opts])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and cause in err[0], (opts, err)
        assert out.read_text() == '["kept"]'


def test_missing_default_model_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import forensics.scanning.config as scan_mod
    from forensics_core.errors import ModelFileError

    monkeypatch.setattr(scan_mod, "DEFAULT_MODEL_DIR", tmp_path / "nothing")
    with pytest.raises(ModelFileError, match="no default model shipped; pass --model FILE"):
        scan_mod.resolve_model("default")


def test_resume_scans_nothing_new(tiny_model: str, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_no_face_image()).save(src / "a.png")
    Image.fromarray(_no_face_image()[::-1].copy()).save(src / "b.png")
    out = tmp_path / "out.jsonl"
    args = ["-q", "scan", str(src), "--model", tiny_model, "--device", "cpu", "--no-table", "--threshold", "1",
            "--threads", "1"]  # fmt: skip
    assert cli.main([*args, "--jsonl", str(out)]) == 0
    first = out.read_text().splitlines()
    assert len(first) == 2
    with open(out, "a") as f:  # simulate a run killed in the middle of writing a line
        f.write('{"schema_version": "1.0", "path": "/x')
    assert cli.main([*args, "--resume", str(out)]) == 0
    assert out.read_text().splitlines() == first  # nothing rescanned; the partial line was trimmed
    Image.fromarray(_no_face_image()[:, ::-1].copy()).save(src / "c.png")
    assert cli.main([*args, "--resume", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and Path(json.loads(lines[-1])["path"]).name == "c.png"


def test_symlink_outside_root_is_refused(tiny_model: str, tmp_path: Path) -> None:
    from forensics.pipeline import scan

    outside = tmp_path / "secret.png"
    Image.fromarray(_no_face_image()).save(outside)
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.png").symlink_to(outside)
    recs = list(scan(root, tiny_model, device="cpu", evidence="none", threads=1))
    assert len(recs) == 1 and recs[0].status == "error" and "--follow-symlinks" in recs[0].error
    recs = list(scan(root, tiny_model, device="cpu", evidence="none", follow_symlinks=True, threads=1))
    assert recs[0].status == "ok"


def test_python_api_video_tracks_and_timeout(tiny_model: str, tmp_path: Path) -> None:
    from forensics import scan
    from forensics_core.media import write_video

    face = _face_image(192)
    frames = [np.roll(face, 3 * i, axis=1) for i in range(6)]
    write_video(tmp_path / "clip.mp4", frames, fps=6)
    (res,) = list(scan(tmp_path / "clip.mp4", tiny_model, device="cpu", evidence="none", fps=6, batch=4, threads=1))
    assert res.status == "ok" and res.media_type == "video" and res.frames_sampled == 6
    assert res.tracks and res.tracks[0].n_faces >= 4  # one face followed across the frames
    assert {f.frame for f in res.faces} >= {0, 5}
    assert res.fake_probability == pytest.approx(max(t.fake_probability for t in res.tracks))
    assert res.tracks[0].fake_probability == pytest.approx(
        top_half_mean([f.fake_probability for f in res.faces if f.track == res.tracks[0].track])
    )
    (late,) = list(scan(tmp_path / "clip.mp4", tiny_model, device="cpu", evidence="none", timeout_s=1e-9, threads=1))
    assert late.status == "error" and "timed out" in late.error


def test_threshold_policy_resolution() -> None:
    from forensics_core.errors import UsageError

    th = {"balanced": 0.4, "fpr1": 0.8, "fpr01": 0.9}
    assert ThresholdPolicy.resolve("fpr1", th) == ThresholdPolicy("fpr1", 0.8)
    assert ThresholdPolicy.resolve("0.25", th) == ThresholdPolicy("custom", 0.25)
    assert ThresholdPolicy.resolve(0.9, th).verdict(0.95) == "flagged"
    with pytest.raises(UsageError):
        ThresholdPolicy.resolve("1.5", th)
    # policy names in any case: the help text and reports show FPR1; records carry the canonical name
    assert ThresholdPolicy.resolve("FPR1", th) == ThresholdPolicy("fpr1", 0.8)
    assert ThresholdPolicy.resolve(" Balanced ", th) == ThresholdPolicy("balanced", 0.4)
    with pytest.raises(UsageError, match=r"'fpr5': not a policy; use one of balanced, fpr1, fpr01") as exc:
        ThresholdPolicy.resolve("fpr5", th)
    assert "\n" not in str(exc.value)
    assert ScanConfig(threshold="FPR01").threshold == "fpr01" and ScanConfig(threshold="0.3").threshold == 0.3
    with pytest.raises(UsageError, match="not a policy"):
        ScanConfig(threshold="fpr-1")  # the Python API refuses a typo before any model is loaded
    with pytest.raises(UsageError):
        ScanConfig(evidence="ela,nope")


def test_default_policy_is_fpr1_and_named_policies_never_fall_back() -> None:
    """No ``--threshold``: ``fpr1`` where the model stores it, ``balanced`` for a file without one (plugins, old
    files); a policy asked for by name is never swapped for another."""
    from forensics_core.errors import ModelFileError

    assert ScanConfig().threshold is None  # resolved against the model, not before it is loaded
    assert ThresholdPolicy.resolve(None, {"balanced": 0.4, "fpr1": 0.8}) == ThresholdPolicy("fpr1", 0.8)
    assert ThresholdPolicy.resolve(None, {"balanced": 0.4}) == ThresholdPolicy("balanced", 0.4)
    with pytest.raises(ModelFileError, match=r"model has no 'fpr1' threshold \(has: balanced\)"):
        ThresholdPolicy.resolve("fpr1", {"balanced": 0.4})
    with pytest.raises(ModelFileError, match="no default threshold .*pass --threshold"):
        ThresholdPolicy.resolve(None, {"fpr01": 0.9})


def test_inputs_globs_and_stdin(tmp_path: Path) -> None:
    import io

    from forensics_core.inputs import InputExpander
    from forensics_core.outputs import safe_cell, safe_text

    for n in ("a.png", "b.png"):
        Image.fromarray(_no_face_image()).save(tmp_path / n)
    (tmp_path / "noext").write_bytes((tmp_path / "a.png").read_bytes()[:-1] + b"\x82")  # media without extension
    items = list(InputExpander([str(tmp_path / "*.png")]))
    assert [Path(i.path).name for i in items] == ["a.png", "b.png"] and items[1].duplicate_of == items[0].path
    items = list(InputExpander(["-"], stdin=io.StringIO(f"{tmp_path / 'b.png'}\n# comment\n\n{tmp_path}\n")))
    assert [Path(i.path).name for i in items] == ["b.png", "a.png", "noext"]
    assert safe_text("evil\x1b[2Jname\n") == "evil\\x1b[2Jname\\n"
    assert safe_cell("=HYPERLINK(1)").startswith("'=")


def test_downscaled_working_image_keeps_file_coordinates(batch_dir: Path, batch_run: dict, tiny_model: str) -> None:
    """Huge images are decoded once and shrunk to ``work_max_side``; boxes must still be in the file's pixels."""
    from forensics.pipeline import scan

    (small,) = list(scan(batch_dir / "face-copy.jpg", tiny_model, device="cpu", evidence="jpeg", work_max_side=160,
                         threads=1))  # fmt: skip
    full = batch_run["records"]["face-copy.jpg"]["faces"][0]["box"]
    assert small.faces and np.allclose(small.faces[0].box, full, atol=256 / 160 * 4)
    (jp,) = small.evidence
    assert jp.details["double_compression_checked"] is False  # the 8x8 grid is gone after resizing


def test_pipeline_is_the_documented_python_entry() -> None:
    """docs/scan.md and docs/scan-output.md name ``forensics.pipeline.*``; the work lives in forensics.scanning."""
    import forensics.pipeline as pipeline
    from forensics.scanning.results import FaceResult, TrackResult
    from forensics.scanning.scanner import Scanner

    assert pipeline.FileResult is FileResult and pipeline.ScanConfig is ScanConfig and pipeline.Scanner is Scanner
    assert pipeline.FaceResult is FaceResult and pipeline.TrackResult is TrackResult
    assert pipeline.SCHEMA_VERSION == SCHEMA_VERSION and callable(pipeline.scan) and callable(pipeline.skip_done)


def test_report_names_the_models_crop_for_unaligned_faces() -> None:
    """A native-crop model's faces are cut upright at whole pixels: the report says so instead of 'box crop'."""
    from types import SimpleNamespace

    from forensics.report import _unaligned_crop_label

    assert _unaligned_crop_label(SimpleNamespace(preprocess=SimpleNamespace(crop="native"))) == "native crop"
    assert _unaligned_crop_label(SimpleNamespace(preprocess=SimpleNamespace(crop="align"))) == "box crop"
    assert _unaligned_crop_label(object()) == "box crop"


def test_html_report_model_card_notes_and_legend_carry_no_build_paths(
    tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report shows the card as statements (name, weights hash, training sources by name, intended use, out of
    scope, failure modes) and never a path of the machine that trained the model; a no-face file and a video get a
    note on what their score can say; the legend gives each shown analysis' strength scale."""
    import re

    from markupsafe import escape

    from forensics.evidence import evidence_meta
    from forensics.report import NO_FACE_NOTE, VIDEO_NOTE
    from forensics_core.media import write_video

    model = tmp_path / "build-machine" / "model"
    shutil.copytree(tiny_model, model)
    card = json.loads((model / "model.json").read_text())
    card["training"] = {
        "datasets": [{"path": "/work/scratch/data/shared-src", "manifest_sha256": "b83bd3773483df79" * 4, "n": 12,
                      "by_label": {"real": 8, "fake": 4}, "families": ["stylegan2"]}],
        "families": ["stylegan2"], "options": {"out": "/work/scratch/detectors/runs-N23", "data": ["/srv/x/y"]},
        "command": "forensics detector train --data /work/scratch/data/shared-src --out /home/builder/runs",
        "recalibrated_on": ["/work/scratch/data/shared-src"], "init_from": {"name": "v13", "sha256": "c892" * 16},
    }  # fmt: skip
    card["threshold_support"] = {"fpr01": {"fpr": 0.001, "n_real": 400, "reals_above": 0.4, "estimable": False}}
    card["description"] = "Tiny test detector trained in /home/builder/tiny."
    card["out_of_scope"] = ["Sole grounds for a decision about a person."]
    (model / "model.json").write_text(json.dumps(card))
    (model / "MODEL_CARD.md").write_text("## Intended use\n\nTriage of faces, see /work/scratch/notes.md.\n\n"
                                         "## Known failure modes (measured)\n\n- halved images\n")  # fmt: skip
    work = tmp_path / "case"
    work.mkdir()
    Image.fromarray(_face_image()).save(work / "face.jpg", quality=92)
    Image.fromarray(_no_face_image()).save(work / "plain.png")
    write_video(work / "clip.mp4", [np.roll(_face_image(192), 3 * i, axis=1) for i in range(4)], fps=4)
    monkeypatch.chdir(work)  # inputs inside the working directory are shown relative to it
    rc = cli.main(["-q", "scan", ".", "--model", str(model), "--device", "cpu", "--threads", "1", "--no-table",
                   "--fps", "4", "--report", "r.html"])  # fmt: skip
    assert rc in (0, 1)
    html = (work / "r.html").read_text(encoding="utf-8")
    text = re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", html)
    assert str(tmp_path) not in text and "/work/scratch" not in text and "/home/builder" not in text
    assert not re.search(r"(?<![\w.~$/:<])/(?:[\w.+@-]+/)+[\w.+@-]*", text), "an absolute path reached the report"
    # the card as statements: identity, sources by name, policies with their support, use and limits
    for needle in ("tiny-npr", card["weights_sha256"], "shared-src", "b83bd3773483", "fake families seen in training",
                   "stylegan2", "v13 (c892c892c892)", "too few to estimate that rate", "rests on 400 validation reals",
                   "Triage of faces, see notes.md.", "Sole grounds for a decision about a person.", "halved images",
                   "Tiny test detector trained in tiny."):  # fmt: skip
        assert str(escape(needle)) in html, needle
    # per-file notes: the no-face image and the video say what their scores can and cannot vouch for
    assert html.count(str(escape(NO_FACE_NOTE.format(what="image")))) == 1
    assert html.count(str(escape(VIDEO_NOTE))) == 1
    # the legend: every analysis shown, with its strength scale from its registration
    assert "How to read the numbers and maps" in html and "not comparable" in html
    for name in ("gradcam", "ela", "noise", "spectrum", "jpeg", "metadata"):
        assert str(escape(evidence_meta(name)["strength"])) in html, name


def test_html_report_renders_a_card_without_optional_keys() -> None:
    """A minimal card (no training, no support, no statements, no MODEL_CARD.md) still renders, and says what the
    card does not state instead of inventing it."""
    from types import SimpleNamespace

    from forensics.report import ReportBuilder, card_view, no_paths

    assert card_view({}).sources == [] and card_view({}).statements == {}
    kept = "https://x.org/y/z and data/rel/p"  # URLs and relative paths are not a machine's layout
    assert no_paths(f"see /a/b/c.md and {kept}") == f"see c.md and {kept}"
    model = SimpleNamespace(card={"name": "bare"}, name="bare", sha256="ab" * 32, thresholds={"balanced": 0.5},
                            path="")  # fmt: skip
    html = ReportBuilder(model=model, threshold={"policy": "balanced", "value": 0.5}).render()
    assert "bare" in html and "ab" * 32 in html
    assert "The model card states no intended use, out-of-scope uses or failure modes." in html


def test_scan_settings_are_defined_once_in_scan_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """``forensics scan``'s option defaults, ``run_scan``'s fallbacks for missing options and the service's shared
    knobs all read :class:`ScanConfig`'s field defaults; ``--threshold`` stays None (the model's default policy)."""
    from dataclasses import fields

    import forensics.engines
    from forensics.api import run_scan
    from forensics.commands.scan import scan
    from forensics.serve.settings import ServeSettings

    defaults = {f.name: f.default for f in fields(ScanConfig)}
    options = {p.name: p.default for p in scan.params}
    shared = {"timeout_s", "fps", "max_frames", "max_faces", "device", "batch", "workers", "threads", "max_pixels",
              "face_detector", "detect_every", "threshold"}  # fmt: skip
    assert {name: options[name] for name in shared} == {name: defaults[name] for name in shared}
    assert options["threshold"] is None

    class Stop(Exception):
        pass

    seen: dict[str, ScanConfig] = {}

    class Engine:
        def __init__(self, model: str, config: ScanConfig, **kw: object) -> None:
            seen["config"] = config
            raise Stop

    monkeypatch.setattr(forensics.engines, "get_engine", lambda name: Engine)
    with pytest.raises(Stop):
        run_scan(["photo.jpg"], quiet=True)
    built, plain = seen["config"], ScanConfig(evidence="none")
    assert {f.name: getattr(built, f.name) for f in fields(ScanConfig)} == {
        f.name: getattr(plain, f.name) for f in fields(ScanConfig)
    }

    serve = ServeSettings()
    assert (serve.batch, serve.device, serve.threshold, serve.face_detector) == (
        defaults["batch"], defaults["device"], defaults["threshold"], defaults["face_detector"]
    )  # fmt: skip
