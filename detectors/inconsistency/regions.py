"""The face's regions from its 5 landmarks: an elliptical face frame (:class:`FaceGeometry`) whose normalised
radius ``rho`` splits the image into the inner face (``core``), the ``band`` where swap seams lie and the
``surround``, plus boxes for the eyes, nose and mouth and the remaining facial ``skin`` they are compared with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: rho limits of the regions: inner face, the band a swap's blending boundary lies in, and the surround
CORE_RHO, BAND_RHO, SURROUND_RHO = 0.8, 1.25, 2.2
#: parts a splice replaces, in the order of CIPLAB's 4-bit region code (left eye, right eye, nose, mouth)
PARTS = ("left_eye", "right_eye", "nose", "mouth")
REGIONS = ("core", "band", "surround", "skin", *PARTS)


# ----------------------------------------------------------------------------------------------------------------
# geometry: an elliptical face frame from 5 landmarks
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaceGeometry:
    """The face frame: origin at the eye midpoint, ``u`` along the eye line and ``v`` towards the mouth, both in
    units of the eye distance; the face ellipse (``rho == 1``) is centred at ``(0, centre_v)`` with semi-axes
    ``axis_u`` / ``axis_v``. Built from MTCNN's 5 points so it follows roll and scale without 68-point landmarks."""

    origin: tuple[float, float]
    angle: float
    eye_dist: float
    points_uv: tuple[tuple[float, float], ...]
    centre_v: float
    axis_u: float
    axis_v: float


def face_geometry(landmarks: np.ndarray) -> FaceGeometry:
    """The frame of one face from its ``(5, 2)`` landmarks (left eye, right eye, nose, mouth left, mouth right).

    The ellipse covers what face swaps replace (brows to chin, cheek to cheek): its centre lies 45 % of the way
    from the eyes to the mouth, its half-height is 1.15 eye-to-mouth distances and its half-width 0.95 eye
    distances (fitted by eye to the ArcFace template's face, not to any evaluation data)."""
    p = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eye_mid = (p[0] + p[1]) / 2
    dx, dy = p[1] - p[0]
    d = max(math.hypot(dx, dy), 1.0)
    angle = math.atan2(dy, dx)
    c, s = math.cos(angle), math.sin(angle)
    rel = p - eye_mid
    uv = np.stack([(rel[:, 0] * c + rel[:, 1] * s) / d, (-rel[:, 0] * s + rel[:, 1] * c) / d], axis=1)
    mouth_v = max(float(uv[3:, 1].mean()), 0.5)
    return FaceGeometry(
        origin=(float(eye_mid[0]), float(eye_mid[1])), angle=angle, eye_dist=d,
        points_uv=tuple((float(a), float(b)) for a, b in uv),
        centre_v=0.45 * mouth_v, axis_u=0.95, axis_v=1.15 * mouth_v,
    )  # fmt: skip


def face_coords(shape: tuple[int, int], geom: FaceGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``u``, ``v`` (face frame) and ``rho`` (normalised elliptical radius) of every pixel of an HxW image."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = math.cos(geom.angle), math.sin(geom.angle)
    x, y = xx - geom.origin[0], yy - geom.origin[1]
    u = (x * c + y * s) / geom.eye_dist
    v = (-x * s + y * c) / geom.eye_dist
    rho = np.sqrt((u / geom.axis_u) ** 2 + ((v - geom.centre_v) / geom.axis_v) ** 2)
    return u, v, rho


def part_masks(u: np.ndarray, v: np.ndarray, geom: FaceGeometry) -> dict[str, np.ndarray]:
    """Boxes of the two eyes, the nose and the mouth in the face frame (what an eye / nose / mouth splice
    replaces): an eye 0.64 x 0.4 eye distances, the nose from below the eyes to just under its tip, the mouth
    0.15 beyond its corners and 0.22 above and below."""
    le, re, nose, ml, mr = geom.points_uv
    out = {}
    for name, (eu, ev) in (("left_eye", le), ("right_eye", re)):
        out[name] = (np.abs(u - eu) < 0.32) & (np.abs(v - ev) < 0.2)
    out["nose"] = (np.abs(u - nose[0]) < 0.22) & (v > 0.22) & (v < nose[1] + 0.14)
    mv = (ml[1] + mr[1]) / 2
    out["mouth"] = (u > ml[0] - 0.15) & (u < mr[0] + 0.15) & (np.abs(v - mv) < 0.22)
    return out


@dataclass
class Regions:
    """Boolean masks of one face's regions in an image, plus its ``rho`` map (see :data:`REGIONS`)."""

    rho: np.ndarray
    masks: dict[str, np.ndarray]


def face_regions(shape: tuple[int, int], landmarks: np.ndarray) -> Regions:
    """The regions of the face with ``landmarks`` in an HxW image."""
    geom = face_geometry(landmarks)
    u, v, rho = face_coords(shape, geom)
    parts = part_masks(u, v, geom)
    any_part = np.zeros(shape, bool)
    for m in parts.values():
        any_part |= m
    masks = {
        "core": rho <= CORE_RHO,
        "band": (rho > CORE_RHO) & (rho <= BAND_RHO),
        "surround": (rho > BAND_RHO) & (rho <= SURROUND_RHO),
        "skin": (rho <= 1.0) & ~any_part & (v > -0.35),
        **parts,
    }
    return Regions(rho, masks)


def template_landmarks(size: int, margin: float) -> np.ndarray:
    """Where the 5 landmarks lie in a model crop of ``size`` px with ``margin`` context (the alignment template;
    a ``native`` crop keeps the alignment's framing, so its face lies there too up to the head's roll)."""
    from forensics_core.faces.crops import canonical_landmarks

    return canonical_landmarks(size, margin)


@lru_cache(maxsize=8)
def crop_regions(size: int, margin: float) -> Regions:
    """:func:`face_regions` of the template face of a ``size`` px crop (cached: every crop of a model shares it)."""
    return face_regions((size, size), template_landmarks(size, margin))
