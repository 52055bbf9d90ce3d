"""``make suite`` / ``python -m generators.suite``: retrain the reference generators with the committed presets.

For every family of the committed suite (:data:`SUITE`, or ``--only``): train at ``--res`` on the shared real
faces, ship the latest weights as fp16 safetensors under ``generators/assets/<name>/`` (``load_run(name)`` finds
them), save a sample grid to ``docs/img/gan/<name>.png`` (edits as input / output rows), evaluate against real faces
in the project's own feature space, and rewrite ``generators/assets/MODEL_CARD.md`` plus
``benchmarks/results/gan_suite.{md,json}``.
The step counts below are the committed budget for a 2-core CPU; ``--steps-scale`` / ``--minutes-scale`` scale
them all.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from generators.base import INPUT_KINDS
from generators.checkpoints import ASSETS, export_reference, list_checkpoints, load_run
from generators.train import grid_samples, save_grid, train

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
GRIDS = REPO / "docs" / "img" / "gan"
RESULTS = REPO / "benchmarks" / "results"

@dataclass(frozen=True)
class SuiteEntry:
    """How the suite trains one reference model: a step target, a wall-clock cap and config overrides.

    ``minutes`` caps a CPU run (the trainer stops at a checkpoint, see ``TrainOptions.max_minutes``); the model card
    records the steps actually reached. Families that reuse another reference model (``ae_run`` / ``ldm_run``) come
    after it in :data:`SUITE` and ship only their own weights.
    """

    steps: int
    minutes: float = 8.0
    overrides: dict[str, Any] = field(default_factory=dict)
    data: str = "aligned"  # key of DATA_SOURCES
    finetune: tuple[FineTune, ...] = ()  # later stages, each started from the previous stage's weights
    #: train at this resolution whatever ``--res`` says (the autoencoders: a decoder's trace at 64 px is not the
    #: trace an SD-like decoder leaves on a 128 px face)
    res: int | None = None


@dataclass(frozen=True)
class FineTune:
    """A second training stage: a new run that starts from the first stage's ``modules`` (``gan train --init``),
    with ``overrides`` laid over the first stage's config."""

    steps: int
    minutes: float
    overrides: dict[str, Any] = field(default_factory=dict)
    modules: tuple[str, ...] = ()  # empty = every module


STRIDED_D_STAGE = FineTune(
    6000, 50, {"d_arch": "strided", "loss": "nonsat", "beta1": 0.5, "beta2": 0.999}, modules=("G", "G_ema")
)

#: the resolution an entry trains at when neither ``--res`` nor its ``SuiteEntry.res`` says otherwise
DEFAULT_RES = 64

#: the committed suite, in training order (2-core CPU budget at 64 px; pass --steps-scale / --minutes-scale).
#: the noise and conditional GANs learn from the raw UTKFace crops: tight, consistently framed faces are easier to
#: draw in CPU minutes than the aligned framing with hair, shoulders and background (stylegan2: face rate 0.24 after
#: 2,286 steps of 16 aligned faces, 0.97 after 3,761 steps of 32 UTKFace crops with 2.5x faster modulated convs;
#: dcgan-k3: 0.60 aligned, 0.995 UTKFace, 8 minutes each), and cgan needs UTKFace's attribute names anyway. The
#: editors and the diffusion family take the aligned faces, the framing every detector sees (samples are re-aligned
#: by ``data import``).
SUITE: dict[str, SuiteEntry] = {
    "dcgan": SuiteEntry(3000, 8, data="utkface"),
    "dcgan-k3": SuiteEntry(3000, 8, data="utkface"),
    # half width: two 3x3 convs per level cost ~8x a DCGAN layer. The SNGAN critic stops teaching G on this budget,
    # so G then continues against DCGAN's strided BN discriminator (docs/generators.md, "What changed")
    "pixelshuffle": SuiteEntry(6000, 62, {"ch": 16, "ndf": 16}, data="utkface", finetune=(STRIDED_D_STAGE,)),
    "resgan": SuiteEntry(6000, 62, {"ch": 16, "ndf": 16}, data="utkface", finetune=(STRIDED_D_STAGE,)),
    "stylegan2": SuiteEntry(8000, 45, {"ch": 16, "batch": 32}, data="utkface"),
    # the second stage trains G's conditional-BN tables 20x faster: at the base rate every condition drew one face
    "cgan": SuiteEntry(6000, 60, {"ch": 16}, data="utkface", finetune=(FineTune(6000, 32, {"cond_lr_mul": 20}),)),
    "cyclegan": SuiteEntry(2000, 7),
    "inpaint": SuiteEntry(2000, 9, {"ch": 16, "ndf": 16}),
    "srgan": SuiteEntry(2000, 7),
    # the latent-diffusion autoencoder ships once, as ae-recon; ldm and the editors borrow it by name. Later stages
    # train the decoder alone (frozen encoder and latent scale), so the latents ldm learned stay valid: with the
    # patch critic (PSNR 17.3 -> 20.6 dB, but it left green / purple blobs), then without it (blobs gone, L1 0.15 ->
    # 0.11 in 590 steps: the critic was holding reconstruction back at this size)
    "ae-recon": SuiteEntry(
        6000,
        8,
        {"adv_start": 1500},
        finetune=(
            FineTune(6000, 40, {"train_encoder": False, "adv_start": 300}),
            FineTune(6000, 15, {"adv_weight": 0.0}),
        ),
    ),
    # a second stage continues the UNet (and its EMA) with fresh optimiser state: how the shipped one was extended
    "ldm": SuiteEntry(20000, 14, {"ae_run": "ae-recon"}, finetune=(FineTune(20000, 35, modules=("UNet", "UNet_ema")),)),
    "sdedit": SuiteEntry(1, 1, {"ldm_run": "ldm"}),
    "ldm-inpaint": SuiteEntry(1, 1, {"ldm_run": "ldm"}),
    # two more autoencoders that share nothing with ae-recon (decoder upsampling, latent channels, depth), at 128 px
    # on the source-stored reals; L1 + feature loss only (the critic left colour blobs on ae-recon at this budget)
    "ae-convT": SuiteEntry(20000, 50, {"ae_base": 32, "d_base": 32, "batch": 8, "adv_weight": 0.0}, "source", res=128),
    "ae-shuffle": SuiteEntry(
        20000, 50, {"ae_base": 32, "d_base": 32, "batch": 8, "adv_weight": 0.0}, "source", res=128
    ),
}
#: registered families the suite does not ship, and why (``forensics gan list`` still shows them)
NOT_SHIPPED: dict[str, str] = {"ldm-ae": "the same network ships as ae-recon (its dataset-facing alias)"}


def aligned_data() -> list[str]:
    """The shared faces after the Foundation import (``$FORENSICS_WORK/data/shared128``), else raw UTKFace."""
    imported = Path(os.environ.get("FORENSICS_WORK", "work")) / "data" / "shared128"
    return [str(imported)] if (imported / "manifest.jsonl").is_file() else utkface_data()


def utkface_data() -> list[str]:
    """The raw UTKFace folder of ``../shared/data`` (200 px aligned crops; attributes in the file names)."""
    from forensics_core.config import shared_data_dir

    d = shared_data_dir()
    if d is None:
        raise SystemExit("no data: pass --data DIR (../shared/data is not present)")
    return [str(d / "real_faces" / "utkface_bagashvilit")]


def source_data() -> list[str]:
    """The shared reals as source regions (``$FORENSICS_WORK/data/shared-src``, the detectors' training import),
    else the aligned faces."""
    imported = Path(os.environ.get("FORENSICS_WORK", "work")) / "data" / "shared-src"
    if (imported / "manifest.jsonl").is_file():
        return [str(imported)]
    log.warning("suite: %s not found; using the aligned faces instead (JPEG q90 crops: their blocks are in what "
                "the autoencoder learns to reproduce)", imported)
    return aligned_data()


#: where a suite entry's real faces come from when no --data is given
DATA_SOURCES = {"aligned": aligned_data, "utkface": utkface_data, "source": source_data}


def data_for(name: str) -> list[str]:
    return DATA_SOURCES[SUITE[name].data]()


#: edit grids edit this shipped generator's samples: committed images must not contain any real person from the
#: research-only shared data (UTKFace / FFHQ), and the project's own synthetic faces are licence-clean
GRID_INPUT_MODEL = "dcgan"


def grid_inputs(n: int, res: int, seed: int = 0) -> torch.Tensor:
    """``n`` licence-clean input faces for an edit grid: samples of :data:`GRID_INPUT_MODEL` at ``res``."""
    import torch.nn.functional as F

    src = load_run(GRID_INPUT_MODEL, device="cpu")
    imgs = src.sample(n, torch.Generator().manual_seed(seed)).images.float().clamp(-1, 1)
    if imgs.shape[-1] != res:
        imgs = F.interpolate(imgs, size=(res, res), mode="bilinear", antialias=True, align_corners=False)
    return imgs


#: rows of a conditional family's grid: one condition per row
GRID_CONDITIONS = ("gender=female,age=20-29", "gender=male,age=20-29", "gender=female,age=60+", "gender=male,age=60+")


def grid_for(name: str, n: int = 16, seed: int = 0) -> Path:
    """A sample grid of the shipped reference model: edit kinds show 8 inputs above their 8 outputs, conditional
    kinds one row per condition of :data:`GRID_CONDITIONS` (the manifest records which)."""
    fam = load_run(name, device="cpu")
    if fam.kind == "conditional":
        k = n // len(GRID_CONDITIONS)
        with torch.no_grad():
            rows = [fam.sample(k, torch.Generator().manual_seed(seed), condition=c).images.float().cpu()
                    for c in GRID_CONDITIONS]
        return save_grid(torch.cat(rows), GRIDS / f"{name}.png", nrow=k)
    inputs = grid_inputs(n // 2, fam.cfg.res, seed) if fam.kind in INPUT_KINDS else None
    imgs = grid_samples(fam, len(inputs) if inputs is not None else n, seed, inputs)
    return save_grid(imgs, GRIDS / f"{name}.png", nrow=len(inputs) if inputs is not None else None)


def write_model_card() -> Path:
    """Rebuild MODEL_CARD.md from every shipped ``model.json`` (the card never holds numbers typed by hand)."""
    cards = [json.loads(p.read_text()) | {"name": p.parent.name} for p in sorted(ASSETS.glob("*/model.json"))]
    lines = [
        "# Reference generators (model card)",
        "",
        "Trained by `make suite` (`python -m generators.suite`) with the presets committed in `generators/`.",
        "Weights are fp16 safetensors (EMA generator when the family keeps one, plus the discriminator).",
        "Training data: real faces from `../shared/data` (UTKFace + FFHQ thumbnails, research / non-commercial",
        "licences): raw UTKFace crops or the Foundation import, per `generators.suite.SUITE`; see the data below. The",
        "weights are for research on synthetic-face detection and are not for redistribution beyond that use.",
        "KID / precision / recall / C2ST are in the feature space of `featnet.safetensors` (trained by the project,",
        "see `generators/metrics.py`); they compare generators with each other, not with published FID numbers,",
        "and describe low-level statistics better than face structure. `face rate` is the fraction of samples in",
        "which MTCNN finds a face (p >= 0.9; real faces: ~1.0): the plainer measure of recognisable faces.",
        "Step counts are what the committed CPU time cap allowed (`generators.suite.SUITE`), not convergence; a",
        "model trained in two stages (`SuiteEntry.finetune`) counts its last stage, and its `model.json` `init`",
        "names the run or shipped weights (with their hash) that stage started from.",
        "",
        "| name | family | upsampler | kind | res | steps | train min | images | face rate | KID | precision | recall |"
        " C2ST acc | diversity | MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cards:
        m = c.get("metrics", {})
        mb = (ASSETS / c["name"] / "model.safetensors").stat().st_size / 2**20

        def f(k: str, m: dict = m) -> str:
            return f"{m[k]:.3f}" if isinstance(m.get(k), (int, float)) else "-"

        t = c.get("tags", {})
        lines.append(
            f"| {c['name']} | {t.get('family', '')} | {t.get('upsampler', '')} | {t.get('kind', '')} | "
            f"{c['config'].get('res')} | {c.get('steps')} | {c.get('train_minutes') or '-'} | {c.get('n_images')} | "
            f"{f('face_rate')} | {f('kid')} | {f('precision')} | "
            f"{f('recall')} | {f('c2st_accuracy')} | {f('diversity')} | {mb:.1f} |"
        )
    lines += ["", "Data hash per model (sha256 of names and sizes of the training images):", ""]
    lines += [f"- `{c['name']}`: `{c.get('data_hash', '')}` ({', '.join(c.get('data', []))})" for c in cards]
    path = ASSETS / "MODEL_CARD.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def update_card(name: str, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into the shipped ``generators/assets/<name>/model.json`` and return the card."""
    path = ASSETS / name / "model.json"
    card = json.loads(path.read_text()) | fields
    path.write_text(json.dumps(card, indent=2) + "\n")
    return card


def _describe_init(init: str) -> str | None:
    """Provenance of a fine-tune's starting weights: the run or model, plus the weights' sha256 (a shipped model is
    about to be overwritten by the export, so its hash is the only trace of which version it was)."""
    from forensics_core.hashing import sha256_file

    if not init:
        return None
    p = ASSETS / init / "model.safetensors"
    if p.is_file():
        return f"{init} (sha256 {sha256_file(p)[:16]})"
    cks = list_checkpoints(Path(init)) if Path(init).is_dir() else []
    return f"{init} ({cks[-1].name})" if cks else init


def run_family(
    name: str, data: list[str], res: int | None, out: Path, device: str, steps_scale: float, minutes_scale: float,
    eval_n: int, from_run: str | None = None,
) -> dict[str, Any]:
    """Train (or take ``from_run``), export, evaluate and grid one family; returns its result row."""
    from forensics_core.sysinfo import peak_rss_mb
    from generators.metrics import FEATNET_PATH, evaluate

    entry = SUITE[name]
    if entry.res and res and entry.res != res:
        log.warning("suite: %s trains at its committed %d px (SuiteEntry.res), not --res %d", name, entry.res, res)
    t0 = time.time()
    if from_run:
        run = Path(from_run)
    else:
        steps = max(1, int(entry.steps * steps_scale))
        res_used = entry.res or res or DEFAULT_RES
        run = train(name, data, dict(entry.overrides), out, res=res_used, steps=steps, device=device,
                    trainer_options={"sample_every": max(steps // 10, 1), "ckpt_every": max(steps // 5, 1),
                                     "max_minutes": entry.minutes * minutes_scale, "progress": False})
        for ft in entry.finetune:
            steps = max(1, int(ft.steps * steps_scale))
            run = train(name, data, dict(ft.overrides), out, steps=steps, device=device, init=str(run),
                        trainer_options={"sample_every": max(steps // 10, 1), "ckpt_every": max(steps // 5, 1),
                                         "max_minutes": ft.minutes * minutes_scale, "progress": False,
                                         "init_modules": list(ft.modules)})
    # minutes spent training here; a shipped --from-run says "-" (its time is in its own metrics.jsonl)
    train_min = None if from_run else round((time.time() - t0) / 60, 1)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()] if (
        run / "metrics.jsonl").is_file() else []
    img_s = sum(r["img_per_s"] for r in rows) / max(len(rows), 1)
    options = json.loads((run / "options.json").read_text())
    card_extra = {"train_img_per_s": round(img_s, 2), "train_device": options.get("device", ""),
                  "train_minutes": train_min, "suite_overrides": entry.overrides,
                  "suite_finetune": [asdict(ft) for ft in entry.finetune] or None,
                  "init": _describe_init(options["train"].get("init", ""))}
    d = export_reference(run, name, card_extra)
    metrics: dict[str, Any] = {}
    if FEATNET_PATH.is_file() and eval_n:
        metrics = evaluate(name, data, n=eval_n, device=device).to_dict()
    grid_for(name)
    peak = round(peak_rss_mb(), 1)
    card = update_card(name, metrics=metrics, peak_rss_mb=peak)
    row = {"name": name, **card["tags"], "run": str(run), "steps": card["steps"], "train_minutes": train_min,
           "train_img_per_s": round(img_s, 2), "device": options.get("device", ""), "peak_rss_mb": peak,
           "weights_mb": round((d / "model.safetensors").stat().st_size / 2**20, 2), **metrics}
    log.warning("suite: %s done in %.0fs", name, time.time() - t0)
    return row


#: columns of gan_suite.md, in order
RESULT_KEYS = ["name", "family", "upsampler", "kind", "steps", "train_minutes", "train_img_per_s", "peak_rss_mb",
               "sample_img_per_s", "face_rate", "face_rate_real", "kid", "precision", "recall", "coverage",
               "c2st_accuracy", "diversity", "diversity_real", "psnr", "ssim", "weights_mb", "device"]


def write_results(rows: list[dict[str, Any]], command: str) -> None:
    """Merge ``rows`` into gan_suite.json by name (one family per process writes its own row) and rebuild the
    Markdown table from the JSON, in suite order."""
    import fcntl

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "gan_suite.json"
    with open(Path(tempfile.gettempdir()) / "forensics-gan-suite.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(path.read_text()) if path.is_file() else {}
        by_name = {r["name"]: r for r in old.get("results", []) if isinstance(r, dict) and "name" in r}
        for r in rows:
            by_name[r["name"]] = r | {"command": command}
        order = {n: i for i, n in enumerate(SUITE)}
        merged = sorted(by_name.values(), key=lambda r: order.get(r["name"], len(order)))
        path.write_text(json.dumps({"results": merged}, indent=2) + "\n")
        lines = ["# Generator suite", "",
                 "Reference generators shipped under `generators/assets/` (fp16 safetensors), trained by "
                 "`python -m generators.suite` (`make suite`) on the real faces of `../shared/data` "
                 "at 64 px (the autoencoders ae-convT and ae-shuffle at 128 px, on the source-stored import): "
                 "the noise and conditional families on the raw UTKFace crops, the editors and the diffusion "
                 "family on the Foundation import (aligned, 128 px JPEG q90; UTKFace + FFHQ train splits); "
                 "`generators/assets/MODEL_CARD.md` lists each model's data and its hash (`generators.suite.SUITE`).",
                 "Metrics compare `--eval-n` samples (see each command below) with as many real faces in the "
                 "feature space of the project's own "
                 "`featnet` (no Inception weights can be downloaded): KID (lower is better), precision / recall / "
                 "coverage (k = 5), C2ST accuracy of a logistic classifier (0.5 = indistinguishable), diversity "
                 "(mean pairwise feature distance; the real faces' value is in `diversity_real`). Edit families "
                 "(image2image / superres) also report PSNR / SSIM of the output against its input face.",
                 "`peak_rss_mb` is the peak resident memory of the process that trained, evaluated and gridded "
                 "the family; `sample_img_per_s` is sampling alone, batch 50, on the same device.", "",
                 "| " + " | ".join(RESULT_KEYS) + " |", "|" + "---|" * len(RESULT_KEYS)]
        for r in merged:
            lines.append("| " + " | ".join(
                f"{r[k]:.4g}" if isinstance(r.get(k), float) else str(r.get(k) if r.get(k) is not None else "-")
                for k in RESULT_KEYS) + " |")
        lines += ["", "Commands (one process per family):", ""]
        lines += [f"- `{r['name']}`: `{r.get('command', '')}`" for r in merged]
        (RESULTS / "gan_suite.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    import subprocess
    import sys

    from forensics_core.config import home_dir

    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog="Example: python -m generators.suite --only dcgan"
    )
    p.add_argument("--data", nargs="+", default=None, help="real-face dirs (default: the imported shared faces)")
    p.add_argument("--res", type=int, default=None,
                   help=f"training resolution (default {DEFAULT_RES}; an entry's committed SuiteEntry.res wins)")
    p.add_argument("--only", nargs="+", default=None, help="family names (default: the whole suite, in order)")
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every committed step target")
    p.add_argument("--minutes-scale", type=float, default=1.0, help="multiply every committed time cap")
    p.add_argument("--out", type=Path, default=home_dir() / "suite-runs")
    p.add_argument("--device", default="auto")
    p.add_argument("--eval-n", type=int, default=500)
    p.add_argument("--card-only", action="store_true", help="only rebuild MODEL_CARD.md from shipped model.json")
    p.add_argument("--grids-only", action="store_true", help="only redraw docs/img/gan/ grids of shipped models")
    p.add_argument("--eval-only", action="store_true", help="only re-measure shipped models (same rows, new metrics)")
    p.add_argument("--from-run", default=None, metavar="RUN", help="ship this existing run for the one --only name")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if a.card_only:
        print(write_model_card())
        return 0
    if a.eval_only:
        from generators.metrics import evaluate

        old = json.loads((RESULTS / "gan_suite.json").read_text())["results"] if (
            RESULTS / "gan_suite.json").is_file() else []
        rows = {r["name"]: r for r in old}
        for name in a.only or [n for n in SUITE if (ASSETS / n / "model.json").is_file()]:
            metrics = evaluate(name, a.data or data_for(name), n=a.eval_n, device=a.device).to_dict()
            card = json.loads((ASSETS / name / "model.json").read_text())
            shipped = {**card.get("tags", {}), "steps": card.get("steps"),
                       "weights_mb": round((ASSETS / name / "model.safetensors").stat().st_size / 2**20, 2)}
            row = rows.get(name, {"name": name}) | shipped | metrics
            update_card(name, metrics=metrics)
            trained_by = row.get("command", "").split(" (re-evaluated")[0].strip() or (
                f"shipped from run {card.get('trained_from_run', '?')}"
            )
            write_results([row], f"{trained_by} (re-evaluated: --eval-only --eval-n {a.eval_n})")
        write_model_card()
        return 0
    if a.grids_only:
        for name in a.only or [n for n in SUITE if (ASSETS / n / "model.json").is_file()]:
            print(grid_for(name))
        return 0
    names = a.only or list(SUITE)
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        why = "; ".join(f"{n}: {NOT_SHIPPED[n]}" for n in unknown if n in NOT_SHIPPED)
        raise SystemExit(f"not in the suite: {', '.join(unknown)}" + (f" ({why})" if why else ""))
    if a.from_run and len(names) != 1:
        raise SystemExit("--from-run needs exactly one --only name")
    args = list(sys.argv[1:] if argv is None else argv)
    if len(names) > 1:  # one process per family: its own peak memory, and a crash loses one family only
        common = ["--data", *a.data] if a.data else []
        common += ["--res", str(a.res)] if a.res else []
        common += ["--steps-scale", str(a.steps_scale), "--minutes-scale",
                  str(a.minutes_scale), "--out", str(a.out), "--device", a.device, "--eval-n", str(a.eval_n)]
        for name in names:
            subprocess.run([sys.executable, "-m", "generators.suite", "--only", name, *common], check=True)
        return 0
    data = a.data or data_for(names[0])
    row = run_family(names[0], data, a.res, a.out, a.device, a.steps_scale, a.minutes_scale, a.eval_n, a.from_run)
    write_results([row], "python -m generators.suite " + " ".join(args))
    write_model_card()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
