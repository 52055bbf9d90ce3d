"""The generator framework: config resolution, data loading, exact resume, DDP, sampling to datasets, metrics, CLI."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import cli
from forensics_core.dataset import ManifestRow, read_manifest, write_manifest
from forensics_core.errors import ModelFileError, UnknownNameError, UsageError
from forensics_core.runs import optimizer_state_dict, optimizer_to_tensors
from generators import checkpoints as C
from generators import train as T
from generators.data import BatchLoader, FaceImages, cond_from_extra, cond_from_utk_name, discover
from generators.metrics import c2st_accuracy, diversity, kid, precision_recall_coverage

TINY = {"ch": 4, "ch_max": 8, "z_dim": 8}


def _faces(root: Path, n: int = 24, size: int = 24) -> Path:
    """Random 'faces' with UTKFace-style names (age_gender_race_date)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        px = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(px).save(root / f"{5 + 9 * i}_{i % 2}_{i % 5}_2017.jpg")
    return root


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return _faces(tmp_path_factory.mktemp("faces"))


def _train(faces: Path, out: Path, steps: int, resume: Path | None = None, **kw) -> Path:
    quiet = {"progress": False, "sample_every": 1000, "ckpt_every": 1000, "log_every": 1000, "diversity_every": 1000}
    return T.train("dcgan", [str(faces)], dict(TINY), out, res=16, steps=steps, batch=4, device="cpu", seed=3,
                   resume=resume, trainer_options=quiet | kw)


# -- config -----------------------------------------------------------------------------------------------------
def test_resolve_config_presets_and_overrides() -> None:
    cfg = T.resolve_config("dcgan", 64, "", {"lr": "1e-3", "ch": "8"})
    assert (cfg.res, cfg.lr, cfg.ch, cfg.ch_max) == (64, 1e-3, 8, 128)  # ch_max from the 64 px preset
    with pytest.raises(UsageError, match="unknown option 'nope'"):
        T.resolve_config("dcgan", 64, "", {"nope": 1})
    with pytest.raises(UsageError, match="resolution 48"):
        T.resolve_config("dcgan", 48)
    with pytest.raises(UnknownNameError, match="did you mean dcgan"):
        T.resolve_config("dcgna", 64)


# -- data -------------------------------------------------------------------------------------------------------
def test_attributes_from_names_and_manifest(tmp_path) -> None:
    assert cond_from_utk_name("26_1_2_20170116.jpg.chip.jpg") == (1, 2, 2)  # female, 20-29, asian
    assert cond_from_utk_name("x.jpg") == (-1, -1, -1)
    assert cond_from_utk_name("dir/71_2_5_2017.jpg") == (-1, 6, -1)  # codes outside the vocabulary: unknown
    assert cond_from_utk_name("39_1_20170116174525125.jpg.chip.jpg") == (-1, -1, -1)  # a known malformed name
    assert not hasattr(__import__("generators.data").data, "_UTK_NAME")  # one UTKFace name parser (importers)
    assert cond_from_extra({"age": 71, "gender": "male"}, "") == (0, 6, -1)
    assert cond_from_extra({"attributes": {"race": "indian"}}, "") == (-1, -1, 3)
    assert cond_from_extra({"source_path": "a/35_0_1_2017.jpg"}, "abc.jpg") == (0, 3, 1)
    _faces(tmp_path, 6)
    rows = [ManifestRow(p.name, "real", split="crossval" if i == 0 else "train", extra={"age": 30})
            for i, p in enumerate(sorted(tmp_path.glob("*.jpg")))]
    write_manifest(tmp_path, rows)
    items = discover([tmp_path])
    assert len(items) == 5 and all(it.cond[1] == 3 for it in items)  # crossval held out; age 30 -> "30-39"
    assert len(discover([tmp_path], include_held_out=True)) == 6


def test_loader_is_deterministic_and_resumable(faces) -> None:
    ds = FaceImages(discover([faces]), 16)
    a = BatchLoader(ds, 4, seed=1)
    seq = [next(a).image for _ in range(9)]  # crosses an epoch boundary (24 / 4 = 6 batches)
    assert seq[0].shape == (4, 3, 16, 16) and seq[0].min() >= -1 and seq[0].max() <= 1
    b = BatchLoader(ds, 4, seed=1)
    for _ in range(4):
        next(b)
    c = BatchLoader(ds, 4, seed=1)
    c.load_state_dict(b.state_dict())
    assert all(torch.equal(next(c).image, seq[i]) for i in range(4, 9))


# -- training ---------------------------------------------------------------------------------------------------
def test_run_dir_layout_and_exact_resume(faces, tmp_path) -> None:
    full = _train(faces, tmp_path / "a", 8)
    half = _train(faces, tmp_path / "b", 4)
    resumed = _train(faces, tmp_path / "b", 8, resume=half)
    assert resumed == half and full.name == "00000-dcgan-16"
    opts = json.loads((full / "options.json").read_text())
    assert opts["tags"]["upsampler"] == "convT-k4s2" and opts["config"]["ch"] == 4 and opts["n_images"] == 24
    rows = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 8 and {"loss_d", "loss_g", "img_per_s", "diversity"} <= set(rows[-1])
    assert (full / "samples" / "step-000008.png").is_file()
    for name in ("modules.safetensors", "optim.safetensors"):
        x = load_file(T.list_checkpoints(full)[-1] / name)
        y = load_file(T.list_checkpoints(resumed)[-1] / name)
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), f"{name}:{k} differs between 8 steps and 4 + resume 4"


def test_time_budget_stops_at_a_checkpoint_and_resume_continues(faces, tmp_path) -> None:
    run = _train(faces, tmp_path / "r", 50, max_minutes=1e-6)  # the budget is spent after the first step
    (ck,) = T.list_checkpoints(run)
    assert json.loads((ck / "state.json").read_text())["step"] == 1
    resumed = _train(faces, tmp_path / "r", 3, resume=run, max_minutes=0)
    assert json.loads((T.list_checkpoints(resumed)[-1] / "state.json").read_text())["step"] == 3


def test_init_starts_a_new_run_from_trained_weights(faces, tmp_path, capsys) -> None:
    """--init: the source's config is the base that options change, its weights are loaded (fresh optimisers),
    and a source that does not fit is a one-line error."""
    quiet = {"progress": False, "sample_every": 1000, "ckpt_every": 1000, "log_every": 1000, "diversity_every": 1000}
    src = T.train("resgan", [str(faces)], {"ch": 4}, tmp_path / "a", res=16, steps=2, batch=4, device="cpu",
                  trainer_options=quiet)
    fam = T.build_family("resgan", T.resolve_config("resgan", 16, "", {"ch": 4, "lr_d": 4e-4}), "cpu")
    T.init_weights(fam, str(src))
    trained = T.load_run(src)
    for name in ("G", "D", "G_ema"):
        for k, v in trained.modules()[name].state_dict().items():
            assert torch.equal(v, fam.modules()[name].state_dict()[k]), f"{name}.{k}"
    fresh_d = T.build_family("resgan", T.resolve_config("resgan", 16, "", {"ch": 4}), "cpu")
    T.init_weights(fresh_d, str(src), ["G", "G_ema"])  # the generator only: D restarts from its initialisation
    assert torch.equal(fresh_d.G.fc.weight, trained.G.fc.weight)
    assert not torch.equal(fresh_d.D.fc.parametrizations.weight.original, trained.D.fc.parametrizations.weight.original)
    with pytest.raises(UsageError, match="has no module 'E'"):
        T.init_weights(fresh_d, str(src), ["E"])
    with pytest.raises(UsageError, match="holds a resgan model, not pixelshuffle"):
        T.init_weights(T.build_family("pixelshuffle", T.resolve_config("pixelshuffle", 16), "cpu"), str(src))
    wider = T.build_family("resgan", T.resolve_config("resgan", 16, "", {"ch": 8}), "cpu")
    with pytest.raises(ModelFileError, match="do not fit"):
        T.init_weights(wider, str(src))
    argv = ["gan", "train", "resgan", "--data", str(faces), "--init", str(src), "--set", "lr_d=4e-4",
            "--steps", "1", "--batch", "4", "--out", str(tmp_path / "b"), "--no-progress", "--device", "cpu"]
    assert cli.main(argv) == 0
    run = Path(capsys.readouterr().out.strip().splitlines()[-1])
    opts = json.loads((run / "options.json").read_text())
    assert opts["config"]["ch"] == 4 and opts["config"]["res"] == 16 and opts["config"]["lr_d"] == 4e-4
    assert opts["train"]["init"] == str(src)


def test_suite_covers_every_registered_family_in_dependency_order() -> None:
    from generators.registry import GENERATORS
    from generators.suite import DATA_SOURCES, NOT_SHIPPED, SUITE

    assert set(SUITE) | set(NOT_SHIPPED) == set(GENERATORS.names())
    order = list(SUITE)
    for name, entry in SUITE.items():
        for key in ("ae_run", "ldm_run"):  # a family that borrows a reference model trains after it
            ref = entry.overrides.get(key)
            if ref:
                assert order.index(ref) < order.index(name), (name, ref)
        T.resolve_config(name, entry.res or 64, "", dict(entry.overrides))  # every override is a real config field
        assert entry.data in DATA_SOURCES, name
        overrides = dict(entry.overrides)
        for ft in entry.finetune:  # later stages' overrides (laid over the earlier ones) and modules exist too
            overrides.update(ft.overrides)
            cfg = T.resolve_config(name, entry.res or 64, "", overrides)
            if ft.modules:
                assert set(ft.modules) <= set(T.build_family(name, cfg).modules()), name


def test_registration_is_the_one_source_of_a_familys_name_and_tags() -> None:
    """``register_generator`` sets name / family / upsampler / kind on the class; an architecture config that picks
    its upsampler by name picks the one the registry tags (the tag leave-one-upsampler-out splits on)."""
    from dataclasses import fields

    from generators.registry import GENERATORS

    for e in GENERATORS.entries():
        cls = e.obj
        assert (cls.name, cls.family, cls.upsampler, cls.kind) == (
            e.name, e.meta["family"], e.meta["upsampler"], e.meta["kind"]
        ), e.name
        ups = {f.name: f.default for f in fields(cls.Config)}.get("upsampler")
        if ups is not None:
            assert ups == cls.upsampler, e.name


def test_suite_grids_edit_own_faces_and_show_one_condition_per_row(tmp_path, monkeypatch) -> None:
    from generators import suite

    monkeypatch.setattr(suite, "GRIDS", tmp_path)
    with Image.open(suite.grid_for("srgan")) as im:  # 8 dcgan faces above their 8 super-resolved outputs
        assert im.size == (8 * 64, 2 * 64)
    with Image.open(suite.grid_for("cgan")) as im:  # one row per condition
        assert im.size == (4 * 64, len(suite.GRID_CONDITIONS) * 64)
    with Image.open(suite.grid_for("inpaint")) as im:  # inputs, outputs, and the mask of what was synthesised
        assert im.size == (8 * 64, 3 * 64)
        masks = np.asarray(im.convert("L"))[2 * 64 :]
    assert set(np.unique(masks)) <= {0, 255} and 0 < (masks == 255).mean() < 0.5


def test_face_rate_finds_faces_not_noise() -> None:
    from generators.metrics import face_rate

    demo = Path(__file__).resolve().parent.parent / "forensics" / "assets" / "demo" / "real-astronaut.jpg"
    img = np.asarray(Image.open(demo).convert("RGB").resize((160, 160)), dtype=np.float32)
    face = torch.from_numpy(img).permute(2, 0, 1)[None] / 127.5 - 1
    assert face_rate(face, size=160) == 1.0
    assert face_rate(torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1) == 0.0


def test_optimizer_state_round_trips_without_pickle() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    tensors, side = optimizer_to_tensors("G", opt)
    json.dumps(side)  # the sidecar is plain JSON
    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=0.5)
    opt2.load_state_dict(optimizer_state_dict("G", tensors, side))
    assert opt2.param_groups[0]["lr"] == 0.1
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def _ddp_worker(rank: int, world: int, port: int, faces: str, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    opts, cfg = T.make_options("dcgan", [faces], dict(TINY), out, res=16, steps=2, batch=4, device="cpu",
                               trainer_options={"progress": False})
    trainer = T.Trainer(opts, cfg)
    run = trainer.run()  # raises TrainingError if the replicas diverged
    total = sum(float(p.double().sum()) for p in trainer.family.G.parameters())
    Path(out, f"rank{rank}.json").write_text(json.dumps({"run": str(run), "sum": total}))
    dist.destroy_process_group()


def test_trainers_share_one_run_toolkit(tmp_path) -> None:
    """Run dirs, options files, metrics.jsonl, single-file checkpoints and DDP set-up live in forensics_core.runs; the
    GAN, detector and video trainers use them (files byte-compatible with what each wrote before)."""
    import detectors.train.loop as DT
    import generators.video.runs as VR
    from forensics_core import runs as R

    assert DT.MetricsLog is R.MetricsLog and T.init_distributed is R.init_distributed and not hasattr(T, "Dist")
    assert DT.save_run_checkpoint is VR.save_run_checkpoint is R.save_run_checkpoint
    assert R.write_json(tmp_path / "o.json", {"a": [1]}, newline=True).read_text() == '{\n  "a": [\n    1\n  ]\n}\n'
    assert R.write_json(tmp_path / "c.json", {"x": np.float32(0.5)}, indent=None, default=float).read_text() == (
        '{"x": 0.5}'
    )
    log = R.MetricsLog(tmp_path / "metrics.jsonl")
    log.write(step=1, loss=np.float32(0.25))
    R.MetricsLog(tmp_path / "metrics.jsonl", enabled=False).write(step=2)
    (row,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert row["step"] == 1 and row["loss"] == 0.25 and row["time"] > 0
    torch.manual_seed(0)
    m, m2 = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    opt, opt2 = torch.optim.Adam(m.parameters(), 1e-3), torch.optim.Adam(m2.parameters(), 1e-3)
    m(torch.randn(2, 4)).sum().backward()
    opt.step()
    R.save_run_checkpoint(tmp_path, m, opt, {"epoch": 3}, opt_prefix="opt", extra_tensors={"rng.x": torch.ones(2)})
    tensors = load_file(str(tmp_path / "checkpoint.safetensors"))
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    assert meta["epoch"] == 3 and "optimizer" in meta and torch.equal(tensors["rng.x"], torch.ones(2))
    assert not list(tmp_path.glob("*.tmp"))
    R.restore_run_checkpoint(tensors, meta, m2, opt2, opt_prefix="opt")
    assert torch.equal(m2.weight, m.weight) and opt2.state_dict()["state"][0]["step"] == 1
    assert R.init_distributed(torch.device("cpu")) == R.Dist() and R.rank_device(R.Dist(), "cpu") == "cpu"


def test_ddp_two_process_gloo_smoke(faces, tmp_path) -> None:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(faces), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2))
    assert r0 == r1  # same run dir, identical parameters on both ranks
    run = Path(r0["run"])
    assert len(list(tmp_path.glob("0*-dcgan-16"))) == 1  # only rank 0 wrote
    assert json.loads((run / "options.json").read_text())["world_size"] == 2
    assert T.list_checkpoints(run)[-1].name == "step-000002"


# -- sampling ---------------------------------------------------------------------------------------------------
def test_sample_to_dataset_provenance_and_resume(faces, tmp_path) -> None:
    from generators.sampling import sample_to_dataset

    run = _train(faces, tmp_path / "runs", 2)
    out = tmp_path / "fakes"
    rep = sample_to_dataset(str(run), 5, out, truncation=0.7, seed=4, batch=2, device="cpu", progress=False,
                            jpeg_quality=90)
    assert rep.written == 5
    rows = read_manifest(out)
    assert [r.path for r in rows] == [f"images/{i:06d}.jpg" for i in range(5)]
    r = rows[0]
    tags = (r.label, r.generator, r.family, r.upsampler, r.method)
    assert tags == ("fake", "dcgan", "dcgan", "convT-k4s2", "synthesis")
    assert r.extra["truncation"] == 0.7 and r.extra["checkpoint_step"] == 2 and len(r.extra["checkpoint_sha256"]) == 64
    with Image.open(out / r.path) as im:
        assert im.format == "JPEG" and im.size == (16, 16)
    first = (out / rows[4].path).read_bytes()
    (out / "manifest.jsonl").write_text("\n".join(x.to_json() for x in rows[:3]) + "\n")  # simulate a killed run
    rep2 = sample_to_dataset(str(run), 5, out, truncation=0.7, seed=4, batch=2, device="cpu", progress=False,
                             jpeg_quality=90)
    assert (rep2.written, rep2.skipped) == (2, 3)
    assert (out / rows[4].path).read_bytes() == first  # regenerated identically


# -- metrics ----------------------------------------------------------------------------------------------------
def test_metrics_separate_same_from_different() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
    c = rng.normal(loc=1.5, size=(200, 16))
    assert abs(kid(a, b, subset_size=100)[0]) < 0.05 < kid(a, c, subset_size=100)[0]
    assert 0.35 < c2st_accuracy(a, b) < 0.65 and c2st_accuracy(a, c) > 0.9
    same, far = precision_recall_coverage(a, b), precision_recall_coverage(a, c)
    assert same["precision"] > 0.7 and same["coverage"] > 0.7 and far["coverage"] < same["coverage"]
    imgs = torch.rand(16, 3, 16, 16) * 2 - 1
    collapsed = imgs[:1].repeat(16, 1, 1, 1) + 0.01 * torch.randn(16, 3, 16, 16)
    assert diversity(collapsed) < 0.25 * diversity(imgs)


# -- CLI --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["gan", "train", "dcgna", "--data", "{faces}"], "did you mean dcgan"),
        (["gan", "train", "dcgan", "--data", "{faces}", "--res", "48"], "resolution 48"),
        (["gan", "train", "dcgan", "--data", "{missing}"], "data directory does not exist"),
        (["gan", "train", "dcgan", "--data", "{faces}", "--set", "lr"], "expected key=value"),
        (["gan", "sample", "no-such-model", "--out", "{missing}"], "unknown run or reference model"),
    ],
)
def test_bad_options_give_one_line_errors(args, needle, faces, tmp_path, capsys) -> None:
    argv = [a.format(faces=faces, missing=tmp_path / "missing") for a in args]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err


def test_cli_list_json_and_dry_run(faces, capsys) -> None:
    assert cli.main(["gan", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"dcgan", "dcgan-k3", "stylegan2", "resgan", "pixelshuffle"} <= set(rows)
    assert rows["stylegan2"]["upsampler"] == "bilinear-fir" and "64" in rows["stylegan2"]["presets"]
    assert cli.main(["gan", "train", "resgan", "--data", str(faces), "--res", "32", "--dry-run", "--set", "ch=8"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["config"]["res"] == 32 and cfg["config"]["ch"] == 8 and cfg["config"]["loss"] == "hinge"


def test_export_reference_fp16_and_load_by_name(faces, tmp_path, monkeypatch) -> None:
    run = _train(faces, tmp_path / "runs", 2)
    monkeypatch.setattr(C, "ASSETS", tmp_path / "assets")  # load_run / export_reference live in generators.checkpoints
    d = T.export_reference(run, "tiny-dcgan")
    w = load_file(d / "model.safetensors")
    assert not any(k.startswith("G.") for k in w)  # G_ema ships instead of G
    assert w["G_ema.net.1.weight"].dtype == torch.float16 and any(k.startswith("D.") for k in w)
    assert T.reference_names() == ["tiny-dcgan"]
    fam = T.load_run("tiny-dcgan")
    assert fam.generator_name == "dcgan" and fam.checkpoint.step == 2
    trained = T.load_run(run)
    g = torch.Generator
    a = fam.sample(3, g().manual_seed(0)).images
    b = trained.sample(3, g().manual_seed(0)).images
    assert a.shape == (3, 3, 16, 16) and (a - b).abs().max() < 0.02  # fp16 rounding only
