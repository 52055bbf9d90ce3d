"""Small helpers shared by the pixel analyses: face masks, region contrasts and normalised heatmaps."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from forensics.evidence import EvidenceResult, EvidenceSubject

# Pixel analyses work on at most this many pixels: a 50-megapixel photo would otherwise cost seconds per
# analysis. Downscaling blurs fine traces, so the factor is reported in each result's details.
MAX_ANALYSIS_PIXELS = 4_000_000


def limit_size(pixels: np.ndarray, boxes: list) -> tuple[np.ndarray, list, float]:
    """Downscale very large images (and their face boxes) for analysis; returns the scale factor used."""
    h, w = pixels.shape[:2]
    if h * w <= MAX_ANALYSIS_PIXELS:
        return pixels, list(boxes), 1.0
    import cv2

    s = math.sqrt(MAX_ANALYSIS_PIXELS / (h * w))
    small = cv2.resize(pixels, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
    return small, [tuple(c * s for c in b) for b in boxes], s


def face_mask(shape: tuple[int, int], boxes: list) -> np.ndarray:
    """Boolean HxW mask that is True inside any face box (clipped to the image)."""
    h, w = shape
    m = np.zeros((h, w), dtype=bool)
    for x1, y1, x2, y2 in boxes:
        xa, ya = max(0, int(x1)), max(0, int(y1))
        xb, yb = min(w, int(math.ceil(x2))), min(h, int(math.ceil(y2)))
        if xb > xa and yb > ya:
            m[ya:yb, xa:xb] = True
    return m


def region_contrast(
    values: np.ndarray, boxes: list, floor: float = 0.5
) -> tuple[float | None, float | None, float | None]:
    """Mean of ``values`` inside the faces, outside them, and the face/background ratio (None when undefined).

    Why a ratio: a face pasted or generated into a real photo usually went through a different pipeline
    (resampling, compression, denoising) than its surroundings, so its error level and noise differ in *relative*
    terms even when both are low in absolute terms. ``floor`` (in the values' units) is added to both means so
    that two near-zero levels (a grey image re-saved at its own quality) do not make a huge, meaningless ratio.
    """
    if not boxes:
        return None, None, None
    m = face_mask(values.shape[:2], boxes)
    if m.sum() < 16 or (~m).sum() < 16:
        return None, None, None
    inside, outside = float(values[m].mean()), float(values[~m].mean())
    ratio = (inside + floor) / (outside + floor)
    return inside, outside, ratio


def ratio_score(ratio: float | None, full_at: float = 3.0) -> float | None:
    """Map a face/background ratio to [0, 1]: 1 when the face differs by ``full_at`` times (either direction)."""
    if ratio is None:
        return None
    return float(min(1.0, abs(math.log(max(ratio, 1e-9))) / math.log(full_at)))


def contrast_strength(what: str, full_at: float = 3.0) -> str:
    """What a :func:`ratio_score` strength of face vs. background ``what`` means, for an analysis' registration."""
    return (
        f"face vs. background contrast of {what}: 0 = alike, 1 = one is {full_at:g}x the other or more "
        f"(|log ratio| / log {full_at:g})"
    )


def normalise(heat: np.ndarray, pct: float = 99.5) -> np.ndarray:
    """Scale to [0, 1] by a high percentile so a few hot pixels do not wash out the map."""
    heat = heat.astype(np.float32)
    hi = float(np.percentile(heat, pct)) if heat.size else 0.0
    if hi <= 1e-12:
        return np.zeros_like(heat, dtype=np.float32)
    return np.clip(heat / hi, 0.0, 1.0)


def to_gray(pixels: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma as float32 (the same weights JPEG uses for Y)."""
    p = pixels.astype(np.float32)
    return 0.299 * p[..., 0] + 0.587 * p[..., 1] + 0.114 * p[..., 2]


#: faces a face-vs-surround analysis looks at (the largest first): each costs a neighbourhood's worth of maps
MAX_SURROUND_FACES = 4


def subject_faces(subject, pixels_shape: tuple[int, ...], scale: float) -> list[np.ndarray]:
    """The 5 landmarks of the subject's largest faces (at most :data:`MAX_SURROUND_FACES`) in the coordinates of
    its pixels downscaled by ``scale`` (:func:`limit_size`): the detected points when the caller gave them, else
    :func:`landmarks_from_box`."""
    from detectors.inconsistency.locate import landmarks_from_box

    lms = list(getattr(subject, "face_landmarks", []) or [])
    faces = []
    for i, box in enumerate(subject.face_boxes):
        lm = np.asarray(lms[i], np.float64).reshape(5, 2) if i < len(lms) else landmarks_from_box(box)
        faces.append((-(box[2] - box[0]) * (box[3] - box[1]), i, lm * scale))
    h, w = pixels_shape[:2]
    out = [lm for _, _, lm in sorted(faces, key=lambda t: t[:2])]
    return [lm for lm in out if (lm[:, 0].max() > 0 and lm[:, 0].min() < w and lm[:, 1].max() > 0
                                 and lm[:, 1].min() < h)][:MAX_SURROUND_FACES]  # fmt: skip


def face_window(shape: tuple[int, ...], landmarks: np.ndarray, reach: float = 3.0, grid: int = 1) -> tuple[int, ...]:
    """``(x0, y0, x1, y1)``: the image part within ``reach`` times the face ellipse's larger semi-axis of its centre
    (the face and the surround an analysis compares it with), its origin snapped down to a multiple of ``grid``
    (8 keeps JPEG's block grid where the file has it)."""
    from detectors.inconsistency.regions import face_geometry

    g = face_geometry(landmarks)
    r = reach * g.eye_dist * max(g.axis_u, g.axis_v)
    cx = g.origin[0] - np.sin(g.angle) * g.centre_v * g.eye_dist
    cy = g.origin[1] + np.cos(g.angle) * g.centre_v * g.eye_dist
    h, w = shape[:2]
    x0, y0 = max(0, int(cx - r)) // grid * grid, max(0, int(cy - r)) // grid * grid
    return x0, y0, min(w, int(cx + r) + 1), min(h, int(cy + r) + 1)


def paste_max(full: np.ndarray, part: np.ndarray, x0: int, y0: int) -> None:
    """``full[y0:, x0:] = max(full, part)`` over ``part``'s extent: each face's map onto the image's."""
    h, w = part.shape[:2]
    full[y0 : y0 + h, x0 : x0 + w] = np.maximum(full[y0 : y0 + h, x0 : x0 + w], part)


def per_face(subject, fn, reach: float = 3.0, grid: int = 1) -> tuple[list, np.ndarray, float]:
    """Run ``fn(window_pixels, window_landmarks) -> (finding, heat)`` on each face's neighbourhood (at most
    :data:`MAX_SURROUND_FACES`, after :func:`limit_size`); returns the findings, the image-size heatmap (max over
    faces, 0 elsewhere) and the analysis scale."""
    pixels, boxes, scale = limit_size(subject.pixels, subject.face_boxes)
    heat = np.zeros(pixels.shape[:2], np.float32)
    findings = []
    for lm in subject_faces(subject, pixels.shape, scale):
        x0, y0, x1, y1 = face_window(pixels.shape, lm, reach, grid)
        if x1 - x0 < 16 or y1 - y0 < 16:
            continue
        finding, part = fn(pixels[y0:y1, x0:x1], lm - [x0, y0])
        findings.append(finding)
        paste_max(heat, part, x0, y0)
    return findings, heat, scale


#: how the face-vs-surround analyses word their strength scale (each analysis names its statistics)
REAL_SCALE_TEXT = (
    "0 = as typical real photos (the median of 300 shared training reals saved as JPEG q85), 1 = beyond 99 % of "
    "them (python -m benchmarks.evidence_scales)"
)


def real_scale(value: float | None, median: float, p99: float) -> float:
    """A statistic on the scale of real photos: 0 at their median, 1 at their 99th percentile (clipped): a strength
    an analyst may read as "strong" is rare on real photos by construction."""
    if value is None or not np.isfinite(value):
        return 0.0
    return float(np.clip((value - median) / max(p99 - median, 1e-9), 0.0, 1.0))


#: what a face-vs-surround analysis says when the subject has no face whose neighbourhood it could read
NO_SURROUND_FACE = "No face to compare with its surround."


def surround_result(
    name: str,
    subject: EvidenceSubject,
    face_fn: Callable[[np.ndarray, np.ndarray], tuple[dict[str, Any], np.ndarray]],
    judge: Callable[[dict[str, Any]], tuple[float, str]],
    no_face: str = NO_SURROUND_FACE,
) -> EvidenceResult:
    """The result of a face-vs-surround analysis: ``face_fn`` run on each face's neighbourhood (:func:`per_face`)
    and the largest face's finding put into a strength and a sentence by ``judge``; without a face, no strength.
    The details hold every face's finding and the analysis scale, so a reader can check what the sentence rests on."""
    findings, heat, scale = per_face(subject, face_fn)
    if not findings:
        return EvidenceResult(name, "file", None, no_face, {"analysis_scale": scale})
    score, summary = judge(findings[0])
    return EvidenceResult(name, "file", score, summary, {"faces": findings, "analysis_scale": scale}, heat)
