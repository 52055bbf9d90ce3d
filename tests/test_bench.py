"""End-to-end benchmark tests on tiny generated data: protocols, cache, resume, bad configs, reports, compare.

The data are 32x32 images made here: "real" ones are smooth (blurred noise), "fake" ones carry upsampling traces
of two families (nearest-neighbour and zero-insertion "transposed conv" upsampling), so a spectrum detector fitted
in a second separates them and every number below is a real computation, not a fixture.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from benchmarks.config import BenchConfigError, load_config
from benchmarks.protocols import BenchPlanError, get_protocol
from benchmarks.runner import RunOptions, run
from cli import main
from forensics_core.dataset import ManifestRow, write_manifest
from forensics_core.hashing import sha256_file

S = 32


def _real(rng: np.random.Generator) -> np.ndarray:
    img = rng.normal(128, 60, (S, S, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 1.5), 0, 255).astype(np.uint8)


def _fake(rng: np.random.Generator, family: str) -> np.ndarray:
    small = rng.normal(128, 60, (S // 2, S // 2, 3)).astype(np.float32)
    if family == "nn":
        big = np.repeat(np.repeat(small, 2, 0), 2, 1)
    else:  # zero insertion + a short smoothing kernel: the checkerboard of a transposed convolution
        big = np.zeros((S, S, 3), np.float32)
        big[::2, ::2] = small * 2.5
        big = cv2.blur(big, (2, 2))
    return np.clip(big, 0, 255).astype(np.uint8)


def make_dataset(root: Path, n: int = 12, families: tuple[str, ...] = ("nn", "tconv"), seed: int = 0) -> Path:
    """``n`` reals and ``n`` fakes per family in each of train/val/test, PNG, with a full manifest."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for split in ("train", "val", "test"):
        specs = [("real", "", "")] * (n * len(families)) + [("fake", f, f"up-{f}") for f in families for _ in range(n)]
        for k, (label, fam, ups) in enumerate(specs):
            img = _real(rng) if label == "real" else _fake(rng, fam)
            rel = f"{split}/{label}_{fam or 'x'}_{k:03d}.png"
            (root / split).mkdir(exist_ok=True)
            Image.fromarray(img).save(root / rel)
            rows.append(ManifestRow(rel, label, sha256_file(root / rel), generator=fam, family=fam, upsampler=ups,
                                    source="test", split=split))
    write_manifest(root, rows)
    return root


def make_model(data: Path, out: Path) -> Path:
    """A real spectrum detector: features fitted on the train split, temperature-calibrated and thresholded on val."""
    import torch

    from detectors.base import ArrayData
    from detectors.calibration import fit_calibrator, threshold_presets
    from detectors.modelfile import save_model
    from detectors.registry import build_detector
    from forensics_core.dataset import iter_items

    det = build_detector("spectrum", res=S, crop="center")

    def arrays(split: str) -> ArrayData:
        items = list(iter_items(data, split))
        x = det.preprocess.to_tensor([np.asarray(Image.open(p).convert("RGB")) for p, _ in items])
        return ArrayData(x, torch.tensor([r.y for _, r in items], dtype=torch.float32))

    train, val = arrays("train"), arrays("val")
    det.post_fit(train, val)
    with torch.no_grad():
        z = det(val.x).numpy()
    cal = fit_calibrator("temperature", z, val.y.numpy())
    return save_model(out, det, cal, threshold_presets(cal.predict_proba(z), val.y.numpy()))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("bench")
    data = make_dataset(base / "data")
    return {"base": base, "data": data, "model": make_model(data, base / "model")}


def write_cfg(path: Path, **cfg) -> Path:
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def robustness_cfg(world, path: Path, **over) -> Path:
    cfg = {
        "name": "tiny-robustness",
        "protocol": "robustness",
        "datasets": [{"path": str(world["data"])}],
        "detectors": [{"model": str(world["model"]), "label": "spec"}],
        "perturbations": {"jpeg": {"q": [50]}, "downscale": {"s": [0.5]}},
        "metrics": {"bootstrap": 50},
        "speed": {"n_images": 8, "batch": 4, "latency_samples": 4},
        "batch_size": 16,
    }
    cfg.update(over)
    return write_cfg(path, **cfg)


def opts(out: Path, **kw) -> RunOptions:
    return RunOptions(out=out, device="cpu", workers=1, progress=False, **kw)


def test_robustness_end_to_end_report_and_cache(world, tmp_path):
    cfg = robustness_cfg(world, tmp_path / "rob.yaml")
    out = tmp_path / "run"
    res = run(cfg, opts(out))
    cells = {c["perturbation"]: c for c in res["cells"]}
    assert set(cells) == {"none", "jpeg(q=50)", "downscale(s=0.5)"}
    clean = cells["none"]["metrics"]
    assert cells["none"]["n_real"] == 24 and cells["none"]["n_fake"] == 24
    assert clean["auc"] > 0.9  # the spectrum detector sees the upsampling traces
    lo, hi = clean["ci"]["auc"]
    assert lo <= clean["auc"] <= hi
    # accuracies only at the model's stored presets, and those presets are reported verbatim
    stored = json.loads((world["model"] / "model.json").read_text())["thresholds"]
    assert clean["thresholds"] == {k: stored[k] for k in ("balanced", "fpr1", "fpr01")}
    assert set(clean["accuracy"]) == {"balanced", "fpr1", "fpr01"}
    assert res["run"]["cache"]["computed"] == 3 * 48 and res["run"]["cache"]["hits"] == 0
    assert res["speed"]["spec"]["images_per_s"] > 0 and res["speed"]["spec"]["peak_rss_mb"] > 0
    # report artefacts
    for name in ("results.json", "report.md", "roc.png", "reliability.png", "robustness_jpeg.png",
                 "robustness_downscale.png"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    assert "| spec |" in md and "jpeg(q=50)" in md and "[" in md  # values with intervals
    # the run record names the code (commit, -dirty when the tree differed) and the exact weights it scored
    from forensics_core.sysinfo import git_describe

    record = json.loads((out / "run.json").read_text())
    assert record["commit"] == git_describe() and f"at commit `{record['commit']}`" in md
    weights = json.loads((world["model"] / "model.json").read_text())["weights_sha256"]
    assert [m["weights_sha256"] for m in record["models"].values()] == [weights]
    # re-run: every score from the cache, identical metrics
    res2 = run(cfg, opts(out, resume=True))
    assert res2["run"]["cache"]["computed"] == 0 and res2["run"]["cache"]["hits"] == 3 * 48
    assert res2["cells"][0]["metrics"]["auc"] == res["cells"][0]["metrics"]["auc"]
    # without --resume an existing run folder is refused before any work
    with pytest.raises(Exception, match="--resume"):
        run(cfg, opts(out))


def test_resume_after_kill(world, tmp_path, monkeypatch):
    """A run killed mid-way keeps the batches it committed; the resumed run computes only the rest."""
    import benchmarks.runner as runner

    cfg = robustness_cfg(world, tmp_path / "rob.yaml", perturbations=["none"], batch_size=8)
    out = tmp_path / "run"
    calls = {"n": 0}
    real_put = runner.ScoreCache.put_many

    def dying_put(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the "kill": after two committed batches
        return real_put(self, *a, **k)

    monkeypatch.setattr(runner.ScoreCache, "put_many", dying_put)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, opts(out))
    monkeypatch.setattr(runner.ScoreCache, "put_many", real_put)
    assert not (out / "results.json").exists()
    res = run(cfg, opts(out, resume=True))
    assert res["run"]["cache"]["hits"] == 16 and res["run"]["cache"]["computed"] == 48 - 16


def test_cross_dataset_where_filter_and_bench_cli(world, tmp_path, capsys):
    cfg = write_cfg(
        tmp_path / "cross.yaml",
        name="tiny-cross",
        protocol="cross-dataset",
        datasets=[{"path": str(world["data"]), "name": "nn-set", "where": {"split": "test", "family": ["nn", ""]}}],
        detectors=[str(world["model"])],
        metrics={"bootstrap": 20},
        speed={"n_images": 4, "batch": 2, "latency_samples": 2},
    )
    out = tmp_path / "cross"
    assert main(["bench", "run", str(cfg), "--out", str(out), "--device", "cpu", "--workers", "2"]) == 0
    res = json.loads((out / "results.json").read_text())
    (cell,) = res["cells"]
    assert (cell["n_real"], cell["n_fake"]) == (24, 12)
    assert cell["group"] == {"dataset": "nn-set"}
    assert main(["bench", "report", str(out)]) == 0
    assert "report.md" in capsys.readouterr().out
    # compare a run with itself: zero difference, paired, interval [0, 0]
    assert main(["bench", "compare", str(out), str(out), "--metric", "auc", "--bootstrap", "20", "--json"]) == 0
    diff = json.loads(capsys.readouterr().out)["differences"][0]
    assert diff["paired"] and diff["diff"] == 0 and diff["lo"] == 0 and diff["hi"] == 0


def test_leave_one_family_out_plan(world, tmp_path):
    """The matrix: per held-out family one training job per detector, tested on every family's test set."""
    cfg = load_config(write_cfg(
        tmp_path / "loo.yaml", protocol="leave-one-family-out", datasets=[str(world["data"])],
        detectors=["spectrum", {"name": "npr", "train": {"epochs": 1}}],
    ))
    plan = get_protocol(cfg.protocol).plan(cfg)
    assert sorted(j.key for j in plan.jobs) == ["npr/without-nn", "npr/without-tconv", "spectrum/without-nn",
                                                "spectrum/without-tconv"]
    job = next(j for j in plan.jobs if j.key == "spectrum/without-nn")
    assert {i.row.family for i in job.train if i.y} == {"tconv"}
    assert all(i.row.split == "train" for i in job.train) and all(i.row.split == "val" for i in job.val)
    cells = [c for c in plan.cells if c.model is job]
    assert sorted(c.group["tested"] for c in cells) == ["nn", "tconv"]
    held = next(c for c in cells if c.group["tested"] == "nn")
    assert {i.row.family for i in held.items if i.y} == {"nn"} and sum(1 - i.y for i in held.items) == 24


# -- bad configs: one line, before any work -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"detectors": [{"model": "/nonexistent/model", "label": "x"}]}, "not found|no such model"),
        ({"protocol": "leave-one-family-out", "detectors": ["no-such-det"]}, "unknown detector 'no-such-det'"),
        ({"datasets": [{"path": "/nonexistent/dataset"}]}, "does not exist"),
        ({"protocol": "robustnes"}, "unknown benchmark protocol 'robustnes'; did you mean robustness"),
        ({"perturbations": ["jpeg(quality=50)"]}, "unknown parameter 'quality'"),
        ({"metrics": {"bootstrapp": 10}}, "unknown key"),
        ({"metrics": {"presets": ["balanced", "fpr5"]}}, r"unknown policy 'fpr5' \(known: balanced, fpr1, fpr01"),
        ({"datasets": [{"path": "$FORENSICS_TEST_UNSET_VAR/data"}]},
         r"\$FORENSICS_TEST_UNSET_VAR is not set, so the path \$FORENSICS_TEST_UNSET_VAR/data names no folder"),
        ({"datasets": [{"path": "/nonexistent/ds", "build": "make-ds --out /nonexistent/ds"}]},
         "/nonexistent/ds does not exist; build it with: make-ds --out /nonexistent/ds"),
    ],
)
def test_bad_config_one_line_error(world, tmp_path, patch, message):
    cfg = robustness_cfg(world, tmp_path / "bad.yaml", **patch)
    with pytest.raises(BenchConfigError, match=message) as exc:
        load_config(cfg)
    assert "\n" not in str(exc.value) and str(cfg) in str(exc.value)


def test_empty_class_fails_before_any_work(world, tmp_path, capsys):
    cfg = robustness_cfg(world, tmp_path / "fakes-only.yaml",
                         datasets=[{"path": str(world["data"]), "where": {"label": "fake"}}])
    with pytest.raises(BenchPlanError, match="has no real items"):
        get_protocol("robustness").plan(load_config(cfg))
    out = tmp_path / "never"
    assert main(["bench", "run", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "has no real items" in err and "\n" not in err
    assert not out.exists()  # nothing was created: the error came before any work


def test_metric_presets_are_case_insensitive(world, tmp_path):
    """A benchmark file may name presets as ``--threshold`` takes them (``FPR1``); the run reports canonical names."""
    cfg = load_config(robustness_cfg(world, tmp_path / "upper.yaml", metrics={"presets": ["FPR1", "Balanced", "fpr1"]}))
    assert cfg.metrics.presets == ["fpr1", "balanced"]


def test_dataset_without_manifest(world, tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = robustness_cfg(world, tmp_path / "bad.yaml", datasets=[str(tmp_path / "empty")])
    with pytest.raises(BenchConfigError, match="no manifest.jsonl"):
        load_config(cfg)


def test_toml_config_equivalent(world, tmp_path):
    toml = tmp_path / "rob.toml"
    toml.write_text(
        f'name = "t"\nprotocol = "robustness"\nperturbations = ["jpeg(q=75)"]\n'
        f'[[datasets]]\npath = "{world["data"]}"\n[[detectors]]\nmodel = "{world["model"]}"\n',
        encoding="utf-8",
    )
    cfg = load_config(toml)
    assert cfg.perturbations == ["none", "jpeg(q=75)"] and cfg.detectors[0].label == "model"


# -- video: frame level vs clip level, by method and CRF ----------------------------------------------------------


def make_video_dataset(root: Path, seed: int = 1) -> Path:
    """2 real and 2 fake clips (two methods) at each of two CRFs, 6 frames of 32x32 each."""
    from forensics_core.media import write_video

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for crf in (5, 30):
        for k, (label, method) in enumerate([("real", ""), ("real", ""), ("fake", "swap"), ("fake", "reenact")]):
            frames = [_real(rng) if label == "real" else _fake(rng, "nn") for _ in range(6)]
            rel = f"clip_{crf}_{k}.mp4"
            write_video(root / rel, frames, fps=10, crf=crf)
            rows.append(ManifestRow(rel, label, sha256_file(root / rel), method=method, split="test",
                                    extra={"crf": crf}))
    write_manifest(root, rows)
    return root


def test_video_protocol_frame_and_clip(world, tmp_path):
    vdata = make_video_dataset(tmp_path / "videos")
    cfg = write_cfg(
        tmp_path / "video.yaml", name="tiny-video", protocol="video", datasets=[str(vdata)],
        detectors=[{"model": str(world["model"]), "label": "spec"}],
        options={"every": 2, "max_frames": 3, "aggregate": "topk", "topk": 0.5},
        metrics={"bootstrap": 20}, speed={"n_images": 2, "batch": 2, "latency_samples": 2},
    )
    out = tmp_path / "vrun"
    res = run(cfg, opts(out))
    by = {(tuple(sorted(c["group"].items())), c["level"]): c for c in res["cells"]}
    whole_frame = by[((("dataset", "videos"),), "frame")]
    whole_clip = by[((("dataset", "videos"),), "clip")]
    assert (whole_clip["n_real"], whole_clip["n_fake"]) == (4, 4)
    assert (whole_frame["n_real"], whole_frame["n_fake"]) == (12, 12)  # frames 0, 2, 4 of each clip
    swap = by[((("dataset", "videos"), ("method", "swap")), "clip")]
    assert (swap["n_real"], swap["n_fake"]) == (4, 2)  # reals carry no method: they join every method group
    crf5 = by[((("crf", "5"), ("dataset", "videos")), "clip")]
    assert (crf5["n_real"], crf5["n_fake"]) == (2, 2)  # reals carry a CRF: only the same CRF's reals
    assert res["run"]["cache"]["computed"] == 24
    res2 = run(cfg, opts(out, resume=True))
    assert res2["run"]["cache"]["computed"] == 0
    assert [c["metrics"]["auc"] for c in res2["cells"]] == [c["metrics"]["auc"] for c in res["cells"]]


# -- bring your own detector: the example plugin package, benchmarked with the same runner ------------------------


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugin-detector"


@pytest.fixture()
def plugin_installed(tmp_path, monkeypatch) -> None:
    """Expose examples/plugin-detector's entry point the way ``pip install -e`` does (a dist-info with
    entry_points.txt on the import path); the registry is restored after the test."""
    import tomllib

    from detectors.registry import DETECTORS

    eps = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]["entry-points"]["forensics.detectors"]
    info = tmp_path / "site" / "forensics_plugin_example-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: forensics-plugin-example\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[forensics.detectors]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(DETECTORS, "_entries", dict(DETECTORS._entries))  # restored after the test
    monkeypatch.setattr(DETECTORS, "_loaded", False)  # re-scan entry points
    for mod in [m for m in sys.modules if m.startswith("forensics_plugin_example")]:
        monkeypatch.delitem(sys.modules, mod)  # imported by an earlier test: import again, so it registers again
    assert "laplacian-energy" in DETECTORS.names()


def test_plugin_detector_benchmarked(world, tmp_path, plugin_installed):
    """With the plugin's entry point installed, run a leave-one-family-out benchmark with it."""
    cfg = write_cfg(
        tmp_path / "plugin.yaml", name="plugin", protocol="leave-one-family-out", datasets=[str(world["data"])],
        detectors=["laplacian-energy"], train={"epochs": 1, "batch": 16}, metrics={"bootstrap": 20},
        speed={"n_images": 4, "batch": 2, "latency_samples": 2},
    )
    out = tmp_path / "run"
    res = run(cfg, opts(out))
    # the full matrix: 2 models (one per held-out family) x 2 test families
    assert sorted((c["group"]["held_out"], c["group"]["tested"]) for c in res["cells"]) == [
        ("nn", "nn"), ("nn", "tconv"), ("tconv", "nn"), ("tconv", "tconv")
    ]
    assert all(c["metrics"] and 0 <= c["metrics"]["auc"] <= 1 for c in res["cells"])
    card = json.loads((Path(res["models"]["laplacian-energy/without-nn"]["ref"]) / "model.json").read_text())
    assert card["detector"] == "laplacian-energy"
    assert (out / "loo_heatmap.png").stat().st_size > 0
    assert "Held-out family AUC" in (out / "report.md").read_text()
    res2 = run(cfg, opts(out, resume=True))  # trained models are reused and every score comes from the cache
    assert res2["run"]["cache"]["computed"] == 0
    key = "laplacian-energy/without-nn"
    assert res2["models"][key]["sha256"] == res["models"][key]["sha256"]


def test_plugin_benchmark_says_how_to_build_its_data(tmp_path, plugin_installed, monkeypatch, capsys):
    """The example's benchmark file reads ``$FORENSICS_WORK/data/...``: with the variable unset, or set to a folder
    without the data, the one-line error names the variable and the documented command that builds the data."""
    bench = EXAMPLE / "benchmark.yaml"
    monkeypatch.delenv("FORENSICS_WORK", raising=False)
    assert main(["bench", "run", str(bench), "--dry-run"]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "datasets[0]: $FORENSICS_WORK is not set" in err
    assert "build the data there: FORENSICS_WORK=DIR bash benchmarks/build_suite_dataset.sh" in err
    monkeypatch.setenv("FORENSICS_WORK", str(tmp_path / "work"))
    assert main(["bench", "run", str(bench), "--dry-run"]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert f"{tmp_path / 'work' / 'data' / 'suite-src'} does not exist; build it with: FORENSICS_WORK=DIR bash " \
        "benchmarks/build_suite_dataset.sh 400 150" in err
    # the README documents the same commands
    readme = (EXAMPLE / "README.md").read_text()
    assert "bash benchmarks/build_suite_dataset.sh" in readme and "--out $FORENSICS_WORK/data/shared-src" in readme


def test_shipped_tiny_config_dry_run(world, monkeypatch, capsys):
    """``benchmarks/configs/tiny.yaml`` (paths from the environment) validates and plans without doing any work."""
    monkeypatch.setenv("BENCH_TINY_DATA", str(world["data"]))
    monkeypatch.setenv("BENCH_TINY_MODEL", str(world["model"]))
    tiny = Path(__file__).resolve().parents[1] / "benchmarks" / "configs" / "tiny.yaml"
    assert main(["bench", "run", str(tiny), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "tiny: protocol robustness, 0 training jobs, 4 cells" in out
    assert out.count("24 real / 24 fake") == 4


def test_git_describe_names_the_commit_and_a_dirty_tree(tmp_path, monkeypatch):
    """``forensics_core.sysinfo.git_describe``: the one commit lookup of every run record (abbreviated hash, ``-dirty``
    for a changed tracked file), ``unknown`` outside a checkout or without git."""
    import subprocess

    from forensics_core.sysinfo import git_describe

    for k, v in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                 "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(tmp_path)}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    repo = tmp_path / "repo"
    repo.mkdir()
    assert git_describe(repo) == "unknown"  # not a checkout: nothing is guessed from an enclosing repository
    (repo / "a.txt").write_text("one\n")
    for args in (["init", "-q"], ["add", "a.txt"], ["commit", "-qm", "one"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=7", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert git_describe(repo) == head
    (repo / "untracked.txt").write_text("not part of the commit's files\n")
    assert git_describe(repo) == head  # untracked files do not make a tree dirty
    (repo / "a.txt").write_text("two\n")
    assert git_describe(repo) == f"{head}-dirty"
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # git not installed
    assert git_describe(repo) == "unknown"

