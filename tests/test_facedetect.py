"""forensics_core.facedetect and the scan's face stage: the fast MTCNN cascade against facenet-pytorch's, batching of
images of any sizes, O-Net refinement of known boxes, the detection downscale, video face following, the default
detector's registration and the face benchmark's matching and labelled set (issue #34)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from forensics.scanning.config import ScanConfig
from forensics.scanning.pixels import detect_full_res
from forensics_core.errors import UsageError
from forensics_core.facedetect import CascadeParams, detect_mtcnn, pyramid_scales
from forensics_core.faces.detectors import FACE_DETECTORS, face_detector_help, get_face_detector
from forensics_core.faces.tracking import box_iou
from forensics_core.faces.types import Face

pytest.importorskip("skimage.data")  # the astronaut photo (conftest.py)


@pytest.fixture(scope="module")
def fast():
    return get_face_detector("mtcnn-fast", device="cpu")


def _iod(face: Face) -> float:
    return float(np.linalg.norm(face.landmarks[0] - face.landmarks[1]))


# -- the cascade -----------------------------------------------------------------------------------------------
def test_pyramid_maps_the_smallest_face_onto_pnets_window_and_stops_at_12_px() -> None:
    scales = pyramid_scales(512, 512, 24.0, 0.6)
    assert scales[0] == pytest.approx(0.5)  # a 24 px face becomes P-Net's 12 px window
    assert np.allclose(np.diff(np.log(scales)), np.log(0.6))
    assert 512 * scales[-1] >= 12 > 512 * scales[-1] * 0.6
    assert pyramid_scales(20, 20, 24.0, 0.6) == []  # an image narrower than the smallest face: no level at all
    p = CascadeParams(min_face=20, min_face_rel=0.05)
    assert p.smallest_face(1080, 1920) == pytest.approx(54.0) and p.smallest_face(200, 200) == 20.0


def test_mips_are_block_means_and_crops_from_them_match_the_full_image(astronaut) -> None:
    import cv2

    from forensics_core.facedetect import Mips

    odd = np.ascontiguousarray(astronaut[:511, :509])  # odd sides: each level drops the last row / column
    m = Mips(odd)
    level2 = m._level(2)
    assert level2.shape == (127, 127, 3) and len(m.levels) == 3
    blocks = odd[:508, :508].astype(np.float64).reshape(127, 4, 127, 4, 3).mean(axis=(1, 3))
    assert np.abs(level2 - blocks).max() <= 1.0  # rounded means of 4 x 4 blocks
    # a 300 px face box to R-Net's 24 px: cut from level 2 (75 px), within a few grey levels of the area filter
    # reading all 90,000 pixels of the full image (measured 3.4; the same box shifted by 4 px: 14.7)
    direct = cv2.resize(odd[100:400, 150:450], (24, 24), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(m.crop(100, 400, 150, 450, 24).astype(int) - direct).mean() < 5.0
    # a small region, or a level the image has no room for, is read from the image itself
    small = cv2.resize(odd[10:50, 10:50], (24, 24), interpolation=cv2.INTER_AREA)
    assert np.array_equal(m.crop(10, 50, 10, 50, 24), small)
    assert m.resized((511, 509)) is odd
    assert m.resized((200, 200)).shape == (200, 200, 3)


def test_fast_finds_the_reference_face_with_its_landmarks(astronaut, fast, mtcnn) -> None:
    ref = mtcnn.detect([astronaut])[0]
    got = fast.detect([astronaut])[0]
    assert len(ref) == 1 and len(got) == 1
    assert box_iou(np.array([ref[0].box]), np.array([got[0].box]))[0, 0] > 0.8
    err = np.linalg.norm(ref[0].landmarks - got[0].landmarks, axis=1).mean() / _iod(ref[0])
    assert err < 0.1  # MTCNN against itself on a 1-px shift: ~0.03 (benchmarks/results/faces.md)
    assert got[0].prob > 0.95 and got[0].landmarks.shape == (5, 2) and not got[0].approx_landmarks


def test_images_of_any_sizes_share_one_call_and_get_their_own_faces(astronaut, fast) -> None:
    import cv2

    small = cv2.resize(astronaut, (300, 300), interpolation=cv2.INTER_AREA)
    wide = np.ascontiguousarray(np.concatenate([astronaut, np.full_like(astronaut, 127)], axis=1))  # 512 x 1024
    blank = np.full((64, 64, 3), 127, np.uint8)
    alone = [fast.detect([im])[0] for im in (astronaut, small, wide, blank)]
    together = fast.detect([astronaut, small, wide, blank])
    for a, b in zip(alone, together):
        assert len(a) == len(b)
        for fa, fb in zip(a, b):
            assert np.allclose(fa.box, fb.box, atol=1e-3) and np.allclose(fa.landmarks, fb.landmarks, atol=1e-3)
    assert [len(f) for f in together] == [1, 1, 1, 0]
    # the face of the 300 px copy is the 512 px face scaled by 300 / 512
    assert np.allclose(np.array(together[1][0].box) * 512 / 300, together[0][0].box, atol=12)


def test_tiny_and_narrow_images_find_nothing_without_failing(fast) -> None:
    for shape in ((10, 10, 3), (24, 2072, 3), (2072, 12, 3)):
        assert fast.detect([np.zeros(shape, np.uint8)]) == [[]]
    with pytest.raises(UsageError):
        fast.detect([np.zeros((32, 32), np.uint8)])  # not RGB


def test_refine_follows_a_moved_face_and_drops_a_vanished_one(astronaut, fast) -> None:
    face = fast.detect([astronaut])[0][0]
    moved = np.ascontiguousarray(np.roll(astronaut, (6, 10), axis=(0, 1)))
    got = fast.refine([moved, np.full_like(astronaut, 127)], [[face.box], [face.box]])
    assert len(got[0]) == 1 and got[1] == []
    shift = np.array(got[0][0].landmarks).mean(0) - np.array(face.landmarks).mean(0)
    assert np.allclose(shift, [10, 6], atol=3)  # O-Net's regression followed the 10 px / 6 px move
    assert fast.refine([astronaut], [[]]) == [[]]


def test_params_change_the_cascade(astronaut) -> None:
    nets = get_face_detector("mtcnn-fast", device="cpu")._nets
    # a smallest face larger than the astronaut's (~110 px) finds nothing; the default finds her
    assert len(detect_mtcnn([astronaut], nets, CascadeParams(min_face=24))[0][0]) >= 1
    boxes, _ = detect_mtcnn([astronaut], nets, CascadeParams(min_face=24, min_face_rel=0.6))[0]
    assert not (boxes[:, 4] > 0.9).any()


# -- the scan's face stage ---------------------------------------------------------------------------------------
class _Boxes:
    """A fake detector: one face at a fixed box of whatever image it is given, recording the image sizes."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def detect(self, images):
        self.seen += [im.shape[:2] for im in images]
        return [[Face((10.0, 20.0, 30.0, 40.0), np.array([[12.0, 25.0]] * 5), 0.99)] for _ in images]


def test_detect_full_res_detects_on_the_downscaled_copy_and_maps_faces_back() -> None:
    det = _Boxes()
    faces = detect_full_res(det, [np.zeros((1000, 2000, 3), np.uint8), np.zeros((100, 100, 3), np.uint8)], 500)
    assert det.seen == [(250, 500), (100, 100)]  # only the large image is downscaled
    assert faces[0][0].box == pytest.approx((40.0, 80.0, 120.0, 160.0)) and faces[1][0].box == (10.0, 20.0, 30.0, 40.0)
    assert np.allclose(faces[0][0].landmarks[0], [48.0, 100.0])


def test_scan_default_face_stage_is_registered_and_listed() -> None:
    cfg = ScanConfig(evidence="none")
    assert cfg.face_detector == "mtcnn-fast" and cfg.face_detector in FACE_DETECTORS
    assert cfg.detect_max_side >= 1920 and cfg.detect_every >= 1
    text = face_detector_help(cfg.face_detector)
    assert all(name in text for name in FACE_DETECTORS.names()) and "mtcnn-fast (default)" in text
    with pytest.raises(UsageError, match="detect-every"):
        ScanConfig(evidence="none", detect_every=0)


def test_video_faces_followed_between_full_detections(tiny_model, tmp_path, face_frames) -> None:
    from forensics.scanning.scanner import Scanner
    from forensics_core.inputs import InputExpander
    from forensics_core.media import write_video

    class Counting:
        def __init__(self) -> None:
            self.inner = get_face_detector("mtcnn-fast", device="cpu")
            self.detected = self.refined = 0

        def detect(self, images):
            self.detected += len(images)
            return self.inner.detect(images)

        def refine(self, images, boxes):
            self.refined += len(images)
            return self.inner.refine(images, boxes)

    clip = write_video(tmp_path / "drift.mp4", face_frames(12, 2, size=200), fps=10, crf=18)
    out = {}
    for every in (1, 4):
        det = Counting()
        cfg = ScanConfig(device="cpu", evidence="none", batch=5, fps=10, threads=1, detect_every=every)
        (res,) = Scanner(tiny_model, cfg, detector=det).scan_items(InputExpander([str(clip)]))
        out[every] = (res, det.detected, det.refined)
    (r1, d1, f1), (r4, d4, f4) = out[1], out[4]
    assert r1.frames_sampled == r4.frames_sampled == 12
    assert (d1, f1) == (12, 0)  # every frame detected, none followed
    assert d4 == 3 and f4 == 9  # frames 0, 4, 8 detected; the 9 between followed by O-Net
    assert len(r4.faces) == len(r1.faces) == 12 and len(r4.tracks) == 1  # one face, one track, every frame
    for a, b in zip(r1.faces, r4.faces):
        assert box_iou(np.array([a.box]), np.array([b.box]))[0, 0] > 0.7


# -- the face benchmark --------------------------------------------------------------------------------------------
def test_benchmark_matching_and_stage_syntax() -> None:
    from benchmarks.faces_speed import Stage, match

    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=float)
    found = np.array([[21, 21, 31, 31], [0, 0, 10, 12], [100, 100, 110, 110]], dtype=float)
    pairs = match(truth, found, 0.4)  # best IoU first, one-to-one; the far box matches nothing
    assert sorted((t, f) for t, f, _ in pairs) == [(0, 1), (1, 0)]
    assert [round(iou, 2) for _, _, iou in pairs] == [0.83, 0.68]
    assert match(truth, np.zeros((0, 4)), 0.4) == []
    st = Stage.parse("mtcnn-fast@1024:factor=0.5,thresholds=[0.6,0.7,0.8]")
    assert (st.name, st.max_side, st.options) == ("mtcnn-fast", 1024, {"factor": 0.5, "thresholds": (0.6, 0.7, 0.8)})
    assert Stage.parse("mtcnn@full").max_side is None


def test_labelled_set_is_well_formed_and_on_the_shared_data(shared_data: Path) -> None:
    from benchmarks.faces_speed import LABELS, load_labelled

    doc = json.loads(LABELS.read_text(encoding="utf-8"))
    for e in doc["images"]:
        assert not Path(e["path"]).is_absolute() and (shared_data / e["path"]).is_file()
    labelled = load_labelled()
    assert len(labelled) == len(doc["images"]) and sum(len(lab.boxes) for lab in labelled) >= 60
    for lab in labelled:
        h, w = lab.pixels.shape[:2]
        b = lab.boxes
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert (b[:, [0, 2]] <= w).all() and (b[:, [1, 3]] <= h).all() and (b >= 0).all()


def test_scan_entry_points_take_the_face_stage_from_the_scan_config(tiny_model, capsys) -> None:
    """``forensics scan`` / ``serve``, ``forensics.scan`` and ``benchmarks.transfer`` (through ``forensics.scan``) build
    their detector from ``ScanConfig``: changing its default changes all of them."""
    from cli import main
    from forensics.engines import LocalEngine

    engine = LocalEngine(model=tiny_model, config=ScanConfig(device="cpu", evidence="none"))
    assert engine.scanner.detector.name == ScanConfig.face_detector == "mtcnn-fast"
    engine = LocalEngine(model=tiny_model, config=ScanConfig(device="cpu", evidence="none", face_detector="opencv"))
    assert engine.scanner.detector.name == "opencv"
    assert main(["scan", "--face-detector", "nope", "x.jpg"]) == 2
    assert "nope" in capsys.readouterr().err


def test_benchmark_runs_without_the_shared_data(monkeypatch) -> None:
    """Without ``../shared/data`` the labelled set is empty and the speed photos are scikit-image's astronaut."""
    import forensics_core.config
    from benchmarks.faces_speed import load_images, load_labelled

    monkeypatch.setattr(forensics_core.config, "shared_data_dir", lambda: None)
    assert load_labelled() == []
    imgs, source = load_images(3, 64)
    assert len(imgs) == 3 and imgs[0].shape == (64, 64, 3) and "astronaut" in source


def test_mtcnn_nets_equal_facenets_and_load_without_torchvision():
    """The networks of :mod:`forensics_core.mtcnn_nets` give facenet-pytorch's outputs bit for bit from the same
    wheel files, and building the scan's face stage imports neither facenet-pytorch nor torchvision (their import
    cost 2 s of every scanner process's start)."""
    import subprocess
    import sys

    import torch
    from facenet_pytorch.models import mtcnn

    from forensics_core.mtcnn_nets import build

    g = torch.Generator().manual_seed(0)
    for name, shape in (("PNet", (2, 3, 57, 71)), ("RNet", (5, 3, 24, 24)), ("ONet", (3, 3, 48, 48))):
        x = torch.randn(shape, generator=g)
        with torch.inference_mode():
            ours, theirs = build(name)(x), getattr(mtcnn, name)().eval()(x)
        assert len(ours) == len(theirs) and all(torch.equal(a, b) for a, b in zip(ours, theirs))
    code = ("import sys; from skimage import data; from forensics_core.faces.detectors import get_face_detector; "
            "d = get_face_detector('mtcnn-fast', device='cpu'); "
            "print(len(d.detect([data.astronaut()])[0]), "
            "sorted(m for m in ('facenet_pytorch', 'torchvision', 'torch._dynamo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1 []"  # a face found: every stage and NMS of the cascade ran


def test_nms_keeps_torchvisions_boxes_in_its_order():
    """The cascade's own per-image NMS keeps exactly the boxes torchvision's ``batched_nms`` keeps (which it no
    longer imports), in its order, on boxes with many overlaps and tied scores; two empty boxes do not suppress
    each other (0 / 0 overlap), as in torchvision."""
    import torch
    from torchvision.ops import batched_nms

    from forensics_core.facedetect import _nms

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 300))
        xy = rng.uniform(0, 200, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(4, 80, (n, 2))], 1).astype(np.float32)
        scores = rng.uniform(0, 1, n).astype(np.float32)
        if trial % 2:
            boxes, scores = np.floor(boxes), np.round(scores, 1).astype(np.float32)  # pixel boxes, tied scores
        groups = rng.integers(0, 3, n)
        iou = (0.5, 0.7)[trial % 2]
        ours = _nms(boxes, scores, groups, iou)
        theirs = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(groups), iou)
        assert ours.tolist() == theirs.tolist()
    assert _nms(np.zeros((0, 5), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0.5).size == 0
    empty = np.array([[5, 5, 5, 5], [5, 5, 5, 5]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0 / 0 RuntimeWarning either
        assert _nms(empty, np.array([0.9, 0.8], np.float32), np.zeros(2, np.int64), 0.5).tolist() == [0, 1]
