"""The transfer protocols: which files each one scores, under which deliveries, and what it returns
(``shortcuts``, ``watermark``, ``real-sources``, ``external-dev``, ``transfer-val``, ``unseen-decoders``,
``window-probe``).

Each protocol is ``fn(model, data, n, threads, work, split=...) -> dict`` (the ``results.json`` section of that
name); :data:`PROTOCOLS` maps the ``--protocol`` names to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.transfer.delivery import _score, _write_variant, centre_box
from benchmarks.transfer.metrics import pair_metrics, real_variants, reals_summary, transfer_val_summary
from forensics_core.errors import DataError


def _sample(folder: Path, n: int, pattern: str = "*") -> list[Path]:
    """The first ``n`` media files of ``folder`` (all with ``n`` 0) in name order; a set's ``index.csv`` and other
    non-media files are not samples (with ``--n 0`` the shared crossval folders' index was scored as an image)."""
    from forensics_core.faces.extract import MEDIA_EXTENSIONS

    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)
    if not files:
        raise DataError(f"{folder}: no files")
    return files[:n] if n else files


FFHQ = "real_faces/ffhq128_bhunakit"
SG2 = "gan_faces/tpdne-stylegan2_bhunakit"
UTK = "real_faces/utkface_bagashvilit"


def split_files(data: Path, folder: str, split: str, n: int) -> list[Path]:
    """Files of a shared set in ``split``: its ``crossval`` folder, or the files ``data import`` hashes into
    ``val`` (:func:`forensics_core.importers.split_for` on the path relative to ``data``, as the import computes it)."""
    from forensics_core.importers import split_for

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
    from forensics_core.importers import utkface_attributes

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
        rows.append({"group": name, **reals_summary(p, th)})
    return {"split": split, "groups": rows}


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
        reals.append({"reals": real, **reals_summary(scores(real), th)})
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
        reals.append({"variant": v, **reals_summary(scores[(TV_REAL, v)], th)})
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
    from generators.diffusion.ae_families import reconstruction_families
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


# --------------------------------------------------------------------------------------------------------------
# window-probe: which part of a tighter framing moves a verdict, the face's share of the input or where the window sits
# --------------------------------------------------------------------------------------------------------------
#: the cuts, in report order (see :func:`window_probe`)
WINDOWS = ("photo", "centre75", "centre75, photo's window", "centre75, face-centred")
#: the tighter framing the probe takes apart: the transfer-val ``centre75`` variant's share of each side
CENTRE = 0.75


def _largest(faces: list[Any]) -> Any:
    return max(faces, key=lambda f: f.area) if faces else None


def _cuts(
    img: np.ndarray, tight: np.ndarray, offset: tuple[int, int], face: Any, tight_face: Any, spec: Any
) -> list[np.ndarray] | None:
    """The four crops of one photo ``img`` and its centre crop ``tight`` (whose top-left corner is ``offset``,
    ``x, y``, in ``img``); ``None`` when a face is missing in either."""
    from forensics_core.degrade import resize_to
    from forensics_core.faces.crops import crop_faces, cut_window, native_window

    if face is None or tight_face is None:
        return None
    ox, oy = offset
    x0, y0, side = native_window(img.shape, face.landmarks, spec.size, spec.margin, spec.edge)
    tx, ty, ts = native_window(tight.shape, tight_face.landmarks, spec.size, spec.margin, "reflect")
    cx, cy = tx + ts / 2, ty + ts / 2
    return [
        crop_faces(img, [face], spec)[0].pixels,
        crop_faces(tight, [tight_face], spec)[0].pixels,
        resize_to(cut_window(tight, x0 - ox, y0 - oy, side), spec.size),
        resize_to(cut_window(tight, int(round(cx - side / 2)), int(round(cy - side / 2)), side), spec.size),
    ]


def window_probe(model: Any, data: Path, n: int, threads: int, work: Path, split: str = "crossval") -> dict[str, Any]:
    """AUC of each matched transfer_val pair (FFHQ-512 reals against PGGAN / StyleGAN1 / StyleGAN2, one pipeline for
    both classes) cut four ways (:data:`WINDOWS`) and scored by the model directly: a crop-level probe, not a scan.

    * ``photo``: the full photo, the model's own crop (what ``scan`` gives the model);
    * ``centre75``: its centre 75 % (no resampling), the model's own crop (what ``scan`` gives it then);
    * ``centre75, photo's window``: in the centre 75 %, the window the full photo got (same side, same place: the
      same pixels where the crop still has them, their mirror image where it does not);
    * ``centre75, face-centred``: the same side, centred on the face found in the centre 75 % (where a ``reflect``
      window sits).

    The last two show the face at the same share of the input, so a gap between them is where the window sits (and
    with it where the mirrored fill lies), not the face's size. Measured on v14 (``benchmarks/results/transfer/
    v14-window``), StyleGAN2: 0.963 / 0.559 / 0.931 / 0.707: most of its tight-crop collapse is the window's
    position, a cue of training views that were always the whole FFHQ-aligned image. ``split`` and ``work`` are
    unused (the set is its own split; nothing is written)."""
    import cv2
    import torch

    from forensics.scanning.config import ScanConfig
    from forensics_core.faces import get_face_detector

    torch.set_num_threads(max(1, threads))
    files = transfer_val_files(data, n)
    detector = get_face_detector(ScanConfig().face_detector, "cpu")
    scores: dict[str, np.ndarray] = {}
    skipped: dict[str, int] = {}
    for g in (TV_REAL, *TV_MATCHED):
        crops: list[list[np.ndarray]] = []
        for f in files[g]:
            bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if bgr is None:
                raise DataError(f"{f}: not a decodable image")
            img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            oy, ox, ch, cw = centre_box(img.shape, CENTRE)
            tight = np.ascontiguousarray(img[oy : oy + ch, ox : ox + cw])
            found, found_tight = detector.detect([img, tight])
            cut = _cuts(img, tight, (ox, oy), _largest(found), _largest(found_tight), model.preprocess)
            if cut is not None:
                crops.append(cut)
        skipped[g] = len(files[g]) - len(crops)
        if not crops:
            raise DataError(f"transfer_val {g}: no face found in any file")
        flat = model.predict_proba([c for cut in crops for c in cut])
        scores[g] = flat.reshape(len(crops), len(WINDOWS))
    th = dict(model.thresholds)
    pairs = []
    for g in TV_MATCHED:
        for k, win in enumerate(WINDOWS):
            pr = asdict(pair_metrics(f"{g} vs {TV_REAL}, {win}", scores[TV_REAL][:, k], scores[g][:, k], th["fpr1"]))
            pr.update(group=g, window=win, median_fake_p=float(np.median(scores[g][:, k])),
                      median_real_p=float(np.median(scores[TV_REAL][:, k])))
            pairs.append(pr)
    return {"root": "shared transfer_val, matched pairs, crop level (not through scan)", "windows": list(WINDOWS),
            "skipped_no_face": skipped, "pairs": pairs}


def _image_side(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return min(im.size)


PROTOCOLS: dict[str, Callable[..., dict[str, Any]]] = {
    "shortcuts": shortcuts, "real-sources": real_sources, "external-dev": external_dev,
    "unseen-decoders": unseen_decoders, "transfer-val": transfer_val, "watermark": watermark,
    "window-probe": window_probe,
}
#: protocols that read the project's generated data (``--recon``), not only ``../shared/data``
NEEDS_RECON = ("unseen-decoders",)
#: the protocols a ``--split val`` run may use (external_dev is evaluation-only: never a selection input)
VAL_PROTOCOLS = ("shortcuts", "real-sources")
