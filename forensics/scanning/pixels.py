"""Image sizes around face detection: the downscaled copy the detector sees, faces mapped back to full
resolution, and report thumbnails."""

from __future__ import annotations

from typing import Any

import numpy as np

THUMB_SIDE = 256


def thumbnail(pixels: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    import cv2

    h, w = pixels.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return pixels.copy()
    return cv2.resize(pixels, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)


def downscale(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image to run the face detector on, and the factor that maps its coordinates back."""
    import cv2

    h, w = pixels.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return pixels, 1.0
    small = cv2.resize(pixels, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small), s


def rescaled(face: Any, s: float) -> Any:
    if s == 1.0:
        return face
    from forensics_core.faces.types import Face

    return Face(
        box=tuple(float(v) / s for v in face.box),
        landmarks=np.asarray(face.landmarks, dtype=np.float64) / s,
        prob=face.prob,
        approx_landmarks=getattr(face, "approx_landmarks", False),
    )


def detect_full_res(detector: Any, images: list[np.ndarray], max_side: int) -> list[list[Any]]:
    """The scan's face stage on full-resolution images: each is downscaled to ``max_side`` (:func:`downscale`), all
    are detected in one call, and the faces are mapped back to the full image (:func:`rescaled`), where the crops
    are cut. The image scan does the downscale in its loader threads instead; video frames and the face benchmark
    (``benchmarks.faces_speed``) come through here."""
    small = [downscale(im, max_side) for im in images]
    found = detector.detect([s for s, _ in small])
    return [[rescaled(f, s) for f in faces] for (_, s), faces in zip(small, found)]
