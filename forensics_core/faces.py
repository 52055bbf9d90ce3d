"""Face detection, 5-point alignment, face tracking and face extraction from images and videos.

Every detector in the toolkit looks at faces, never at whole photos: a face crop removes the background, the
photo's framing and most of the format shortcuts (see ``docs/datasets.md``). This module holds the face primitives
(detectors, alignment, tracking) that every path from media to face crops uses: ``forensics faces extract``, the
dataset importers (:mod:`forensics_core.importers`) and ``forensics scan`` (:mod:`forensics.scanning`), so training
data, benchmarks and scans see faces made the same way: all of them cut faces with :func:`crop_faces`.

* :class:`FaceDetector` implementations live in the :data:`FACE_DETECTORS` registry: ``mtcnn`` (default; the
  weights ship inside the facenet-pytorch wheel, so it works offline, batched, CPU or GPU) and ``opencv`` (Haar
  cascade fallback whose landmarks are *estimated from the box* and therefore approximate).
* :func:`align_face` maps the 5 landmarks onto a canonical template with a similarity transform (rotation, uniform
  scale, translation: no shear, so faces are never distorted).
* :func:`crop_faces` is the one crop step: a list of faces + a crop spec (a model's ``PreprocessSpec`` or a
  :class:`CropSpec`: size, ``align`` / ``center`` policy, margin) -> the crops a detector sees, with the
  whole-image centre crop when there is no face. The scan, training views (``detectors.data.face_view``), the
  benchmark runner, the importers and :func:`extract_faces` all call it.
* :class:`IoUTracker` groups per-frame detections of a video into tracks.
* :func:`extract_faces` is the generator behind ``forensics faces extract``.
"""

from __future__ import annotations

import logging
import math
import os
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forensics_core.degrade import resize_to
from forensics_core.errors import ForensicsError, UsageError
from forensics_core.registry import Registry

log = logging.getLogger(__name__)

# ArcFace / InsightFace 112x112 template (left eye, right eye, nose tip, left mouth corner, right mouth corner),
# "left" meaning the image's left. The de-facto standard for 5-point alignment; normalised to [0, 1].
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
TEMPLATE = ARCFACE_TEMPLATE_112 / 112.0
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class Face:
    """One detected face.

    ``box`` is ``(x1, y1, x2, y2)`` in pixels of the image it was found in; ``landmarks`` is a ``(5, 2)`` array in
    the order of :data:`LANDMARK_NAMES`; ``prob`` is the detector's confidence (MTCNN: O-Net probability; OpenCV:
    a squashed cascade score, not calibrated). ``approx_landmarks`` says the points were guessed from the box.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    prob: float
    approx_landmarks: bool = False

    @classmethod
    def from_landmarks(cls, landmarks: Any, prob: float = 1.0) -> Face:
        """A face known only by its 5 stored landmarks (e.g. a dataset row); ``box`` is their bounding box."""
        lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
        x1, y1 = lm.min(0)
        x2, y2 = lm.max(0)
        return cls((float(x1), float(y1), float(x2), float(y2)), lm, prob)

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "prob": round(float(self.prob), 5),
        }


# --------------------------------------------------------------------------------------------------------------
# detectors
# --------------------------------------------------------------------------------------------------------------
class FaceDetector(ABC):
    """Finds faces in RGB uint8 images. ``detect`` is batched: one list of faces per input image."""

    name: str = ""

    @abstractmethod
    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Return the faces of each image, most confident first."""


FACE_DETECTORS: Registry[type[FaceDetector]] = Registry("face detector", entry_point_group="forensics.face_detectors")


def _check_image(img: np.ndarray) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        shape = getattr(img, "shape", None)
        raise UsageError(f"face detectors take HxWx3 uint8 RGB arrays, got {type(img).__name__} {shape}")
    return img


@FACE_DETECTORS.register("mtcnn", description="MTCNN (facenet-pytorch, shipped weights): boxes + 5 landmarks")
class MTCNNDetector(FaceDetector):
    """MTCNN from facenet-pytorch 2.5.3. Its weights ship inside the wheel, so nothing is downloaded.

    MTCNN batches only images of one size, so :meth:`detect` groups the inputs by shape and runs each group in
    chunks bounded by ``max_batch_pixels`` (a 1080p frame is ~2 Mpx; the stacked float tensor costs 12 bytes per
    pixel). ``min_prob`` filters the final O-Net probability; ``thresholds`` are the three stage thresholds.
    """

    name = "mtcnn"

    def __init__(
        self,
        device: str = "auto",
        min_prob: float = 0.9,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        max_batch_pixels: int = 8_000_000,
    ) -> None:
        from facenet_pytorch import MTCNN

        from forensics_core.config import resolve_device

        self.device = resolve_device(device)
        self.min_prob = float(min_prob)
        self.min_face_size = int(min_face_size)
        self.thresholds = list(thresholds)
        self.factor = float(factor)
        self.max_batch_pixels = int(max_batch_pixels)
        self._mtcnn = MTCNN(keep_all=True, device=self.device, min_face_size=self.min_face_size)
        self._mtcnn.eval()

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        out: list[list[Face]] = [[] for _ in images]
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            groups[_check_image(img).shape].append(i)
        for shape, idx in groups.items():
            per_batch = max(1, self.max_batch_pixels // max(1, shape[0] * shape[1]))
            for start in range(0, len(idx), per_batch):
                chunk = idx[start : start + per_batch]
                for i, faces in zip(chunk, self._detect_same_size([images[i] for i in chunk])):
                    out[i] = faces
        return out

    def _detect_same_size(self, images: list[np.ndarray]) -> list[list[Face]]:
        import torch
        from facenet_pytorch.models.utils.detect_face import detect_face

        side = min(images[0].shape[:2])
        # below P-Net's receptive field, or narrower than the smallest face sought (then the image pyramid has no
        # level at all and facenet-pytorch fails on an empty torch.cat): nothing can be found
        if side < 12 or side < self.min_face_size:
            return [[] for _ in images]
        batch = np.ascontiguousarray(np.stack(images))
        m = self._mtcnn
        with torch.inference_mode():
            boxes, points = detect_face(
                batch, self.min_face_size, m.pnet, m.rnet, m.onet, self.thresholds, self.factor, self.device
            )
        return [
            mtcnn_faces(
                np.asarray(b, dtype=np.float64).reshape(-1, 5), np.asarray(p, dtype=np.float64).reshape(-1, 5, 2),
                self.min_prob,
            )
            for b, p in zip(boxes, points)
        ]


def mtcnn_faces(boxes: np.ndarray, points: np.ndarray, min_prob: float) -> list[Face]:
    """MTCNN's output for one image, rows ``(x0, y0, x1, y1, probability)`` and their 5 points, as the faces at or
    above ``min_prob``, most probable first: one reading for both MTCNN detectors, whatever ran the networks."""
    faces = [
        Face(box=tuple(float(v) for v in boxes[k, :4]), landmarks=points[k].astype(np.float64), prob=float(boxes[k, 4]))
        for k in range(len(boxes))
        if boxes[k, 4] >= min_prob
    ]
    faces.sort(key=lambda f: -f.prob)
    return faces


@FACE_DETECTORS.register(
    "mtcnn-fast", description="MTCNN's shipped networks fed for speed: boxes + 5 landmarks, several times faster"
)
class FastMTCNNDetector(FaceDetector):
    """MTCNN with facenet-pytorch's weights, run by :func:`forensics_core.facedetect.detect_mtcnn`: the default face
    stage of ``forensics scan`` (``ScanConfig.face_detector``).

    Why it is the default (issue #34; ``python -m benchmarks.faces_speed``, ``benchmarks/results/faces.md``, measured
    on a loaded 2-core machine): it keeps MTCNN's networks, so its boxes and 5 landmarks are those the shipped models
    were trained and calibrated on (their ``native`` / ``align`` crops are cut from the landmarks); on the labelled
    set it found the same 98 of 107 faces as facenet-pytorch's MTCNN at full resolution (the scan's previous face
    stage, that MTCNN on a 1024 px copy, found 95), while spending 4.9x less CPU on a 512 px photo and 4.4x less on
    a 1024 px one. About half of that is plumbing (OpenCV pyramid, one R-Net / O-Net forward for every crop of a
    chunk: 2.2x at MTCNN's own parameters); the rest is two parameters chosen against recall on the labelled set:
    ``factor`` 0.6 instead of 0.709 (fewer pyramid levels) and ``min_face_size`` 32 instead of 20 (P-Net's cost
    grows with ``(side / smallest face)^2``; 24 found 99 faces for 1.5x the CPU of 32, 28 found 96). The OpenCV
    cascade was slower on these photos (scale step 1.1), found 78 of the 107 faces and gives no landmarks;
    MediaPipe's BlazeFace cannot share the project's environment (see ``docs/faces.md``).

    ``min_face_size`` (px of the image given) and ``min_face_rel`` (fraction of its shorter side; the larger wins)
    bound the smallest face sought. ``thresholds`` are the P-, R- and O-Net thresholds; ``min_prob`` filters the
    final O-Net probability. :meth:`refine` re-scores known boxes in a new frame with O-Net alone (the video scan's
    step between two full detections).
    """

    name = "mtcnn-fast"

    def __init__(
        self,
        device: str = "auto",
        min_prob: float = 0.9,
        min_face_size: int = 32,
        min_face_rel: float = 0.0,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.6,
        max_batch_pixels: int = 8_000_000,
    ) -> None:
        from forensics_core.config import resolve_device
        from forensics_core.facedetect import CascadeParams, load_nets

        self.device = resolve_device(device)
        self.min_prob = float(min_prob)
        self.params = CascadeParams(
            min_face=float(min_face_size), min_face_rel=float(min_face_rel), factor=float(factor),
            thresholds=tuple(float(t) for t in thresholds), max_batch_pixels=int(max_batch_pixels),
        )  # fmt: skip
        self._nets = load_nets(self.device)

    def _faces(self, found: list[tuple[np.ndarray, np.ndarray]]) -> list[list[Face]]:
        return [mtcnn_faces(boxes, points, self.min_prob) for boxes, points in found]

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        from forensics_core.facedetect import detect_mtcnn

        return self._faces(detect_mtcnn([_check_image(img) for img in images], self._nets, self.params))

    def refine(self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[Sequence[float]]]) -> list[list[Face]]:
        """The faces at ``boxes[i]`` (known from an earlier frame) in ``images[i]``, re-scored and re-placed by O-Net
        alone; a box whose face has gone (O-Net probability under the threshold) is dropped."""
        from forensics_core.facedetect import refine_mtcnn

        found = refine_mtcnn([_check_image(img) for img in images], boxes, self._nets, self.params)
        return self._faces(found)


# Where the 5 points sit inside a frontal Haar box (fractions of its width / height), fitted by eye on MTCNN
# detections of the same faces. Approximate by construction: no pose, no rotation.
_HAAR_LANDMARKS = np.array([[0.30, 0.38], [0.70, 0.38], [0.50, 0.62], [0.33, 0.80], [0.67, 0.80]])


@FACE_DETECTORS.register("opencv", description="OpenCV Haar cascade fallback; landmarks estimated from the box")
class OpenCVDetector(FaceDetector):
    """OpenCV's frontal-face Haar cascade (ships with opencv-python-headless 4.x; no torch needed).

    A fallback for machines where torch cannot run. It finds upright frontal faces only and gives no landmarks:
    the 5 points are placed at fixed fractions of the box (``approx_landmarks=True``), so alignment is only as good
    as the box. ``prob`` is the cascade's level weight squashed with a logistic; it is a ranking score, not a
    probability, and ``min_prob`` filters on it.
    """

    name = "opencv"

    def __init__(
        self,
        device: str = "cpu",
        min_prob: float = 0.5,
        min_face_size: int = 20,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
    ) -> None:
        import cv2

        del device  # the cascade runs on the CPU; the argument keeps the detector factory signature uniform
        path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise ForensicsError(f"{path}: OpenCV Haar cascade could not be loaded")
        self.min_prob = float(min_prob)
        self.min_face_size = int(min_face_size)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        import cv2

        out: list[list[Face]] = []
        for img in images:
            gray = cv2.equalizeHist(cv2.cvtColor(_check_image(img), cv2.COLOR_RGB2GRAY))
            rects, _, weights = self._cascade.detectMultiScale3(
                gray,
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                minSize=(self.min_face_size, self.min_face_size),
                outputRejectLevels=True,
            )
            faces = []
            for (x, y, w, h), wt in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1)):
                prob = 1.0 / (1.0 + math.exp(-float(wt)))
                if prob < self.min_prob:
                    continue
                lm = np.array([x, y], dtype=np.float64) + _HAAR_LANDMARKS * np.array([w, h], dtype=np.float64)
                faces.append(Face((float(x), float(y), float(x + w), float(y + h)), lm, prob, approx_landmarks=True))
            faces.sort(key=lambda f: -f.prob)
            out.append(faces)
        return out


def get_face_detector(name: str = "mtcnn", device: str = "auto", **cfg: Any) -> FaceDetector:
    """Build a registered face detector: ``get_face_detector("mtcnn", device="cpu", min_prob=0.95)``."""
    cls = FACE_DETECTORS.get(name).obj
    return cls(device=device, **cfg)


def face_detector_help(default: str | None = None) -> str:
    """``--face-detector`` help read from the registry (a plug-in detector is listed without an edit)."""
    names = [f"{e.name}{' (default)' if e.name == default else ''}: {e.description}" for e in FACE_DETECTORS.entries()]
    return "Face detector; " + "; ".join(names) + "."


# --------------------------------------------------------------------------------------------------------------
# alignment
# --------------------------------------------------------------------------------------------------------------
def canonical_landmarks(size: int = 224, margin: float = 0.3) -> np.ndarray:
    """Where the 5 landmarks land in a ``size`` x ``size`` crop.

    The ArcFace template fills the crop when ``margin=0``; a margin ``m`` shrinks it about the centre by
    ``1 / (1 + m)``, i.e. the crop shows ``m`` times more context (hair, chin, background edge) than the template.
    Blending artefacts of face swaps live at that boundary, so detectors want some margin.
    """
    if size < 8:
        raise UsageError(f"--size {size}: face crops must be at least 8 px")
    if margin < 0:
        raise UsageError(f"--margin {margin}: must be >= 0")
    return ((TEMPLATE - 0.5) / (1.0 + margin) + 0.5) * size


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama 1991, no reflection) mapping ``src`` points onto ``dst``.

    Returns the 2x3 matrix for ``cv2.warpAffine``. Closed form, so it is deterministic and has no RANSAC
    randomness (unlike ``cv2.estimateAffinePartial2D``).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = (sc**2).sum() / len(src)
    if var_s <= 1e-12:
        raise UsageError("landmarks are degenerate (all points coincide); cannot align")
    cov = dc.T @ sc / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    r = u @ np.diag(d) @ vt
    scale = (s * d).sum() / var_s
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]])


_BORDERS = {"replicate": "BORDER_REPLICATE", "reflect": "BORDER_REFLECT_101", "constant": "BORDER_CONSTANT"}


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int = 224, margin: float = 0.3, border: str = "replicate"
) -> np.ndarray:
    """Warp ``image`` so its 5 ``landmarks`` land on :func:`canonical_landmarks` ``(size, margin)``.

    Pixels outside the source image are filled by ``border`` (replicate by default: a black frame would itself be
    a class shortcut when one class is shot tighter than the other).
    """
    import cv2

    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    m = similarity_transform(lm, canonical_landmarks(size, margin))
    scale = math.hypot(m[0, 0], m[1, 0])
    if scale < 0.5:
        # warpAffine's bilinear sampling aliases when shrinking more than ~2x: pre-shrink with area filtering.
        k = int(1 / scale)
        small = cv2.resize(image, None, fx=1 / k, fy=1 / k, interpolation=cv2.INTER_AREA)
        ratio = np.array([small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]])
        lm = (lm + 0.5) * ratio - 0.5  # cv2.resize maps pixel centres, not corners
        image = small
        m = similarity_transform(lm, canonical_landmarks(size, margin))
    try:
        flag = getattr(cv2, _BORDERS[border])
    except KeyError:
        raise UsageError(f"border '{border}': choose one of {', '.join(_BORDERS)}") from None
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=flag)


def center_crop_face(image: np.ndarray, size: int) -> np.ndarray:
    """The largest centred square, resized to ``size``: the fallback when no face (landmarks) is found."""
    import cv2

    crop = center_square(image)
    interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interp))


#: a native window up to this much larger than the crop is cut at ``size`` px instead (slightly tighter framing)
#: rather than shrunk: a shrink by under ~15 % would resample the whole crop for almost no gain in context.
NATIVE_SNAP = 1.15


#: how a ``native`` window that reaches past the photo's edge is filled (``CropSpec.edge``)
EDGES = ("clamp", "reflect")


def native_window(
    shape: tuple[int, ...], landmarks: np.ndarray, size: int = 128, margin: float = 0.3, edge: str = "clamp",
    zoom: float = 1.0, shift: tuple[float, float] = (0.0, 0.0),
) -> tuple[int, int, int]:
    """``x0, y0, side`` of the ``native`` window in an image of ``shape`` (see :func:`native_crop`).

    ``zoom`` scales the side (> 1: more context) and ``shift`` moves the centre by that fraction of the side:
    the random framings of training. ``edge="clamp"`` keeps the window inside the image (shrunk to the shorter
    side and shifted in); ``"reflect"`` keeps its size and place whatever the photo's framing."""
    if edge not in EDGES:
        raise UsageError(f"crop edge '{edge}': choose one of {', '.join(EDGES)}")
    h, w = shape[:2]
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    m = similarity_transform(lm, canonical_landmarks(size, margin))
    scale = math.hypot(m[0, 0], m[1, 0])
    # the image point the aligned crop's centre comes from: invert the similarity at the crop centre
    a = m[:, :2]
    centre = np.linalg.solve(a, np.array([size / 2, size / 2]) - m[:, 2])
    side = zoom * size / max(scale, 1e-6)
    side = size if side < size * NATIVE_SNAP else side
    centre = centre + side * np.asarray(shift, dtype=np.float64)
    if edge == "clamp":
        side = int(round(min(side, h, w)))
        x0 = int(round(centre[0] - side / 2))
        y0 = int(round(centre[1] - side / 2))
        return min(max(x0, 0), w - side), min(max(y0, 0), h - side), side
    side = int(round(side))
    return int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2)), side


def cut_window(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """``image[y0:y0+side, x0:x0+side]`` where the parts outside the image are its mirror image (reflect-101).

    Why reflection: the face keeps the share of the input it has in every training crop, and the fill is made of
    the photo's own pixels (its noise, compression and resampling traces), not a flat border that would itself
    tell tight photos apart."""
    h, w = image.shape[:2]
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if xb <= xa or yb <= ya:  # the window misses the image (a landmark far outside it): the image's centre
        return center_square(image)
    inner = image[ya:yb, xa:xb]
    pads = (ya - y0, y0 + side - yb, xa - x0, x0 + side - xb)
    if not any(pads):
        return inner
    return _reflect_pad(inner, *pads)


def _reflect_pad(img: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """Reflect-101 padding that also works when a pad is larger than the image (repeated mirroring)."""
    import cv2

    while top or bottom or left or right:
        h, w = img.shape[:2]
        t, b = min(top, h - 1), min(bottom, h - 1)
        lf, r = min(left, w - 1), min(right, w - 1)
        if not (t or b or lf or r):  # a 1-pixel image cannot be mirrored: repeat it
            return cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_REPLICATE)
        img = cv2.copyMakeBorder(img, t, b, lf, r, cv2.BORDER_REFLECT_101)
        top, bottom, left, right = top - t, bottom - b, left - lf, right - r
    return img


def center_square(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return image[y0 : y0 + s, x0 : x0 + s]


def native_crop(
    image: np.ndarray, landmarks: np.ndarray, size: int = 128, margin: float = 0.3, edge: str = "clamp",
    zoom: float = 1.0, shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """The ``native`` crop policy: the region :func:`align_face` would show, cut axis-aligned at whole pixels and
    never enlarged ("crop, don't warp").

    Artifact detectors read pixel-grid statistics (upsampling periodicity, JPEG block phase, demosaicing) that a
    rotation or a sub-pixel similarity warp smooths away: the aligned view of a 128 px FFHQ thumbnail is a bilinear
    re-sampling of it even at scale ~1. Here the window keeps the alignment's framing (side ``size / scale`` where
    ``scale`` is the similarity a 5-point alignment would apply) but is square, unrotated and integer-placed; it is
    resampled only when the face is larger than the crop (area filter, as a platform downscale would be) or the
    whole image is smaller than ``size`` (cubic). A face smaller than the crop gets more context at native scale
    instead of being magnified; a window within :data:`NATIVE_SNAP` of ``size`` is cut at ``size`` unresampled.

    ``edge``: where the window reaches past the photo, ``clamp`` (models before v15) shrinks and shifts it inside,
    so in a tightly framed photo the face fills more of the input than in any training crop (measured on v14:
    StyleGAN2 vs FFHQ AUC 0.966 on the full 512 px photos, 0.559 on their centre 75 %); ``reflect`` keeps the
    window and fills the outside by reflection (:func:`cut_window`), so the face's share of the input does not
    depend on how the photo was framed. ``zoom`` / ``shift``: see :func:`native_window`.
    """
    x0, y0, side = native_window(image.shape, landmarks, size, margin, edge, zoom, shift)
    # resize_to shrinks with the area filter and enlarges with the cubic one: the same rule for every path to a detector
    return resize_to(cut_window(image, x0, y0, side), size)


def box_crop(image: np.ndarray, box: Sequence[float], size: int, margin: float) -> np.ndarray:
    """Square crop around a face box with ``margin`` context, resized to ``size`` (the ``center`` crop policy)."""
    import cv2

    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1.0 + margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    xa, ya = int(round(cx - side / 2)), int(round(cy - side / 2))
    xb, yb = int(round(cx + side / 2)), int(round(cy + side / 2))
    pad = max(0, -xa, -ya, xb - w, yb - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        xa, ya, xb, yb = xa + pad, ya + pad, xb + pad, yb + pad
    return center_crop_face(image[ya:yb, xa:xb], size)


# --------------------------------------------------------------------------------------------------------------
# cropping: the one place that turns an image and its faces into the crops a detector sees
# --------------------------------------------------------------------------------------------------------------
CROP_POLICIES = ("align", "center", "native")


@dataclass(frozen=True)
class CropSpec:
    """How faces are cut for a detector: ``size`` px square, ``crop`` policy (``align`` = 5-point alignment,
    ``center`` = square around the box, ``native`` = the alignment's region unrotated at native scale:
    :func:`native_crop`) and ``margin`` context. A model's ``detectors.base.PreprocessSpec`` has the
    same three fields and is passed as is; callers without a model (importers, ``faces extract``, training views of
    stored landmarks) build one."""

    size: int = 224
    crop: str = "align"
    margin: float = 0.3
    #: ``native`` only: ``clamp`` or ``reflect`` where the window reaches past the photo (:func:`native_crop`)
    edge: str = "clamp"


@dataclass
class FaceCrop:
    """One crop and where it came from. ``face`` is None for the whole-image centre crop (no face given)."""

    pixels: np.ndarray
    face: Face | None
    aligned: bool  # False: box crop (``center`` policy or approximate landmarks) or the no-face fallback

    @property
    def no_face(self) -> bool:
        return self.face is None


def crop_faces(image: np.ndarray, faces: Sequence[Face], spec: Any, *, align_approx: bool = False) -> list[FaceCrop]:
    """The crops a detector sees of ``faces`` in ``image``, in order, cut as ``spec`` (a :class:`CropSpec` or a
    model's ``PreprocessSpec``) says; no faces: one centre crop of the whole image (``face`` None).

    ``align`` aligns on the 5 landmarks unless they are estimated from the box (``Face.approx_landmarks``, the
    OpenCV detector): those get the box crop, as ``forensics scan`` does. ``align_approx=True`` aligns on estimated
    landmarks too: what the importers, ``faces extract`` and the video benchmark have always done (kept so their
    outputs stay comparable with data and results made before).
    """
    if not faces:
        return [FaceCrop(center_crop_face(image, spec.size), None, False)]
    out = []
    for face in faces:
        if spec.crop == "native":
            edge = getattr(spec, "edge", "clamp")
            out.append(FaceCrop(native_crop(image, face.landmarks, spec.size, spec.margin, edge), face, False))
        elif spec.crop == "align" and (align_approx or not getattr(face, "approx_landmarks", False)):
            out.append(FaceCrop(align_face(image, face.landmarks, size=spec.size, margin=spec.margin), face, True))
        else:
            out.append(FaceCrop(box_crop(image, face.box, spec.size, spec.margin), face, False))
    return out


# --------------------------------------------------------------------------------------------------------------
# tracking
# --------------------------------------------------------------------------------------------------------------
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (N,4) and ``b`` (M,4) in ``x1,y1,x2,y2`` form -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class _Track:
    id: int
    box: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    missed: int = 0
    hits: int = 1

    def predicted(self) -> np.ndarray:
        return self.box + self.velocity * (self.missed + 1)


class IoUTracker:
    """Greedy IoU tracker: groups per-frame detections of one video into face tracks with stable ids.

    Each track predicts its next box with a constant-velocity model (so two faces that cross keep their ids as
    long as each moves less per step than the gap between them); detections and predictions are matched greedily
    in order of decreasing IoU above ``min_iou``. Unmatched detections start new tracks; a track unmatched for
    more than ``max_age`` consecutive updates ends. Steps are calls to :meth:`update` (sampled frames), not raw
    frame numbers, so the tracker works at any sampling rate.
    """

    def __init__(self, min_iou: float = 0.3, max_age: int = 5) -> None:
        self.min_iou = float(min_iou)
        self.max_age = int(max_age)
        self._tracks: list[_Track] = []
        self._next_id = 0

    @property
    def n_tracks(self) -> int:
        """How many track ids have been handed out so far."""
        return self._next_id

    def update(self, boxes: Sequence[Sequence[float]]) -> list[int]:
        """Feed the boxes of the next sampled frame; return one track id per box (same order)."""
        dets = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        ids = [-1] * len(dets)
        matched_tracks: set[int] = set()
        if self._tracks and len(dets):
            iou = box_iou(np.stack([t.predicted() for t in self._tracks]), dets)
            for flat in np.argsort(-iou, axis=None):
                ti, di = np.unravel_index(flat, iou.shape)
                if iou[ti, di] < self.min_iou:
                    break
                if ti in matched_tracks or ids[di] != -1:
                    continue
                t = self._tracks[ti]
                steps = t.missed + 1
                step_velocity = (dets[di] - t.box) / steps
                # smooth the velocity once there is one to smooth; the first match sets it outright
                t.velocity = 0.5 * t.velocity + 0.5 * step_velocity if t.hits > 1 else step_velocity
                t.box, t.missed, t.hits = dets[di].copy(), 0, t.hits + 1
                ids[di] = t.id
                matched_tracks.add(int(ti))
        for ti, t in enumerate(self._tracks):
            if ti not in matched_tracks:
                t.missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.max_age]
        for di in range(len(dets)):
            if ids[di] == -1:
                ids[di] = self._next_id
                self._tracks.append(_Track(self._next_id, dets[di].copy()))
                self._next_id += 1
        return ids


# --------------------------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------------------------
@dataclass
class ExtractConfig:
    """How faces are cut out of media. ``every``/``fps`` sample video frames (``fps`` wins when set)."""

    size: int = 224
    margin: float = 0.3
    every: int = 1
    fps: float | None = None
    max_faces: int | None = None
    batch_size: int = 8
    min_iou: float = 0.3
    max_age: int = 5

    def __post_init__(self) -> None:
        if self.every < 1:
            raise UsageError(f"--every {self.every}: must be >= 1")
        if self.fps is not None and self.fps <= 0:
            raise UsageError(f"--fps {self.fps}: must be > 0")
        if self.max_faces is not None and self.max_faces < 1:
            raise UsageError(f"--max-faces {self.max_faces}: must be >= 1")
        canonical_landmarks(self.size, self.margin)  # validates size and margin


@dataclass
class ExtractedFace:
    """An aligned crop plus where it came from: enough to write a manifest row or to score it."""

    crop: np.ndarray
    face: Face
    source: str
    source_sha256: str
    kind: str  # "image" | "video"
    frame: int
    time_s: float
    track: int


def _aligned(image: np.ndarray, face: Face, cfg: ExtractConfig) -> np.ndarray:
    return crop_faces(image, [face], CropSpec(cfg.size, "align", cfg.margin), align_approx=True)[0].pixels


def extract_faces(
    path: str | os.PathLike[str],
    detector: FaceDetector,
    cfg: ExtractConfig | None = None,
    limits: Any = None,
) -> Iterator[ExtractedFace]:
    """Yield the aligned faces of one image or video.

    Images give track ids ``0..n-1`` in order of confidence. Videos are streamed through
    ``forensics_core.media.iter_frames`` (bounded memory), detected in batches of ``cfg.batch_size`` frames and
    tracked with :class:`IoUTracker`. ``max_faces`` keeps the K most confident faces per image / frame.
    Raises :class:`forensics_core.media.MediaError` (one line naming the file) when the file cannot be read; faces
    already yielded for a video that breaks half-way remain valid.
    """
    from forensics_core import media

    cfg = cfg or ExtractConfig()
    p = str(path)
    kind = media.sniff(p)
    if kind == "image":
        loaded = media.load_image(p, limits=limits)
        faces = detector.detect([loaded.pixels])[0][: cfg.max_faces]
        for k, face in enumerate(faces):
            yield ExtractedFace(_aligned(loaded.pixels, face, cfg), face, p, loaded.info.sha256, kind, 0, 0.0, k)
        return
    info = media.probe(p, limits=limits)
    tracker = IoUTracker(cfg.min_iou, cfg.max_age)
    frames = media.iter_frames(p, every=cfg.every, fps=cfg.fps, limits=limits)
    for batch in _batched(frames, cfg.batch_size):
        for fr, faces in zip(batch, detector.detect([f.pixels for f in batch])):
            faces = faces[: cfg.max_faces]
            ids = tracker.update([f.box for f in faces])
            for face, tid in zip(faces, ids):
                yield ExtractedFace(
                    _aligned(fr.pixels, face, cfg), face, p, info.sha256, kind, fr.index, float(fr.time_s), tid
                )


def _batched(it: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for x in it:
        batch.append(x)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


# Extensions treated as media when a directory is expanded. Only used to pick candidates inside directories; the
# type of every file is still decided from its bytes by ``forensics_core.media.sniff``.
MEDIA_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif", ".heic", ".heif"}
    | {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"}
)
