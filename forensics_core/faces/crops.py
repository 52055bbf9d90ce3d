"""5-point alignment and the one crop step (:func:`crop_faces`) that turns an image and its faces into detector crops.

Alignment geometry and the crop policies (``align`` / ``center`` / ``native``) live together because
:func:`crop_faces` is their only composer: a crop policy is a choice between these functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from forensics_core.degrade import resize_to
from forensics_core.errors import UsageError
from forensics_core.faces.types import Face

# ArcFace / InsightFace 112x112 template (left eye, right eye, nose tip, left mouth corner, right mouth corner),
# "left" meaning the image's left. The de-facto standard for 5-point alignment; normalised to [0, 1].
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
TEMPLATE = ARCFACE_TEMPLATE_112 / 112.0


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
) -> tuple[int, int, int]:  # fmt: skip
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
) -> np.ndarray:  # fmt: skip
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
    so in a tightly framed photo the face fills more of the input than in any training crop and sits elsewhere in
    it (measured on v14: StyleGAN2 vs FFHQ AUC 0.966 on the full 512 px photos, 0.559 on their centre 75 %; the
    transfer ``window-probe`` protocol puts most of that on the window's position); ``reflect`` keeps the
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
    :func:`native_crop`) and ``margin`` context. A model's ``detectors.base.PreprocessSpec`` is a CropSpec that
    adds the normalisation and is passed as is; callers without a model (importers, ``faces extract``, training
    views of stored landmarks) build one."""

    size: int = 224
    crop: str = "align"
    margin: float = 0.3
    #: ``native`` only: ``clamp`` or ``reflect`` where the window reaches past the photo (:func:`native_crop`)
    edge: str = "clamp"

    def __post_init__(self) -> None:
        if self.crop not in CROP_POLICIES:
            raise UsageError(f"preprocess crop must be one of {CROP_POLICIES}, got '{self.crop}'")
        if self.edge not in EDGES:
            raise UsageError(f"preprocess edge must be one of {EDGES}, got '{self.edge}'")


@dataclass
class FaceCrop:
    """One crop and where it came from. ``face`` is None for the whole-image centre crop (no face given)."""

    pixels: np.ndarray
    face: Face | None
    aligned: bool  # False: box crop (``center`` policy or approximate landmarks) or the no-face fallback

    @property
    def no_face(self) -> bool:
        return self.face is None


def crop_faces(
    image: np.ndarray, faces: Sequence[Face], spec: CropSpec, *, align_approx: bool = False
) -> list[FaceCrop]:
    """The crops a detector sees of ``faces`` in ``image``, in order, cut as ``spec`` (a :class:`CropSpec`, e.g. a
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
            out.append(FaceCrop(native_crop(image, face.landmarks, spec.size, spec.margin, spec.edge), face, False))
        elif spec.crop == "align" and (align_approx or not getattr(face, "approx_landmarks", False)):
            out.append(FaceCrop(align_face(image, face.landmarks, size=spec.size, margin=spec.margin), face, True))
        else:
            out.append(FaceCrop(box_crop(image, face.box, spec.size, spec.margin), face, False))
    return out
