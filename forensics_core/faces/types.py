"""The face record every detector returns and every crop step reads.

It sits in its own module so detection, cropping and tracking can share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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
