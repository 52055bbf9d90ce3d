"""The per-pixel maps every inconsistency statistic reads: the noise residual, difference-of-Gaussian bands, colour,
the co-occurrences of the quantised third-order residual (Splicebuster), the 8x8 JPEG block grid and the skin gamut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: difference-of-Gaussian scales (px): band k is G(s_{k-1}) - G(s_k) with s_0 = 0 (the image itself)
DOG_SIGMAS = (0.6, 1.2, 2.4)
#: co-occurrence residual: quantisation step and truncation (T=1: 3 levels, 3^4 = 81 four-pixel patterns)
COOC_Q, COOC_T = 2.0, 1
COOC_BINS = (2 * COOC_T + 1) ** 4
EPS = 1e-6


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


def window_block_profiles(gray: np.ndarray, window: int, ys: list[int], xs: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`block_profile` of every ``window`` x ``window`` square whose corner is ``(y, x)`` for ``y`` in ``ys``
    and ``x`` in ``xs`` (all multiples of 8, the squares inside ``gray``): ``(len(ys), len(xs), 8)`` arrays of
    ``ax`` and ``ay``.

    Why not a loop over the windows: the JPEG grid map of a 512 px face reads ~1,000 overlapping windows, and one
    :func:`block_profile` call each took ~0.2 s per image, the slowest evidence analysis by far. With the corners on
    the 8 px grid a window's offsets mod 8 are the image's, so each offset's step sum over any window is four
    lookups in one summed-area table per offset."""
    if window < 16 or any(v % 8 for v in (*ys, *xs)):
        raise ValueError("window_block_profiles: corners on the 8 px grid and windows of 16 px or more")
    per = np.full(8, window // 8)  # a window's steps along an axis at each offset: window - 1 steps in all
    per[7] -= 1
    m = np.asarray(xs) // 8

    def sums(steps: np.ndarray, corners: list[int], along: np.ndarray) -> np.ndarray:
        # steps (H, W'): each window's column-wise sums over its ``window`` rows, then per offset k the sum over
        # the window's columns k, k + 8, ... (``along``: the windows' first block column)
        rows = np.vstack([np.zeros((1, steps.shape[1])), np.cumsum(steps, 0, dtype=np.float64)])
        c = np.asarray(corners)
        band = rows[c + window] - rows[c]  # (len(corners), W')
        out = np.empty((len(corners), len(along), 8))
        for k in range(8):
            cols = np.hstack([np.zeros((len(corners), 1)), np.cumsum(band[:, k::8], 1)])
            out[..., k] = cols[:, along + per[k]] - cols[:, along]
        return out

    dx = np.abs(np.diff(gray, axis=1))
    dy = np.abs(np.diff(gray, axis=0))
    ax = np.log(sums(dx, ys, m) / (per * window) + EPS)
    ay = np.log(sums(dy.T, xs, np.asarray(ys) // 8) / (per * window) + EPS).transpose(1, 0, 2)
    return ax, ay


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


#: the skin gamut in JPEG's Cb / Cr (Chai & Ngan 1999, widened for dark and pale skin under coloured light)
SKIN_CB, SKIN_CR = (70.0, 135.0), (133.0, 180.0)


def skin_like(cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """Skin-coloured pixels (a fixed gamut, not the face's own colour: a pasted face whose tone is off must still
    count as skin on both sides of its seam), so colour and texture are compared skin to skin across the boundary
    and hair or background at the sides do not read as a seam. Grey photos have none: their colour features are
    0 and their texture features fall back to all pixels of a ring."""
    return (cb >= SKIN_CB[0]) & (cb <= SKIN_CB[1]) & (cr >= SKIN_CR[0]) & (cr <= SKIN_CR[1])
