"""JPEG block-grid alignment and JPEG ghosts of the face against its surround (double-compression maps).

Every JPEG save quantises 8x8 blocks on a grid anchored at the image's corner. A face cut from another JPEG and
pasted in keeps traces of *its* grid, usually shifted against the host's (a non-aligned double compression), and
of *its* quality: re-saving the image at a range of qualities (Farid's JPEG ghosts, 2009), each neighbourhood's
difference falls lowest near the quality it was last quantised at, so a face compressed at another quality before
it was pasted has another difference curve than its surround. This analysis maps both, around each face:

- **grid**: in 32 px windows (anchored on the file's grid), how much more the window's own strongest 8x8 phase
  steps than the image's dominant phase does there; windows where another grid clearly wins are off-grid;
- **ghosts**: each 16 px neighbourhood's re-save difference curve over qualities 40-100 (normalised to its own
  range), and its distance from the surround's median curve.

Both need the file's own pixel grid: on pixels the scan downscaled (very large images) they are not computed.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from forensics.evidence import EvidenceResult, EvidenceSubject, register_evidence
from forensics.evidence._common import REAL_SCALE_TEXT, per_face, real_scale

GHOST_QUALITIES = tuple(range(40, 101, 5))
GRID_WINDOW, GRID_STRIDE = 32, 16
#: a window whose own best grid steps this much more (log units) than the image's grid does there is off-grid
OFF_GRID_MIN = 0.2
GHOST_WINDOW = 16
#: the face's off-grid window share and ghost-curve distance of real photos: median and 99th percentile
#: (``python -m benchmarks.evidence_scales``: 300 shared training reals, JPEG q85)
OFF_GRID_SCALE, GHOST_SCALE = (0.174, 0.769), (0.024, 0.1315)
#: the ghost distance at which the map reads 1
GHOST_FULL = 0.3


def grid_map(gray: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Per window: how much stronger its own best 8x8 grid is than the image's grid at that window (log units,
    mean of the two axes; 0 where the image's grid is the window's best), plus the image's phase and strength."""
    from detectors.inconsistency.maps import block_profile, blockiness, window_block_profiles

    g_strength, g_phase = blockiness(gray)
    h, w = gray.shape
    ys = list(range(0, max(1, h - GRID_WINDOW + 1), GRID_STRIDE))
    xs = list(range(0, max(1, w - GRID_WINDOW + 1), GRID_STRIDE))
    off = np.zeros((len(ys), len(xs)), np.float32)
    if g_phase < 0:
        return off, g_phase, g_strength
    gx, gy = g_phase % 8, g_phase // 8
    if h >= GRID_WINDOW and w >= GRID_WINDOW:  # every window whole: all at once
        ax, ay = window_block_profiles(gray, GRID_WINDOW, ys, xs)
        off[:] = 0.5 * (ax.max(-1) - ax[..., gx] + ay.max(-1) - ay[..., gy])
        return off, g_phase, g_strength
    for i, y in enumerate(ys):  # a region narrower than one window: its one (partial) window per row / column
        for j, x in enumerate(xs):
            prof = block_profile(gray[y : y + GRID_WINDOW, x : x + GRID_WINDOW])
            if prof is not None:
                ax, ay = prof
                off[i, j] = 0.5 * (ax.max() - ax[gx] + ay.max() - ay[gy])
    return off, g_phase, g_strength


def ghost_curves(gray: np.ndarray) -> np.ndarray:
    """``(len(GHOST_QUALITIES), H // 16, W // 16)``: each neighbourhood's mean squared luma change when the image
    is re-saved at each quality, normalised to [0, 1] per neighbourhood (Farid 2009)."""
    g8 = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    h, w = (g8.shape[0] // GHOST_WINDOW) * GHOST_WINDOW, (g8.shape[1] // GHOST_WINDOW) * GHOST_WINDOW
    curves = []
    for q in GHOST_QUALITIES:
        buf = io.BytesIO()
        Image.fromarray(g8).save(buf, "JPEG", quality=q)
        buf.seek(0)
        with Image.open(buf) as im:
            re = np.asarray(im, dtype=np.float32)
        d = (re - g8.astype(np.float32))[:h, :w] ** 2
        curves.append(d.reshape(h // GHOST_WINDOW, GHOST_WINDOW, w // GHOST_WINDOW, GHOST_WINDOW).mean((1, 3)))
    c = np.stack(curves)
    lo, hi = c.min(0, keepdims=True), c.max(0, keepdims=True)
    return (c - lo) / np.maximum(hi - lo, 1e-6)


def _upsample(a: np.ndarray, step: int, shape: tuple[int, int], offset: int) -> np.ndarray:
    out = np.zeros(shape, np.float32)
    big = np.repeat(np.repeat(a, step, 0), step, 1)
    hh, ww = min(shape[0] - offset, big.shape[0]), min(shape[1] - offset, big.shape[1])
    out[offset : offset + hh, offset : offset + ww] = big[:hh, :ww]
    return out


def _face(pixels: np.ndarray, lm: np.ndarray) -> tuple[dict, np.ndarray]:
    from detectors.inconsistency.maps import luma
    from detectors.inconsistency.regions import BAND_RHO, CORE_RHO, SURROUND_RHO, face_regions

    gray = luma(pixels)
    regions = face_regions(gray.shape, lm)
    off_by, g_phase, g_strength = grid_map(gray)
    off = off_by > OFF_GRID_MIN
    grid_heat = _upsample(off_by / (2 * OFF_GRID_MIN), GRID_STRIDE, gray.shape, GRID_STRIDE // 2)
    curves = ghost_curves(gray)
    centres = (np.arange(curves.shape[1]) * GHOST_WINDOW + GHOST_WINDOW // 2,
               np.arange(curves.shape[2]) * GHOST_WINDOW + GHOST_WINDOW // 2)  # fmt: skip
    rho_c = regions.rho[np.ix_(np.minimum(centres[0], gray.shape[0] - 1), np.minimum(centres[1], gray.shape[1] - 1))]
    sur = (rho_c > BAND_RHO) & (rho_c <= SURROUND_RHO)
    core = rho_c <= CORE_RHO
    if sur.sum() >= 4 and core.sum() >= 1:
        ref = np.median(curves[:, sur], axis=1)
        dist = np.abs(curves - ref[:, None, None]).mean(0)
        core_curve = np.median(curves[:, core], axis=1)
        ghost = float(np.median(dist[core]))
        q_core = int(GHOST_QUALITIES[int(core_curve[:-1].argmin())])
        q_sur = int(GHOST_QUALITIES[int(ref[:-1].argmin())])
    else:
        dist, ghost, q_core, q_sur = np.zeros(curves.shape[1:]), 0.0, 0, 0
    ghost_heat = _upsample(dist / GHOST_FULL, GHOST_WINDOW, gray.shape, 0)
    cy = np.minimum(np.arange(off.shape[0]) * GRID_STRIDE + GRID_WINDOW // 2, gray.shape[0] - 1)
    cx = np.minimum(np.arange(off.shape[1]) * GRID_STRIDE + GRID_WINDOW // 2, gray.shape[1] - 1)
    face_windows = regions.rho[np.ix_(cy, cx)] <= 1.0  # windows centred on the face a swap replaces
    finding = {
        "image_grid_phase": {"x": g_phase % 8, "y": g_phase // 8} if g_phase >= 0 else None,
        "image_grid_strength": g_strength,
        "face_windows_off_grid": float(off[face_windows].mean()) if face_windows.any() else 0.0,
        "ghost_distance_core": ghost,
        "ghost_quality_core": q_core,
        "ghost_quality_surround": q_sur,
    }
    heat = np.where(regions.rho <= SURROUND_RHO, np.maximum(grid_heat, ghost_heat), 0.0)
    return finding, np.clip(heat, 0.0, 1.0).astype(np.float32)


@register_evidence(
    "jpeg-grid",
    scope="file",
    label="JPEG grid / ghosts",
    description="JPEG block-grid phase and JPEG-ghost maps of the face vs. its surround (double compression).",
    strength="the larger of the largest face's share of off-grid windows and its inner face's JPEG-ghost curve "
    f"distance from the surround's, each on the scale of real photos: {REAL_SCALE_TEXT}; none on downscaled pixels",
)
def jpeg_grid(subject: EvidenceSubject) -> EvidenceResult:
    if subject.pixel_scale != 1.0:
        return EvidenceResult("jpeg-grid", "file", None, "Not checked: the pixels were downscaled, so the file's "
                              "8x8 grid is gone.", {"checked": False})  # fmt: skip
    findings, heat, scale = per_face(subject, _face, grid=8)
    if scale != 1.0:  # limit_size downscaled a very large image: the grid is gone there too
        return EvidenceResult("jpeg-grid", "file", None, "Not checked: the image was downscaled for analysis.",
                              {"checked": False, "analysis_scale": scale})  # fmt: skip
    if not findings:
        return EvidenceResult("jpeg-grid", "file", None, "No face to compare with its surround.", {"checked": True})
    f = findings[0]
    grid = real_scale(f["face_windows_off_grid"], *OFF_GRID_SCALE)
    ghost = real_scale(f["ghost_distance_core"], *GHOST_SCALE)
    score = max(grid, ghost)
    details = {"faces": findings, "checked": True}
    if score < 0.5:
        summary = "The face shares the image's JPEG grid and compression history (no misaligned grid, similar ghosts)."
    elif grid >= ghost:
        summary = (
            f"{100 * f['face_windows_off_grid']:.0f} % of the face's windows carry an 8x8 grid off the image's: "
            "consistent with a region cut from another JPEG and pasted (non-aligned double compression); crops and "
            "resizes after an edit move the grid too."
        )
    else:
        summary = (
            f"The inner face re-compresses differently from its surround (ghost minimum near q{f['ghost_quality_core']}"
            f" vs q{f['ghost_quality_surround']}): consistent with a face compressed at another quality before it "
            "was pasted; very smooth or saturated regions also shift ghosts."
        )
    return EvidenceResult("jpeg-grid", "file", score, summary, details, heat)
