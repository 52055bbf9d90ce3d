"""Colour and sharpness along the blending boundary: does the face's edge look like a seam?

A swap blends the donor face into the target through a soft mask around the face (brows to chin, cheek to cheek).
Where the mask falls off, the image changes from one capture to the other: skin tone steps when colour correction
missed, sharpness steps when one side was resampled. This analysis measures, on rings of the face ellipse (from
its centre out to the surround), the skin-tone (Cb / Cr of skin-like pixels only, so hair and background at the
sides do not count) and the local sharpness (log gradient) and finest-band energy, and reports the largest step
between neighbouring rings against the typical step. Its map is the *radial* change of the local sharpness and
skin tone: a seam runs around the face, where texture and lighting edges point every way.
"""

from __future__ import annotations

import numpy as np

from forensics.evidence import EvidenceResult, EvidenceSubject, register_evidence
from forensics.evidence._common import REAL_SCALE_TEXT, real_scale, surround_result

#: the seam step (times the typical ring-to-ring step) of real photos: median and 99th percentile
#: (``python -m benchmarks.evidence_scales``: 300 shared training reals, JPEG q85)
STEP_SCALE = (3.93, 18.26)
#: where a swap's seam lies (rho of the ring boundaries examined)
SEAM_RHO = (0.8, 1.3)
#: the smallest typical step per statistic (its units), so a flat synthetic region cannot make any step "huge"
STEP_FLOOR = {"cb": 1.5, "cr": 1.5, "luma": 3.0, "sharpness": 0.1, "fine_band": 0.15}


def seam_step(profile: np.ndarray, edges: tuple[float, ...], floor: float) -> tuple[float, float]:
    """The largest step between neighbouring rings whose boundary lies in :data:`SEAM_RHO`, over the typical step
    at the other boundaries (at least ``floor``); and that boundary's rho."""
    d = np.abs(np.diff(profile))
    at = np.asarray(edges[1:-1])
    seam = (at >= SEAM_RHO[0]) & (at <= SEAM_RHO[1]) & np.isfinite(d)
    rest = ~seam & np.isfinite(d)
    if not seam.any():
        return 0.0, 0.0
    typical = max(float(np.median(d[rest])) if rest.any() else 0.0, floor)
    i = int(np.flatnonzero(seam)[np.argmax(d[seam])])
    return float(d[i] / typical), float(at[i])


def radial_change(values: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """|d values / d r| along the direction away from the face centre (per pixel, values' units per px)."""
    import cv2

    from detectors.inconsistency.regions import face_geometry

    g = face_geometry(lm)
    h, w = values.shape
    cx = g.origin[0] - np.sin(g.angle) * g.centre_v * g.eye_dist
    cy = g.origin[1] + np.cos(g.angle) * g.centre_v * g.eye_dist
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    norm = np.sqrt(dx * dx + dy * dy) + 1e-3
    gx = cv2.Sobel(values.astype(np.float32), cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(values.astype(np.float32), cv2.CV_32F, 0, 1, ksize=3) / 8.0
    return np.abs(gx * dx / norm + gy * dy / norm)


def _face(pixels: np.ndarray, lm: np.ndarray) -> tuple[dict, np.ndarray]:
    from detectors.inconsistency.anomaly import Z_FULL, colour_dev_map, spectrum_map, surround_z, window_px
    from detectors.inconsistency.features import RING_EDGES, ring_index, ring_profile
    from detectors.inconsistency.maps import compute_maps, skin_like
    from detectors.inconsistency.regions import face_geometry, face_regions

    mp = compute_maps(pixels)
    regions = face_regions(pixels.shape[:2], lm)
    win = window_px(face_geometry(lm).eye_dist)
    ring = ring_index(regions.rho)
    skin_mask = skin_like(mp.cb, mp.cr)
    sharp = np.log(mp.grad + 0.01)
    steps = {}
    for name, vals, wts in (
        ("cb", mp.cb, skin_mask), ("cr", mp.cr, skin_mask), ("luma", mp.gray, skin_mask),
        ("sharpness", sharp, None), ("fine_band", np.log(mp.bands[0] + 0.01), None),
    ):  # fmt: skip
        jump, at = seam_step(ring_profile(vals, ring, wts), RING_EDGES, STEP_FLOOR[name])
        steps[name] = {"step_vs_typical": jump, "at_rho": at}
    # the map: radial change of the local sharpness and of the skin tone, as z-scores against the surround's
    local_sharp = spectrum_map(mp, win)
    tone = colour_dev_map(mp, regions, win)
    z = np.maximum(surround_z(radial_change(local_sharp, lm), regions), surround_z(radial_change(tone, lm), regions))
    heat = np.where((regions.rho > 0.6) & (regions.rho <= 1.6), z / Z_FULL, 0.0)
    return {"steps": steps, "window": win}, np.clip(heat, 0.0, 1.0).astype(np.float32)


def _judge(finding: dict) -> tuple[float, str]:
    name, worst = max(finding["steps"].items(), key=lambda kv: kv[1]["step_vs_typical"])
    ratio = worst["step_vs_typical"]
    score = real_scale(ratio, *STEP_SCALE)
    what = {"cb": "skin tone (blue-yellow)", "cr": "skin tone (red-green)", "luma": "skin brightness",
            "sharpness": "sharpness", "fine_band": "fine detail"}[name]  # fmt: skip
    where = "inside the face's edge" if worst["at_rho"] < 0.95 else "at the face's edge"
    if score < 0.5:
        return score, (
            f"No clear seam: the largest step along the face's rings ({what}) is {ratio:.1f}x the typical one."
        )
    return score, (
        f"A {what} step {where} ({ratio:.1f}x the typical ring-to-ring change): consistent with a blending "
        "boundary; hair lines, glasses, beards and shadows also make such steps."
    )


@register_evidence(
    "blend-boundary",
    scope="file",
    label="blend boundary (radial change)",
    description="Skin tone and sharpness steps along the face's boundary (swap / splice seams).",
    strength="the largest face's biggest step (skin tone, sharpness) between neighbouring rings of its ellipse where "
    f"a swap's seam lies (rho {SEAM_RHO[0]:g}-{SEAM_RHO[1]:g}), over the typical step at the other rings, on the "
    f"scale of real photos: {REAL_SCALE_TEXT}",
)
def blend_boundary(subject: EvidenceSubject) -> EvidenceResult:
    return surround_result("blend-boundary", subject, _face, _judge, no_face="No face whose boundary to check.")
