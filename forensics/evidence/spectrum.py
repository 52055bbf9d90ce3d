"""Frequency spectrum: azimuthal (radial) power profile and periodic peaks left by upsampling layers.

Transposed convolutions and nearest/bilinear upsampling in generators repeat a pattern every 2, 4 or 8 output
pixels, which shows up as isolated peaks at 1/2, 1/4, 1/8 cycles per pixel in the spectrum of the high-pass
residual (Frank et al. 2020, Durall et al. 2020). JPEG's 8x8 block grid also produces peaks at multiples of 1/8,
so those peaks are reported separately and worded with that caveat.
"""

from __future__ import annotations

import numpy as np

from forensics.evidence import EvidenceResult, EvidenceSubject, register_evidence
from forensics.evidence._common import to_gray

MAX_SIDE = 512  # analysed window; cropped (never resized: resampling would erase the very traces we look for)
N_BINS = 48
PEAK_MIN = 1.5  # natural-log prominence (about 4.5x above the local median) to call a peak


def _window(pixels: np.ndarray, boxes: list) -> tuple[np.ndarray, str]:
    """The largest face (square, >= 64 px) when there is one, else the central square of the image."""
    h, w = pixels.shape[:2]
    if boxes:
        x1, y1, x2, y2 = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        side = int(min(max(x2 - x1, y2 - y1), MAX_SIDE, h, w))
        if side >= 64:
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            xa = int(min(max(0, cx - side / 2), w - side))
            ya = int(min(max(0, cy - side / 2), h - side))
            return pixels[ya : ya + side, xa : xa + side], "largest face"
    side = min(h, w, MAX_SIDE)
    ya, xa = (h - side) // 2, (w - side) // 2
    return pixels[ya : ya + side, xa : xa + side], "image centre"


def log_spectrum(pixels: np.ndarray) -> np.ndarray:
    """fftshift-ed log magnitude of the Hann-windowed high-pass residual of the luma."""
    import cv2  # here, not at import: registering the analysis (for --help) must stay light

    gray = to_gray(pixels)
    residual = gray - cv2.GaussianBlur(gray, (0, 0), 1.0)
    n = residual.shape[0]
    win = np.outer(np.hanning(n), np.hanning(residual.shape[1])).astype(np.float32)
    spec = np.fft.fftshift(np.abs(np.fft.fft2(residual * win)))
    return np.log(spec + 1e-3).astype(np.float32)


def radial_profile(logspec: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Mean log power per radial frequency bin from 0 to 0.5 cycles/px (the azimuthal average)."""
    h, w = logspec.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - h // 2) / h, (xx - w // 2) / w)
    idx = np.minimum((r / 0.5 * n_bins).astype(int), n_bins)
    sums = np.bincount(idx.ravel(), logspec.ravel(), minlength=n_bins + 1)[:n_bins]
    counts = np.maximum(np.bincount(idx.ravel(), minlength=n_bins + 1)[:n_bins], 1)
    return sums / counts


def find_peaks(logspec: np.ndarray) -> list[dict]:
    """Prominence of the spectrum at every (fx, fy) on the 1/8-cycle grid, vs. the median of its neighbourhood."""
    h, w = logspec.shape
    cy, cx = h // 2, w // 2
    out = []
    for ky in range(-4, 5):
        for kx in range(-4, 5):
            if ky < 0 or (ky == 0 and kx <= 0):  # spectrum of a real signal is symmetric: half the grid suffices
                continue
            y, x = cy + int(round(ky * h / 8)), cx + int(round(kx * w / 8))
            y, x = min(max(y, 0), h - 1), min(max(x, 0), w - 1)
            r = max(3, min(h, w) // 32)
            ya, yb, xa, xb = max(0, y - r), min(h, y + r + 1), max(0, x - r), min(w, x + r + 1)
            patch = logspec[ya:yb, xa:xb]
            centre = logspec[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].max()
            prominence = float(centre - np.median(patch))
            if prominence >= PEAK_MIN:
                period = 8 // np.gcd(8, np.gcd(abs(kx), abs(ky)) or 8) if (kx or ky) else 0
                out.append({"fx": kx / 8, "fy": ky / 8, "prominence": prominence, "period_px": int(period)})
    return sorted(out, key=lambda p: -p["prominence"])


@register_evidence(
    "spectrum",
    scope="file",
    label="spectrum (log power)",
    colour=False,
    description="Radial spectrum and upsampling-peak detection.",
    strength="prominence of the strongest period-2 or period-4 spectral peak (what 2x / 4x upsampling leaves) / 4, "
    "capped at 1; the JPEG block grid's period-8 peaks do not count",
)
def spectrum(subject: EvidenceSubject) -> EvidenceResult:
    window, where = _window(subject.pixels, subject.face_boxes)
    if min(window.shape[:2]) < 32:
        return EvidenceResult("spectrum", "file", None, "Image too small for a spectrum (< 32 px).", {})
    logspec = log_spectrum(window)
    profile = radial_profile(logspec)
    peaks = find_peaks(logspec)
    # Peaks at 1/2 and 1/4 (periods 2 and 4) are what 2x / 4x upsampling leaves; 1/8 multiples may be JPEG blocks.
    upsampling = [p for p in peaks if p["period_px"] in (2, 4)]
    block_grid = [p for p in peaks if p["period_px"] == 8]
    score = float(min(1.0, max((p["prominence"] for p in upsampling), default=0.0) / 4.0))
    details = {
        "window": where,
        "window_px": int(window.shape[0]),
        "radial_profile": [float(v) for v in profile],
        "high_to_mid_ratio": float(np.mean(profile[-N_BINS // 6 :]) - np.mean(profile[N_BINS // 3 : N_BINS // 2])),
        "peaks": peaks[:12],
    }
    if upsampling:
        f = ", ".join(f"({p['fx']:+.3g},{p['fy']:+.3g})" for p in upsampling[:4])
        summary = (
            f"Periodic spectral peaks at {f} cycles/px in the {where}: consistent with 2x/4x upsampling as done "
            "by generator networks (also caused by resizing or some camera processing)."
        )
    elif block_grid:
        summary = f"Only 1/8-cycle peaks in the {where}: consistent with the JPEG 8x8 block grid; no upsampling peaks."
    else:
        summary = f"No periodic upsampling peaks in the spectrum of the {where}."
    return EvidenceResult("spectrum", "file", score, summary, details, _display(logspec))


def _display(logspec: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(logspec, [1, 99.9])
    return np.clip((logspec - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)
