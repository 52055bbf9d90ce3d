"""Anomaly maps on a whole photo: each neighbourhood measured against the face's own surround (what the evidence
analyses show and :func:`localise` turns into a mask).
"""

from __future__ import annotations

import numpy as np

from detectors.inconsistency.maps import COOC_BINS, EPS, Maps, compute_maps, skin_like
from detectors.inconsistency.regions import BAND_RHO, SURROUND_RHO, Regions, face_geometry, face_regions

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
