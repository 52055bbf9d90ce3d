"""Per-region statistics of the maps, their face/surround contrasts and boundary profiles across rings of ``rho``:
the feature vector (:func:`crop_features`) the ``surround`` detector classifies.
"""

from __future__ import annotations

import math

import numpy as np

from detectors.inconsistency.locate import locate_landmarks
from detectors.inconsistency.maps import COOC_BINS, EPS, Maps, blockiness, compute_maps, skin_like
from detectors.inconsistency.regions import PARTS, REGIONS, Regions, crop_regions, face_regions

#: rings of rho for the boundary profiles (a step or spike between two rings is a seam)
RING_EDGES = (0.5, 0.65, 0.8, 0.92, 1.04, 1.16, 1.28, 1.45, 1.65, 1.9)
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
