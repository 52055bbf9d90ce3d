"""Face detectors and their registry (:data:`FACE_DETECTORS`): ``mtcnn``, ``mtcnn-fast`` and the ``opencv`` fallback.

Detection is kept apart from alignment and cropping: a plug-in detector only has to return :class:`Face` records.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from forensics_core.errors import ForensicsError, UsageError
from forensics_core.faces.types import Face
from forensics_core.registry import Registry


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
