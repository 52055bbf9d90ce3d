"""The Ray engine on a local one-CPU Ray: same records as the local engine, duplicates and errors in order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Same tiny untrained model file as in test_scan.py (actors load it by path)."""
    import torch

    from detectors.calibration import Identity
    from detectors.modelfile import save_model
    from detectors.registry import build_detector

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model") / "tiny"
    save_model(out, build_detector("npr", res=32, widths=(4, 8)), Identity(), {"balanced": 0.5}, name="tiny-npr")
    return str(out)


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_engine_matches_local(ray_local: None, tmp_path: Path, tiny_model: str) -> None:
    src = tmp_path / "in"
    src.mkdir()
    y, x = np.mgrid[0:96, 0:128]
    Image.fromarray(np.stack([x % 256, y % 256, (x * y) % 256], -1).astype(np.uint8)).save(src / "a.png")
    Image.fromarray(np.stack([y % 256, x % 256, (x + y) % 256], -1).astype(np.uint8)).save(src / "b.png")
    shutil.copy(src / "a.png", src / "c.png")  # duplicate
    (src / "d.jpg").write_text("not an image")
    outs = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.jsonl"
        rc = cli.main([
            "-q", "scan", str(src), "--model", tiny_model, "--engine", engine, "--device", "cpu", "--threads", "1",
            "--threshold", "0", "--jsonl", str(out), "--no-table", "--batch", "2",
        ])  # fmt: skip
        assert rc == 1
        outs[engine] = [json.loads(line) for line in out.read_text().splitlines()]
    local, remote = outs["local"], outs["ray"]
    assert [r["path"] for r in remote] == [r["path"] for r in local]
    for a, b in zip(local, remote):
        assert a["status"] == b["status"] and a["sha256"] == b["sha256"] and a["duplicate_of"] == b["duplicate_of"]
        if a["status"] == "ok":
            assert b["fake_probability"] == pytest.approx(a["fake_probability"], abs=1e-5)
            assert b["no_face"] is True and b["model"] == a["model"]
        else:
            assert b["error"] == a["error"]
