"""Face detection, 5-point alignment, face tracking and face extraction from images and videos.

Every detector in the toolkit looks at faces, never at whole photos: a face crop removes the background, the
photo's framing and most of the format shortcuts (see ``docs/datasets.md``). This package holds the face primitives
(detectors, alignment, tracking) that every path from media to face crops uses: ``forensics faces extract``, the
dataset importers (:mod:`forensics_core.importers`) and ``forensics scan`` (:mod:`forensics.scanning`), so training
data, benchmarks and scans see faces made the same way: all of them cut faces with :func:`crop_faces`.

* :mod:`~forensics_core.faces.types`: :class:`Face`, the record every detector returns.
* :mod:`~forensics_core.faces.detectors`: :class:`FaceDetector` implementations in the :data:`FACE_DETECTORS`
  registry: ``mtcnn`` (default; the weights ship inside the facenet-pytorch wheel, so it works offline, batched,
  CPU or GPU) and ``opencv`` (Haar cascade fallback whose landmarks are *estimated from the box* and therefore
  approximate).
* :mod:`~forensics_core.faces.crops`: :func:`align_face` maps the 5 landmarks onto a canonical template with a
  similarity transform (rotation, uniform scale, translation: no shear, so faces are never distorted), and
  :func:`crop_faces` is the one crop step: a list of faces + a crop spec (a model's ``PreprocessSpec`` or a
  :class:`CropSpec`: size, ``align`` / ``center`` policy, margin) -> the crops a detector sees, with the
  whole-image centre crop when there is no face. The scan, training views (``detectors.data.face_view``), the
  benchmark runner, the importers and :func:`extract_faces` all call it.
* :mod:`~forensics_core.faces.tracking`: :class:`IoUTracker` groups per-frame detections of a video into tracks.
* :mod:`~forensics_core.faces.extract`: :func:`extract_faces` is the generator behind ``forensics faces extract``.

The names below stay importable from ``forensics_core.faces`` because that path is the documented Python API
(``docs/faces.md``) and the one plug-in face detectors were written against; code inside the repository imports
from the submodules.
"""

from __future__ import annotations

from forensics_core.faces.crops import (
    ARCFACE_TEMPLATE_112,
    CROP_POLICIES,
    EDGES,
    NATIVE_SNAP,
    TEMPLATE,
    CropSpec,
    FaceCrop,
    align_face,
    box_crop,
    canonical_landmarks,
    center_crop_face,
    center_square,
    crop_faces,
    cut_window,
    native_crop,
    native_window,
    similarity_transform,
)
from forensics_core.faces.detectors import (
    FACE_DETECTORS,
    FaceDetector,
    FastMTCNNDetector,
    MTCNNDetector,
    OpenCVDetector,
    face_detector_help,
    get_face_detector,
    mtcnn_faces,
)
from forensics_core.faces.extract import MEDIA_EXTENSIONS, ExtractConfig, ExtractedFace, extract_faces
from forensics_core.faces.tracking import IoUTracker, box_iou
from forensics_core.faces.types import LANDMARK_NAMES, Face

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "CROP_POLICIES",
    "EDGES",
    "FACE_DETECTORS",
    "LANDMARK_NAMES",
    "MEDIA_EXTENSIONS",
    "NATIVE_SNAP",
    "TEMPLATE",
    "CropSpec",
    "ExtractConfig",
    "ExtractedFace",
    "Face",
    "FaceCrop",
    "FaceDetector",
    "FastMTCNNDetector",
    "IoUTracker",
    "MTCNNDetector",
    "OpenCVDetector",
    "align_face",
    "box_crop",
    "box_iou",
    "canonical_landmarks",
    "center_crop_face",
    "center_square",
    "crop_faces",
    "cut_window",
    "extract_faces",
    "face_detector_help",
    "get_face_detector",
    "mtcnn_faces",
    "native_crop",
    "native_window",
    "similarity_transform",
]
