"""The fast face stage: MTCNN's three networks (facenet-pytorch's shipped weights) run for throughput on a CPU.

Why a second MTCNN next to :class:`forensics_core.faces.MTCNNDetector`: profiling ``forensics scan`` on 512 px photos
(issue #34) put ~94 % of the scan in face detection, and most of *that* was not the networks but facenet-pytorch's
plumbing around them: every pyramid level and every R-Net / O-Net crop is resized by ``torch`` ``area``
interpolation on float tensors (one call per crop), and images of different sizes cannot share a forward. This
module keeps the networks, their weights and MTCNN's cascade (P-Net on an image pyramid, NMS, R-Net on 24 px crops,
O-Net on 48 px crops with the 5 landmarks, the same box regression and NMS rules) and changes how they are fed:

* the pyramid is built with OpenCV's area filter on ``uint8`` pixels, each level and each R-Net / O-Net crop
  resampled from the image's power-of-two block means (:class:`Mips`) rather than the full image;
* P-Net runs once per pyramid level *shape*, so same-size images of a chunk share one forward;
* R-Net and O-Net crops of *all* images of a call are cut with ``cv2.resize`` and scored in one forward each,
  whatever the images' sizes (crops are 24 / 48 px whatever the source);
* the smallest face sought can be given relative to the image (``min_face_rel``): the cost of P-Net grows with
  ``(side / smallest face)^2``, so a bound relative to the image bounds the cost per image whatever its resolution.

:func:`detect_mtcnn` is the cascade; :class:`forensics_core.faces.FastMTCNNDetector` is the registered detector that
calls it. Differences from facenet-pytorch's numbers are those of the resampling filters (OpenCV vs torch ``area``); the
benchmark (``python -m benchmarks.faces_speed``) measures box IoU and recall against the reference at full resolution.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: MTCNN's input normalisation (facenet-pytorch ``detect_face``): (x - 127.5) / 128
_MEAN, _SCALE = 127.5, 0.0078125


@dataclass(frozen=True)
class CascadeParams:
    """The knobs of the cascade. ``min_face`` is in pixels of the image given; ``min_face_rel`` (fraction of its
    shorter side) raises it on large images; ``factor`` is the pyramid step; ``thresholds`` are P-Net, R-Net and
    O-Net score thresholds (MTCNN's published defaults: 0.6, 0.7, 0.7)."""

    min_face: float = 20.0
    min_face_rel: float = 0.0
    factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    max_batch_pixels: int = 8_000_000

    def smallest_face(self, h: int, w: int) -> float:
        """The smallest face side (px) sought in an ``h`` x ``w`` image."""
        return max(float(self.min_face), self.min_face_rel * min(h, w), 12.0)


def pyramid_scales(h: int, w: int, smallest_face: float, factor: float) -> list[float]:
    """MTCNN's pyramid: level 0 maps ``smallest_face`` onto P-Net's 12 px window, then shrinks by ``factor`` while the
    shorter side stays >= 12 px (the same rule as facenet-pytorch's ``detect_face``)."""
    scale = 12.0 / smallest_face
    side = min(h, w) * scale
    out = []
    while side >= 12:
        out.append(scale)
        scale *= factor
        side *= factor
    return out


def _level_shape(h: int, w: int, scale: float) -> tuple[int, int]:
    return int(h * scale + 1), int(w * scale + 1)  # facenet-pytorch's rounding, so the box maths below matches


def _resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import cv2

    if img.shape[0] == hw[0] and img.shape[1] == hw[1]:
        return img
    shrink = hw[0] < img.shape[0]
    return cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class Mips:
    """One image and its power-of-two reductions, built on demand: level ``k`` holds the means of the image's
    ``2**k`` x ``2**k`` pixel blocks (OpenCV's exact 2x area path, applied to the even part of each level).

    Why: the area filter reads every source pixel, so resampling a 300 px face box to R-Net's 24 px, or a 512 px
    photo to a 192 px pyramid level, from the full image was ~40 % of the cascade's time on 512 px photos (issue
    #34). Block means compose into the area filter, so resampling from the smallest level still at least the
    target's size gives nearly the same pixels for a fraction of the reads; a crop's edges are rounded to the
    level's grid, at most ``2**(k-1)`` source pixels, which the rule for crops (:meth:`crop`) keeps under 1 % of the
    box's side."""

    def __init__(self, img: np.ndarray) -> None:
        self.levels = [img]

    @property
    def image(self) -> np.ndarray:
        return self.levels[0]

    def _level(self, k: int) -> np.ndarray:
        import cv2

        while len(self.levels) <= k:
            prev = self.levels[-1]
            h, w = prev.shape[0] // 2, prev.shape[1] // 2
            self.levels.append(cv2.resize(prev[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_AREA))
        return self.levels[k]

    def resized(self, hw: tuple[int, int]) -> np.ndarray:
        """The whole image at ``hw`` (a pyramid level), from the smallest level at least that large."""
        h, w = self.image.shape[:2]
        k = 0
        while (h >> (k + 1)) >= hw[0] and (w >> (k + 1)) >= hw[1]:
            k += 1
        return _resize(self._level(k), hw)

    def crop(self, y0: int, y1: int, x0: int, x1: int, size: int) -> np.ndarray:
        """Rows ``y0:y1``, columns ``x0:x1`` of the image as a ``size`` px square, from the smallest level on which
        the region's shorter side is still at least ``2 * size``."""
        k = 0
        while (min(y1 - y0, x1 - x0) >> (k + 1)) >= 2 * size:
            k += 1
        level = self._level(k)  # k = 0: the image itself, and the rounding below changes nothing
        f = float(1 << k)
        lh, lw = level.shape[:2]
        a0, b0 = min(int(round(y0 / f)), lh - 1), min(int(round(x0 / f)), lw - 1)
        a1, b1 = max(a0 + 1, min(int(round(y1 / f)), lh)), max(b0 + 1, min(int(round(x1 / f)), lw))
        return _resize(level[a0:a1, b0:b1], (size, size))


# --------------------------------------------------------------------------------------------------------------
# the networks: facenet-pytorch's modules and weights
# --------------------------------------------------------------------------------------------------------------
class TorchNet:
    """One of MTCNN's networks (a facenet-pytorch module on its device): uint8 NHWC batches in, numpy out."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        import torch

        device = next(self.module.parameters()).device
        with torch.inference_mode():
            return [o.detach().cpu().numpy() for o in self.module(_to_tensor(batch, device))]


def mtcnn_module(name: str, device: str = "cpu") -> Any:
    """One of MTCNN's networks (``PNet``, ``RNet``, ``ONet``) in eval mode, with the weights inside the
    facenet-pytorch wheel (:mod:`forensics_core.mtcnn_nets`: nothing is downloaded, and the package itself is not
    imported). The one place that builds them, for the cascade below and for any caller that needs a single stage."""
    from forensics_core.mtcnn_nets import build

    return build(name).to(device)


def load_nets(device: str = "cpu") -> tuple[TorchNet, ...]:
    """MTCNN's (P-Net, R-Net, O-Net) as :class:`TorchNet` s (:func:`mtcnn_module`).

    (OpenCV's DNN module was tried as the CPU engine: P-Net ran 1.3x faster on 257 px pyramid levels, no faster on
    the smaller levels a scan runs, and R-Net / O-Net ran slower; torch stays.)"""
    return tuple(TorchNet(mtcnn_module(name, device)) for name in ("PNet", "RNet", "ONet"))


def _to_tensor(batch: np.ndarray, device: Any = "cpu") -> Any:
    import torch

    # NHWC memory seen as NCHW (channels-last strides; a channels-last copy of the weights measured no faster)
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device).permute(0, 3, 1, 2).float()
    return x.sub_(_MEAN).mul_(_SCALE)  # in place: the same numbers without two more copies of a P-Net batch


def _run(net: Any, batch: np.ndarray) -> list[np.ndarray]:
    """One forward of a network from :func:`load_nets` -> its outputs as numpy arrays."""
    return net.run(batch)


#: boxes up to which NMS computes every pairwise overlap at once (1 MB of float32) instead of a row per kept box:
#: the cascade's NMS calls hold a few dozen boxes, where a row per kept box cost more in NumPy calls than overlaps
_MATRIX_MAX = 512


def _greedy(boxes: np.ndarray, order: np.ndarray, iou: float, plus: float, exceeds: Any) -> np.ndarray:
    """Greedy NMS over ``order`` (best first): the first box stays, every later one that overlaps it by more than
    ``iou`` goes, repeat. ``plus``: added to widths and heights (1 for MTCNN's inclusive pixel boxes, 0 for
    torchvision's); ``exceeds(inter, area_kept, area_other, iou)``: where the overlap ratio counts as over ``iou``."""
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    area = (x2 - x1 + plus) * (y2 - y1 + plus)

    def over(i: Any, j: np.ndarray) -> np.ndarray:
        w = np.maximum(0, np.minimum(x2[i], x2[j]) - np.maximum(x1[i], x1[j]) + plus)
        h = np.maximum(0, np.minimum(y2[i], y2[j]) - np.maximum(y1[i], y1[j]) + plus)
        return exceeds(w * h, area[i], area[j], iou)

    keep = []
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 of empty boxes: ``exceeds`` decides
        if len(order) <= _MATRIX_MAX:
            hit = over(order[:, None], order[None, :])  # hit[a, b]: box order[a] suppresses box order[b]
            alive = np.ones(len(order), dtype=bool)
            for a in range(len(order)):
                if alive[a]:
                    keep.append(order[a])
                    alive &= ~hit[a]
        else:
            while order.size:
                i, rest = order[0], order[1:]
                keep.append(i)
                order = rest[~over(i, rest)]
    return np.asarray(keep, dtype=np.int64)


def _exceeds_union(inter: np.ndarray, a: np.ndarray, b: np.ndarray, iou: float) -> np.ndarray:
    """torchvision's rule: the float IoU compared as a double; two empty boxes (0 / 0) suppress nothing."""
    return (inter / (a + b - inter)).astype(np.float64) > iou


def _exceeds_smaller(inter: np.ndarray, a: np.ndarray, b: np.ndarray, iou: float) -> np.ndarray:
    """MTCNN's "Min" rule as the reference cascade writes it: whatever is not <= ``iou`` goes."""
    return ~(inter / np.minimum(a, b) <= iou)


def _nms(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by NMS within each group, highest score first, ties in input order: torchvision's NMS kernel
    in float32, per group (``batched_nms`` keeps the same boxes in the same order up to 1000 boxes of non-negative
    coordinates; above, its own tie order is unstable, and its coordinate trick can suppress across groups when
    coordinates are negative, which per-group NMS never does). Why not torchvision's own: importing
    ``torchvision.ops`` imports ``torch._dynamo``, sympy and triton, ~2 s of every scanner process's first chunk."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    b, s = boxes[:, :4].astype(np.float32), scores.astype(np.float32)
    kept = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        kept.append(idx[_greedy(b[idx], np.argsort(-s[idx], kind="stable"), iou, 0.0, _exceeds_union)])
    keep = np.sort(np.concatenate(kept))
    return keep[np.argsort(-s[keep], kind="stable")]


def _nms_min(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """MTCNN's last NMS: overlap measured over the *smaller* box ("Min"), so a box inside another is dropped."""
    return _greedy(boxes, np.argsort(scores)[::-1], iou, 1.0, _exceeds_smaller)


def _square(boxes: np.ndarray) -> np.ndarray:
    """``rerec``: square boxes around the same centre, side = the longer side."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """``bbreg``: move box edges by the network's offsets (fractions of the box's width / height + 1)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


def _crops(mips: Sequence[Mips], owner: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``size`` px crops of ``boxes`` (clipped to their image, as facenet-pytorch's ``pad`` does) and the indices of
    the boxes that had any pixel inside their image.

    Area-resampled from the image's block means (:meth:`Mips.crop`), not from P-Net's pyramid levels: cutting them
    from the pyramid (whose levels are not block means of the image) doubled the landmark differences from
    facenet-pytorch's (mean 0.039 vs 0.027 of the inter-ocular distance on 48 photos), and the shipped models'
    crops follow the landmarks."""
    out, valid = [], []
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    for k in range(len(b)):
        m = mips[owner[k]]
        h, w = m.image.shape[:2]
        x, y = max(int(b[k, 0]), 1), max(int(b[k, 1]), 1)
        ex, ey = min(int(b[k, 2]), w), min(int(b[k, 3]), h)
        if ey > y - 1 and ex > x - 1:
            out.append(m.crop(y - 1, ey, x - 1, ex, size))
            valid.append(k)
    if not out:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros(0, dtype=np.int64)
    return np.stack(out), np.asarray(valid, dtype=np.int64)


def _forward(net: Any, crops: np.ndarray, chunk: int = 512) -> list[np.ndarray]:
    outs = [_run(net, crops[i : i + chunk]) for i in range(0, len(crops), chunk)]
    return [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]


def _proposals(mips: Sequence[Mips], pnet: Any, p: CascadeParams) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1: P-Net over every image's pyramid. Returns candidate boxes (x1, y1, x2, y2, score, 4 offsets) and
    the image index of each, after per-level and per-image NMS."""
    levels: dict[tuple[int, int], list[tuple[int, float, np.ndarray]]] = defaultdict(list)
    for i, m in enumerate(mips):
        h, w = m.image.shape[:2]
        for scale in pyramid_scales(h, w, p.smallest_face(h, w), p.factor):
            # every level from the image's block means (one pass over the full image for all levels): closer to
            # facenet-pytorch's levels, each resampled from the image, than chaining each level from the one above
            level = m.resized(_level_shape(h, w, scale))
            levels[level.shape[:2]].append((i, scale, level))
    found: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    t0 = p.thresholds[0]
    for (lh, lw), items in levels.items():
        per = max(1, p.max_batch_pixels // max(1, lh * lw))
        for start in range(0, len(items), per):
            part = items[start : start + per]
            reg, prob = _run(pnet, np.stack([it[2] for it in part]))
            n_i, yy, xx = np.nonzero(prob[:, 1] >= t0)
            if not len(n_i):
                continue
            scales = np.array([part[k][1] for k in n_i])
            q1x, q1y = np.floor((2 * xx + 1) / scales), np.floor((2 * yy + 1) / scales)
            q2x, q2y = np.floor((2 * xx + 12) / scales), np.floor((2 * yy + 12) / scales)
            boxes = np.column_stack([q1x, q1y, q2x, q2y, prob[n_i, 1, yy, xx], reg[n_i, :, yy, xx]]).astype(np.float32)
            img_idx = np.array([part[k][0] for k in n_i], dtype=np.int64)
            keep = _nms(boxes, boxes[:, 4], img_idx, 0.5)  # within each level of each image
            found.append(boxes[keep])
            owners.append(img_idx[keep])
    if not found:
        return np.zeros((0, 9), np.float32), np.zeros(0, dtype=np.int64)
    boxes, owner = np.concatenate(found), np.concatenate(owners)
    keep = _nms(boxes, boxes[:, 4], owner, 0.7)  # across levels, within each image
    boxes, owner = boxes[keep], owner[keep]
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cal = np.column_stack([boxes[:, 0] + boxes[:, 5] * w, boxes[:, 1] + boxes[:, 6] * h,
                           boxes[:, 2] + boxes[:, 7] * w, boxes[:, 3] + boxes[:, 8] * h, boxes[:, 4]])  # fmt: skip
    return _square(cal), owner


def detect_mtcnn(
    images: Sequence[np.ndarray], nets: tuple[Any, Any, Any], params: CascadeParams | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run the MTCNN cascade on RGB ``uint8`` images of any sizes at once.

    ``nets`` come from :func:`load_nets`. Returns, per image, ``boxes`` (K, 5: x1, y1, x2, y2, O-Net probability)
    and ``landmarks`` (K, 5, 2) in that image's pixels, in no particular order.
    """
    p = params or CascadeParams()
    pnet, rnet, onet = nets
    empty = [(np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)) for _ in images]
    mips = [Mips(img) for img in images]
    boxes, owner = _proposals(mips, pnet, p)
    if not len(boxes):
        return empty
    # stage 2: R-Net on 24 px crops of every image's candidates, in one forward
    crops, valid = _crops(mips, owner, boxes, 24)
    boxes, owner = boxes[valid], owner[valid]
    if not len(boxes):
        return empty
    reg, prob = _forward(rnet, crops)
    ok = prob[:, 1] > p.thresholds[1]
    boxes, owner, reg = boxes[ok], owner[ok], reg[ok]
    boxes[:, 4] = prob[ok, 1]
    keep = _nms(boxes, boxes[:, 4], owner, 0.7)
    boxes = _square(_regress(boxes[keep], reg[keep]))
    owner = owner[keep]
    if not len(boxes):
        return empty
    return _last_stage(mips, onet, boxes, owner, p)


def _last_stage(
    mips: Sequence[Mips], onet: Any, boxes: np.ndarray, owner: np.ndarray, p: CascadeParams
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stage 3: O-Net on 48 px crops of square ``boxes``: final score, box offsets and the 5 landmarks, then MTCNN's
    "Min" NMS per image."""
    crops, valid = _crops(mips, owner, boxes, 48)
    boxes, owner = boxes[valid], owner[valid]
    out = [(np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)) for _ in mips]
    if not len(boxes):
        return out
    reg, pts, prob = _forward(onet, crops)
    ok = prob[:, 1] > p.thresholds[2]
    boxes, owner, reg, pts = boxes[ok], owner[ok], reg[ok], pts[ok]
    boxes[:, 4] = prob[ok, 1]
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    lm = np.stack([w[:, None] * pts[:, :5] + boxes[:, :1] - 1, h[:, None] * pts[:, 5:] + boxes[:, 1:2] - 1], -1)
    boxes = _regress(boxes, reg)
    for i in range(len(mips)):
        mine = np.nonzero(owner == i)[0]
        if len(mine):
            keep = mine[_nms_min(boxes[mine], boxes[mine, 4], 0.7)]
            out[i] = (boxes[keep].astype(np.float32), lm[keep].astype(np.float32))
    return out


def refine_mtcnn(
    images: Sequence[np.ndarray],
    boxes: Sequence[Sequence[Sequence[float]]],
    nets: tuple[Any, Any, Any],
    params: CascadeParams | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Faces known from an earlier frame, found again in ``images`` by O-Net alone.

    ``boxes[i]`` are the boxes (x1, y1, x2, y2) of image ``i``'s faces in the previous detected frame. Each is made
    square and scored by O-Net, whose box regression follows a face that moved by a fraction of its size; a face
    that is gone scores under the O-Net threshold and is dropped. One O-Net forward for all boxes of all images
    costs ~1 ms a face on a CPU core, against a P-Net pyramid over the whole frame for :func:`detect_mtcnn`: the
    video scan's step between two full detections (``ScanConfig.detect_every``).
    """
    p = params or CascadeParams()
    rows = [(i, b) for i, bs in enumerate(boxes) for b in bs]
    if not rows:
        return [(np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)) for _ in images]
    owner = np.array([i for i, _ in rows], dtype=np.int64)
    sq = np.zeros((len(rows), 5), np.float32)
    sq[:, :4] = np.array([b[:4] for _, b in rows], dtype=np.float32)
    return _last_stage([Mips(img) for img in images], nets[2], _square(sq), owner, p)
