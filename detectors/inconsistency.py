"""Face-versus-surround inconsistency: what a pasted face does not share with the photo it was pasted into.

A swapped or spliced face was photographed, resampled, colour-corrected and often compressed somewhere else before
it was blended into its target. Its camera noise, its sharpness, its colour and its compression history therefore
differ from the surround's, and the blend leaves a boundary where they change. None of this needs a GPU, and each
statistic is something an analyst can point at. This module computes, from one face's 5 landmarks:

- **regions**: an elliptical face frame (:class:`FaceGeometry`) whose normalised radius ``rho`` splits the image into
  the inner face (``core``), the ``band`` where swap seams lie, and the ``surround``; boxes for the eyes, nose and
  mouth (what splices replace) and the remaining facial ``skin`` they are compared with;
- **maps**: the noise residual (image minus its 3x3 median), its local level, three difference-of-Gaussian
  bands of the luma (the residual spectrum: a resampled or denoised face loses the top band first), colour, the
  co-occurrences of the quantised third-order residual (the Splicebuster statistic, Cozzolino et al. 2015) and the
  8x8 JPEG block grid (strength and phase);
- **features** (:func:`crop_features`): per-region statistics of those maps and their face/surround contrasts,
  boundary profiles across rings of ``rho``: the vector the ``surround`` detector classifies;
- **anomaly maps** (:func:`anomaly_maps`) on a whole photo, each measured against the face's own surround, which
  the evidence analyses show and :func:`localise` turns into a mask.

Why a model of the surround rather than of "real faces": the surround is the one reference that shares the
photo's camera and delivery, so a contrast with it stays meaningful on a photo from a camera no training set held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: rho limits of the regions: inner face, the band a swap's blending boundary lies in, and the surround
CORE_RHO, BAND_RHO, SURROUND_RHO = 0.8, 1.25, 2.2
#: rings of rho for the boundary profiles (a step or spike between two rings is a seam)
RING_EDGES = (0.5, 0.65, 0.8, 0.92, 1.04, 1.16, 1.28, 1.45, 1.65, 1.9)
#: difference-of-Gaussian scales (px): band k is G(s_{k-1}) - G(s_k) with s_0 = 0 (the image itself)
DOG_SIGMAS = (0.6, 1.2, 2.4)
#: co-occurrence residual: quantisation step and truncation (T=1: 3 levels, 3^4 = 81 four-pixel patterns)
COOC_Q, COOC_T = 2.0, 1
COOC_BINS = (2 * COOC_T + 1) ** 4
#: parts a splice replaces, in the order of CIPLAB's 4-bit region code (left eye, right eye, nose, mouth)
PARTS = ("left_eye", "right_eye", "nose", "mouth")
REGIONS = ("core", "band", "surround", "skin", *PARTS)
EPS = 1e-6
#: the version of :func:`crop_features` (bump it with any change of what a column means): a ``surround`` model file
#: records the version it was fitted on and is refused by code that computes another
FEATURES_VERSION = 1
TEXTURE = ("noise", "e1", "e2", "e3")
COLOUR = ("y", "cb", "cr")
#: the contrasts the detector reads: (a, b) region pairs compared by difference of their statistics
PAIRS = (("core", "surround"), ("band", "surround"), ("core", "band"), ("skin", "surround"))
PART_PAIRS = tuple((p, "skin") for p in PARTS)
#: skin against skin across the boundary (skin-coloured pixels only): the inner face, the band, the surround (the
#: forehead, neck and ears a swap leaves in place). Like is compared with like, so a textured background or a
#: blurred one does not read as a face-vs-surround contrast
SKIN_PAIRS = (("core", "band"), ("core", "surround"), ("band", "surround"))


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


# The MTCNN box fractions of the 5 landmarks (left eye, right eye, nose, mouth left, mouth right): medians over the
# shared training reals' detections. A face known only by its box gets its points here (upright, frontal).
BOX_LANDMARKS = np.array([[0.281, 0.39], [0.745, 0.388], [0.51, 0.595], [0.304, 0.746], [0.724, 0.748]])
#: O-Net confidence below which a crop keeps the template's landmarks
LOCATE_MIN_PROB = 0.8
#: sizes of the candidate face boxes O-Net is shown, relative to the template's: a crop cut from a photo framed
#: tighter than the crop window (a head shot, a UTKFace crop: ``native`` clamps the window to the photo) holds a
#: face larger than the template's
LOCATE_SCALES = (1.0, 1.35, 1.8, 2.4)
#: refinement passes after the best candidate (each moves the box by O-Net's regression)
LOCATE_PASSES = 1


def landmarks_from_box(box: tuple[float, float, float, float]) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([x1, y1]) + BOX_LANDMARKS * np.array([x2 - x1, y2 - y1])


def box_from_landmarks(lm: np.ndarray) -> np.ndarray:
    """The MTCNN-style box whose :data:`BOX_LANDMARKS` are closest to ``lm`` (inverse of :func:`landmarks_from_box`
    in the least-squares sense, per axis)."""
    lm = np.asarray(lm, np.float64).reshape(5, 2)
    out = []
    for k in (0, 1):
        a = np.stack([1.0 - BOX_LANDMARKS[:, k], BOX_LANDMARKS[:, k]], axis=1)  # lm = (1-f) x1 + f x2
        out.append(np.linalg.lstsq(a, lm[:, k], rcond=None)[0])
    return np.array([out[0][0], out[1][0], out[0][1], out[1][1]])


@lru_cache(maxsize=1)
def _onet():
    """MTCNN's O-Net with facenet-pytorch's shipped weights (the scan's face detector's last stage)."""
    from facenet_pytorch.models.mtcnn import ONet

    return ONet(pretrained=True).eval()


def _onet_pass(rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """O-Net on square ``boxes`` (N, 4): probabilities (N,), regressed boxes (N, 4), landmarks (N, 5, 2)."""
    import cv2
    import torch

    crops = []
    for x1, y1, x2, y2 in boxes:
        side = max(x2 - x1, y2 - y1)
        m = np.array([[48.0 / side, 0, -x1 * 48.0 / side], [0, 48.0 / side, -y1 * 48.0 / side]], np.float32)
        crops.append(cv2.warpAffine(np.asarray(rgb, np.float32), m, (48, 48), flags=cv2.INTER_AREA))
    x = (torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2) - 127.5) * 0.0078125
    with torch.no_grad():
        reg, pts, prob = (t.double().numpy() for t in _onet()(x))
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    lm = np.stack([boxes[:, :1] + w * pts[:, :5], boxes[:, 1:2] + h * pts[:, 5:]], axis=2)
    out = boxes + reg * np.concatenate([w, h, w, h], axis=1)
    return prob[:, 1], out, lm


def _square(b: np.ndarray) -> np.ndarray:
    c = (b[:, :2] + b[:, 2:]) / 2
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])[:, None]
    return np.concatenate([c - side / 2, c + side / 2], axis=1)


def locate_landmarks(rgb: np.ndarray, margin: float) -> tuple[np.ndarray, float]:
    """The face's 5 landmarks in a model crop and O-Net's confidence, or the crop template's and 0.

    Why: the ``native`` window is clamped to the photo, so in a tightly framed photo (a UTKFace crop, a studio head
    shot) the face fills more of the crop than the template says, and regions cut at the template would compare
    cheek with nose instead of face with surround. O-Net (MTCNN's last stage, ~1 ms) is shown boxes of
    :data:`LOCATE_SCALES` around the template's face and refines the best once more."""
    size = rgb.shape[0]
    tpl = template_landmarks(size, margin)
    box = box_from_landmarks(tpl)
    c, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2
    cands = _square(np.array([np.r_[c - s * half, c + s * half] for s in LOCATE_SCALES]))
    prob, reg, _ = _onet_pass(rgb, cands)
    best = _square(reg[[int(prob.argmax())]])
    for _ in range(LOCATE_PASSES):  # O-Net's box regression moves a box part of the way: follow it
        p2, reg2, lm = _onet_pass(rgb, best)
        best = _square(reg2)
    if p2[0] < LOCATE_MIN_PROB:
        return tpl, 0.0
    return lm[0], float(p2[0])


@lru_cache(maxsize=8)
def crop_regions(size: int, margin: float) -> Regions:
    """:func:`face_regions` of the template face of a ``size`` px crop (cached: every crop of a model shares it)."""
    return face_regions((size, size), template_landmarks(size, margin))


# ----------------------------------------------------------------------------------------------------------------
# maps
# ----------------------------------------------------------------------------------------------------------------
def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB image in 0..255 as float32 (the Y JPEG compresses)."""
    p = np.asarray(rgb, dtype=np.float32)
    return 0.299 * p[..., 0] + 0.587 * p[..., 1] + 0.114 * p[..., 2]


def chroma(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """JPEG's Cb and Cr (0..255, neutral at 128) as float32."""
    p = np.asarray(rgb, dtype=np.float32)
    r, g, b = p[..., 0], p[..., 1], p[..., 2]
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return cb, cr


def noise_residual(gray: np.ndarray) -> np.ndarray:
    """Luma minus its 3x3 median: sensor noise and compression noise, with most image content removed."""
    import cv2

    g8 = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    return gray - cv2.medianBlur(g8, 3).astype(np.float32)


def dog_bands(gray: np.ndarray) -> list[np.ndarray]:
    """Difference-of-Gaussian bands of the luma, finest first (:data:`DOG_SIGMAS`): the residual spectrum in
    three octaves. Resampling, denoising or a soft blend remove the finest band before the others."""
    import cv2

    prev, out = gray, []
    for s in DOG_SIGMAS:
        cur = cv2.GaussianBlur(gray, (0, 0), s)
        out.append(prev - cur)
        prev = cur
    return out


def gradient_magnitude(gray: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    import cv2

    g = cv2.GaussianBlur(gray, (0, 0), sigma)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


def cooc_codes(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Four-pixel co-occurrence codes (0..80) of the quantised, truncated third-order residual, horizontal and
    vertical (each shorter by 6 px along its axis): Splicebuster's local statistic. Two regions photographed or
    compressed apart have different code histograms even where their noise *levels* agree."""
    k = np.array([1.0, -3.0, 3.0, -1.0], np.float32)
    n = 2 * COOC_T + 1

    def codes(a: np.ndarray) -> np.ndarray:  # along the last axis
        r = k[0] * a[..., :-3] + k[1] * a[..., 1:-2] + k[2] * a[..., 2:-1] + k[3] * a[..., 3:]
        q = (np.clip(np.rint(r / COOC_Q), -COOC_T, COOC_T) + COOC_T).astype(np.int16)
        return q[..., :-3] * n**3 + q[..., 1:-2] * n**2 + q[..., 2:-1] * n + q[..., 3:]

    return codes(gray), codes(gray.T).T


def block_profile(gray: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Log mean absolute luma step between neighbouring columns (``ax``) and rows (``ay``) at each offset mod 8
    (inside ``mask``), or None with too few samples: a JPEG-compressed region steps more at its block boundaries."""
    dx = np.abs(np.diff(gray, axis=1))
    dy = np.abs(np.diff(gray, axis=0))
    if mask is not None:
        mx, my = mask[:, 1:] & mask[:, :-1], mask[1:, :] & mask[:-1, :]
    else:
        mx, my = np.ones(dx.shape, bool), np.ones(dy.shape, bool)
    cols = np.arange(dx.shape[1]) % 8
    rows = np.arange(dy.shape[0]) % 8
    sx = np.bincount(np.broadcast_to(cols, dx.shape)[mx], dx[mx], minlength=8)
    nx = np.bincount(np.broadcast_to(cols, dx.shape)[mx], minlength=8)
    sy = np.bincount(np.broadcast_to(rows[:, None], dy.shape)[my], dy[my], minlength=8)
    ny = np.bincount(np.broadcast_to(rows[:, None], dy.shape)[my], minlength=8)
    if nx.min() < 4 or ny.min() < 4:
        return None
    return np.log(sx / nx + EPS), np.log(sy / ny + EPS)


def blockiness(gray: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, int]:
    """JPEG 8x8 grid strength and phase (:func:`block_profile`): the strongest column and row offsets' excess over
    the median offset (log units, mean of the two axes) and the phase ``8 * py + px`` (-1: too few samples)."""
    prof = block_profile(gray, mask)
    if prof is None:
        return 0.0, -1
    ax, ay = prof
    px, py = int(ax.argmax()), int(ay.argmax())
    strength = 0.5 * (ax[px] - np.median(ax) + ay[py] - np.median(ay))
    return float(strength), 8 * py + px


# ----------------------------------------------------------------------------------------------------------------
# per-region statistics and the detector's feature vector
# ----------------------------------------------------------------------------------------------------------------
def _flat_noise(res_abs: np.ndarray, grad: np.ndarray, mask: np.ndarray) -> float:
    """Robust noise level of a region: the median absolute residual over its flatter half (texture and edges
    leak into any residual; the flat half is where it is mostly noise), as a Gaussian sigma (MAD / 0.6745)."""
    if mask.sum() < 8:
        return float("nan")
    g = grad[mask]
    flat = g <= np.median(g)
    return float(np.median(res_abs[mask][flat]) / 0.6745)


def _hist(codes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    h = np.bincount(codes[mask].ravel(), minlength=COOC_BINS).astype(np.float64)
    return h / max(h.sum(), 1.0)


def _chi2(a: np.ndarray, b: np.ndarray) -> float:
    return float(0.5 * np.sum((a - b) ** 2 / (a + b + EPS)))


@dataclass
class Maps:
    """The per-pixel maps every statistic reads, computed once per image (see the module docstring)."""

    gray: np.ndarray
    res_abs: np.ndarray
    grad: np.ndarray
    bands: list[np.ndarray]  # squared DoG bands (local energy), finest first
    cb: np.ndarray
    cr: np.ndarray
    hcodes: np.ndarray
    vcodes: np.ndarray


def compute_maps(rgb: np.ndarray) -> Maps:
    gray = luma(rgb)
    cb, cr = chroma(rgb)
    hc, vc = cooc_codes(gray)
    return Maps(
        gray, np.abs(noise_residual(gray)), gradient_magnitude(gray), [b * b for b in dog_bands(gray)], cb, cr, hc, vc
    )


def texture_stats(maps: Maps, m: np.ndarray) -> dict[str, float]:
    """Log noise level and log energy of each DoG band over mask ``m`` (NaN when it has fewer than 8 pixels)."""
    if m.sum() < 8:
        return dict.fromkeys(TEXTURE, float("nan"))
    out = {"noise": math.log(_flat_noise(maps.res_abs, maps.grad, m) + 0.05)}
    for k, b in enumerate(maps.bands):
        out[f"e{k + 1}"] = math.log(float(b[m].mean()) + 0.01)
    return out


def region_stats(maps: Maps, regions: Regions) -> dict[str, dict[str, float]]:
    """Per region: log noise level, log energy of each DoG band, mean luma / Cb / Cr, and (for the face regions)
    the co-occurrence histogram's chi-square distance to the surround's."""
    out: dict[str, dict[str, float]] = {}
    ref = _hist(maps.hcodes, regions.masks["surround"][:, 3:-3]) + _hist(maps.vcodes, regions.masks["surround"][3:-3])
    for name in REGIONS:
        m = regions.masks[name]
        big = m.sum() >= 8
        st: dict[str, float] = {"n": float(m.sum()), **texture_stats(maps, m)}
        for key, arr in (("y", maps.gray), ("cb", maps.cb), ("cr", maps.cr)):
            st[key] = float(arr[m].mean()) if big else float("nan")
        hist = _hist(maps.hcodes, m[:, 3:-3]) + _hist(maps.vcodes, m[3:-3, :])
        st["cooc"] = _chi2(hist / 2, ref / 2) if name != "surround" else 0.0
        out[name] = st
    return out


def ring_profile(values: np.ndarray, ring: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    n = len(RING_EDGES) - 1
    ok = ring >= 0
    w = np.ones(values.shape, np.float64)[ok] if weights is None else weights[ok].astype(np.float64)
    s = np.bincount(ring[ok], values[ok] * w, minlength=n)[:n]
    c = np.bincount(ring[ok], w, minlength=n)[:n]
    return np.where(c > 4, s / np.maximum(c, EPS), np.nan)


def ring_jumps(profile: np.ndarray) -> tuple[float, float]:
    """Largest step between consecutive rings relative to the typical step, and where (the ring boundary's rho)."""
    d = np.abs(np.diff(profile))
    if not np.isfinite(d).any():
        return 0.0, 0.0
    d = np.nan_to_num(d, nan=0.0)
    i = int(d.argmax())
    return float(d[i] / (np.median(d) + 0.05)), float(RING_EDGES[i + 1])


def ring_index(rho: np.ndarray) -> np.ndarray:
    """Each pixel's ring of :data:`RING_EDGES` (-1 outside them)."""
    ring = np.digitize(rho, RING_EDGES) - 1
    ring[(rho < RING_EDGES[0]) | (rho >= RING_EDGES[-1])] = -1
    return ring.astype(np.int64)




def feature_names() -> list[str]:
    """Names of :func:`crop_features`' columns, in order (model cards and tests read them)."""
    names = [f"global_{k}" for k in (*TEXTURE, "y", "sat", "block", "grad")]
    names += [f"{a}-{b}_{k}" for a, b in PAIRS for k in (*TEXTURE, *COLOUR)]
    names += [f"{a}-{b}_{k}" for a, b in PART_PAIRS for k in (*TEXTURE, *COLOUR)]
    names += [f"cooc_{r}" for r in ("core", "band", "skin", *PARTS)]
    names += ["slope12_core-surround", "slope23_core-surround"]
    names += [f"ring_{k}_{q}" for k in ("noise", "e1", "grad", "cb", "cr", "y") for q in ("jump", "at")]
    names += ["block_core", "block_surround", "block_phase_agree"]
    names += [f"skin_{a}-{b}_{k}" for a, b in SKIN_PAIRS for k in TEXTURE]
    names += [f"ring_skin_{k}_{q}" for k in ("noise", "e1") for q in ("jump", "at")]
    names += [f"eyes_asym_{k}" for k in (*TEXTURE, *COLOUR)]
    return names


def crop_face_regions(rgb: np.ndarray, margin: float, locate: bool = True) -> Regions:
    """The regions of the face in a model crop: at its located landmarks (:func:`locate_landmarks`) when
    ``locate``, else (or when O-Net finds no face) at the crop template for ``margin``."""
    if not locate:
        return crop_regions(rgb.shape[0], margin)
    lm, prob = locate_landmarks(rgb, margin)
    return face_regions(rgb.shape[:2], lm) if prob > 0 else crop_regions(rgb.shape[0], margin)


def crop_features(rgb: np.ndarray, margin: float, locate: bool = True) -> np.ndarray:
    """The feature vector of one square model crop (uint8 or float RGB in 0..255) cut for ``margin``: face-region
    statistics minus surround statistics, part-minus-skin contrasts, co-occurrence distances, residual-spectrum
    slopes, boundary ring profiles and JPEG grid agreement, with the regions where the face is
    (:func:`crop_face_regions`)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    regions = crop_face_regions(rgb, margin, locate)
    mp = compute_maps(rgb)
    st = region_stats(mp, regions)
    whole = np.ones(mp.gray.shape, bool)
    f: list[float] = [
        math.log(_flat_noise(mp.res_abs, mp.grad, whole) + 0.05),
        *[math.log(float(b.mean()) + 0.01) for b in mp.bands],
        float(mp.gray.mean()) / 255.0, float(np.mean(rgb.max(axis=2) - rgb.min(axis=2))) / 255.0,
        blockiness(mp.gray)[0], math.log(float(mp.grad.mean()) + 0.01),
    ]  # fmt: skip
    for a, b in (*PAIRS, *PART_PAIRS):
        for k in (*TEXTURE, *COLOUR):
            f.append(st[a][k] - st[b][k])
    for r in ("core", "band", "skin", *PARTS):
        f.append(st[r]["cooc"])
    f.append((st["core"]["e1"] - st["core"]["e2"]) - (st["surround"]["e1"] - st["surround"]["e2"]))
    f.append((st["core"]["e2"] - st["core"]["e3"]) - (st["surround"]["e2"] - st["surround"]["e3"]))
    ring = ring_index(regions.rho)
    skin = skin_like(mp.cb, mp.cr)
    for vals, wts in (
        (np.log(mp.res_abs + 0.5), None), (np.log(mp.bands[0] + 0.01), None), (np.log(mp.grad + 0.01), None),
        (mp.cb, skin), (mp.cr, skin), (mp.gray, skin),
    ):  # fmt: skip
        f.extend(ring_jumps(ring_profile(vals, ring, wts)))
    b_core, p_core = blockiness(mp.gray, regions.masks["core"])
    b_sur, p_sur = blockiness(mp.gray, regions.masks["surround"])
    f += [b_core, b_sur, float(p_core == p_sur and p_core >= 0)]
    skin_tex = {r: texture_stats(mp, regions.masks[r] & skin) for r in ("core", "band", "surround")}
    for a, b in SKIN_PAIRS:
        f += [skin_tex[a][k] - skin_tex[b][k] for k in TEXTURE]
    f.extend(ring_jumps(ring_profile(np.log(mp.res_abs + 0.5), ring, skin)))
    f.extend(ring_jumps(ring_profile(np.log(mp.bands[0] + 0.01), ring, skin)))
    # a face is near-symmetric: one eye spliced from another photo breaks that
    f += [abs(st["left_eye"][k] - st["right_eye"][k]) for k in (*TEXTURE, *COLOUR)]
    out = np.asarray(f, dtype=np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


#: the skin gamut in JPEG's Cb / Cr (Chai & Ngan 1999, widened for dark and pale skin under coloured light)
SKIN_CB, SKIN_CR = (70.0, 135.0), (133.0, 180.0)


def skin_like(cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """Skin-coloured pixels (a fixed gamut, not the face's own colour: a pasted face whose tone is off must still
    count as skin on both sides of its seam), so colour and texture are compared skin to skin across the boundary
    and hair or background at the sides do not read as a seam. Grey photos have none: their colour features are
    0 and their texture features fall back to all pixels of a ring."""
    return (cb >= SKIN_CB[0]) & (cb <= SKIN_CB[1]) & (cr >= SKIN_CR[0]) & (cr <= SKIN_CR[1])


# ----------------------------------------------------------------------------------------------------------------
# anomaly maps: each neighbourhood measured against the face's own surround (evidence, explain, localisation)
# ----------------------------------------------------------------------------------------------------------------
#: robust z-score at which a map reads 1 (a neighbourhood this far from the surround's spread is an outlier)
Z_FULL = 6.0


def window_px(eye_dist: float) -> int:
    """The local-statistics window for a face: 0.4 eye distances (odd, 7..41 px), small enough to outline an
    eye or a mouth, large enough for a stable noise estimate."""
    return int(np.clip(round(0.4 * eye_dist), 7, 41)) | 1


def _box(a: np.ndarray, win: int) -> np.ndarray:
    import cv2

    return cv2.boxFilter(a.astype(np.float32), -1, (win, win), normalize=True, borderType=cv2.BORDER_REFLECT)


def noise_level_map(mp: Maps, win: int) -> np.ndarray:
    """Local log noise level: the residual's mean magnitude over the flatter pixels of each window (weights
    fall with the gradient, so edges and texture count less than smooth skin and sky)."""
    wgt = np.exp(-mp.grad / (float(np.median(mp.grad)) + 1.0))
    return np.log(_box(mp.res_abs * wgt, win) / (_box(wgt, win) + EPS) + 0.05)


def spectrum_map(mp: Maps, win: int) -> np.ndarray:
    """Local residual-spectrum slope: log energy of the finest DoG band over the next one. A resampled, denoised or
    softly blended region loses the finest band first, so its slope falls."""
    return np.log(_box(mp.bands[0], win) + 0.01) - np.log(_box(mp.bands[1], win) + 0.01)


def colour_dev_map(mp: Maps, regions: Regions, win: int) -> np.ndarray:
    """Local skin tone minus the surround's (Euclidean in Cb / Cr units), on skin-like pixels only (others: 0). The
    surround's skin (forehead, neck, ears: what a swap leaves in place) is the reference; with too little of it,
    the face's own skin is. A pasted face whose colour correction missed shows as a patch of shifted tone."""
    like = skin_like(mp.cb, mp.cr)
    ref = like & (regions.masks["surround"] | regions.masks["band"])
    if ref.sum() < 32:
        ref = like & regions.masks["skin"]
    if ref.sum() < 8:
        return np.zeros(mp.gray.shape, np.float32)
    mb, mr = float(np.median(mp.cb[ref])), float(np.median(mp.cr[ref]))
    w = like.astype(np.float32)
    cover = _box(w, win)
    cb = _box(mp.cb * w, win) / (cover + EPS)
    cr = _box(mp.cr * w, win) / (cover + EPS)
    return np.where(cover > 0.3, np.hypot(cb - mb, cr - mr), 0.0).astype(np.float32)


def block_histograms(codes: np.ndarray, stride: int) -> np.ndarray:
    """Co-occurrence histograms of ``stride`` px blocks ``(H // stride, W // stride, COOC_BINS)`` (counts)."""
    h, w = (codes.shape[0] // stride) * stride, (codes.shape[1] // stride) * stride
    if h == 0 or w == 0:
        return np.zeros((0, 0, COOC_BINS))
    by = np.arange(h)[:, None] // stride * (w // stride) + np.arange(w)[None, :] // stride
    nb = (h // stride) * (w // stride)
    flat = np.bincount((by * COOC_BINS + codes[:h, :w]).ravel(), minlength=nb * COOC_BINS)
    return flat.reshape(h // stride, w // stride, COOC_BINS).astype(np.float64)


def cooc_map(mp: Maps, regions: Regions, win: int) -> np.ndarray:
    """Distance of every neighbourhood's co-occurrence histogram from the surround's distribution of them
    (regularised Mahalanobis on square-root histograms of 2x2-block windows), as a per-pixel map. The surround
    is the model of "this photo's" residual statistics; Splicebuster fits such a model without knowing where the
    host is, here the face tells us."""
    import cv2

    stride = max(4, win // 2)
    h, w = mp.gray.shape
    hb = block_histograms(np.pad(mp.hcodes, ((0, 0), (0, 6)), mode="edge"), stride)
    vb = block_histograms(np.pad(mp.vcodes, ((0, 6), (0, 0)), mode="edge"), stride)
    blocks = hb + vb
    if blocks.shape[0] < 2 or blocks.shape[1] < 2:
        return np.zeros((h, w), np.float32)
    win_h = blocks[:-1, :-1] + blocks[1:, :-1] + blocks[:-1, 1:] + blocks[1:, 1:]
    feats = np.sqrt(win_h / np.maximum(win_h.sum(-1, keepdims=True), 1.0))
    gy, gx = win_h.shape[:2]
    cy = np.minimum(((np.arange(gy) + 1) * stride), h - 1)
    cx = np.minimum(((np.arange(gx) + 1) * stride), w - 1)
    rho_c = regions.rho[np.ix_(cy, cx)]
    ref = feats[(rho_c > BAND_RHO) & (rho_c <= SURROUND_RHO)]
    if len(ref) < 4:
        return np.zeros((h, w), np.float32)
    mu = ref.mean(0)
    cov = np.cov(ref, rowvar=False) if len(ref) > 1 else np.eye(COOC_BINS)
    cov = cov + (0.1 * np.trace(cov) / COOC_BINS + 1e-6) * np.eye(COOC_BINS)
    d = feats - mu
    dist = np.sqrt(np.einsum("...i,ij,...j->...", d, np.linalg.inv(cov), d) / COOC_BINS)
    # block-window centres sit at (i + 1) * stride: resize onto the pixels they cover
    full = cv2.resize(dist.astype(np.float32), (gx * stride, gy * stride), interpolation=cv2.INTER_LINEAR)
    y0 = x0 = stride // 2  # the first window's centre; pixels beyond the last centre take the nearest value
    hh, ww = min(h - y0, full.shape[0]), min(w - x0, full.shape[1])
    return np.pad(full[:hh, :ww], ((y0, h - y0 - hh), (x0, w - x0 - ww)), mode="edge")


#: the fewest reference pixels a z-map rests on, and the smallest spread it divides by (log units for the noise and
#: spectrum maps): a reference of a few similar pixels would make every other neighbourhood an outlier
MIN_REFERENCE_PX, MAD_FLOOR = 256, 0.05
#: the co-occurrence map's spread floor (its distances are ~1 where a neighbourhood is typical): a uniform
#: surround (a plain wall) would otherwise make any face texture an extreme outlier
COOC_Z_FLOOR = 0.25


def surround_z(values: np.ndarray, regions: Regions, signed: bool = False, floor: float = 0.0) -> np.ndarray:
    """``values`` as robust z-scores against the surround (median / 1.4826 MAD of the surround's pixels):
    how unusual each neighbourhood would be *for this photo*. Absolute unless ``signed``; the spread is at least
    ``floor`` (in ``values``' units; :data:`MAD_FLOOR` at the least)."""
    ref = values[regions.masks["surround"]]
    if ref.size < MIN_REFERENCE_PX:  # a face that fills its crop: the band joins the reference
        ref = values[regions.masks["surround"] | regions.masks["band"]]
    if ref.size < MIN_REFERENCE_PX:
        ref = values.ravel()
    med = float(np.median(ref))
    mad = max(1.4826 * float(np.median(np.abs(ref - med))), MAD_FLOOR, floor)
    z = (values - med) / mad
    return z.astype(np.float32) if signed else np.abs(z).astype(np.float32)


MAP_NAMES = ("noise", "spectrum", "cooc", "colour")


def anomaly_maps(rgb: np.ndarray, landmarks: np.ndarray) -> tuple[dict[str, np.ndarray], Regions]:
    """Per-pixel robust z-maps (>= 0) of the face with ``landmarks`` against its surround, one per
    :data:`MAP_NAMES`, and the face's regions. ``rgb``: the image (or crop) in 0..255."""
    rgb = np.asarray(rgb, dtype=np.float32)
    regions = face_regions(rgb.shape[:2], landmarks)
    win = window_px(face_geometry(landmarks).eye_dist)
    mp = compute_maps(rgb)
    colour = colour_dev_map(mp, regions, win)
    skin_ref = colour[regions.masks["skin"]]
    scale = 1.4826 * float(np.median(np.abs(skin_ref - np.median(skin_ref)))) + 1.0 if skin_ref.size else 1.0
    maps = {
        "noise": surround_z(noise_level_map(mp, win), regions),
        "spectrum": surround_z(spectrum_map(mp, win), regions),
        "cooc": surround_z(cooc_map(mp, regions, win), regions, floor=COOC_Z_FLOOR),
        "colour": (colour / scale).astype(np.float32),
    }
    return maps, regions


def combined_map(rgb: np.ndarray, landmarks: np.ndarray, reach: float = SURROUND_RHO) -> np.ndarray:
    """One [0, 1] map of where the face departs from its surround: the mean of the noise, spectrum and
    co-occurrence z-maps (colour only adds where it is an outlier), scaled so :data:`Z_FULL` reads 1, and zero
    beyond ``reach`` (rho) of the face. What ``surround``'s explanation and :func:`localise` show."""
    maps, regions = anomaly_maps(rgb, landmarks)
    z = (maps["noise"] + maps["spectrum"] + maps["cooc"]) / 3.0 + 0.5 * np.clip(maps["colour"] - 2.0, 0, None)
    z = np.where(regions.rho <= reach, z, 0.0)
    return np.clip(z / Z_FULL, 0.0, 1.0).astype(np.float32)


def localise(rgb: np.ndarray, landmarks: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Where a manipulation is: the :func:`combined_map` (a score per pixel, for pixel AUC) and its mask at
    ``threshold`` (for IoU), smoothed over a window so single noisy pixels do not make islands, limited to the
    face and its band (a pasted face lies there; the surround is the reference, never the suspect)."""
    heat = combined_map(rgb, landmarks, reach=BAND_RHO)
    win = window_px(face_geometry(landmarks).eye_dist)
    heat = np.clip(_box(heat, win), 0.0, 1.0)
    return heat, heat >= threshold
