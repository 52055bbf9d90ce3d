"""Video generators: tiny configs train 2 steps and drive 4 frames; warp and the dataset writer on a synthetic
clip made from a public-domain photo; bad inputs give one-line errors and leave no partial output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forensics_core.dataset import read_manifest, summarize
from forensics_core.errors import ForensicsError, UsageError
from forensics_core.media import probe, write_video
from generators.video.dataset import VideoDatasetConfig, load_masks, make_video_dataset
from generators.video.methods import VIDEO_METHODS
from generators.video.reenact import PyramidFeatures, ReenactConfig, ReenactModel, reenact_losses
from generators.video.swap import SwapAutoencoder, SwapConfig, random_warp
from generators.video.train import load_reenact, load_swap, train_reenact, train_swap

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")




def test_methods_registered():
    assert {"warp", "swap", "reenact"} <= set(VIDEO_METHODS.names())


def test_swap_autoencoder_shapes_and_warp():
    cfg = SwapConfig(size=16, width=8, latent=16, batch=2)
    model = SwapAutoencoder(cfg)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    assert model(x, "A").shape == (3, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    w = random_warp(x, 0.05, g)
    assert w.shape == x.shape and not torch.equal(w, x)
    with pytest.raises(UsageError, match="power of two"):
        SwapAutoencoder(SwapConfig(size=24))


def test_reenact_losses_finite_and_backward():
    cfg = ReenactConfig(res=16, num_kp=3, width=4, batch=2)
    model = ReenactModel(cfg)
    src, drv = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    losses = reenact_losses(model, PyramidFeatures(scales=(1.0, 0.5)), src, drv, torch.Generator().manual_seed(0))
    assert set(losses) == {"recon", "equivariance", "total"}
    assert torch.isfinite(losses["total"])
    losses["total"].backward()
    assert model.kp.heat.weight.grad is not None
    with pytest.raises(UsageError, match="multiple of 8"):
        ReenactModel(ReenactConfig(res=20))


def test_reenact_default_config_builds():
    """The CLI default (10 keypoints) gives the dense-motion net 44 input channels: group norm must still divide."""
    cfg = ReenactConfig()
    model = ReenactModel(cfg)
    assert model.motion.net.down[0][0].in_channels == (cfg.num_kp + 1) * 4


def test_swap_train_resume_and_apply(face_clips, tmp_path):
    a, b = face_clips
    cfg = SwapConfig(size=16, width=8, latent=16, batch=2, steps=2)
    run = train_swap(a, b, tmp_path / "runs", cfg, save_every=1)
    rows = [line for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    assert len(rows) == 2
    cfg.steps = 3
    assert train_swap(a, b, tmp_path / "runs", cfg, resume=str(run), save_every=1) == run
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    model = load_swap(run)
    assert model.cfg.size == 16
    out = tmp_path / "ds"
    make_video_dataset([b], out, VideoDatasetConfig(method="swap", n=1, crfs=(30,), model=str(run)))
    rows = read_manifest(out)
    assert {r.label for r in rows} == {"real", "fake"}
    fake = next(r for r in rows if r.label == "fake")
    assert probe(out / fake.path).n_frames == 6


def test_reenact_train_and_drive_4_frames(face_clips, tmp_path):
    a, b = face_clips
    run = train_reenact([a, b], tmp_path / "runs", ReenactConfig(res=16, num_kp=3, width=4, batch=2, steps=2),
                        save_every=2)
    model, margin = load_reenact(run)
    assert model.cfg.num_kp == 3 and margin > 0
    from generators.video.clips import read_clip

    fake = VIDEO_METHODS.get("reenact").obj(read_clip(a, 4), read_clip(b, 4), model=str(run))
    assert len(fake.frames) == 4 and fake.frames[0].shape == (160, 160, 3)
    assert all(m.dtype == np.uint8 and m.any() for m in fake.masks)


def test_warp_dataset_counts_masks_and_resume(face_clips, tmp_path):
    a, b = face_clips
    out = tmp_path / "warp"
    cfg = VideoDatasetConfig(method="warp", n=2, crfs=(23, 40), max_frames=6)
    make_video_dataset([a, b], out, cfg)
    rows = read_manifest(out)
    info = summarize(rows)
    assert info.by_method == {"real": 4, "warp": 4}  # 2 fakes x 2 CRFs + 2 real twins x 2 CRFs
    fake = next(r for r in rows if r.label == "fake" and r.extra["crf"] == 23)
    meta = probe(out / fake.path)
    assert meta.n_frames == 6 and abs(meta.fps - 10) < 1e-6
    masks = load_masks(out / fake.extra["mask"])
    assert masks.shape == (6, 160, 160) and 0.05 < masks.mean() < 0.9
    assert fake.extra["driving_sha256"] != fake.parent
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "videos").iterdir()}
    make_video_dataset([a, b], out, cfg)  # resume: nothing rewritten
    assert {p.name: p.stat().st_mtime_ns for p in (out / "videos").iterdir()} == mtimes
    assert len(read_manifest(out)) == len(rows)


def test_bad_inputs_one_line_errors_no_partial_output(face_clips, face_frames, tmp_path, rng):
    a, _ = face_clips
    noise = write_video(tmp_path / "noise.mp4", [rng.integers(0, 255, (64, 64, 3), np.uint8) for _ in range(4)], 10)
    one = write_video(tmp_path / "one.mp4", face_frames(1, 0), 10)
    audio = tmp_path / "audio.wav"
    import wave

    with wave.open(str(audio), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(np.zeros(8000, np.int16).tobytes())
    errors: list[str] = []
    out = tmp_path / "bad"
    for target in (noise, one, audio):
        make_video_dataset([str(target), a], out, VideoDatasetConfig(method="warp", n=1, crfs=(23,)),
                           on_error=errors.append)
    assert len(errors) == 3 and all("\n" not in e for e in errors)
    assert "no face" in errors[0] and "at least 2 frames" in errors[1]
    assert not list((out / "videos").glob("warp-*")), "no fake video may be written for a failed clip"
    with pytest.raises(ForensicsError):
        make_video_dataset([a], out, VideoDatasetConfig(method="warp", n=1))
    frames = face_frames(2, 0)
    with pytest.raises(ForensicsError, match="frame 1 is 100x100"):
        write_video(tmp_path / "m.mp4", [frames[0], frames[1][:100, :100]], 10)
    assert not (tmp_path / "m.mp4").exists(), "a failed encode must not leave a partial video"
