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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.metrics import bootstrap_ci, roc_auc
from forensics.errors import DataError, ForensicsError

N_BOOT = 1000
RESULTS = Path(__file__).resolve().parent / "results" / "transfer"
PREVALENCES = (0.01, 0.10, 0.50)

# ----------------------------------------------------------------------------------------------------------------
# delivery variants applied to a raw file (what a platform does before the file reaches scan)
# ----------------------------------------------------------------------------------------------------------------


def _write_variant(src: Path, dst_dir: Path, variant: str) -> Path:
    """Write ``src`` under ``variant`` into ``dst_dir``: ``raw`` copies the bytes, ``jpegQ`` re-encodes at quality
    Q, ``downS`` resizes by S (area) and stores PNG (lossless, so only the resample differs)."""
    import cv2

    dst_dir.mkdir(parents=True, exist_ok=True)
    if variant == "raw":
        dst = dst_dir / src.name
        shutil.copyfile(src, dst)
        return dst
    img = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{src}: not a decodable image")
    if variant.startswith("jpeg"):
        dst = dst_dir / (src.stem + ".jpg")
        cv2.imwrite(str(dst), img, [cv2.IMWRITE_JPEG_QUALITY, int(variant[4:])])
    elif variant.startswith("down"):
        s = float(variant[4:])
        dst = dst_dir / (src.stem + ".png")
        cv2.imwrite(str(dst), cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA))
    else:
        raise DataError(f"unknown variant '{variant}' (raw, jpegQ, downS)")
    return dst


def _score(model: Any, files: list[Path], threads: int) -> np.ndarray:
    """Calibrated P(fake) of each file through the scan pipeline (NaN where scan could not score it)."""
    from forensics import scan

    out = np.full(len(files), np.nan)
    files = [f.resolve() for f in files]  # scan reports absolute paths
    index = {str(f): i for i, f in enumerate(files)}
    for r in scan([str(f) for f in files], model=model, evidence="none", threads=threads, timeout_s=120):
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


def pair_metrics(name: str, p_real: np.ndarray, p_fake: np.ndarray, t_fpr1: float) -> Pair:
    """AUC (stratified bootstrap interval) and what the ``fpr1`` policy does on this pair."""
    p_real, p_fake = p_real[~np.isnan(p_real)], p_fake[~np.isnan(p_fake)]
    if not p_real.size or not p_fake.size:
        raise DataError(f"{name}: no scored reals or fakes")
    y = np.r_[np.zeros(p_real.size), np.ones(p_fake.size)]
    s = np.r_[p_real, p_fake]
    fpr, tpr = float(np.mean(p_real >= t_fpr1)), float(np.mean(p_fake >= t_fpr1))
    prec: dict[str, float | None] = {}
    for pi in PREVALENCES:
        denom = pi * tpr + (1 - pi) * fpr
        prec[f"{pi:g}"] = None if denom == 0 else round(pi * tpr / denom, 4)
    return Pair(
        name, int(p_real.size), int(p_fake.size), roc_auc(y, s), bootstrap_ci(roc_auc, y, s, n_boot=N_BOOT),
        N_BOOT, fpr, tpr, prec,
    )


def real_variants(scores: dict[str, np.ndarray], thresholds: dict[str, float]) -> list[RealVariant]:
    raw = np.nanmedian(scores["raw"])
    out = []
    for v, p in scores.items():
        ok = p[~np.isnan(p)]
        out.append(
            RealVariant(
                v, int(ok.size), int(np.isnan(p).sum()), float(np.median(ok)), float(np.median(ok) - raw),
                {k: float(np.mean(ok >= t)) for k, t in sorted(thresholds.items()) if k.startswith("fpr")},
            )
        )
    return out


# ----------------------------------------------------------------------------------------------------------------
# protocols
# ----------------------------------------------------------------------------------------------------------------
def _sample(folder: Path, n: int, pattern: str = "*") -> list[Path]:
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not files:
        raise DataError(f"{folder}: no files")
    return files[:n] if n else files


FFHQ = "real_faces/ffhq128_bhunakit"
SG2 = "gan_faces/tpdne-stylegan2_bhunakit"
UTK = "real_faces/utkface_bagashvilit"


def split_files(data: Path, folder: str, split: str, n: int) -> list[Path]:
    """Files of a shared set in ``split``: its ``crossval`` folder, or the files ``data import`` hashes into
    ``val`` (:func:`forensics.importers.split_for` on the path relative to ``data``, as the import computes it)."""
    from forensics.importers import split_for

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


EXTERNAL_PAIRS = (
    ("lfw-faceswap vs lfw-real", "lfw-faceswap_rees451/fake", "lfw-faceswap_rees451/real"),
    ("ciplab-splice vs ciplab-real", "ciplab-splice_rees451/fake", "ciplab-splice_rees451/real"),
    ("generated-photos vs ciplab-real", "generated-photos_hmdghoul/fake", "ciplab-splice_rees451/real"),
)


def real_sources(model: Any, data: Path, n: int, threads: int, work: Path, split: str = "crossval") -> dict[str, Any]:
    """Flag rates of every real source, files as they are, and of UTKFace's race and gender groups (UTKFace has no
    crossval folder: its ``val`` files stand in on both splits and are never trained on)."""
    from forensics.importers import utkface_attributes

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
            "flagged": {k: float(np.mean(ok >= t)) for k, t in sorted(th.items()) if k.startswith("fpr")},
            "median_p": float(np.median(ok)),
        })
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
    return {"root": "shared external_dev (evaluation only)", "pairs": [asdict(p) for p in pairs]}


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
    "unseen-decoders": unseen_decoders,
}
#: protocols that read the project's generated data (``--recon``), not only ``../shared/data``
NEEDS_RECON = ("unseen-decoders",)
#: the protocols a ``--split val`` run may use (external_dev is evaluation-only: never a selection input)
VAL_PROTOCOLS = ("shortcuts", "real-sources")


# ----------------------------------------------------------------------------------------------------------------
# reports
# ----------------------------------------------------------------------------------------------------------------
def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def render(res: dict[str, Any]) -> str:
    """Markdown of one model's results (written next to ``results.json``)."""
    m = res["model"]
    lines = [
        f"# Transfer protocols: {res['label']} ({res.get('split', 'crossval')} split)",
        "",
        f"Model `{m['name']}` (weights sha256 `{m['sha256'][:16]}`), thresholds {json.dumps(m['thresholds'])}.",
        f"Command: `{res['command']}` (commit {res['commit']}, {res['minutes']:.1f} min).",
        "",
    ]
    sc = res["protocols"].get("shortcuts")
    if sc:
        lines += [
            "## shortcuts", "", f"Reals: {sc['reals']}. Fakes: {sc['fakes']}.", "",
            "| reals as | n | median P(fake) | shift vs raw | flagged fpr1 | flagged fpr01 |",
            "|---|---|---|---|---|---|",
        ]
        lines += [f"| {r['variant']} | {r['n']} | {r['median_p']:.3f} | {r['median_shift']:+.3f} | {_flags(r)} |"
                  for r in sc["real_variants"]]
        lines += ["", _pair_table(sc["pairs"]), "", sc["note"], ""]
    rs = res["protocols"].get("real-sources")
    if rs:
        lines += [
            "## real-sources", "", "| reals | n | median P(fake) | flagged fpr1 | flagged fpr01 |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {g['group']} | {g['n']} | {g['median_p']:.3f} | {_flags(g)} |" for g in rs["groups"]]
        lines.append("")
    ex = res["protocols"].get("external-dev")
    if ex:
        lines += ["## external-dev", "", f"{ex['root']}.", "", _pair_table(ex["pairs"]), ""]
    ud = res["protocols"].get("unseen-decoders")
    if ud:
        seen = ", ".join(
            f"{f['family']} ({f['decoder_upsample']}, {f['res']} px, {'seen' if f['seen_in_training'] else 'unseen'})"
            for f in ud["families"]
        )
        gone = f" Not built (no crossval folder): {', '.join(ud['missing'])}." if ud.get("missing") else ""
        lines += ["## unseen-decoders", "", f"{ud['root']}: {seen}.{gone}", "", _pair_table(ud["pairs"]), ""]
    return "\n".join(lines)


def _flags(row: dict[str, Any]) -> str:
    """``fpr1 % | fpr01 %`` cells of a row's flag rates."""
    f = row["flagged"]
    return " | ".join(f"{100 * f.get(k, float('nan')):.1f} %" for k in ("fpr1", "fpr01"))


def _pair_table(pairs: list[dict[str, Any]]) -> str:
    rows = [
        "| pair | n real / fake | AUC [95 % CI] | reals flagged fpr1 | TPR fpr1 "
        "| precision fpr1 at 1 / 10 / 50 % fakes |",
        "|---|---|---|---|---|---|",
    ]
    for p in pairs:
        prec = " / ".join("-" if v is None else f"{v:.2f}" for v in p["precision_fpr1"].values())
        rows.append(
            f"| {p['name']} | {p['n_real']} / {p['n_fake']} | {p['auc']:.3f} [{p['auc_ci'][0]:.3f}, "
            f"{p['auc_ci'][1]:.3f}] | {100 * p['reals_flagged_fpr1']:.1f} % | {p['tpr_fpr1']:.2f} | {prec} |"
        )
    return "\n".join(rows)


def comparison_table(root: Path, split: str = "crossval", link: str = "") -> str:
    """One row per model under ``root`` (results of ``split``): the numbers each goal is judged by, side by side."""
    head = (
        "| model | weights | worst real flag rate fpr1 (variant) | worst median shift | matched q75 AUC | "
        "matched q50 AUC | matched 0.5x AUC | lfw swap | splice | commercial GAN | LFW reals flagged |"
    )
    lines = [head, "|" + "---|" * 11]
    for f in sorted(root.glob("*/results.json")):
        r = json.loads(f.read_text(encoding="utf-8"))
        if r.get("split", "crossval") != split:
            continue
        sc, ex = r["protocols"].get("shortcuts"), r["protocols"].get("external-dev")
        cells = [f"[{r['label']}]({link}{f.parent.name}/report.md)", f"`{r['model']['sha256'][:12]}`"]
        if sc:
            worst = max(sc["real_variants"], key=lambda v: v["flagged"]["fpr1"])
            shift = max(abs(v["median_shift"]) for v in sc["real_variants"])
            pa = {p["name"].split("both ")[-1]: p["auc"] for p in sc["pairs"]}
            cells += [
                f"{100 * worst['flagged']['fpr1']:.1f} % ({worst['variant']})", f"{shift:.3f}",
                f"{pa['jpeg75']:.3f}", f"{pa['jpeg50']:.3f}", f"{pa['down0.5']:.3f}",
            ]
        else:
            cells += ["-"] * 5
        if ex:
            pe = ex["pairs"]
            cells += [f"{p['auc']:.3f}" for p in pe] + [f"{100 * pe[0]['reals_flagged_fpr1']:.1f} %"]
        else:
            cells += ["-"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: a candidate is eligible when no real variant of the validation shortcuts protocol is flagged more often than this
#: under ``fpr1`` (the goal is 2 %; ~200 validation reals put one image at 0.5 %, so the rule allows that noise)
MAX_VAL_FLAG = 0.03
#: worst validation median shift (raw -> JPEG q75 / q50 / 0.5x) a candidate may have to compete on AUC: the
#: issue's goal for the shipped model
MAX_VAL_SHIFT = 0.05


def readme_block(root: Path) -> str:
    """The README's transfer table: the test rows of every candidate, the selection, and where they come from."""
    lines = [comparison_table(root, "crossval", link="benchmarks/results/transfer/"), ""]
    sel_path = root / "selection.json"
    if sel_path.is_file():
        sel = json.loads(sel_path.read_text(encoding="utf-8"))
        lines.append(f"Shipped: **{sel['selected']}**, selected on the validation split ({sel['rule']}). ")
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
        "## Validation split (what selection may use)",
        "",
        comparison_table(root, "val"),
    ]
    if sel_path.is_file():
        sel = json.loads(sel_path.read_text(encoding="utf-8"))
        lines += ["", f"**Selected: {sel['selected']}** (rule: {sel['rule']}; split: {sel['split']}).",
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
        "## Test: crossval and external_dev (never a selection input)",
        "",
        comparison_table(root, "crossval"),
        "",
        "Goals (issue #17): reals flagged <= 2 % under fpr1 in every variant, median shift <= 0.05, matched AUC "
        ">= 0.95; external pairs >= 0.85 with <= 2 % of LFW reals flagged.",
    ]
    out = root / "README.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


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
        "command": "python -m benchmarks.transfer " + " ".join(sys.argv[1:]),
        "commit": _commit(),
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
    ap.add_argument("--split", choices=["crossval", "val"], default="crossval",
                    help="crossval: the test numbers; val: the selection numbers (shortcuts and real-sources only)")
    ap.add_argument("--recon", type=Path, default=None,
                    help="work folder of benchmarks/build_suite_dataset.sh (edit-inputs/, fakes/): adds the "
                    "unseen-decoders protocol to a crossval run")
    ap.add_argument("--table", type=Path, default=None, help="print the comparison table of every results folder")
    ap.add_argument("--select", type=Path, default=None,
                    help="write ROOT/selection.json: the candidate to ship, chosen on the --split val results in ROOT")
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
