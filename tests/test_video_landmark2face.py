"""landmark2face: conditioning maps, SPADE generator / discriminator, a tiny 2-step training run with resume, driving
4 frames through the method registry and a dataset with its real twins, on synthetic clips from a public-domain
photo."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from forensics_core.dataset import read_manifest, summarize
from forensics_core.errors import UsageError
from generators.video.clips import read_clip
from generators.video.dataset import VideoDatasetConfig, load_masks, make_video_dataset
from generators.video.landmark2face import (
    COND_CHANNELS,
    Landmark2FaceConfig,
    Landmark2FaceGenerator,
    Landmark2FaceModel,
    clip_maps,
    condition_map,
    driving_maps,
    edge_map,
    landmark_heatmaps,
    pick_shots,
    train_step,
)
from generators.video.methods import VIDEO_METHODS
from generators.video.reenact import PyramidFeatures
from generators.video.train import load_landmark2face, train_landmark2face

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TINY = dict(size=16, width=4, id_dim=8, shots=2, batch=2, n_scales=2)




def test_registered_with_model_requirement():
    entry = VIDEO_METHODS.get("landmark2face")
    assert entry.meta["needs_model"] is True and entry.meta["family"] == "landmark2face"
    with pytest.raises(UsageError, match="needs --model"):
        entry.obj(None, None, model=None)


def test_condition_map_channels_peaks_and_range():
    cfg = Landmark2FaceConfig(size=32)
    pts = np.array([[10.0, 12.0], [22.0, 12.0], [16.0, 18.0], [11.0, 24.0], [21.0, 24.0]])
    heat = landmark_heatmaps(pts, 32, 1.0)
    for k, (x, y) in enumerate(pts):
        assert np.unravel_index(heat[k].argmax(), heat[k].shape) == (int(y), int(x))
    face = np.zeros((32, 32, 3), np.uint8)
    face[8:24, 8:24] = 200  # a bright square: edges on its border only
    edges = edge_map(face, 0.0)
    assert edges.min() >= 0 and edges.max() <= 1 and edges[16, 8] > 0.5 and edges[16, 16] == 0
    box = np.array([[4.0, 4.0], [28.0, 4.0], [28.0, 28.0], [4.0, 28.0]])
    m = condition_map(face, pts, box, cfg)
    assert m.shape == (COND_CHANNELS, 32, 32) and m.dtype == np.float32
    outline = m[5]
    assert outline[4, 16] > 0.5 and outline[16, 16] == 0  # the box's outline on its border, empty inside


def test_identity_is_shot_order_invariant_and_sizes_checked():
    torch.manual_seed(0)
    gen = Landmark2FaceGenerator(Landmark2FaceConfig(**TINY)).eval()
    shots = torch.rand(1, 3, 3, 16, 16) * 2 - 1
    cond = torch.rand(2, COND_CHANNELS, 16, 16)
    with torch.no_grad():
        a = gen.render(cond, gen.embed(shots))
        b = gen.render(cond, gen.embed(shots[:, [2, 0, 1]]))
    assert a.shape == (2, 3, 16, 16) and a.abs().max() <= 1
    assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(UsageError, match="power of two"):
        Landmark2FaceGenerator(Landmark2FaceConfig(size=24))


def test_train_step_updates_generator_and_discriminator():
    torch.manual_seed(0)
    model = Landmark2FaceModel(Landmark2FaceConfig(**TINY))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g0 = model.gen.rgb.weight.detach().clone()
    d0 = model.disc.discs[0].layers[-1].weight_orig.detach().clone()
    losses = train_step(model, PyramidFeatures(scales=(1.0,)), opt, torch.rand(2, COND_CHANNELS, 16, 16),
                        torch.rand(2, 2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1)
    assert {"l1", "perceptual", "g_adv", "feature_match", "g_total", "d_hinge"} <= set(losses)
    assert all(np.isfinite(v) for v in losses.values())
    assert not torch.equal(model.gen.rgb.weight, g0)
    assert not torch.equal(model.disc.discs[0].layers[-1].weight_orig, d0)


def test_relative_driving_keeps_target_maps_for_a_still_driver(face_clips):
    cfg = Landmark2FaceConfig(size=32)
    a, _ = face_clips
    frames = read_clip(a).frames
    tgt = clip_maps(frames, cfg, source=a)
    still = clip_maps([frames[0]] * 3, cfg, source="still")
    maps = driving_maps(tgt, still, cfg, 3, relative=True)
    assert maps.shape == (3, COND_CHANNELS, 32, 32)
    for m in maps:  # no driver motion: the target's first-frame map, up to the flow's numerical noise
        assert np.abs(m - tgt.maps[0]).mean() < 0.02
    assert np.array_equal(driving_maps(tgt, still, cfg, 3, relative=False), still.maps)
    assert list(pick_shots(10, 4)) == [0, 3, 6, 9] and list(pick_shots(2, 4)) == [0, 1]


def test_train_resume_drive_and_dataset(face_clips, tmp_path):
    a, b = face_clips
    cfg = Landmark2FaceConfig(**TINY, steps=2)
    run = train_landmark2face([a, b], tmp_path / "runs", cfg, save_every=1)
    assert run.name.endswith("-landmark2face")
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    cfg.steps = 3
    assert train_landmark2face([a, b], tmp_path / "runs", cfg, resume=str(run), save_every=1) == run
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 3
    net = load_landmark2face(run)
    assert net.cfg.size == 16 and net.cfg.shots == 2

    target = read_clip(a, 4)
    fake = VIDEO_METHODS.get("landmark2face").obj(target, read_clip(b, 4), model=str(run))
    assert len(fake.frames) == 4 and fake.frames[0].shape == (160, 160, 3)
    assert all(m.dtype == np.uint8 and m.any() for m in fake.masks)
    assert not np.array_equal(fake.frames[0], target.frames[0])

    out = tmp_path / "ds"
    make_video_dataset([a, b], out, VideoDatasetConfig(method="landmark2face", n=1, crfs=(30,), max_frames=4,
                                                       model=str(run)))
    rows = read_manifest(out)
    assert summarize(rows).by_method == {"real": 1, "landmark2face": 1}
    fake_row = next(r for r in rows if r.label == "fake")
    assert fake_row.family == "landmark2face" and fake_row.extra["shots"] == 2
    assert load_masks(out / fake_row.extra["mask"]).shape == (4, 160, 160)


def test_load_rejects_other_runs(tmp_path):
    (tmp_path / "options.json").write_text(json.dumps({"kind": "swap", "size": 16}))
    with pytest.raises(UsageError, match="not a landmark2face run"):
        load_landmark2face(tmp_path)
    with pytest.raises(UsageError, match="not a run directory"):
        load_landmark2face(tmp_path / "missing")
