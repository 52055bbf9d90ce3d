"""Perturbation specs: parsing, canonical cache keys, grids, and that each one really changes the image as named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.perturbations import expand_grid, list_perturbations, parse_perturbation
from forensics_core.errors import UsageError


@pytest.fixture
def img(rng) -> np.ndarray:
    return rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)


def test_canonical_keys_are_cache_stable():
    assert parse_perturbation("jpeg(q=50.0)").key == parse_perturbation("jpeg( q = 50 )").key == "jpeg(q=50)"
    assert parse_perturbation({"name": "blur", "sigma": 1.5}).key == "blur(sigma=1.5)"
    assert parse_perturbation("none").key == "none" and parse_perturbation("none>none").key == "none"
    chain = parse_perturbation("jpeg(q=90)>downscale(s=0.5)>jpeg(q=75)")
    assert chain.key == "jpeg(q=90)>downscale(s=0.5)>jpeg(q=75)" and chain.family == "chain" and chain.level is None
    j = parse_perturbation("jpeg(q=30)")
    assert (j.family, j.level) == ("jpeg", 30.0)


def test_grid_expansion():
    assert expand_grid({"jpeg": {"q": [95, 30]}, "downscale": {"s": [0.5]}}) == [
        "jpeg(q=95)", "jpeg(q=30)", "downscale(s=0.5)"
    ]


@pytest.mark.parametrize(
    "spec, msg",
    [("jpg(q=5)", "unknown perturbation 'jpg'"), ("jpeg(quality=5)", "unknown parameter"),
     ("jpeg(q=high)", "not a number"), ("jpeg(q=5", "expected NAME")],
)
def test_bad_specs(spec, msg):
    with pytest.raises(UsageError, match=msg):
        parse_perturbation(spec)


def test_effects(img):
    assert np.array_equal(parse_perturbation("none")(img), img)
    assert parse_perturbation("downscale(s=0.5)")(img).shape == (20, 24, 3)
    assert parse_perturbation("upscale(s=2)")(img).shape == (80, 96, 3)
    assert parse_perturbation("crop(f=0.5)")(img).shape == (20, 24, 3)
    assert parse_perturbation("screenshot(r=1.5)")(img).shape == img.shape  # captured back at 1x
    # stronger JPEG / blur moves the image further from the original
    err = lambda spec: np.abs(parse_perturbation(spec)(img).astype(int) - img).mean()  # noqa: E731
    assert err("jpeg(q=30)") > err("jpeg(q=95)") > 0
    assert err("blur(sigma=2)") > err("blur(sigma=0.5)") > 0
    assert err("reencode(n=3, q=75)") > err("jpeg(q=75)")
    # deterministic: the cache relies on it
    chain = "reencode(n=2, q=60)"
    assert np.array_equal(parse_perturbation(chain)(img), parse_perturbation(chain)(img))
    with pytest.raises(UsageError, match="s must be in"):
        parse_perturbation("downscale(s=2)")(img)


def test_listed():
    names = {"none", "jpeg", "downscale", "upscale", "blur", "crop", "screenshot", "reencode"}
    assert names <= set(list_perturbations())


@pytest.mark.parametrize(
    "name", ["loo-gan", "loo-suite", "loo-upsampler", "robustness", "cross-dataset", "video", "tiny"]
)
def test_shipped_benchmark_files_are_valid(name):
    """Protocol, options, detectors, perturbations and budgets of every shipped file resolve (data paths aside)."""
    from benchmarks.config import load_config

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "configs" / f"{name}.yaml"
    cfg = load_config(path, check_paths=False)
    assert cfg.detectors and cfg.datasets and cfg.perturbations[0] == "none"
    if name.startswith("loo"):
        assert len(cfg.detectors) >= 3 and all(d.name for d in cfg.detectors)
    if name == "robustness":
        levels = {parse_perturbation(p).family for p in cfg.perturbations}
        assert {"jpeg", "downscale", "upscale", "blur", "crop", "screenshot", "reencode", "chain"} <= levels


def test_reals_labelled_family_real_join_every_held_out_group():
    """The importer writes ``family: real`` on reals; leave-one-family-out must still pair them with each family."""
    from benchmarks.protocols import Item, groups_by
    from forensics_core.dataset import ManifestRow

    def item(label: str, family: str, crf: int | None = None) -> Item:
        extra = {"crf": crf} if crf is not None else {}
        row = ManifestRow(path=f"{label}-{family}-{crf}.jpg", label=label, family=family, sha256="x", extra=extra)
        return Item(Path(row.path), row.y, row, "ds")

    items = [item("fake", "dcgan"), item("fake", "ldm"), item("real", "real"), item("real", "")]
    groups = groups_by(items, "family")
    assert sorted(groups) == ["dcgan", "ldm"]
    for members in groups.values():
        assert sum(i.y == 0 for i in members) == 2 and sum(i.y for i in members) == 1
