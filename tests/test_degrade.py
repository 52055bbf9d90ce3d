"""forensics_core.degrade: deterministic primitives, chain syntax, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from forensics_core import degrade as D
from forensics_core.errors import UnknownNameError, UsageError


@pytest.fixture
def img(rng) -> np.ndarray:
    base = rng.integers(0, 255, (8, 8, 3)).astype(np.uint8)
    return np.kron(base, np.ones((8, 8, 1), np.uint8))  # 64x64 with structure


def test_primitives_shapes_and_determinism(img):
    assert D.jpeg(img, 50).shape == img.shape
    assert np.array_equal(D.jpeg(img, 50), D.jpeg(img, 50))
    assert not np.array_equal(D.jpeg(img, 30), img)
    assert D.resize(img, 0.5).shape == (32, 32, 3)
    assert D.resize(img, 2.0, "bicubic").shape == (128, 128, 3)
    assert D.rescale(img, 0.5).shape == img.shape
    assert D.crop(img, 0.5).shape == (32, 32, 3)
    assert np.array_equal(D.crop(img, 0.5, x=0, y=0), img[:32, :32])
    assert np.array_equal(D.blur(img, 0), img)
    assert D.blur(img, 2.0).std() < img.std()
    assert np.array_equal(D.noise(img, 3, seed=1), D.noise(img, 3, seed=1))
    assert not np.array_equal(D.noise(img, 3, seed=1), D.noise(img, 3, seed=2))
    assert np.array_equal(D.flip(D.flip(img)), img)
    assert D.screenshot(img, 0.75).shape == (48, 48, 3)
    assert D.resize_to(img, 16).shape == (16, 16, 3)


def test_resize_to_enlarges_like_the_native_crop_does():
    """A crop smaller than the detector input is enlarged with the cubic filter (as ``native_crop`` enlarges a
    small file), never by pixel replication: a 2x replicated image has no pixel-grid residual left to read."""
    import cv2

    small = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    big = D.resize_to(small, 64)
    assert np.array_equal(big, cv2.resize(small, (64, 64), interpolation=cv2.INTER_CUBIC))
    assert not np.array_equal(big[::2, ::2], big[1::2, 1::2])  # not 2x2 blocks of one value
    assert np.array_equal(D.resize_to(big, 32), cv2.resize(big, (32, 32), interpolation=cv2.INTER_AREA))


def test_jpeg_quality_orders_error(img):
    err = [np.abs(D.jpeg(img, q).astype(int) - img).mean() for q in (95, 50, 10)]
    assert err[0] < err[1] < err[2]


def test_chain_parse_roundtrip_and_apply(img):
    c = D.parse_chain("resize:scale=0.5,interp=bilinear|jpeg:q=75")
    assert str(c) == "resize:interp=bilinear,scale=0.5|jpeg:q=75"
    assert str(D.parse_chain(str(c))) == str(c)
    out = D.apply_chain(img, c)
    assert out.shape == (32, 32, 3)
    assert np.array_equal(out, D.jpeg(D.resize(img, 0.5, "bilinear"), 75))
    assert str(D.parse_chain("none")) == "none"


def test_errors_are_one_line(img):
    with pytest.raises(UnknownNameError, match="unknown degradation 'jpg'"):
        D.parse_chain("jpg:q=5")
    with pytest.raises(UsageError, match="key=value"):
        D.parse_chain("jpeg:75")
    with pytest.raises(UsageError, match="uint8"):
        D.jpeg(img.astype(np.float32), 50)
    with pytest.raises(UsageError, match="interpolation"):
        D.resize(img, 0.5, "cubicle")


def test_one_chain_grammar_for_degradations_and_perturbations(img):
    """Degradation chains and benchmark perturbations share one parser and executor (``split_chain`` /
    ``apply_steps``): either spelling parses in either place, and each keeps its canonical form."""
    from benchmarks.perturbations import parse_perturbation

    assert [(s.name, s.args) for s in D.split_chain("jpeg:q=90|resize(scale=0.5, interp=area)>flip")] == [
        ("jpeg", (("q", True, "90"),)), ("resize", (("scale", True, "0.5"), ("interp", True, "area"))), ("flip", ())
    ]
    assert D.split_chain("jpeg(q=5") is None
    assert str(D.parse_chain("jpeg(q=75)>resize(scale=0.5)")) == "jpeg:q=75|resize:scale=0.5"
    assert parse_perturbation("jpeg:q=50|downscale:s=0.5").key == "jpeg(q=50)>downscale(s=0.5)"
    chain, pert = D.parse_chain("jpeg:q=50|resize:scale=0.5"), parse_perturbation("jpeg(q=50)>downscale(s=0.5)")
    assert np.array_equal(chain(img), pert(img))  # the same primitives, run by the same executor


def test_parsing_a_chain_does_not_load_opencv():
    import subprocess
    import sys

    code = (
        "import sys; from forensics_core.degrade import parse_chain; from benchmarks.perturbations import "
        "parse_perturbation; parse_chain('jpeg:q=5|resize:scale=0.5'); parse_perturbation('jpeg(q=5)'); "
        "print('CV2', 'cv2' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "CV2 False" in r.stdout, r.stderr
