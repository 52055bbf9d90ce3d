"""Per-frame face geometry of a clip: the one pass every video method starts from.

A method needs, for each frame, the alignment matrix of the main face (frame -> canonical crop). We take the
largest confident face per frame (talking-head clips hold one subject) and fill short detection gaps from the
previous frame so a blink or motion blur does not break a fake video in two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forensics_core.errors import UsageError


@dataclass
class FaceTrack:
    """Alignment of the main face in every frame; ``matrices[i]`` maps frame i to the ``size`` crop."""

    size: int
    margin: float
    matrices: list[np.ndarray] = field(default_factory=list)
    detected: list[bool] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        return float(np.mean(self.detected)) if self.detected else 0.0


def track_main_face(
    frames: list[np.ndarray], size: int, margin: float, detector=None, batch: int = 8, source: str = "clip"
) -> FaceTrack:
    """Detect the main face in each frame and return its alignment matrices.

    Raises a one-line :class:`UsageError` naming ``source`` when no frame has a face, since every method would
    otherwise write a video identical to its input and label it fake.
    """
    from forensics_core.faces.crops import canonical_landmarks, similarity_transform
    from forensics_core.faces.detectors import get_face_detector

    det = detector or get_face_detector("mtcnn")
    template = canonical_landmarks(size, margin)
    track = FaceTrack(size=size, margin=margin)
    last: np.ndarray | None = None
    pending = 0  # frames before the first detection, filled once one is found
    for i in range(0, len(frames), batch):
        for faces in det.detect(frames[i : i + batch]):
            if faces:
                main = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
                last = similarity_transform(np.asarray(main.landmarks).reshape(5, 2), template)
                track.matrices.extend([last] * (pending + 1))
                track.detected.extend([False] * pending + [True])
                pending = 0
            elif last is None:
                pending += 1
            else:
                track.matrices.append(last)
                track.detected.append(False)
    if last is None:
        raise UsageError(f"{source}: no face found in any of its {len(frames)} frames")
    return track


def warp_to_crop(frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
