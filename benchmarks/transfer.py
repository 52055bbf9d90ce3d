"""Transfer protocols, end to end through ``forensics scan``: does a model's verdict hold outside its training data?

In-distribution crossval numbers say little about the files users bring: they arrive re-encoded, resized and from
generators no folder here holds. These protocols score *raw files* exactly as ``scan`` does (decode, face
detection, crop by the model's preprocessing, calibrated P(fake), the model's own threshold presets) and report:

- ``shortcuts``: the same real photos raw, JPEG q75, JPEG q50 and 0.5x-downscaled: median P(fake) and its shift
  from raw, and the share flagged under ``fpr1`` / ``fpr01`` (a model that learned "compressed = fake" flags more
  reals after JPEG); then fakes vs those reals with *matched* delivery (both re-encoded at q75, both at q50, both
  downscaled): AUC with a stratified bootstrap interval, and precision under ``fpr1`` at realistic fake
  prevalences (1 %, 10 %, 50 %).
- ``real-sources``: the share of each real source's photos (and of UTKFace's race / gender groups) flagged under
  ``fpr1`` and ``fpr01``, files as they are: a preset fitted on one source's reals may not hold on another's.
- ``external-dev``: the evaluation-only ``external_dev`` pairs (face swaps vs their reals, splices vs theirs,
  a commercial GAN vs studio portraits) and the share of each real set flagged under ``fpr1``. Never trained,
  calibrated or selected on.
- ``unseen-decoders`` (with ``--recon``): crossval reals vs their reconstructions through each of the project's
  autoencoders (nearest, transposed-conv, pixel-shuffle decoders), both sides raw / JPEG q75 / halved: does a
  decoder trace the model never trained on still read as fake? A test, never a selection input.

``--split val`` runs ``shortcuts`` and ``real-sources`` on the *validation* files instead (the 10 % of each shared
training folder that ``data import`` hashes into ``val``): that is the split candidates are selected on, so the
``crossval`` numbers stay a test. Every result records the model (name + weights sha256), the command and the
commit. Goals (issue #17):
flag rate <= 2 % under ``fpr1`` on every real variant, median shift <= 0.05, matched AUC >= 0.95; external
pairs >= 0.85 with <= 2 % of reals flagged.

Example::

    python -m benchmarks.transfer --model default --label default-v3 --out benchmarks/results/transfer/default-v3
    python -m benchmarks.transfer --table benchmarks/results/transfer   # the comparison table of every candidate
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.metrics import bootstrap_ci, roc_auc
from benchmarks.record import command_line, start_record
from core.errors import DataError, ForensicsError

N_BOOT = 1000
RESULTS = Path(__file__).resolve().parent / "results" / "transfer"
PREVALENCES = (0.01, 0.10, 0.50)

# ----------------------------------------------------------------------------------------------------------------
# delivery variants applied to a raw file (what a platform does before the file reaches scan)
# ----------------------------------------------------------------------------------------------------------------


def _write_variant(src: Path, dst_dir: Path, variant: str) -> Path:
    """Write ``src`` under ``variant`` into ``dst_dir``: ``raw`` copies the bytes; otherwise ``+``-joined steps
    applied in order: ``jpegQ`` re-encodes at quality Q, ``downS`` resizes by S (area; ``downS:lanczos`` with the
    Lanczos filter), ``centreP`` keeps the centre P % of each side (no resampling: a tighter framing). The file is
    PNG (lossless, so only the named steps differ) unless the last step is a JPEG."""
    import cv2

    dst_dir.mkdir(parents=True, exist_ok=True)
    if variant == "raw":
        dst = dst_dir / src.name
        shutil.copyfile(src, dst)
        return dst
    img = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{src}: not a decodable image")
    steps = variant.split("+")
    last_jpeg = steps[-1].startswith("jpeg")
    for step in steps[:-1] if last_jpeg else steps:  # a final JPEG is the file's own encoding, not a round trip
        img = _variant_step(img, step, variant)
    if last_jpeg:
        dst = dst_dir / (src.stem + ".jpg")
        cv2.imwrite(str(dst), img, [cv2.IMWRITE_JPEG_QUALITY, _quality(steps[-1], variant)])
    else:
        dst = dst_dir / (src.stem + ".png")
        cv2.imwrite(str(dst), img)
    return dst


_KERNELS = {"area": "INTER_AREA", "lanczos": "INTER_LANCZOS4", "bicubic": "INTER_CUBIC", "bilinear": "INTER_LINEAR"}


def _quality(step: str, variant: str) -> int:
    try:
        q = int(step[4:])
    except ValueError:
        q = 0
    if not 1 <= q <= 100:
        raise DataError(f"variant '{variant}': '{step}' needs a JPEG quality 1-100")
    return q


def _variant_step(img: np.ndarray, step: str, variant: str) -> np.ndarray:
    """One step of a variant (see :func:`_write_variant`); a JPEG step round-trips through the encoder."""
    import cv2

    try:
        if step.startswith("jpeg"):
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, _quality(step, variant)])
            return cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if step.startswith("down"):
            factor, _, kernel = step[4:].partition(":")
            interp = getattr(cv2, _KERNELS[kernel or "area"])
            s = float(factor)
            h, w = img.shape[:2]
            return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)
        if step == "wipecorner":  # the StyleGAN2 scrape's faint watermark sits in the bottom-right corner
            h, w = img.shape[:2]
            y0, x0 = int(h * 0.88), int(w * 0.7)
            band = img[max(0, 2 * y0 - h) : y0, x0:][::-1]  # the rows just above, mirrored: same texture, no mark
            out = img.copy()
            out[y0 : y0 + band.shape[0], x0:] = band
            return out
        if step.startswith("centre"):
            f = float(step[6:]) / 100
            h, w = img.shape[:2]
            ch, cw = max(1, round(h * f)), max(1, round(w * f))
            y0, x0 = (h - ch) // 2, (w - cw) // 2
            return img[y0 : y0 + ch, x0 : x0 + cw]
    except (ValueError, KeyError):
        pass
    raise DataError(f"unknown variant step '{step}' in '{variant}' (raw, jpegQ, downS[:kernel], centreP, wipecorner)")


#: scan settings every protocol scores with besides the model (``--face-detector``, ``--detect-max-side``; empty:
#: the scan defaults), recorded in each result: the face stage decides where the window lands
SCAN_OVERRIDES: dict[str, Any] = {}


def _score(model: Any, files: list[Path], threads: int) -> np.ndarray:
    """Calibrated P(fake) of each file through the scan pipeline (NaN where scan could not score it)."""
    from forensics import scan

    out = np.full(len(files), np.nan)
    files = [f.resolve() for f in files]  # scan reports absolute paths
    index = {str(f): i for i, f in enumerate(files)}
    results = scan([str(f) for f in files], model=model, evidence="none", threads=threads, timeout_s=120,
                   **SCAN_OVERRIDES)
    for r in results:
        if r.fake_probability is not None and r.path in index:
            out[index[r.path]] = float(r.fake_probability)
    return out


# ----------------------------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class RealVariant:
    """Reals under one delivery: how far they drift toward 'fake' and how many get flagged."""

    variant: str
    n: int
    n_unscored: int
    median_p: float
    median_shift: float
    flagged: dict[str, float] = field(default_factory=dict)


@dataclass
class Pair:
    """Fakes vs reals, both under the same delivery (or a named external pair)."""

    name: str
    n_real: int
    n_fake: int
    auc: float
    auc_ci: tuple[float, float]
    n_boot: int
    reals_flagged_fpr1: float
    tpr_fpr1: float
    precision_fpr1: dict[str, float | None] = field(default_factory=dict)
    #: exact (Clopper-Pearson) 95 % bounds of the two rates: 0 flagged reals of 400 is not a 0 % false-positive
    #: rate but one below 0.92 %, and precision at a low prevalence rests on that upper bound
    reals_flagged_fpr1_ci: tuple[float, float] = (0.0, 1.0)
    tpr_fpr1_ci: tuple[float, float] = (0.0, 1.0)
    #: precision at each prevalence from the bounds (worst: lowest TPR with highest FPR; best: the reverse)
    precision_fpr1_range: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)


def pair_metrics(name: str, p_real: np.ndarray, p_fake: np.ndarray, t_fpr1: float) -> Pair:
    """AUC (stratified bootstrap interval) and what the ``fpr1`` policy does on this pair."""
    p_real, p_fake = p_real[~np.isnan(p_real)], p_fake[~np.isnan(p_fake)]
    if not p_real.size or not p_fake.size:
        raise DataError(f"{name}: no scored reals or fakes")
    y = np.r_[np.zeros(p_real.size), np.ones(p_fake.size)]
    s = np.r_[p_real, p_fake]
    from detectors.metrics import clopper_pearson

    k_fp, k_tp = int(np.sum(p_real >= t_fpr1)), int(np.sum(p_fake >= t_fpr1))
    fpr, tpr = k_fp / p_real.size, k_tp / p_fake.size
    fpr_ci, tpr_ci = clopper_pearson(k_fp, p_real.size), clopper_pearson(k_tp, p_fake.size)
    prec = {f"{pi:g}": _precision(pi, tpr, fpr) for pi in PREVALENCES}
    prec_range = {f"{pi:g}": (_precision(pi, tpr_ci[0], fpr_ci[1]), _precision(pi, tpr_ci[1], fpr_ci[0]))
                  for pi in PREVALENCES}
    return Pair(
        name, int(p_real.size), int(p_fake.size), roc_auc(y, s), bootstrap_ci(roc_auc, y, s, n_boot=N_BOOT),
        N_BOOT, fpr, tpr, prec, fpr_ci, tpr_ci, prec_range,
    )


def _precision(prevalence: float, tpr: float, fpr: float) -> float | None:
    """Share of flagged files that are fake when ``prevalence`` of the stream is fake (None: nothing flagged)."""
    denom = prevalence * tpr + (1 - prevalence) * fpr
    return None if denom == 0 else round(prevalence * tpr / denom, 4)


def flag_rates(p_real: np.ndarray, thresholds: dict[str, float]) -> dict[str, float]:
    """Share of scored reals each preset flags, ``balanced`` included: the default policy needs its measured rate on
    reals the model never saw as much as the ``fpr*`` presets do (their promise holds only on validation reals)."""
    return {k: float(np.mean(p_real >= t)) for k, t in sorted(thresholds.items())}


def real_variants(scores: dict[str, np.ndarray], thresholds: dict[str, float]) -> list[RealVariant]:
    raw = np.nanmedian(scores["raw"])
    out = []
    for v, p in scores.items():
        ok = p[~np.isnan(p)]
        out.append(
            RealVariant(
                v, int(ok.size), int(np.isnan(p).sum()), float(np.median(ok)), float(np.median(ok) - raw),
                flag_rates(ok, thresholds),
            )
        )
    return out


# ----------------------------------------------------------------------------------------------------------------
# protocols
# ----------------------------------------------------------------------------------------------------------------
def _sample(folder: Path, n: int, pattern: str = "*") -> list[Path]:
    """The first ``n`` media files of ``folder`` (all with ``n`` 0) in name order; a set's ``index.csv`` and other
    non-media files are not samples (with ``--n 0`` the shared crossval folders' index was scored as an image)."""
    from core.faces import MEDIA_EXTENSIONS

    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)
    if not files:
        raise DataError(f"{folder}: no files")
    return files[:n] if n else files


FFHQ = "real_faces/ffhq128_bhunakit"
SG2 = "gan_faces/tpdne-stylegan2_bhunakit"
UTK = "real_faces/utkface_bagashvilit"


def split_files(data: Path, folder: str, split: str, n: int) -> list[Path]:
    """Files of a shared set in ``split``: its ``crossval`` folder, or the files ``data import`` hashes into
    ``val`` (:func:`core.importers.split_for` on the path relative to ``data``, as the import computes it)."""
    from core.importers import split_for

    if split == "crossval":
        return _sample(data / folder / "crossval", n)
    files = [f for f in _sample(data / folder, 0, "**/*") if split_for(str(f.relative_to(data)), 0.1) == split]
    if not files:
        raise DataError(f"{data / folder}: no {split} files")
    return files[:n] if n else files


def shortcuts(model: Any, data: Path, n: int, threads: int, work: Path, split: str = "crossval") -> dict[str, Any]:
    """Shared FFHQ reals under four deliveries; shared StyleGAN2 fakes vs those reals, delivery matched."""
    reals = split_files(data, FFHQ, split, n)
    fakes = split_files(data, SG2, split, n)
    th = dict(model.thresholds)
    real_scores: dict[str, np.ndarray] = {}
    fake_scores: dict[str, np.ndarray] = {}
    for v in ("raw", "jpeg75", "jpeg50", "down0.5"):
        real_scores[v] = _score(model, [_write_variant(f, work / "real" / v, v) for f in reals], threads)
    for v in ("raw", "jpeg75", "jpeg50", "down0.5"):
        fake_scores[v] = _score(model, [_write_variant(f, work / "fake" / v, v) for f in fakes], threads)
    pairs = [
        pair_metrics(f"stylegan2 vs ffhq, both {v}", real_scores[v], fake_scores[v], th["fpr1"])
        for v in ("jpeg75", "jpeg50", "down0.5", "raw")
    ]
    return {
        "split": split,
        "reals": f"shared {FFHQ} {split} (PNG)",
        "fakes": f"shared {SG2} {split} (JPEG q75)",
        "real_variants": [asdict(r) for r in real_variants(real_scores, th)],
        "pairs": [asdict(p) for p in pairs],
        "note": "'raw' pairs PNG reals with JPEG fakes: the formats differ, so it is not a generator measurement",
    }


def watermark(model: Any, data: Path, n: int, threads: int, work: Path, split: str = "crossval") -> dict[str, Any]:
    """Is the StyleGAN2 scrape's faint bottom-right watermark a cue? The shared pair (StyleGAN2 scrape vs FFHQ
    thumbnails) as stored, and with the bottom-right corner of *both* classes replaced by the mirrored rows above
    it (``wipecorner``); a model that reads the watermark loses AUC when it is gone."""
    reals, fakes = split_files(data, FFHQ, split, n), split_files(data, SG2, split, n)
    th = dict(model.thresholds)
    pairs = []
    for v in ("raw", "wipecorner", "jpeg75", "wipecorner+jpeg75"):
        pr = _score(model, [_write_variant(f, work / "real" / v, v) for f in reals], threads)
        pf = _score(model, [_write_variant(f, work / "fake" / v, v) for f in fakes], threads)
        pairs.append(asdict(pair_metrics(f"stylegan2 vs ffhq, both {v}", pr, pf, th["fpr1"])))
    return {"split": split, "pairs": pairs,
            "note": "in-distribution pair; only the corner differs between the raw and wipecorner rows"}


EXTERNAL_PAIRS = (
    ("lfw-faceswap vs lfw-real", "lfw-faceswap_rees451/fake", "lfw-faceswap_rees451/real"),
    ("ciplab-splice vs ciplab-real", "ciplab-splice_rees451/fake", "ciplab-splice_rees451/real"),
    ("generated-photos vs ciplab-real", "generated-photos_hmdghoul/fake", "ciplab-splice_rees451/real"),
)


def real_sources(model: Any, data: Path, n: int, threads: int, work: Path, split: str = "crossval") -> dict[str, Any]:
    """Flag rates of every real source, files as they are, and of UTKFace's race and gender groups (UTKFace has no
    crossval folder: its ``val`` files stand in on both splits and are never trained on)."""
    from core.importers import utkface_attributes

    th = dict(model.thresholds)
    groups: dict[str, list[Path]] = {f"ffhq ({split})": split_files(data, FFHQ, split, n)}
    utk = split_files(data, UTK, "val", 0)
    groups["utkface (val)"] = utk
    for key in ("race", "gender"):
        for f in utk:
            value = utkface_attributes(f.name).get(key)
            if value:
                groups.setdefault(f"utkface {key}={value}", []).append(f)
    scored = {f: p for f, p in zip(utk, _score(model, utk, threads))}
    rows = []
    for name, files in groups.items():
        p = np.array([scored[f] for f in files]) if name.startswith("utkface") else _score(model, files, threads)
        ok = p[~np.isnan(p)]
        rows.append({
            "group": name, "n": int(ok.size),
            "flagged": flag_rates(ok, th),
            "median_p": float(np.median(ok)),
        })
    return {"split": split, "groups": rows}


#: what the real-sources rows are and are not: printed under their table, since the rows look like test rates
REAL_SOURCES_NOTE = (
    "**In-sample rows.** Every row here comes from a source the model trained on, and the validation reals (the "
    "UTKFace rows, and FFHQ on the val split) are the ones its threshold presets were fitted on: they show how the "
    "flag rate differs between sources and between UTKFace's race and gender groups, not the false-positive rate "
    "on new photos. That is measured on reals from sources absent from training: the external-dev and "
    "transfer-val real tables."
)


def external_dev(model: Any, data: Path, n: int, threads: int, work: Path, split: str = "crossval") -> dict[str, Any]:
    """The evaluation-only external pairs, files as they are (both sides JPEG in every pair)."""
    root = data / "external_dev"
    cache: dict[str, np.ndarray] = {}

    def scores(rel: str) -> np.ndarray:
        if rel not in cache:
            cache[rel] = _score(model, _sample(root / rel, n), threads)
        return cache[rel]

    th = dict(model.thresholds)
    pairs = [pair_metrics(name, scores(real), scores(fake), th["fpr1"]) for name, fake, real in EXTERNAL_PAIRS]
    reals = []
    for real in dict.fromkeys(real for _, _, real in EXTERNAL_PAIRS):  # each real set once, in pair order
        ok = scores(real)[~np.isnan(scores(real))]
        reals.append({"reals": real, "n": int(ok.size), "median_p": float(np.median(ok)),
                      "flagged": flag_rates(ok, th)})
    return {"root": "shared external_dev (evaluation only)", "pairs": [asdict(p) for p in pairs], "reals": reals}


#: transfer_val groups (``labels.csv`` column ``group``): the matched real side and the fakes compared with it
TV_REAL = "ffhq512-real"
TV_MATCHED = ("pggan", "stylegan1", "stylegan2")
TV_CROSS = ("sd1-a-man",)
#: how a transfer_val file reaches the scan, both classes alike: as published, framed tighter (the centre 90 / 75 %
#: of each side, lossless), and served smaller (0.5x / 0.25x with an area or a Lanczos filter, then JPEG q75)
TV_VARIANTS = (
    "raw", "centre90", "centre75",
    "down0.5+jpeg75", "down0.5:lanczos+jpeg75", "down0.25+jpeg75", "down0.25:lanczos+jpeg75",
)


def transfer_val_files(data: Path, n: int = 0) -> dict[str, list[Path]]:
    """``{group: files}`` of ``DATA/transfer_val`` from its ``labels.csv`` (the first ``n`` of each group when
    ``n`` > 0); a missing folder or labels file is a one-line :class:`DataError`."""
    import csv

    root = data / "transfer_val"
    labels = root / "labels.csv"
    if not labels.is_file():
        raise DataError(f"{labels}: not found (transfer_val is part of ../shared/data; set --data)")
    groups: dict[str, list[Path]] = {}
    with open(labels, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            groups.setdefault(row["group"], []).append(root / row["path"])
    missing = [g for g in (TV_REAL, *TV_MATCHED, *TV_CROSS) if g not in groups]
    if missing:
        raise DataError(f"{labels}: no rows for group(s) {', '.join(missing)}")
    return {g: sorted(fs)[:n] if n else sorted(fs) for g, fs in groups.items()}


def transfer_val(model: Any, data: Path, n: int, threads: int, work: Path, split: str = "crossval") -> dict[str, Any]:
    """Real-world generators that no training folder holds (``DATA/transfer_val``), end to end through ``scan``:
    PGGAN, StyleGAN1 and StyleGAN2 faces against FFHQ photos that went through the same 512 px JPEG pipeline
    (matched pairs) and Stable Diffusion 1.x portraits against the same photos (cross-source: other framing,
    quality and subjects), each under every :data:`TV_VARIANTS` delivery applied to both classes alike. Models may
    be *chosen* on these numbers by a rule written down first (:func:`select_transfer`); never trained, calibrated
    or thresholded on them. ``split`` is ignored (the set is its own split)."""
    files = transfer_val_files(data, n)
    th = dict(model.thresholds)
    groups = (TV_REAL, *TV_MATCHED, *TV_CROSS)
    scores = {
        (g, v): _score(model, [_write_variant(f, work / v.replace(":", "-") / g, v) for f in files[g]], threads)
        for v in TV_VARIANTS for g in groups
    }
    reals = []
    for v in TV_VARIANTS:
        p = scores[(TV_REAL, v)]
        ok = p[~np.isnan(p)]
        reals.append({
            "variant": v, "n": int(ok.size), "n_unscored": int(np.isnan(p).sum()), "median_p": float(np.median(ok)),
            "flagged": flag_rates(ok, th),
        })
    pairs = []
    for g in (*TV_MATCHED, *TV_CROSS):
        for v in TV_VARIANTS:
            pr = asdict(pair_metrics(f"{g} vs {TV_REAL}, both {v}", scores[(TV_REAL, v)], scores[(g, v)], th["fpr1"]))
            pr.update(group=g, variant=v, matched=g in TV_MATCHED,
                      median_fake_p=float(np.nanmedian(scores[(g, v)])))
            pairs.append(pr)
    out = {
        "root": "shared transfer_val (model choice only: never trained, calibrated or thresholded on)",
        "variants": list(TV_VARIANTS), "matched": list(TV_MATCHED), "cross_source": list(TV_CROSS),
        "reals": reals, "pairs": pairs,
    }
    out["summary"] = transfer_val_summary(out)
    return out


def _matched_parents(parents: list[Path], side: int, work: Path) -> list[Path]:
    """``parents`` at ``side`` px, resized exactly as ``forensics gan sample`` resized them before reconstructing
    (:func:`generators.data.load_image`, PNG), so a pair's sides differ only in the decoder."""
    import cv2

    from generators.data import load_image

    work.mkdir(parents=True, exist_ok=True)
    out = []
    for f in parents:
        try:
            img = load_image(f, side)
        except (OSError, ValueError) as exc:
            raise DataError(f"{f}: not a decodable image ({exc})") from None
        dst = work / f"{f.stem}.png"
        cv2.imwrite(str(dst), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        out.append(dst)
    return out


#: deliveries both sides of a real/reconstruction pair get
DECODER_VARIANTS = ("raw", "jpeg75", "down0.5")


def unseen_decoders(
    model: Any, data: Path, n: int, threads: int, work: Path, split: str = "crossval", recon: Path | None = None
) -> dict[str, Any]:
    """Real/reconstruction pairs through each of the project's autoencoders (``generators.diffusion``): the
    parents are the crossval reals' aligned crops that ``benchmarks/build_suite_dataset.sh`` writes under
    ``RECON/edit-inputs/crossval``, the fakes their reconstructions under ``RECON/fakes/<family>-crossval``; both
    sides get the same delivery, so a pair differs only in the decoder's trace. A family the model never trained
    on asks whether decoder traces transfer: every latent-diffusion face the project is judged on leaves through
    a decoder no folder here holds. Test only (never a selection input)."""
    from generators.diffusion.families import reconstruction_families
    from generators.registry import family_components

    if recon is None:
        raise DataError("unseen-decoders needs --recon DIR (the build_suite_dataset.sh work folder)")
    parents = _sample(recon / "edit-inputs" / "crossval", n, "*.png")
    trained = set(model.card.get("training", {}).get("families", []))
    # a decoder counts as seen when the model trained on any family that shares a component with it (ldm, sdedit
    # and ldm-inpaint decode through ae-recon's autoencoder)
    comps = family_components()
    seen_parts = {c for f in trained for c in comps.get(f, ())}
    th = dict(model.thresholds)
    real_scores: dict[tuple[int, str], np.ndarray] = {}
    pairs, families, missing = [], [], []
    for ups, fam in reconstruction_families().items():
        folder = recon / "fakes" / f"{fam}-crossval" / "images"
        if not folder.is_dir():
            missing.append(fam)
            continue
        fakes = _sample(folder, n, "*.png")
        side = _image_side(fakes[0])
        seen = fam in trained or bool(comps.get(fam, set()) & seen_parts)
        families.append({"family": fam, "decoder_upsample": ups, "seen_in_training": seen, "res": side})
        base = None
        for v in DECODER_VARIANTS:
            if (side, v) not in real_scores:
                base = base or _matched_parents(parents, side, work / f"parents{side}")
                variants = [_write_variant(f, work / f"real{side}" / v, v) for f in base]
                real_scores[(side, v)] = _score(model, variants, threads)
            p_fake = _score(model, [_write_variant(f, work / fam / v, v) for f in fakes], threads)
            name = f"{fam} vs its parents, both {v}"
            pairs.append(asdict(pair_metrics(name, real_scores[(side, v)], p_fake, th["fpr1"])))
    if not families:
        raise DataError(f"{recon / 'fakes'}: no <autoencoder>-crossval folders (run build_suite_dataset.sh)")
    return {"root": "project autoencoders' crossval reconstructions vs their parents", "families": families,
            "missing": missing, "pairs": pairs}


def _image_side(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return min(im.size)


PROTOCOLS: dict[str, Callable[..., dict[str, Any]]] = {
    "shortcuts": shortcuts, "real-sources": real_sources, "external-dev": external_dev,
    "unseen-decoders": unseen_decoders, "transfer-val": transfer_val, "watermark": watermark,
}
#: protocols that read the project's generated data (``--recon``), not only ``../shared/data``
NEEDS_RECON = ("unseen-decoders",)
#: the protocols a ``--split val`` run may use (external_dev is evaluation-only: never a selection input)
VAL_PROTOCOLS = ("shortcuts", "real-sources")


# ----------------------------------------------------------------------------------------------------------------
# reports
# ----------------------------------------------------------------------------------------------------------------
def render(res: dict[str, Any]) -> str:
    """Markdown of one model's results (written next to ``results.json``)."""
    m = res["model"]
    lines = [
        f"# Transfer protocols: {res['label']} ({res.get('split', 'crossval')} split)",
        "",
        f"Model `{m['name']}` (weights sha256 `{m['sha256'][:16]}`), thresholds {json.dumps(m['thresholds'])}.",
        f"Command: `{res['command']}` (commit {res['commit']}, {res['minutes']:.1f} min)."
        + (f" Face stage: `{res['scan']['face_detector']}` at {res['scan']['detect_max_side']} px." if "scan" in res
           else ""),
        "",
    ]
    sc = res["protocols"].get("shortcuts")
    if sc:
        lines += [
            "## shortcuts", "", f"Reals: {sc['reals']}. Fakes: {sc['fakes']}.", "",
            "| reals as | n | median P(fake) | shift vs raw | flagged balanced | flagged fpr1 | flagged fpr01 |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [f"| {r['variant']} | {r['n']} | {r['median_p']:.3f} | {r['median_shift']:+.3f} | {_flags(r)} |"
                  for r in sc["real_variants"]]
        lines += ["", _pair_table(sc["pairs"]), "", sc["note"], ""]
    rs = res["protocols"].get("real-sources")
    if rs:
        lines += [
            "## real-sources", "", "| reals | n | median P(fake) | flagged balanced | flagged fpr1 | flagged fpr01 |",
            "|---|---|---|---|---|---|",
        ]
        lines += [f"| {g['group']} | {g['n']} | {g['median_p']:.3f} | {_flags(g)} |" for g in rs["groups"]]
        lines += ["", REAL_SOURCES_NOTE, ""]
    ex = res["protocols"].get("external-dev")
    if ex:
        lines += ["## external-dev", "", f"{ex['root']}.", "", _pair_table(ex["pairs"]), ""]
        if ex.get("reals"):  # results before 2026-12-07 counted only fpr1, inside the pair table
            lines += ["Reals flagged by each policy (sources absent from training):", "",
                      "| reals | n | median P(fake) | flagged balanced | flagged fpr1 | flagged fpr01 |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {r['reals']} | {r['n']} | {r['median_p']:.3f} | {_flags(r)} |" for r in ex["reals"]]
            lines.append("")
    tv = res["protocols"].get("transfer-val")
    if tv:
        lines += ["## transfer-val", "", f"{tv['root']}. AUC of each fake group against the FFHQ-512 reals, both "
                  "delivered the same way (matched: one pipeline for both classes; cross-source: other framing, "
                  "quality and subjects).", "", _tv_grid(tv), "", "Reals flagged (FFHQ-512):", "",
                  "| variant | n | median P(fake) | flagged balanced | flagged fpr1 | flagged fpr01 |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['variant']} | {r['n']} | {r['median_p']:.3f} | {_flags(r)} |" for r in tv["reals"]]
        lines += ["", _pair_table(tv["pairs"]), ""]
    wm = res["protocols"].get("watermark")
    if wm:
        lines += ["## watermark", "", f"{wm['note']} ({wm['split']} split).", "", _pair_table(wm["pairs"]), ""]
    ud = res["protocols"].get("unseen-decoders")
    if ud:
        seen = ", ".join(
            f"{f['family']} ({f['decoder_upsample']}, {f['res']} px, {'seen' if f['seen_in_training'] else 'unseen'})"
            for f in ud["families"]
        )
        gone = f" Not built (no crossval folder): {', '.join(ud['missing'])}." if ud.get("missing") else ""
        lines += ["## unseen-decoders", "", f"{ud['root']}: {seen}.{gone}", "", _pair_table(ud["pairs"]), ""]
    return "\n".join(lines)


def _tv_grid(tv: dict[str, Any]) -> str:
    """Groups x variants of AUCs, the worst cell of each row last."""
    vs = tv["variants"]
    rows = ["| fakes | " + " | ".join(vs) + " | worst |", "|---|" + "---|" * (len(vs) + 1)]
    for g in (*tv["matched"], *tv["cross_source"]):
        aucs = {p["variant"]: p["auc"] for p in tv["pairs"] if p["group"] == g}
        kind = "" if g in tv["matched"] else " (cross-source)"
        rows.append(f"| {g}{kind} | " + " | ".join(f"{aucs[v]:.3f}" for v in vs) + f" | {min(aucs.values()):.3f} |")
    return "\n".join(rows)


def _flags(row: dict[str, Any]) -> str:
    """``balanced % | fpr1 % | fpr01 %`` cells of a row's flag rates (``-`` where an older result did not count one)."""
    f = row["flagged"]
    return " | ".join("-" if k not in f else f"{100 * f[k]:.1f} %" for k in ("balanced", "fpr1", "fpr01"))


def _pair_table(pairs: list[dict[str, Any]]) -> str:
    rows = [
        "| pair | n real / fake | AUC [95 % CI] | reals flagged fpr1 [95 % CI] | TPR fpr1 "
        "| precision fpr1 at 1 / 10 / 50 % fakes [range from the rate bounds] |",
        "|---|---|---|---|---|---|",
    ]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for p in pairs:
        ranges = p.get("precision_fpr1_range") or {}
        prec = " / ".join(
            fmt(v) + (f" [{fmt(ranges[k][0])}, {fmt(ranges[k][1])}]" if k in ranges else "")
            for k, v in p["precision_fpr1"].items()
        )
        ci = p.get("reals_flagged_fpr1_ci")
        flag = f"{100 * p['reals_flagged_fpr1']:.1f} %" + (
            f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")  # older results carry no bounds
        rows.append(
            f"| {p['name']} | {p['n_real']} / {p['n_fake']} | {p['auc']:.3f} [{p['auc_ci'][0]:.3f}, "
            f"{p['auc_ci'][1]:.3f}] | {flag} | {p['tpr_fpr1']:.2f} | {prec} |"
        )
    return "\n".join(rows)


def _results(root: Path, split: str) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for f in sorted(root.glob("*/results.json")):
        r = json.loads(f.read_text(encoding="utf-8"))
        if r.get("split", "crossval") == split:
            out.append((f, r))
    return out


def comparison_table(root: Path, split: str = "crossval", link: str = "") -> str:
    """In-distribution: one row per model under ``root`` with a ``shortcuts`` result of ``split`` (the shared
    StyleGAN2 scrape and FFHQ thumbnails, the same sources the models trained on)."""
    head = (
        "| model | weights | worst real flag rate fpr1 (variant) | worst median shift | matched q75 AUC | "
        "matched q50 AUC | matched 0.5x AUC |"
    )
    lines = [head, "|" + "---|" * 7]
    for f, r in _results(root, split):
        sc = r["protocols"].get("shortcuts")
        if not sc:
            continue
        worst = max(sc["real_variants"], key=lambda v: v["flagged"]["fpr1"])
        shift = max(abs(v["median_shift"]) for v in sc["real_variants"])
        pa = {p["name"].split("both ")[-1]: p["auc"] for p in sc["pairs"]}
        cells = [
            f"[{r['label']}]({link}{f.parent.name}/report.md)", f"`{r['model']['sha256'][:12]}`",
            f"{100 * worst['flagged']['fpr1']:.1f} % ({worst['variant']})", f"{shift:.3f}",
            f"{pa['jpeg75']:.3f}", f"{pa['jpeg50']:.3f}", f"{pa['down0.5']:.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def external_table(root: Path, link: str = "") -> str:
    """The evaluation-only ``external_dev`` pairs: swaps and splices against their own reals (matched), the
    commercial GAN against the splice set's reals (cross-source: it measures the two sources as much as the model)."""
    lines = ["| model | weights | LFW swap vs LFW real | splice vs CIPLAB real | commercial GAN vs CIPLAB real "
             "(cross-source) | LFW reals flagged fpr1 [95 % CI] |", "|" + "---|" * 6]
    for f, r in _results(root, "crossval"):
        ex = r["protocols"].get("external-dev")
        if not ex:
            continue
        pe = ex["pairs"]
        ci = pe[0].get("reals_flagged_fpr1_ci")
        flag = f"{100 * pe[0]['reals_flagged_fpr1']:.1f} %" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")
        lines.append(f"| [{r['label']}]({link}{f.parent.name}/report.md) | `{r['model']['sha256'][:12]}` | "
                     + " | ".join(f"{p['auc']:.3f}" for p in pe) + f" | {flag} |")
    return "\n".join(lines)


def readme_block(root: Path) -> str:
    """The README's results: transfer (generators absent from training) first, then the evaluation-only external
    pairs, then the in-distribution crossval table; each with the selection that used it."""
    link = "benchmarks/results/transfer/"
    lines = ["#### Transfer: real-world generators absent from every training folder (`transfer_val`)", "",
             "Each cell: AUC of the fakes against the FFHQ-512 reals, both delivered the same way; `c75`: both cut "
             "to the centre 75 % of each side (a tightly framed photo); `0.25x`: the worse of area and Lanczos "
             "downscaling, then JPEG q75. SD 1.x against FFHQ is cross-source (other framing, quality and subjects).",
             "", transfer_val_table(root, link=link), ""]
    tsel = root / "selection-transfer.json"
    if tsel.is_file():
        sel = json.loads(tsel.read_text(encoding="utf-8"))
        lines += [f"Shipped: **{sel['selected']}**, selected on transfer_val ({sel['rule']}). "
                  + (f"{sel['fallback']}. " if sel.get("fallback") else ""), ""]
    lines += ["#### External (evaluation only: never trained, calibrated or selected on)", "",
              external_table(root, link=link), "",
              "#### In-distribution: the shared crossval pair (the same two scrapes as training)", "",
              "StyleGAN2 (thispersondoesnotexist scrape) vs FFHQ thumbnails, crossval folders: the same sources the "
              "models trained on, so these say nothing about unseen generators.", "",
              comparison_table(root, "crossval", link=link), ""]
    sel_path = root / "selection.json"
    if sel_path.is_file():
        sel = json.loads(sel_path.read_text(encoding="utf-8"))
        lines.append(f"Up to v14, models were selected on the in-distribution validation split ({sel['rule']}; "
                     f"last selected: **{sel['selected']}**). ")
    lines.append(
        "Generated by `python -m benchmarks.transfer --readme README.md` from "
        "`benchmarks/results/transfer/*/results.json` ([index with the validation table]"
        "(benchmarks/results/transfer/README.md))."
    )
    return "\n".join(lines)


def write_index(root: Path) -> Path:
    """``ROOT/README.md``: the validation table the selection used, the selection, then the test tables."""
    sel_path = root / "selection.json"
    lines = [
        "# Transfer protocols: every candidate, every protocol",
        "",
        "Generated by `python -m benchmarks.transfer --index benchmarks/results/transfer` from the `results.json` "
        "of each folder (each folder's `report.md` has its command, model hash and intervals).",
        "",
        "## transfer_val (generators absent from training; what selection uses since issue #30)",
        "",
        transfer_val_table(root),
        "",
        "## Validation split, in-distribution (what selection used up to v14)",
        "",
        comparison_table(root, "val"),
    ]
    tsel = root / "selection-transfer.json"
    if tsel.is_file():
        sel = json.loads(tsel.read_text(encoding="utf-8"))
        lines += ["", f"**Selected on transfer_val: {sel['selected']}** (rule: {sel['rule']}).",
                  "Made by `python -m benchmarks.transfer --select-transfer benchmarks/results/transfer`."]
    if sel_path.is_file():
        sel = json.loads(sel_path.read_text(encoding="utf-8"))
        lines += ["", f"**Selected on validation (up to v14): {sel['selected']}** (rule: {sel['rule']}; "
                  f"split: {sel['split']}).",
                  "Made by `python -m benchmarks.transfer --select benchmarks/results/transfer`."]
    from detectors.default_model import portable  # machine paths out of the recorded commands

    lines += ["", "## Candidates: how each was trained", ""]
    seen: set[str] = set()
    for f in sorted(root.glob("*/results.json")):
        m = json.loads(f.read_text(encoding="utf-8"))["model"]
        if m["sha256"] in seen:
            continue
        seen.add(m["sha256"])
        cmd = m.get("trained_by") or "(command in its model card)"
        lines.append(f"- `{m['sha256'][:12]}` ({len(m.get('families', []))} fake families): `{portable(cmd)}`")
    lines += [
        "",
        "## External: external_dev (never a selection input)",
        "",
        external_table(root),
        "",
        "## In-distribution test: the shared crossval pair (never a selection input)",
        "",
        comparison_table(root, "crossval"),
        "",
        "Goals (issue #17, in-distribution): reals flagged <= 2 % under fpr1 in every variant, median shift <= 0.05, "
        "matched AUC >= 0.95. Goals (issue #30, transfer): every matched transfer_val pair >= 0.90 at native size "
        "and centre 75 %, >= 0.85 after 0.25x + q75; SD 1.x >= 0.85; reals from sources not in training flagged "
        "<= 2 % under fpr1.",
    ]
    out = root / "README.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


#: a candidate is eligible when no real variant of the validation shortcuts protocol is flagged more often than this
#: under ``fpr1`` (the goal is 2 %; ~200 validation reals put one image at 0.5 %, so the rule allows that noise)
MAX_VAL_FLAG = 0.03
#: worst validation median shift (raw -> JPEG q75 / q50 / 0.5x) a candidate may have to compete on AUC: the
#: issue's goal for the shipped model
MAX_VAL_SHIFT = 0.05


#: how much mean matched validation AUC a fused model may give up against its selected member: the
#: validation set holds no swaps, so what blending adds is not measurable there; what it costs the artifact
#: side is, and it must be within noise (declared before any fused candidate was scored)
FUSE_MAX_AUC_LOSS = 0.01
#: ... and how much worst validation median shift it may add (declared with the shift clause, before any fused
#: candidate was scored)
FUSE_MAX_SHIFT_GAIN = 0.02


def _fused_upgrade(best: dict[str, Any], fused: list[dict[str, Any]], band: float | None) -> dict[str, Any]:
    """The fused candidate built on ``best`` that costs nothing measurable on validation, else ``best``."""
    ok = []
    tol = band if band is not None else flag_tie_band(best["worst_val_real_flag_fpr1"], best["n_val_reals"])
    for f in fused:
        if best["sha256"] not in f["members"]:
            f["eligible"] = False
            continue
        f["eligible"] = (f["worst_val_real_flag_fpr1"] <= best["worst_val_real_flag_fpr1"] + tol
                         and f["max_val_median_shift"] <= best["max_val_median_shift"] + FUSE_MAX_SHIFT_GAIN
                         and f["mean_val_matched_auc"] >= best["mean_val_matched_auc"] - FUSE_MAX_AUC_LOSS)
        if f["eligible"]:
            ok.append(f)
    return max(ok, key=lambda r: r["mean_val_matched_auc"]) if ok else best


def flag_tie_band(rate: float, n: int) -> float:
    """One standard error of the difference between two flag rates measured on ``n`` reals each, at ``rate``
    (floored at one real in ``n``, so a 0 % rate still has a band): closer than this, two candidates' flag rates
    are not told apart by the validation set, and selection should not pretend they are."""
    p = max(rate, 1.0 / n)
    return float(np.sqrt(2.0 * p * (1.0 - p) / n))


def select(root: Path) -> dict[str, Any]:
    """Pick the model to ship from the ``--split val`` results under ``root`` (never from crossval or external).

    Rule: only candidates that saw every fake family the widest candidate saw (a model that never met the
    diffusion families must not win on a StyleGAN2-only validation pair); among those whose worst validation real
    variant is flagged at most :data:`MAX_VAL_FLAG` under ``fpr1``, the highest mean AUC over the delivery-matched
    validation pairs (JPEG q75, q50, 0.5x); if none is that quiet, the lowest worst flag rate, where candidates
    within one standard error of the quietest (:func:`flag_tie_band`: at 200 validation reals a 5 % and a 5.5 %
    flag rate are the same measurement) count as tied and the tie goes to the highest mean matched AUC.
    The tie rule was declared before candidates F / G (session 7) were scored.

    Amended in session 7, *after* the held-preset candidates were scored (disclosed in the README and the card):
    a quiet candidate must also keep its worst validation median shift within :data:`MAX_VAL_SHIFT` (the issue's
    goal); when no quiet candidate does, the quiet one with the smallest shift ships. Why: presets held under every
    common delivery (:func:`detectors.calibration.hold_presets`) are fitted on the same validation reals the flag
    rates are counted on, so the flag filter stopped measuring drift (every held candidate passed it, and the rule
    as first declared would have shipped C-held, whose validation reals move by 0.39 in median P(fake) after JPEG
    q50 and would be flagged in bulk under the ``balanced`` policy ``scan`` uses by default). The median shift is
    the threshold-free measure of the same drift."""
    rows = []
    for f in sorted(root.glob("*/results.json")):
        r = json.loads(f.read_text(encoding="utf-8"))
        if r.get("split") != "val" or "shortcuts" not in r["protocols"]:
            continue
        sc = r["protocols"]["shortcuts"]
        worst = max(v["flagged"]["fpr1"] for v in sc["real_variants"])
        matched = [p["auc"] for p in sc["pairs"] if not p["name"].endswith("raw")]
        rows.append({
            "n_val_reals": min(v["n"] - v.get("n_unscored", 0) for v in sc["real_variants"]),
            "label": r["label"], "model": r["model"]["ref"], "sha256": r["model"]["sha256"],
            "n_families": len(r["model"].get("families", [])),
            "worst_val_real_flag_fpr1": worst, "max_val_median_shift": max(
                abs(v["median_shift"]) for v in sc["real_variants"]),
            "mean_val_matched_auc": float(np.mean(matched)), "quiet": worst <= MAX_VAL_FLAG,
            "members": r["model"].get("members", []),
        })
        rows[-1]["eligible"] = rows[-1]["quiet"] and rows[-1]["max_val_median_shift"] <= MAX_VAL_SHIFT
    if not rows:
        raise DataError(f"{root}: no --split val results to select from")
    fused = [r for r in rows if r["members"]]
    rows = [r for r in rows if not r["members"]]
    if not rows:
        raise DataError(f"{root}: only fused candidates; select among single models first")
    widest = max(r["n_families"] for r in rows)
    for r in rows:
        r["full_coverage"] = r["n_families"] == widest
        r["eligible"] = r["eligible"] and r["full_coverage"]
    covered = [r for r in rows if r["full_coverage"]]
    eligible = [r for r in covered if r["eligible"]]
    quiet = [r for r in covered if r["quiet"]]
    band = None
    if eligible:
        best = max(eligible, key=lambda r: r["mean_val_matched_auc"])
    elif quiet:
        best = min(quiet, key=lambda r: r["max_val_median_shift"])
    else:
        quietest = min(covered, key=lambda r: r["worst_val_real_flag_fpr1"])
        band = flag_tie_band(quietest["worst_val_real_flag_fpr1"], quietest["n_val_reals"])
        tied = [r for r in covered if r["worst_val_real_flag_fpr1"] <= quietest["worst_val_real_flag_fpr1"] + band]
        for r in covered:
            r["tied_with_quietest"] = r in tied
        best = max(tied, key=lambda r: r["mean_val_matched_auc"])
    base, best = best, _fused_upgrade(best, fused, band)
    return {
        "split": "val: the 10 % of each shared training folder hashed into val at import (never trained on)",
        "rule": f"every fake family of the widest candidate seen in training; worst validation real flag rate "
                f"under fpr1 <= {MAX_VAL_FLAG:.0%} and worst validation median shift <= {MAX_VAL_SHIFT}, then the "
                "highest mean delivery-matched validation AUC (StyleGAN2 vs FFHQ at JPEG q75, q50, 0.5x); when no "
                "quiet candidate keeps that shift, the quiet one with the smallest shift; when none is quiet, the "
                "lowest worst flag rate, ties (within one standard error of the quietest) broken by the mean "
                "matched AUC (the shift clause was added after held presets made the flag rate in-sample)",
        "tie_band": band,
        "fusion_rule": f"a fused model (the selected one + members that look for other manipulations, e.g. "
                       f"blending) replaces it when, on validation, its worst real flag rate is within one standard "
                       f"error of the selected one's, its worst median shift at most {FUSE_MAX_SHIFT_GAIN} higher "
                       f"and its mean matched AUC at most {FUSE_MAX_AUC_LOSS} lower",
        **({"selected_base": base["label"]} if best is not base else {}),
        "candidates": rows + fused,
        "selected": best["label"],
    }


def transfer_val_summary(tv: dict[str, Any]) -> dict[str, Any]:
    """The numbers a transfer_val result is judged and selected by: every cell's AUC, the worst cell, the mean, the
    worst matched cell at native size / centre 75 % / 0.25x, the SD cross-source pair and the real flag rates."""
    cells = {(p["group"], p["variant"]): p["auc"] for p in tv["pairs"]}
    matched = {k: v for k, v in cells.items() if k[0] in tv["matched"]}

    def worst(variants: tuple[str, ...], keys: dict) -> float:
        return min(v for (_, var), v in keys.items() if var in variants)

    quarter = tuple(v for v in tv["variants"] if v.startswith("down0.25"))
    sd = {k: v for k, v in cells.items() if k[0] in tv["cross_source"]}
    return {
        "worst_cell": min(cells.values()), "worst_cell_name": " ".join(min(cells, key=cells.get)),
        "mean_auc": float(np.mean(list(cells.values()))),
        "worst_matched_raw": worst(("raw",), matched), "worst_matched_centre75": worst(("centre75",), matched),
        "worst_matched_quarter": worst(quarter, matched), "worst_sd": min(sd.values()) if sd else float("nan"),
        "sd_raw": cells.get((tv["cross_source"][0], "raw"), float("nan")) if tv["cross_source"] else float("nan"),
        "worst_real_flag_fpr1": max(r["flagged"]["fpr1"] for r in tv["reals"]),
    }


def transfer_val_table(root: Path, link: str = "", prefix: str = "") -> str:
    """One row per model under ``root`` with a transfer-val result (whose label starts with ``prefix``): the goal
    cells side by side."""
    lines = [
        "| model | weights | PGGAN raw / c75 / 0.25x | StyleGAN1 raw / c75 / 0.25x | StyleGAN2 raw / c75 / 0.25x "
        "| SD 1.x raw / c75 / 0.25x (cross-source) | worst cell | mean | FFHQ-512 reals flagged fpr1 (worst) |",
        "|" + "---|" * 9,
    ]
    for f in sorted(root.glob("*/results.json")):
        r = json.loads(f.read_text(encoding="utf-8"))
        tv = r["protocols"].get("transfer-val")
        if not tv or not r["label"].startswith(prefix):
            continue
        cells = {(p["group"], p["variant"]): p["auc"] for p in tv["pairs"]}
        quarter = [v for v in tv["variants"] if v.startswith("down0.25")]

        def trio(g: str, cells: dict = cells, quarter: list = quarter) -> str:
            q = min(cells[(g, v)] for v in quarter)
            return f"{cells[(g, 'raw')]:.3f} / {cells[(g, 'centre75')]:.3f} / {q:.3f}"

        sm = transfer_val_summary(tv)
        lines.append(
            f"| [{r['label']}]({link}{f.parent.name}/report.md) | `{r['model']['sha256'][:12]}` | "
            + " | ".join(trio(g) for g in ("pggan", "stylegan1", "stylegan2", "sd1-a-man"))
            + f" | {sm['worst_cell']:.3f} | {sm['mean_auc']:.3f} | {100 * sm['worst_real_flag_fpr1']:.1f} % |"
        )
    return "\n".join(lines)


#: transfer_val selection (declared in session 14 before any candidate of issue #30 was scored): a candidate may
#: flag at most this share of the FFHQ-512 reals under ``fpr1`` in any transfer_val variant (the issue's goal for
#: reals from sources not in training) ...
TV_MAX_FLAG = 0.02
#: ... and must stay quiet and steady in distribution (its ``val-`` shortcuts result: :data:`MAX_VAL_FLAG`,
#: :data:`MAX_VAL_SHIFT`); the worst cell decides, candidates within this much of the best worst cell count as
#: tied and the tie goes to the higher mean over all cells
TV_TIE = 0.01


def select_transfer(root: Path) -> dict[str, Any]:
    """Pick the model to ship on ``transfer_val`` (issue #30): the rule, declared before the candidates were
    scored, puts the worst case first, because an analyst meets one generator and one delivery at a time.

    1. Eligible: FFHQ-512 reals flagged at most :data:`TV_MAX_FLAG` under ``fpr1`` in every transfer_val variant,
       and, on the in-distribution validation split (the ``val-LABEL`` result of the same weights), the worst real
       variant flagged at most :data:`MAX_VAL_FLAG` with a worst median shift at most :data:`MAX_VAL_SHIFT`.
    2. Among the eligible, the highest *worst cell*: the lowest AUC over every fake group (PGGAN, StyleGAN1,
       StyleGAN2 matched; SD 1.x cross-source) under every variant (native, centre 90 / 75 %, 0.5x / 0.25x with
       area or Lanczos + JPEG q75).
    3. Candidates within :data:`TV_TIE` of that worst cell are tied; the tie goes to the higher mean AUC over all
       cells.
    4. With no eligible candidate, steps 2-3 among those that pass the in-distribution half of step 1, else
       among all; the record says so.

    Never trained, calibrated or thresholded on: the thresholds come from each model's own validation split."""
    val: dict[str, dict[str, Any]] = {}
    cands = []
    for f in sorted(root.glob("*/results.json")):
        r = json.loads(f.read_text(encoding="utf-8"))
        if r.get("split") == "val" and "shortcuts" in r["protocols"]:
            sc = r["protocols"]["shortcuts"]
            val[r["model"]["sha256"]] = {
                "worst_flag": max(v["flagged"]["fpr1"] for v in sc["real_variants"]),
                "shift": max(abs(v["median_shift"]) for v in sc["real_variants"]),
            }
        elif "transfer-val" in r["protocols"]:
            cands.append({"label": r["label"], "model": r["model"]["ref"], "sha256": r["model"]["sha256"],
                          **transfer_val_summary(r["protocols"]["transfer-val"])})
    if not cands:
        raise DataError(f"{root}: no transfer-val results to select from")
    for c in cands:
        v = val.get(c["sha256"])
        c["val_worst_flag_fpr1"], c["val_max_shift"] = (v["worst_flag"], v["shift"]) if v else (None, None)
        c["in_distribution_ok"] = bool(v) and v["worst_flag"] <= MAX_VAL_FLAG and v["shift"] <= MAX_VAL_SHIFT
        c["eligible"] = c["in_distribution_ok"] and c["worst_real_flag_fpr1"] <= TV_MAX_FLAG
    pool = [c for c in cands if c["eligible"]] or [c for c in cands if c["in_distribution_ok"]] or cands
    fallback = "" if pool[0]["eligible"] else (
        "no candidate eligible: chosen among those quiet in distribution" if pool[0]["in_distribution_ok"]
        else "no candidate eligible or quiet in distribution: chosen among all")
    top = max(c["worst_cell"] for c in pool)
    tied = [c for c in pool if c["worst_cell"] >= top - TV_TIE]
    best = max(tied, key=lambda c: c["mean_auc"])
    return {
        "split": "transfer_val (real-world generators absent from training; choice only, never training, "
                 "calibration or thresholds)",
        "rule": f"FFHQ-512 reals flagged <= {TV_MAX_FLAG:.0%} under fpr1 in every transfer_val variant and, on "
                f"the in-distribution validation split, worst real flag <= {MAX_VAL_FLAG:.0%} and worst median "
                f"shift <= {MAX_VAL_SHIFT}; then the highest worst AUC over every fake group x variant cell; "
                f"within {TV_TIE} of it, the highest mean AUC (declared in session 14 before any #30 candidate "
                "was scored)",
        "fallback": fallback, "candidates": cands, "selected": best["label"],
    }


def _scan_settings() -> dict[str, Any]:
    """The face-stage settings the scores were made with (the overrides over ``ScanConfig``'s defaults)."""
    from forensics.scanning.config import ScanConfig

    cfg = ScanConfig(**SCAN_OVERRIDES)
    return {"face_detector": cfg.face_detector, "detect_max_side": cfg.detect_max_side}


def run(
    model_ref: str, label: str, out: Path, data: Path, n: int, threads: int, protocols: list[str], split: str,
    recon: Path | None = None,
) -> Path:
    from detectors.modelfile import load_model

    if split == "val" and set(protocols) - set(VAL_PROTOCOLS):
        raise DataError(
            f"--split val: only {', '.join(VAL_PROTOCOLS)} (external-dev, unseen-decoders: never a selection input)"
        )
    if not data.is_dir():
        raise DataError(f"{data}: shared data folder not found (set --data or FORENSICS_DATA)")
    model = load_model(model_ref, device="cpu")
    rec = start_record(command_line("benchmarks.transfer"))  # the model: below, with its thresholds and training
    t0 = time.time()
    res: dict[str, Any] = {
        "label": label,
        "model": {
            "ref": model_ref, "name": model.card.get("name", ""), "sha256": model.sha256,
            "thresholds": dict(model.thresholds), "threshold_support": model.card.get("threshold_support", {}),
            "families": sorted(model.card.get("training", {}).get("families", [])),
            "trained_by": model.card.get("training", {}).get("command", ""),
            "members": [m["sha256"] for m in model.card.get("training", {}).get("fused_from", [])],
        },
        "command": rec.command,
        "scan": _scan_settings(),
        "commit": rec.commit,
        "started": rec.started,
        "environment": rec.environment,
        "n_per_set": n,
        "split": split,
        "protocols": {},
    }
    with tempfile.TemporaryDirectory(prefix="transfer-") as tmp:
        for name in protocols:
            extra = {"recon": recon} if name in NEEDS_RECON else {}
            res["protocols"][name] = PROTOCOLS[name](model, data, n, threads, Path(tmp) / name, split=split, **extra)
    res["minutes"] = (time.time() - t0) / 60
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render(res) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.transfer",
        description="Score a model file end to end on the transfer protocols (shortcuts, external-dev). Example: "
        "python -m benchmarks.transfer --model default --label default --out benchmarks/results/transfer/default",
    )
    ap.add_argument("--model", default="default", help="model dir, model.json or installed name")
    ap.add_argument("--label", default=None, help="row name in the comparison table (default: the model's name)")
    ap.add_argument("--out", type=Path, help="results folder (results.json + report.md)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("FORENSICS_DATA", "../shared/data")))
    ap.add_argument("--n", type=int, default=400, help="files per set (0 = all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--protocol", action="append", choices=sorted(PROTOCOLS), default=None)
    ap.add_argument("--face-detector", default=None, help="scan's face detector (default: the scan default)")
    ap.add_argument("--detect-max-side", type=int, default=None, help="scan's detection side (default: scan's)")
    ap.add_argument("--split", choices=["crossval", "val"], default="crossval",
                    help="crossval: the test numbers; val: the selection numbers (shortcuts and real-sources only)")
    ap.add_argument("--recon", type=Path, default=None,
                    help="work folder of benchmarks/build_suite_dataset.sh (edit-inputs/, fakes/): adds the "
                    "unseen-decoders protocol to a crossval run")
    ap.add_argument("--table", type=Path, default=None, help="print the comparison table of every results folder")
    ap.add_argument("--select", type=Path, default=None,
                    help="write ROOT/selection.json: the candidate to ship, chosen on the --split val results in ROOT")
    ap.add_argument("--select-transfer", type=Path, default=None,
                    help="write ROOT/selection-transfer.json: the candidate to ship, chosen on the transfer-val "
                    "results in ROOT by the declared worst-cell rule")
    ap.add_argument("--index", type=Path, default=None, help="write ROOT/README.md: both tables and the selection")
    ap.add_argument("--readme", type=Path, default=None, help="rewrite the README's transfer block (--results ROOT)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="results root for --readme")
    args = ap.parse_args(argv)
    try:
        if args.readme:
            from benchmarks.leaderboard import update_readme

            update_readme(args.readme, readme_block(args.results), name="transfer")
            print(f"updated {args.readme}")
            return 0
        if args.index:
            print(write_index(args.index).read_text(encoding="utf-8"))
            return 0
        if args.select_transfer:
            sel = select_transfer(args.select_transfer)
            out = args.select_transfer / "selection-transfer.json"
            out.write_text(json.dumps(sel, indent=2) + "\n", encoding="utf-8")
            print(json.dumps(sel, indent=2))
            return 0
        if args.select:
            sel = select(args.select)
            (args.select / "selection.json").write_text(json.dumps(sel, indent=2) + "\n", encoding="utf-8")
            print(json.dumps(sel, indent=2))
            return 0
        if args.table:
            print(comparison_table(args.table, args.split))
            return 0
        if not args.out:
            ap.error("--out is required (or --table)")
        SCAN_OVERRIDES.update({k: v for k, v in (("face_detector", args.face_detector),
                                                 ("detect_max_side", args.detect_max_side)) if v is not None})
        default = VAL_PROTOCOLS if args.split == "val" else tuple(
            p for p in PROTOCOLS if p not in NEEDS_RECON or args.recon
        )
        out = run(args.model, args.label or args.model, args.out, args.data, args.n, args.threads,
                  list(args.protocol or default), args.split, args.recon)
        print((out / "report.md").read_text(encoding="utf-8"))
        return 0
    except ForensicsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
