"""Every registered detector builds, trains 2 steps on tiny generated data, saves and reloads to identical outputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pytest
import torch

from detectors.registry import DETECTORS, build_detector, list_detectors
from forensics_core.dataset import ManifestRow, read_manifest, write_manifest
from forensics_core.errors import DataError, ForensicsError, UnknownNameError, UsageError
from forensics_core.hashing import sha256_file

if TYPE_CHECKING:
    from detectors.train.options import TrainOptions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def smooth_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    small = rng.integers(0, 255, (4, 4, 3)).astype(np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def checkerboard_fake(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """The same kind of image plus the period-2 pattern a transposed-conv upsampler leaves."""
    img = smooth_image(rng, size).astype(np.int16)
    cb = ((np.indices((size, size)).sum(0) % 2) * 2 - 1) * 12
    return np.clip(img + cb[..., None], 0, 255).astype(np.uint8)


def make_dataset(root: Path, n_per_class: int = 24, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_per_class):
        split = "train" if i < int(n_per_class * 0.6) else "val"
        for label, fn in (("real", smooth_image), ("fake", checkerboard_fake)):
            p = f"{label}_{i:03d}.png"
            cv2.imwrite(str(root / p), cv2.cvtColor(fn(rng, size), cv2.COLOR_RGB2BGR))
            rows.append(
                ManifestRow(
                    path=p,
                    label=label,
                    sha256=sha256_file(root / p),
                    split=split,
                    family="checker" if label == "fake" else "",
                    generator="toy",
                )
            )
    write_manifest(root, rows)
    return root


def tiny_options(ds: Path, out: Path, **kw: Any) -> TrainOptions:
    """A couple of steps of the small NPR on ``ds`` (its train and val rows), written under ``out``: each test
    names only the options it is about."""
    from detectors.train.options import TrainOptions

    base = dict(
        detector="npr",
        data=[str(ds)],
        val=[str(ds)],
        res=32,
        epochs=1,
        batch=8,
        steps_per_epoch=2,
        progress=False,
        augment="none",
        detector_cfg={"widths": (8, 16, 32)},
    )
    return TrainOptions(**{**base, **kw}, out=str(out))


# Small configs so each detector trains in about a second on a loaded 2-core machine.
TINY_CFG: dict[str, dict] = {
    "timm": {"backbone": "resnet10t"},
    "npr": {"widths": (8, 16, 32)},
    "blend": {"widths": (8, 16, 32)},
    "video": {"frame_cfg": {"widths": (8, 16, 32)}, "clip_len": 2},
    "ensemble": {"members": ("npr", "spectrum")},
    "surround": {"n_trees": 10, "views": 1},
}


@pytest.fixture(scope="module")
def tiny_ds(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("tiny") / "ds")


def test_registry_lists_the_required_detectors():
    assert {"gan-disc", "timm", "npr", "spectrum", "blend", "video", "ensemble"} <= set(list_detectors())
    for e in DETECTORS.entries():
        assert e.description and e.obj.Config is not None


@pytest.mark.parametrize("name", list_detectors())
def test_train_two_steps_save_reload_identical(name, tiny_ds, tmp_path):
    from detectors.modelfile import load_model
    from detectors.train.loop import train

    opts = tiny_options(
        tiny_ds,
        tmp_path / "runs",
        detector=name,
        augment="light",
        detector_cfg=TINY_CFG.get(name, {}),
        post_fit_items=24,
        max_val=40,
    )
    run = train(opts)
    assert (run / "training_options.json").is_file()
    card = json.loads((run / "model" / "model.json").read_text())
    assert card["detector"] == name and set(card["thresholds"]) == {"balanced", "fpr1", "fpr01"}
    assert card["training"]["datasets"][0]["manifest_sha256"]
    if (
        DETECTORS.get(name)
        .obj(DETECTORS.get(name).obj.Config(**{"res": 32, **_tuples(TINY_CFG.get(name, {}))}))
        .gradient_trained
    ):
        lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
        assert any(r["event"] == "epoch" and 0 <= r["val_auc"] <= 1 for r in lines)

    m1 = load_model(run / "model", device="cpu")
    m2 = load_model(str(run / "model" / "model.json"), device="cpu")
    rng = np.random.default_rng(1)
    faces = [smooth_image(rng) for _ in range(3)] + [checkerboard_fake(rng) for _ in range(3)]
    p1, p2 = m1.predict_proba(faces), m2.predict_proba(faces)
    assert p1.shape == (6,) and np.all((p1 >= 0) & (p1 <= 1))
    np.testing.assert_array_equal(p1, p2)
    heat = m1.explain(faces[3])
    assert heat.shape == (32, 32) and heat.min() >= 0 and heat.max() <= 1


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def test_save_reload_bit_identical_after_training_step(tmp_path):
    from detectors.calibration import TemperatureScaling
    from detectors.modelfile import load_model, save_model

    det = build_detector("npr", res=32, widths=(8, 16, 32))
    opt = torch.optim.SGD(det.parameters(), lr=0.1)
    x, y = torch.randn(8, 3, 32, 32), torch.tensor([0, 1] * 4)
    for _ in range(2):
        loss, _ = det.loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    det.eval()
    cal = TemperatureScaling().fit(np.array([-2.0, -1, 1, 2]), np.array([0, 0, 1, 1]))
    save_model(tmp_path / "m", det, cal, {"balanced": 0.5, "fpr1": 0.9, "fpr01": 0.99})
    m = load_model(tmp_path / "m", device="cpu")
    with torch.no_grad():
        np.testing.assert_array_equal(det(x).numpy(), m.detector(x).numpy())
    assert m.preprocess.size == 32 and m.thresholds["fpr1"] == 0.9
    assert len(m.sha256) == 64


def test_trained_npr_separates_checkerboard(tiny_ds, tmp_path):
    """Sanity of the whole loop: a few dozen steps learn the toy upsampling artifact."""
    from detectors.modelfile import load_model
    from detectors.train.loop import train

    run = train(tiny_options(tiny_ds, tmp_path, epochs=2, batch=16, steps_per_epoch=12, lr=3e-3))
    m = load_model(run / "model", device="cpu")
    rng = np.random.default_rng(5)
    p_real = m.predict_proba([smooth_image(rng) for _ in range(16)])
    p_fake = m.predict_proba([checkerboard_fake(rng) for _ in range(16)])
    assert p_fake.mean() > p_real.mean() + 0.3

    from detectors.evaluate import evaluate_model

    by_gen = evaluate_model(m, [str(tiny_ds)], n_boot=0, group_by="generator")
    by_fam = evaluate_model(m, [str(tiny_ds)], n_boot=0)
    assert set(by_gen.by_group) == {"toy"} and set(by_fam.by_group) == {"checker"}
    assert by_gen.by_group["toy"]["auc"] == by_fam.by_group["checker"]["auc"] == by_fam.overall["auc"]
    with pytest.raises(UsageError, match="--group-by"):
        evaluate_model(m, [str(tiny_ds)], n_boot=0, group_by="colour")


def test_init_model_fine_tunes_a_saved_model(tiny_ds, tmp_path):
    from detectors.modelfile import load_model
    from detectors.train.loop import train

    first = train(tiny_options(tiny_ds, tmp_path / "a"))
    # the saved model's config comes along (widths are not given again) and training starts from its weights
    second = train(tiny_options(tiny_ds, tmp_path / "b", detector_cfg={}, init_model=str(first / "model"), lr=0.0))
    a, b = load_model(first / "model", device="cpu"), load_model(second / "model", device="cpu")
    assert b.card["config"]["widths"] == [8, 16, 32]
    assert b.card["training"]["init_from"]["sha256"] == a.sha256  # which weights, even if a name is reinstalled
    assert "init_from" not in a.card["training"]
    for k, v in a.detector.state_dict().items():
        if v.is_floating_point() and "running" not in k and "num_batches" not in k:
            assert torch.allclose(v, b.detector.state_dict()[k], atol=1e-6), k
    with pytest.raises(UsageError, match="is a 'npr' model"):
        train(tiny_options(tiny_ds, tmp_path, detector="blend", init_model=str(first / "model")))


def test_resume_continues_a_run(tiny_ds, tmp_path):
    from detectors.train.loop import train

    kw = dict(augment="default", patience=10)
    run = train(tiny_options(tiny_ds, tmp_path, epochs=1, **kw))
    run2 = train(tiny_options(tiny_ds, tmp_path, epochs=2, resume=str(run), **kw))
    assert run2 == run
    epochs = [
        json.loads(s)["epoch"]
        for s in (run / "metrics.jsonl").read_text().splitlines()
        if json.loads(s)["event"] == "epoch"
    ]
    assert epochs == [0, 1]


def test_unknown_backbone_and_options_are_one_line_errors():
    with pytest.raises(UnknownNameError, match="unknown timm backbone 'resnet5000'") as e:
        build_detector("timm", backbone="resnet5000")
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="unknown option"):
        build_detector("npr", nonsense=1)
    with pytest.raises(UnknownNameError, match="unknown detector"):
        build_detector("nprr")


def test_gan_disc_kplus1_semi_supervised_loss():
    det = build_detector("gan-disc", res=32, mode="kplus1")
    x = torch.randn(6, 3, 32, 32)
    y = torch.tensor([0, 1, -1, -1, -1, -1])  # two labelled, four unlabelled
    loss, logs = det.loss(x, y)
    loss.backward()
    assert {"sup", "unsup"} <= set(logs) and torch.isfinite(loss)
    assert det(x).shape == (6,)


def test_gan_disc_from_generator_registry_family():
    """The design card's reuse: a GAN-suite family's discriminator becomes the detector trunk."""
    from generators.registry import GENERATORS

    if "dcgan" not in GENERATORS:
        pytest.skip("generator family dcgan not installed")
    from generators.registry import get_generator

    fam_cls = get_generator("dcgan")
    fam = fam_cls(fam_cls.Config(res=32))
    disc = fam.discriminator()
    det = build_detector("gan-disc", res=32, family="dcgan")
    assert det(torch.randn(2, 3, 32, 32)).shape == (2,)
    n_disc = sum(p.numel() for p in disc.parameters())
    assert abs(sum(p.numel() for p in det.parameters()) - n_disc) <= 8  # same trunk, one-logit head


def test_video_aggregation():
    from detectors.models.video import aggregate_scores

    z = np.array([-3.0, -2.0, -1.0, 0.0, 10.0])
    assert aggregate_scores(z, "mean") == pytest.approx(0.8)
    assert aggregate_scores(z, "topk", k=2) == pytest.approx(5.0)
    assert aggregate_scores(z, "trimmed-mean", trim=0.2) == pytest.approx(-1.0)
    det = build_detector("video", res=32, frame_cfg={"widths": (8, 16)}, aggregate="topk")
    assert isinstance(det.clip_logit(torch.randn(5, 3, 32, 32)), float)
    with pytest.raises(ForensicsError):
        aggregate_scores(np.array([]), "mean")


def test_blend_self_blend_changes_only_the_face_region():
    from detectors.models.blend import self_blend

    x = torch.zeros(2, 3, 32, 32) + torch.linspace(-1, 1, 32)
    out = self_blend(x, margin=0.3, rng=np.random.default_rng(0))
    diff = (out - x).abs().sum(dim=1)
    assert diff[:, 0, 0].max() < 1e-3  # corners untouched
    assert diff[:, 12:20, 12:20].mean() > 0  # face centre blended


def test_cli_list_json():
    from click.testing import CliRunner

    from detectors.cli import detector

    res = CliRunner().invoke(detector, ["list", "--json"])
    assert res.exit_code == 0
    names = {r["name"] for r in json.loads(res.output)}
    assert "npr" in names and "ensemble" in names


def test_default_model_crossval_keeps_the_paired_headline_apart(tmp_path):
    """The shipped model's headline crossval AUC stays 'paired set only' (StyleGAN2 vs FFHQ) when fake-only sample
    sets join the training data; those are scored against the same reals, one row per generator."""
    from detectors.default_model import _crossval_metrics
    from detectors.model_card import write_model_card
    from detectors.modelfile import load_model
    from detectors.train.loop import train

    paired = make_dataset(tmp_path / "paired", n_per_class=12, seed=1)
    fakes_only = make_dataset(tmp_path / "samples", n_per_class=12, seed=2)
    write_manifest(paired, [dataclasses.replace(r, split="crossval") for r in read_manifest(paired)])
    write_manifest(fakes_only, [dataclasses.replace(r, split="crossval", generator="ours")
                                for r in read_manifest(fakes_only) if r.label == "fake"])
    tiny = make_dataset(tmp_path / "train", n_per_class=12, seed=3)
    run = train(tiny_options(tiny, tmp_path / "runs"))
    m = _crossval_metrics(load_model(run / "model", device="cpu"), [tiny, paired, fakes_only])
    assert (m["crossval"]["n_real"], m["crossval"]["n_fake"]) == (12, 12)
    assert (m["crossval_all"]["n_real"], m["crossval_all"]["n_fake"]) == (12, 24)
    assert set(m["crossval_by_generator"]) == {"toy", "ours"}
    card = json.loads((run / "model" / "model.json").read_text())
    card["metrics"].update(m)
    card["transfer"] = {"command": "python -m benchmarks.transfer ...",
                        "markdown": "# T\n\n## shortcuts\n\npair S\n\n## transfer-val\n\ngrid TV\n"}
    text = write_model_card(run / "model", card, "python -m detectors.default_model ...").read_text()
    assert "| ours |" in text and "**crossval**" in text
    # the card leads with transfer, before its training data; the crossval pair comes after, labelled in-distribution
    assert text.index("grid TV") < text.index("pair S") < text.index("## Training data")
    assert "### shortcuts (in-distribution: the shared crossval pair" in text


def test_old_cards_get_their_sources_only_from_the_same_train_rows(tmp_path):
    """A card written before datasets recorded their sources gets them from the rebuilt manifest, but only when its
    train rows are the ones the card counted; a dataset that differs, or already lists sources, is left alone."""
    from detectors.default_model import backfill_sources

    ds = make_dataset(tmp_path / "ds", n_per_class=6)
    rows = read_manifest(ds)
    write_manifest(ds, [dataclasses.replace(r, extra={**r.extra, "source_repo": "o/r", "source_commit": "c0ffee"})
                        for r in rows])
    train = [r for r in rows if r.split in ("train", "")]
    by_label = {k: sum(r.label == k for r in train) for k in ("real", "fake")}
    counted = {"path": str(ds), "n": len(train), "by_label": by_label}
    more = {**counted, "n": len(train) + 1}
    card = {"training": {"datasets": [dict(counted), more, {**counted, "sources": ["kept"]}]}}
    backfill_sources(card)
    got, other, kept = card["training"]["datasets"]
    assert {(e["label"], e["repo"], e["commit"]) for e in got["sources"]} == {("real", "o/r", "c0ffee"),
                                                                              ("fake", "o/r", "c0ffee")}
    assert sum(e["n"] for e in got["sources"]) == len(train) > 0
    assert "sources" not in other and kept["sources"] == ["kept"]
    backfill_sources({"training": {"datasets": [{**counted, "path": str(tmp_path / "gone")}]}})  # folder gone: no-op


def test_card_ablation_table_reads_the_transfer_selection():
    """The card's ablation table (#30) comes from the transfer_val selection record, one row per ingredient in the
    order they were added, rows never run left out, other candidates ignored."""
    from detectors.model_card import _ablation_lines

    def cand(label, worst):
        return {"label": label, "worst_matched_raw": 0.5, "worst_matched_centre75": 0.45, "worst_matched_quarter": 0.4,
                "sd_raw": 0.3, "worst_cell": worst, "mean_auc": 0.55, "worst_real_flag_fpr1": 0.013}

    lines = _ablation_lines({"candidates": [cand("abl-RG", 0.301), cand("v14", 0.234), cand("abl-R", 0.14)]})
    rows = [line for line in lines if line.startswith("| abl-")]
    assert [r.split(" | ")[0] for r in rows] == ["| abl-R", "| abl-RG"]
    assert "| 0.500 / 0.450 / 0.400 | 0.300 | 0.301 | 0.550 | 1.3 % |" in rows[1]
    assert _ablation_lines({"candidates": [cand("v14", 0.2)]}) == []


def test_resolution_matching_gives_reals_the_fakes_sizes(tmp_path):
    """--match-res: reals take the size distribution of the fakes (sampling-weighted); a real already at or below
    the drawn size, or a drawn size at or above the stored image, is left alone; training runs with it."""
    from detectors.augment import match_resolution
    from detectors.data import Item, balanced_weights, fake_resolutions
    from detectors.train.loop import train

    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    soft = match_resolution(sharp, 200, 64)

    def above_64px_nyquist(a: np.ndarray) -> float:  # spectral energy a 64 px source cannot hold
        f = np.abs(np.fft.fftshift(np.fft.fft2(a.astype(float).mean(2) - a.mean()))) ** 2
        band = np.zeros(f.shape, bool)
        band[32:96, 32:96] = True
        return float(f[~band].sum() / f.sum())

    assert soft.shape == sharp.shape and above_64px_nyquist(sharp) > 0.6 and above_64px_nyquist(soft) < 0.1
    assert match_resolution(sharp, 64, 64) is sharp and match_resolution(sharp, 0, 128) is sharp

    # crop=native: the real stays at the fake's size (landmarks follow) and the crop enlarges it as it does a fake
    from detectors.augment import AugmentConfig, shrink_to_fake_size
    from detectors.train.views import TrainingView
    from forensics_core.faces.crops import canonical_landmarks, native_crop

    lm = canonical_landmarks(128, 0.3)
    small, small_lm = shrink_to_fake_size(sharp, lm, 200, 64)
    assert small.shape == (64, 64, 3) and np.allclose(small_lm, (lm + 0.5) / 2 - 0.5)
    assert shrink_to_fake_size(sharp, lm, 64, 64)[0] is sharp
    real = Item(Path("r"), 0, "r", "r", "ds", native=200, store="source", landmarks=lm)
    view = TrainingView(128, AugmentConfig.preset("none"), (np.array([64]), np.array([1.0])), 0.3, None,
                        crop="native")(sharp, real, np.random.default_rng(1))
    assert np.array_equal(view, native_crop(small, small_lm, 128, 0.3))

    items = [Item(Path(f"{i}"), y, g, g, "ds", native=n)
             for i, (y, g, n) in enumerate([(1, "a", 64)] * 9 + [(1, "b", 128)] + [(0, "r", 200)] * 10)]
    sides, p = fake_resolutions(items, balanced_weights(items))
    assert sides.tolist() == [64, 128] and p[0] == pytest.approx(3 / 4)  # sqrt(9) : sqrt(1)
    assert fake_resolutions([it for it in items if it.y == 0], np.ones(10)) is None

    ds = make_dataset(tmp_path / "ds", n_per_class=8)  # make_dataset rows record no source size
    with pytest.raises(DataError, match="--match-res: no training fake"):
        train(tiny_options(ds, tmp_path / "runs", match_res=True))
    rows = [dataclasses.replace(r, extra={"src_width": 16, "src_height": 16} if r.label == "fake" else {})
            for r in read_manifest(ds)]
    write_manifest(ds, rows)
    run = train(tiny_options(ds, tmp_path / "runs", match_res=True))
    assert json.loads((run / "model" / "model.json").read_text())["training"]["match_res"] is True


def test_group_weights_scale_a_groups_sampling_mass_and_refuse_unknown_groups(tmp_path):
    """--group-weight multiplies one group's sqrt(n) mass inside its class (the other class is untouched); a name
    that is no group of the data, or a weight <= 0, is a usage error instead of a silently unweighted run; the
    card records the weights."""
    from detectors.data import Item, balanced_weights
    from detectors.train.loop import train

    items = [Item(Path(f"{i}"), y, g, g, "ds") for i, (y, g) in enumerate(
        [(1, "a")] * 4 + [(1, "b")] * 4 + [(0, "r")] * 4 + [(0, "s")] * 4)]

    def mass(w: np.ndarray, group: str) -> float:
        return float(sum(wi for it, wi in zip(items, w) if it.group == group))

    plain, heavy = balanced_weights(items), balanced_weights(items, {"a": 3.0})
    assert mass(plain, "a") == pytest.approx(0.25) and mass(heavy, "a") == pytest.approx(0.5 * 3 / 4)
    assert mass(heavy, "r") == pytest.approx(0.25) and heavy.sum() == pytest.approx(1.0)
    with pytest.raises(UsageError, match="group weight for stylegan: no such fake family or real source"):
        balanced_weights(items, {"stylegan": 2.0})
    with pytest.raises(UsageError, match="must be > 0"):
        balanced_weights(items, {"a": 0.0})

    ds = make_dataset(tmp_path / "ds", n_per_class=8)
    fam = next(r.family or r.generator for r in read_manifest(ds) if r.label == "fake")
    run = train(tiny_options(ds, tmp_path / "runs", steps_per_epoch=1, group_weights={fam: 2.0}))
    assert json.loads((run / "model" / "model.json").read_text())["training"]["group_weights"] == {fam: 2.0}


def test_normalise_gives_contiguous_nchw_batches_that_train_through_strided_1x1_convolutions():
    """Channels-last batches crash oneDNN's AVX-512 strided 1x1 weight gradient on Zen 4 CPUs; NCHW does not."""
    det = build_detector("npr", widths=(8, 16, 32))
    batch = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (8, 48, 48, 3), dtype=np.uint8))
    x = det.preprocess.normalise(batch)
    assert x.shape == (8, 3, 48, 48) and x.is_contiguous()
    assert torch.allclose(x[:, :, 5, 7], det.preprocess.normalise(batch[:, 5:6, 7:8]).flatten(1))
    det.logits(x).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in det.parameters() if p.requires_grad)


def test_keep_writes_the_best_or_the_last_epoch(tiny_ds, tmp_path):
    """``keep="best"`` writes the epoch with the highest val AUC, ``keep="last"`` the final one: a fine-tune whose
    val AUC is saturated keeps its training instead of an early epoch that only won on noise."""
    from detectors.modelfile import read_state_dict
    from detectors.train.loop import train

    kw = dict(steps_per_epoch=3, patience=10, lr=3e-3)
    best2 = train(tiny_options(tiny_ds, tmp_path / "best2", epochs=2, **kw))
    last1 = train(tiny_options(tiny_ds, tmp_path / "last1", epochs=1, keep="last", **kw))
    last2 = train(tiny_options(tiny_ds, tmp_path / "last2", epochs=2, keep="last", **kw))
    aucs = [json.loads(s)["val_auc"] for s in (best2 / "metrics.jsonl").read_text().splitlines()
            if json.loads(s)["event"] == "epoch"]
    assert len(aucs) == 2 and aucs[1] <= aucs[0]  # on this data epoch 0 already separates: epoch 0 stays best

    def weights(run):
        return {k: v for k, v in read_state_dict(run / "model" / "model.safetensors").items() if "running" not in k}

    w_best2, w_last1, w_last2 = weights(best2), weights(last1), weights(last2)
    ckpt = {k.removeprefix("model."): v for k, v in read_state_dict(last2 / "checkpoint.safetensors").items()}
    assert all(torch.equal(w_best2[k], w_last1[k]) for k in w_best2)  # best of two epochs = epoch 0
    assert any(not torch.equal(w_last2[k], w_last1[k]) for k in w_last2)  # last of two = trained further
    assert all(torch.equal(w_last2[k], ckpt[k]) for k in w_last2)  # the final epoch's weights
    card = json.loads((last2 / "model" / "model.json").read_text())
    assert card["training"]["kept"] == "last"
    with pytest.raises(UsageError, match="keep='newest'"):
        train(tiny_options(tiny_ds, tmp_path / "x", epochs=1, keep="newest", **kw))


def test_tta_flip_averages_the_crop_and_its_mirror_at_inference_only():
    det = build_detector("npr", res=32, widths=(8, 16, 32), tta="flip")
    x = torch.randn(3, 3, 32, 32)
    det.eval()
    with torch.no_grad():
        both = 0.5 * (det.logits(x) + det.logits(x.flip(-1)))
        assert torch.allclose(det(x), both, atol=1e-6)
        assert not torch.allclose(det(x), det.logits(x), atol=1e-4)  # the mirror view changes the score
        assert torch.allclose(det(x), det(x.flip(-1)), atol=1e-6)  # and the score no longer depends on the side
    det.train()  # training sees one view (flips come from augmentation)
    torch.manual_seed(0)
    a = det(x)
    torch.manual_seed(0)
    assert torch.equal(a, det.logits(x))
    with pytest.raises(UsageError, match="tta must be one of none, flip"):
        build_detector("npr", res=32, widths=(8, 16, 32), tta="rotate")


@pytest.mark.parametrize("command", ["calibrate", "fuse"])
@pytest.mark.parametrize("split", ["crossval", "test"])
def test_calibrate_and_fuse_refuse_held_out_test_rows(command, split, tiny_model, tmp_path, capsys):
    """Thresholds or a fused reference fitted on crossval / test rows would make the reported test numbers
    in-sample: ``--split crossval`` / ``--split test`` are refused with one line and exit code 2, before any work,
    even when the rows exist and hold both classes."""
    from cli import main

    ds = make_dataset(tmp_path / "ds", n_per_class=6)
    rows = [dataclasses.replace(r, split=split) for r in read_manifest(ds)]
    write_manifest(ds, rows)
    models = [tiny_model] if command == "calibrate" else [tiny_model, tiny_model]
    out = tmp_path / "out"
    code = main(["detector", command, *models, "--data", str(ds), "--split", "val", "--split", split,
                 "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"--split {split}: held-out test rows" in err[0] and "never used for calibration or fusion" in err[0]
    assert not out.exists()


def test_cosine_schedule_decays_over_the_budget_and_resume_continues_it(tiny_ds, tmp_path):
    """``lr_schedule="cosine"`` multiplies the base rate by 0.5 (1 + cos(pi * progress)): full at the start, half at
    the middle of the budget, near 0 at its end; ``constant`` leaves it alone; unknown names are refused."""
    from detectors.train.loop import train
    from detectors.train.options import lr_factor

    assert lr_factor("cosine", 0) == 1 and lr_factor("cosine", 0.5) == pytest.approx(0.5)
    assert lr_factor("cosine", 1.0) == pytest.approx(0) == lr_factor("cosine", 3.0)
    assert lr_factor("constant", 0.9) == 1
    kw = dict(batch=4, steps_per_epoch=50, lr=1e-3, patience=10)
    run = train(tiny_options(tiny_ds, tmp_path / "c", epochs=2, max_steps=100, lr_schedule="cosine", **kw))
    lrs = {r["step"]: r["lr"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
           if r["event"] == "step"}
    assert lrs[50] == pytest.approx(1e-3 * lr_factor("cosine", 49 / 100))  # set before the 50th step
    assert lrs[100] == pytest.approx(1e-3 * lr_factor("cosine", 99 / 100)) and lrs[100] < 1e-5
    with pytest.raises(UsageError, match="lr_schedule='linear'"):
        train(tiny_options(tiny_ds, tmp_path / "x", epochs=1, lr_schedule="linear", **kw))


def test_sbi_adds_self_blends_of_reals_as_positives(tiny_ds, tmp_path):
    from detectors.train.loop import train
    from detectors.train.views import add_self_blends

    x, y = torch.rand(6, 3, 32, 32) * 2 - 1, torch.tensor([0, 0, 0, 0, 1, 1])
    x2, y2 = add_self_blends(x, y, 0.5, 0.3, np.random.default_rng(0))
    assert x2.shape[0] == 8 and y2.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert torch.equal(x2[:6], x) and not torch.equal(x2[6], x[0])  # a blend of the first real, not a copy
    assert torch.equal(x2[6][:, :2, :2], x[0][:, :2, :2])  # outside the face mask: the real's own pixels
    assert add_self_blends(x, y, 0.0, 0.3, np.random.default_rng(0))[0] is x
    run = train(tiny_options(tiny_ds, tmp_path / "s", sbi=0.5))
    assert json.loads((run / "model" / "model.json").read_text())["training"]["options"]["sbi"] == 0.5
    with pytest.raises(UsageError, match="sbi=1.5"):
        train(tiny_options(tiny_ds, tmp_path / "x", sbi=1.5))
