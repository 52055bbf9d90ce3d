"""The ``localisation`` benchmark protocol: where is the manipulation? Each model's map against the edit's mask.

A verdict says *that* a face was edited; an analyst also needs *where*. This protocol scores the map each model
file explains a face with (``Model.explain``: the ``surround`` detector's face-vs-surround inconsistency map,
Grad-CAM for CNNs) against ground truth, in the model's own crop: the image and its mask are cut by the same
:func:`detectors.data.face_view` (the stored landmarks, the model's crop policy), so no map is resampled onto
another frame. Per edited image:

- **pixel AUC**: how well the map ranks the edited pixels of the crop above the untouched ones (0.5: no better
  than chance; undefined when the crop holds only one kind);
- **IoU** of the map thresholded at ``options.threshold`` with the mask;

and the same two numbers for a **face-shape prior** (1 - the crop template's elliptical radius: "somewhere on the
inner face"), so a map is credited only for what it adds to knowing where faces are. Cells report the mean over
images with a percentile bootstrap interval over images (pixels of one image are not independent samples).

Ground truth: a row's ``mask`` (a PNG beside it, 255 = edited: ``forensics swap stills``, the ``inpaint``
generator family), or, with ``options.weak: true``, the region code of CIPLAB-style file names
(``easy_12_1010.jpg``: left eye, right eye, nose, mouth) drawn as the part boxes of the row's landmarks
(:func:`detectors.inconsistency.regions.part_masks`) -- weak, because the expert's real edit is not a box. Only edited
rows with ground truth are scored; reals are not needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.protocols import (
    BenchPlanError,
    Column,
    Item,
    ScoringProtocol,
    clean_cell,
    groups_by,
    register_protocol,
    row_label,
)

#: CIPLAB splice names: difficulty, index, 4-bit region code (left eye, right eye, nose, mouth)
REGION_CODE = re.compile(r"(easy|mid|hard)_(\d+)_([01]{4})")


def region_code(item: Item) -> str:
    """The 4-bit region code of a CIPLAB-style file name (the row's path, or its ``source_path``), or ''."""
    for text in (item.row.extra.get("source_path", ""), item.row.path, str(item.path)):
        m = REGION_CODE.search(Path(str(text)).name)
        if m:
            return m.group(3)
    return ""


def weak_mask(shape: tuple[int, int], landmarks: np.ndarray, code: str) -> np.ndarray:
    """Part boxes of ``code``'s regions (left eye, right eye, nose, mouth) for the face with ``landmarks``."""
    from detectors.inconsistency.regions import PARTS, face_coords, face_geometry, part_masks

    geom = face_geometry(landmarks)
    u, v, _ = face_coords(shape, geom)
    parts = part_masks(u, v, geom)
    out = np.zeros(shape, bool)
    for bit, name in zip(code, PARTS):
        if bit == "1":
            out |= parts[name]
    return out


def has_truth(item: Item, weak: bool) -> bool:
    if item.y != 1:
        return False
    if item.row.extra.get("mask"):
        return True
    return weak and bool(region_code(item)) and item.row.extra.get("crop_landmarks") is not None


def truth_image(item: Item, img: np.ndarray, weak: bool) -> np.ndarray:
    """The ground truth at the stored image's resolution as an RGB uint8 image (255 = edited), so the crop that
    cuts the image cuts it alike."""
    from benchmarks.runner import load_face

    if item.row.extra.get("mask"):
        root = item.path
        for _ in Path(item.row.path).parts:  # the dataset dir: the mask's path is relative to it, as the row's is
            root = root.parent
        return load_face(root / item.row.extra["mask"])
    lm = np.asarray(item.row.extra["crop_landmarks"], np.float64).reshape(5, 2)
    m = weak_mask(img.shape[:2], lm, region_code(item))
    return np.repeat((m * 255).astype(np.uint8)[..., None], 3, axis=2)


def pixel_auc(truth: np.ndarray, heat: np.ndarray) -> float:
    """AUC of the map over the crop's pixels (NaN when the crop holds only edited or only untouched pixels)."""
    from detectors.metrics import roc_auc

    t = truth.ravel().astype(np.int64)
    if t.min() == t.max():
        return float("nan")
    return float(roc_auc(t, heat.ravel().astype(np.float64)))


def iou(truth: np.ndarray, mask: np.ndarray) -> float:
    union = np.logical_or(truth, mask).sum()
    return float(np.logical_and(truth, mask).sum() / union) if union else float("nan")


def face_prior(size: int, margin: float) -> np.ndarray:
    """The map that knows only where the face is: 1 at the crop template's face centre, 0 at its surround."""
    from detectors.inconsistency.regions import SURROUND_RHO, crop_regions

    return np.clip(1.0 - crop_regions(size, margin).rho / SURROUND_RHO, 0.0, 1.0).astype(np.float32)


def _mean_ci(values: np.ndarray, n_boot: int, seed: int, alpha: float) -> tuple[float, list[float] | None]:
    v = values[np.isfinite(values)]
    if not v.size:
        return float("nan"), None
    if n_boot <= 0 or v.size < 2:
        return float(v.mean()), None
    rng = np.random.default_rng(seed)
    means = rng.choice(v, size=(n_boot, v.size), replace=True).mean(axis=1)
    return float(v.mean()), [float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))]


@register_protocol("localisation", "each model's map (explain) against edit masks in its crop: pixel AUC and IoU")
class LocalisationProtocol(ScoringProtocol):
    level = "pixel"
    role = None

    @dataclass
    class Options(ScoringProtocol.Options):
        #: a map value at or above this is "edited" (IoU)
        threshold: float = 0.5
        #: rows without a mask: ground truth from a CIPLAB-style region code over the landmarks' part boxes
        weak: bool = False

    def test_sets(self, cfg: Any) -> list[tuple[dict[str, str], list[Item]]]:
        from benchmarks.protocols import _items

        weak = cfg.options.weak
        sets = []
        for ds in cfg.datasets:
            items = [i for i in _items(ds, cfg, self.role) if has_truth(i, weak)]
            if not items:
                raise BenchPlanError(f"{cfg.source}: dataset '{ds.name}' has no edited rows with ground truth "
                                     f"(a 'mask' column{', or a region code in the name' if weak else ''})")
            sets.append(({"dataset": ds.name}, items))
            for key in cfg.options.group_by:
                value = (lambda i: region_code(i)) if key == "region_code" and weak else key
                for v, sub in groups_by(items, value).items():
                    sets.append(({"dataset": ds.name, key: v}, sub))
        return sets

    def score_cell(self, state: Any, cell: Any, pool: Any) -> list[Any]:
        from benchmarks.perturbations import parse_perturbation
        from benchmarks.runner import CellScores, detector_input, load_face, model_key
        from forensics_core.errors import ForensicsError

        model = state.models[model_key(cell)]
        pp = model.preprocess
        pert = parse_perturbation(cell.perturbation)
        opts = state.cfg.options
        prior = face_prior(pp.size, pp.margin)
        keys: list[str] = []
        errors: list[str] = []
        # per image, the same two measures of the model's map and of the face prior ("prior_" names): the map's
        # pixel AUC is the cell's score, the rest are its extra columns
        measures: dict[str, list[float]] = {"pixel_auc": [], "iou": [], "prior_pixel_auc": [], "prior_iou": []}

        def one(it: Item) -> tuple[np.ndarray, np.ndarray] | str:
            try:
                img = load_face(it.path)
                face = detector_input(it, img, pp.size, pp.margin, crop=pp.crop, edge=pp.edge)
                truth = detector_input(it, truth_image(it, img, opts.weak), pp.size, pp.margin, crop=pp.crop,
                                       edge=pp.edge)[..., 0] > 127  # fmt: skip
                return pert(face), truth
            except (ForensicsError, OSError, ValueError) as exc:
                return f"{it.path}: {exc}"

        for it, got in zip(cell.items, pool.map(one, cell.items)):
            if isinstance(got, str):
                errors.append(got)
                continue
            face, truth = got
            heat = np.asarray(model.explain(face), dtype=np.float32)
            keys.append(it.key)
            for prefix, m in (("", heat), ("prior_", prior)):
                measures[f"{prefix}pixel_auc"].append(pixel_auc(truth, m))
                measures[f"{prefix}iou"].append(iou(truth, m >= opts.threshold))
            state.computed += 1
        aucs = measures.pop("pixel_auc")
        return [CellScores(
            cell=cell, level="pixel", keys=keys, y=np.ones(len(keys), np.int64), p=np.asarray(aucs, np.float64),
            errors=errors, extra=measures,
        )]  # fmt: skip

    def cell_metrics(self, scores: dict[str, Any], thresholds: dict[str, float], m: Any) -> dict[str, Any]:
        """Mean per-image pixel AUC and IoU (and the face prior's) with bootstrap intervals over images."""
        extra = scores.get("extra") or {}
        values = {
            "pixel_auc": np.asarray(scores["p"], np.float64),
            **{k: np.asarray(extra.get(k, []), np.float64) for k in ("iou", "prior_pixel_auc", "prior_iou")},
        }
        out: dict[str, Any] = {"n": int(len(values["pixel_auc"])), "ci": {}}
        for name, v in values.items():
            out[name], ci = _mean_ci(v, m.bootstrap, m.seed, 1 - m.ci)
            if ci is not None:
                out["ci"][name] = ci
        out["n_defined"] = int(np.isfinite(values["pixel_auc"]).sum())
        return out

    def leaderboard(self, results: dict[str, Any], run: str) -> list[Column]:
        """Mean pixel AUC of each model's map on the first whole test set, beside the face prior's."""
        cells = [c for c in results.get("cells", []) if clean_cell(c) and set(c["group"]) == {"dataset"}]
        if not cells:
            return []
        ds = cells[0]["group"]["dataset"]
        col = Column(f"{ds} pixel AUC (face prior) ({run})", {})
        for c in cells:
            if c["group"]["dataset"] == ds:
                m = c["metrics"]
                col.values[row_label(results, c)] = f"{m['pixel_auc']:.3f} ({m['prior_pixel_auc']:.3f})"
        return [col]

