"""Shared fixtures: the optional ``../shared/data`` folder and small generated media."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forensics_core.config import shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The development data folder; tests that need it skip cleanly when it is absent (e.g. third-party CI)."""
    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data is not present")
    return d


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread while a module's tests run (``pytestmark = pytest.mark.usefixtures(...)``): small
    models train faster so on a loaded 2-core machine, and their numbers do not depend on the thread count."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """scikit-image's public-domain astronaut photo (512x512 RGB), one frontal face that every detector finds."""
    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skimage_data.astronaut())


@pytest.fixture(scope="module")
def mtcnn():
    """facenet-pytorch's MTCNN on the CPU: the reference face detector."""
    from forensics_core.faces.detectors import get_face_detector

    return get_face_detector("mtcnn", device="cpu")


def _face_frames(n: int, shift: int, size: int = 160) -> list[np.ndarray]:
    """``n`` frames of the astronaut's face (public domain) drifting by ``shift`` px per frame: a talking-head
    stand-in that MTCNN detects in every frame."""
    skimage_data = pytest.importorskip("skimage.data")
    img = skimage_data.astronaut()
    crops = (img[30 + i * shift : 30 + i * shift + size, 120 + i : 120 + i + size] for i in range(n))
    return [np.ascontiguousarray(c) for c in crops]


@pytest.fixture(scope="session")
def face_frames():
    """The frame maker behind :func:`face_clips`, for tests that write clips of their own."""
    return _face_frames


@pytest.fixture(scope="session")
def face_clips(tmp_path_factory) -> tuple[str, str]:
    """Two 6-frame H.264 clips of a moving face (target and driver) shared by the video tests."""
    from forensics_core.media import write_video

    d = tmp_path_factory.mktemp("face_clips")
    a = write_video(d / "a.mp4", _face_frames(6, 2), fps=10, crf=18)
    b = write_video(d / "b.mp4", _face_frames(6, -2)[::-1], fps=10, crf=18)
    return str(a), str(b)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An untrained 32 px NPR detector saved as a real model file (weights + model.json with thresholds)."""
    import torch

    from detectors.calibration import Identity
    from detectors.modelfile import save_model
    from detectors.registry import build_detector

    torch.manual_seed(0)
    det = build_detector("npr", res=32, widths=(4, 8))
    out = tmp_path_factory.mktemp("model") / "tiny"
    save_model(out, det, Identity(), {"balanced": 0.5, "fpr1": 0.8, "fpr01": 0.95}, name="tiny-npr", licence="test")
    return str(out)
