"""Face-vs-surround inconsistency: regions, maps, features, the project's own edits and the ``surround`` detector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detectors.inconsistency.anomaly import MAP_NAMES, anomaly_maps, localise
from detectors.inconsistency.features import FEATURES_VERSION, crop_features, feature_names
from detectors.inconsistency.maps import blockiness, luma
from detectors.inconsistency.regions import CORE_RHO, REGIONS, crop_regions, face_regions, template_landmarks

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _scene(seed: int = 0, size: int = 128, noise: float = 4.0) -> np.ndarray:
    """A smooth random 'photo' with sensor-like noise everywhere."""
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.uniform(60, 200, (8, 8, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)


def _paste_smooth_face(img: np.ndarray, margin: float = 0.3) -> np.ndarray:
    """The inner face replaced by a denoised copy of itself: a resampled / smoother donor."""
    import cv2

    regions = crop_regions(img.shape[0], margin)
    smooth = cv2.GaussianBlur(img, (0, 0), 1.5)
    out = img.copy()
    m = regions.rho <= 1.0
    out[m] = smooth[m]
    return out


def test_regions_follow_the_landmarks_and_do_not_overlap():
    lm = template_landmarks(128, 0.3)
    r = face_regions((128, 128), lm)
    assert set(r.masks) == set(REGIONS)
    assert not (r.masks["core"] & r.masks["band"]).any() and not (r.masks["band"] & r.masks["surround"]).any()
    for part, point in zip(("left_eye", "right_eye"), lm[:2]):
        assert r.masks[part][int(point[1]), int(point[0])], part  # each eye box holds its eye
    assert r.masks["mouth"][int(lm[3:, 1].mean()), int(lm[3:, 0].mean())]
    assert r.rho[int(lm[2, 1]), int(lm[2, 0])] < CORE_RHO  # the nose is inner face
    # the frame follows the face: the same face moved and rolled keeps its parts on its landmarks
    ang = np.deg2rad(20)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    lm2 = (lm - 64) @ rot.T + 64 + [10, -5]
    r2 = face_regions((128, 128), lm2)
    for part, point in zip(("left_eye", "right_eye"), lm2[:2]):
        assert r2.masks[part][int(point[1]), int(point[0])], part


def test_features_have_their_names_and_read_a_smoother_face():
    names = feature_names()
    real = _scene(1)
    fake = _paste_smooth_face(real)
    f_real, f_fake = crop_features(real, 0.3), crop_features(fake, 0.3)
    assert f_real.shape == (len(names),) and np.isfinite(f_real).all()
    i = names.index("core-surround_noise")
    # a denoised inner face: its noise level falls against the surround's
    assert f_fake[i] < f_real[i] - 0.5
    assert f_fake[names.index("core-surround_e1")] < f_real[names.index("core-surround_e1")] - 1.0
    # uint8 and float inputs give the same numbers (the detector passes floats)
    np.testing.assert_allclose(crop_features(real.astype(np.float32), 0.3), f_real, rtol=1e-5, atol=1e-5)


def test_blockiness_finds_the_jpeg_grid_phase():
    import cv2

    img = _scene(2, 96, noise=8.0)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 40])
    jpg = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    gray = luma(jpg)
    s0, p0 = blockiness(gray)
    s3, p3 = blockiness(gray[3:, 5:])  # the grid seen from a shifted origin
    assert s0 > 0.1 and p0 == 8 * 7 + 7  # steps between pixel 7 and 8 of each block
    assert p3 == 8 * ((7 - 3) % 8) + (7 - 5) % 8
    assert blockiness(luma(img))[0] < s0  # an uncompressed image has a weaker grid


def test_window_block_profiles_equal_block_profile_of_each_window():
    from detectors.inconsistency.maps import block_profile, window_block_profiles

    gray = np.random.default_rng(0).uniform(0, 255, (101, 90)).astype(np.float32)  # sides not multiples of 8
    for window, stride in ((32, 16), (16, 8), (24, 8)):
        ys = list(range(0, 101 - window + 1, stride))
        xs = list(range(0, 90 - window + 1, stride))
        ax, ay = window_block_profiles(gray, window, ys, xs)
        assert ax.shape == ay.shape == (len(ys), len(xs), 8)
        for i, y in enumerate(ys):
            for j, x in enumerate(xs):
                ref_x, ref_y = block_profile(gray[y : y + window, x : x + window])
                np.testing.assert_allclose(ax[i, j], ref_x, rtol=1e-9)
                np.testing.assert_allclose(ay[i, j], ref_y, rtol=1e-9)
    with pytest.raises(ValueError):
        window_block_profiles(gray, 32, [4], [0])  # a corner off the 8 px grid


def test_anomaly_maps_light_up_the_pasted_region_more_than_the_surround():
    real = _scene(3)
    fake = _paste_smooth_face(real)
    lm = template_landmarks(128, 0.3)
    maps, regions = anomaly_maps(fake, lm)
    assert set(maps) == set(MAP_NAMES)
    core, sur = regions.masks["core"], regions.masks["surround"]
    assert maps["noise"][core].mean() > 2 * maps["noise"][sur].mean()
    heat, mask = localise(fake, lm)
    heat_real, _ = localise(real, lm)
    assert heat.shape == (128, 128) and heat.min() >= 0 and heat.max() <= 1
    assert heat[core].mean() > heat_real[core].mean() + 0.1 and mask[core].mean() > mask[sur].mean()


def test_manipulate_edits_inside_the_mask_only_and_labels_both_classes():
    from detectors.manipulate import ManipulationConfig, labelled_views, manipulate

    reals = np.stack([_scene(s) for s in range(6)])
    rng = np.random.default_rng(0)
    fakes, masks, kinds = manipulate(reals, 0.3, rng, ManipulationConfig(delivery="none"))
    assert fakes.shape == reals.shape and masks.shape == reals.shape[:3] and len(kinds) == 6
    assert set(kinds) <= {"self-face", "cross-face", "self-parts", "cross-parts"}
    diff = np.abs(fakes.astype(int) - reals.astype(int)).max(axis=3)
    assert (diff[masks < 1e-3] <= 1).all()  # nothing changes outside the blend mask (rounding aside)
    assert all(diff[i][masks[i] >= 0.9 * masks[i].max()].mean() > 1 for i in range(6))  # and something inside it
    x, y = labelled_views(reals, 0.3, np.random.default_rng(1), views=2)
    assert x.shape == (24, 128, 128, 3) and y.tolist() == ([0] * 6 + [1] * 6) * 2


def test_part_masks_cover_only_the_chosen_parts():
    from detectors.models.blend import random_part_mask, template_points

    m, parts = random_part_mask(128, 0.3, np.random.default_rng(0), parts=(False, False, False, True))
    p = template_points(0.3) * 128
    mouth, eye = (p[3] + p[4]) / 2, p[0]
    assert parts == (False, False, False, True)
    assert m[int(mouth[1]), int(mouth[0])] > 0.9 and m[int(eye[1]), int(eye[0])] < 0.05


def test_boosted_trees_as_tensors_match_scikit_learn():
    from sklearn.ensemble import GradientBoostingClassifier

    from detectors.models.surround import BoostedTrees

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] ** 2 + rng.normal(0, 0.5, 400) > 0.5).astype(int)
    bt = BoostedTrees(n_trees=40, depth=3, learning_rate=0.1, subsample=1.0, max_features=None).fit(X, y)
    ref = GradientBoostingClassifier(n_estimators=40, max_depth=3, learning_rate=0.1, subsample=1.0, random_state=0,
                                     validation_fraction=0.1, n_iter_no_change=30).fit(X, y)  # fmt: skip
    np.testing.assert_allclose(bt.decision_function(X), ref.decision_function(X), rtol=1e-6, atol=1e-6)
    assert bt.feature_.shape == (40, 15) and bt.n_trees_used_ <= 40


def test_surround_detector_trains_on_reals_only_saves_and_explains(tmp_path):
    from detectors.base import ArrayData
    from detectors.calibration import fit_calibrator
    from detectors.modelfile import load_model, save_model
    from detectors.registry import build_detector

    det = build_detector("surround", n_trees=30, views=2, p_cross=0.5)
    reals = np.stack([_scene(s) for s in range(16)])
    x = det.preprocess.to_tensor(list(reals))
    det.post_fit(ArrayData(x, torch.zeros(16, dtype=torch.long)), ArrayData(x[:2], torch.zeros(2, dtype=torch.long)))
    assert det.cfg.n_features == len(feature_names())
    vx, vy = det.validation_views(reals, np.zeros(16, np.int64), seed=0)
    assert vx.shape[0] == 32 and vy.sum() == 16  # every val real and one edit of it
    z = det(det.preprocess.to_tensor(list(vx))).detach().numpy()
    assert z.shape == (32,) and np.isfinite(z).all()
    out = save_model(tmp_path / "m", det, fit_calibrator("temperature", z, vy), {"balanced": 0.5, "fpr1": 0.9})
    m = load_model(out, device="cpu")
    np.testing.assert_allclose(m.logits(list(vx[:4])), z[:4], rtol=1e-5, atol=1e-5)
    heat = m.explain(vx[16])
    assert heat.shape == (128, 128) and heat.min() >= 0 and heat.max() <= 1
    # a model file fitted on another feature set is refused, not read column by column
    m.detector.cfg.n_features += 1
    with pytest.raises(Exception, match="features"):
        m.logits(list(vx[:1]))
    m.detector.cfg.n_features -= 1
    m.detector.cfg.features = FEATURES_VERSION + 1  # same count, other meaning: refused too
    with pytest.raises(Exception, match="version"):
        m.logits(list(vx[:1]))


def test_fused_model_explains_each_face_with_the_member_that_decided_it():
    from detectors.registry import build_detector

    ens = build_detector("ensemble", members=("surround", "spectrum"), member_cfgs=({"n_trees": 4}, {}),
                         fusion="max", res=64, crop="native", margin=0.3)  # fmt: skip
    x = ens.preprocess.to_tensor([_scene(s, 64) for s in range(2)])
    ens.real_mean.copy_(torch.tensor([0.0, 100.0]))  # the spectrum member can never be the loudest
    heat = ens.explain(x)
    np.testing.assert_allclose(heat, ens.members[0].explain(x))
    ens.real_mean.copy_(torch.tensor([100.0, 0.0]))
    assert heat.shape == ens.explain(x).shape == (2, 64, 64)
