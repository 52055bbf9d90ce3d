"""Where the face lies in a model crop: O-Net (MTCNN's last stage) refines the crop template's landmarks, so the
regions of a tightly framed photo's crop compare face with surround, not cheek with nose.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from detectors.inconsistency.regions import template_landmarks

# The MTCNN box fractions of the 5 landmarks (left eye, right eye, nose, mouth left, mouth right): medians over the
# shared training reals' detections. A face known only by its box gets its points here (upright, frontal).
BOX_LANDMARKS = np.array([[0.281, 0.39], [0.745, 0.388], [0.51, 0.595], [0.304, 0.746], [0.724, 0.748]])
#: O-Net confidence below which a crop keeps the template's landmarks
LOCATE_MIN_PROB = 0.8
#: sizes of the candidate face boxes O-Net is shown, relative to the template's: a crop cut from a photo framed
#: tighter than the crop window (a head shot, a UTKFace crop: ``native`` clamps the window to the photo) holds a
#: face larger than the template's
LOCATE_SCALES = (1.0, 1.35, 1.8, 2.4)
#: refinement passes after the best candidate (each moves the box by O-Net's regression)
LOCATE_PASSES = 1


def landmarks_from_box(box: tuple[float, float, float, float]) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([x1, y1]) + BOX_LANDMARKS * np.array([x2 - x1, y2 - y1])


def box_from_landmarks(lm: np.ndarray) -> np.ndarray:
    """The MTCNN-style box whose :data:`BOX_LANDMARKS` are closest to ``lm`` (inverse of :func:`landmarks_from_box`
    in the least-squares sense, per axis)."""
    lm = np.asarray(lm, np.float64).reshape(5, 2)
    out = []
    for k in (0, 1):
        a = np.stack([1.0 - BOX_LANDMARKS[:, k], BOX_LANDMARKS[:, k]], axis=1)  # lm = (1-f) x1 + f x2
        out.append(np.linalg.lstsq(a, lm[:, k], rcond=None)[0])
    return np.array([out[0][0], out[1][0], out[0][1], out[1][1]])


@lru_cache(maxsize=1)
def _onet():
    """MTCNN's O-Net with facenet-pytorch's shipped weights (the scan's face detector's last stage)."""
    from forensics_core.facedetect import mtcnn_module

    return mtcnn_module("ONet")


def _onet_pass(rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """O-Net on square ``boxes`` (N, 4): probabilities (N,), regressed boxes (N, 4), landmarks (N, 5, 2)."""
    import cv2
    import torch

    crops = []
    for x1, y1, x2, y2 in boxes:
        side = max(x2 - x1, y2 - y1)
        m = np.array([[48.0 / side, 0, -x1 * 48.0 / side], [0, 48.0 / side, -y1 * 48.0 / side]], np.float32)
        crops.append(cv2.warpAffine(np.asarray(rgb, np.float32), m, (48, 48), flags=cv2.INTER_AREA))
    x = (torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2) - 127.5) * 0.0078125
    with torch.no_grad():
        reg, pts, prob = (t.double().numpy() for t in _onet()(x))
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    lm = np.stack([boxes[:, :1] + w * pts[:, :5], boxes[:, 1:2] + h * pts[:, 5:]], axis=2)
    out = boxes + reg * np.concatenate([w, h, w, h], axis=1)
    return prob[:, 1], out, lm


def _square(b: np.ndarray) -> np.ndarray:
    c = (b[:, :2] + b[:, 2:]) / 2
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])[:, None]
    return np.concatenate([c - side / 2, c + side / 2], axis=1)


def locate_landmarks(rgb: np.ndarray, margin: float) -> tuple[np.ndarray, float]:
    """The face's 5 landmarks in a model crop and O-Net's confidence, or the crop template's and 0.

    Why: the ``native`` window is clamped to the photo, so in a tightly framed photo (a UTKFace crop, a studio head
    shot) the face fills more of the crop than the template says, and regions cut at the template would compare
    cheek with nose instead of face with surround. O-Net (MTCNN's last stage, ~1 ms) is shown boxes of
    :data:`LOCATE_SCALES` around the template's face and refines the best once more."""
    size = rgb.shape[0]
    tpl = template_landmarks(size, margin)
    box = box_from_landmarks(tpl)
    c, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2
    cands = _square(np.array([np.r_[c - s * half, c + s * half] for s in LOCATE_SCALES]))
    prob, reg, _ = _onet_pass(rgb, cands)
    best = _square(reg[[int(prob.argmax())]])
    for _ in range(LOCATE_PASSES):  # O-Net's box regression moves a box part of the way: follow it
        p2, reg2, lm = _onet_pass(rgb, best)
        best = _square(reg2)
    if p2[0] < LOCATE_MIN_PROB:
        return tpl, 0.0
    return lm[0], float(p2[0])
