"""``forensics detector ...``: list, train, calibrate, evaluate and explain detectors.

Heavy imports (torch, timm) happen inside the commands, so ``forensics detector --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from forensics_core.clirun import RegistryChoice
from forensics_core.config import parse_sets
from forensics_core.errors import UsageError


@click.group(epilog="Example: forensics detector train npr --data ds/train --val ds/val --res 64 --epochs 5")
def detector() -> None:
    """List, train, calibrate, evaluate and explain detectors."""


@detector.command("list", epilog="Example: forensics detector list --json")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(as_json: bool) -> None:
    """List registered detectors (built-ins and entry-point plugins)."""
    import dataclasses

    from detectors.registry import DETECTORS

    rows = []
    for e in DETECTORS.entries():
        cfg = {
            f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
            for f in dataclasses.fields(e.obj.Config)
        }
        rows.append(
            {
                "name": e.name,
                "description": e.description,
                "tags": list(e.meta.get("tags", ())),
                "plugin": e.meta.get("plugin", ""),
                "config": cfg,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=list))
        return
    for r in rows:
        tags = ",".join(r["tags"])
        click.echo(f"{r['name']:<10} {tags:<28} {r['description']}")


@detector.command(
    "train", epilog="Example: forensics detector train npr --data ds/ --val ds_val/ --res 64 --epochs 5 --out runs/"
)
@click.argument("name", required=False)
@click.option("--recipe", help="Start from a named recipe (e.g. default); other options override it.")
@click.option("--data", "data", multiple=True, help="Training dataset dir (repeatable); split train or empty.")
@click.option("--val", "val", multiple=True, help="Validation dataset dir (repeatable); rows with split val.")
@click.option("--epochs", type=int)
@click.option("--batch", type=int)
@click.option("--res", type=int, help="Input size in pixels.")
@click.option("--lr", type=float)
@click.option("--steps-per-epoch", type=int)
@click.option("--out", help="Parent folder of numbered run dirs.", default=None)
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N")
@click.option("--amp", is_flag=True, default=None, help="Mixed precision (fp16 on CUDA, bf16 on CPU).")
@click.option("--resume", help="Continue an interrupted run dir.")
@click.option("--backbone", help="timm backbone name (detector 'timm').")
@click.option("--weights", help="Local safetensors weights to initialise from (detector 'timm').")
@click.option("--init-from-gan", help="GAN run dir or shipped name whose discriminator initialises 'gan-disc'.")
@click.option("--init-model", help="Fine-tune this model file / installed name (e.g. default): its config and weights.")
@click.option("--families", multiple=True, help="Only these fake families (repeatable).")
@click.option("--exclude-family", multiple=True, help="Leave this fake family out (repeatable).")
@click.option(
    "--exclude-generator",
    multiple=True,
    help="Leave this fake generator (manifest 'generator', e.g. tpdne-stylegan2) out of train and val, keeping its "
    "family's other generators (repeatable; the cross-source protocol).",
)
@click.option(
    "--group-weight",
    multiple=True,
    help="GROUP=W: multiply the sampling mass of a fake family or real source (e.g. stylegan2=4, "
    "real_faces/ffhq128_bhunakit=2); repeatable.",
)
@click.option("--augment", type=RegistryChoice("detectors.augment:AUGMENT_PRESETS"), default=None)
@click.option(
    "--delivery",
    type=RegistryChoice("detectors.augment:DELIVERY_PRESETS"),
    default=None,
    help="Delivery history (JPEG 40-100, resample, blur, noise) drawn for every train / val image of both classes "
    "before the face crop; needs 'data import --store source' datasets.",
)
@click.option(
    "--framing",
    type=RegistryChoice("detectors.augment:FRAMING_PRESETS"),
    default=None,
    help="Random framings for both classes: photos cut tighter around the face, windows with more or less context "
    "(photos); needs --set crop=native, best with --set edge=reflect.",
)
@click.option(
    "--match-res",
    is_flag=True,
    default=None,
    help="Give each training real the resolution of a drawn training fake (64 px generators: no 'smooth = fake').",
)
@click.option("--calibration", type=RegistryChoice("detectors.calibration:calibrator_names"), default=None)
@click.option("--max-minutes", type=float, help="Stop training after this many minutes (then calibrate and save).")
@click.option("--max-steps", type=int)
@click.option("--patience", type=int, help="Stop after this many epochs without a better validation AUC.")
@click.option(
    "--keep",
    type=RegistryChoice("detectors.train.options:KEEP"),
    default=None,
    help="Write the epoch with the best validation AUC (default) or the last one (a fine-tune whose validation "
    "AUC is already saturated).",
)
@click.option(
    "--lr-schedule",
    type=RegistryChoice("detectors.train.options:LR_SCHEDULES"),
    default=None,
    help="constant (default) or cosine: decay to 0 over the budget (--max-minutes, else --max-steps, else epochs).",
)
@click.option("--sbi", type=float, default=None,
              help="Share of each batch's reals also self-blended (SBI) and added as positives (0-1; any detector).")
@click.option("--workers", type=int, help="DataLoader worker processes.")
@click.option("--seed", type=int)
@click.option("--threads", type=int, help="torch CPU threads.")
@click.option("--fp16", is_flag=True, default=None, help="Store weights as float16.")
@click.option("--set", "sets", multiple=True, help="Detector config override KEY=VALUE (repeatable).")
@click.option("--dry-run", is_flag=True, help="Print the resolved options and exit.")
@click.pass_obj
def train_cmd(obj: Any, name: str | None, recipe: str | None, sets: tuple[str, ...], dry_run: bool, **kw: Any) -> None:
    """Train a detector on dataset dirs, calibrate it on validation data and write RUN/model.

    With torchrun (``torchrun --nproc_per_node 4 -m cli detector train ...``) training is data-parallel.
    """
    import dataclasses

    from detectors.train.loop import train
    from detectors.train.options import TrainOptions

    base: dict[str, Any] = {}
    if recipe:
        from detectors.recipes import get_recipe

        r = get_recipe(recipe)
        base = {**r.options, "licence": r.licence}
    if name:
        base["detector"] = name
    if "detector" not in base:
        raise UsageError("detector train: give a detector NAME or --recipe")
    cfg = dict(base.get("detector_cfg", {}))
    cfg.update(parse_sets(sets, json_values=True))
    backbone = kw.pop("backbone")
    if backbone:
        cfg["backbone"] = backbone
    base["detector_cfg"] = cfg
    renames = {"exclude_family": "exclude_families", "exclude_generator": "exclude_generators"}
    if group := kw.pop("group_weight"):
        base["group_weights"] = _group_weights(group)
    for k, v in kw.items():
        if v is None or v == () or v is False:
            continue
        base[renames.get(k, k)] = list(v) if isinstance(v, tuple) else v
    if not base.get("data"):
        raise UsageError("detector train: give at least one --data DATASET_DIR")
    base.setdefault("progress", not (obj and getattr(obj, "quiet", False)))
    opts = TrainOptions(**base)
    if dry_run:
        click.echo(json.dumps(dataclasses.asdict(opts), indent=2, default=list))
        return
    import os

    run = train(opts)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 owns the run dir
        _record_command(run / "model")
        click.echo(str(run / "model"))


def _group_weights(pairs: tuple[str, ...]) -> dict[str, float]:
    """``("stylegan2=4",)`` -> ``{"stylegan2": 4.0}``; a weight that is not a number is a one-line usage error."""
    out: dict[str, float] = {}
    for k, v in parse_sets(pairs).items():
        try:
            out[k] = float(v)
        except ValueError:
            raise UsageError(f"--group-weight {k}={v}: the weight must be a number") from None
    return out


def _record_command(model_dir: Path) -> None:
    """Write the command line into the card's ``training.command``: a model file says how to rebuild it."""
    import sys

    card_path = model_dir / "model.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card.setdefault("training", {})["command"] = "forensics " + " ".join(sys.argv[1:])
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


@detector.command("eval", epilog="Example: forensics detector eval runs/00001-npr-r64/model --data ds/test --json")
@click.argument("model")
@click.option("--data", "data", multiple=True, required=True, help="Dataset dir (repeatable).")
@click.option("--split", multiple=True, help="Only rows with this split (repeatable; default: all rows).")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@click.option("--bootstrap", type=int, default=1000, show_default=True, help="Bootstrap replicates (0 = no CIs).")
@click.option("--device", default="auto")
@click.option("--batch", type=int, default=64, show_default=True)
@click.option("--group-by", type=RegistryChoice("detectors.evaluate:GROUP_BY"), default="family",
              show_default=True, help="How per-group rows group the fakes.")
@click.pass_obj
def eval_cmd(
    obj: Any,
    model: str,
    data: tuple[str, ...],
    split: tuple[str, ...],
    as_json: bool,
    bootstrap: int,
    device: str,
    batch: int,
    group_by: str,
) -> None:
    """Evaluate a model file: AUC, AP, EER, TPR@FPR, ECE, Brier, accuracy at each preset, per family, with CIs."""
    from detectors.evaluate import evaluate_model, format_report
    from detectors.modelfile import load_model

    m = load_model(model, device=device)
    res = evaluate_model(
        m,
        list(data),
        splits=tuple(split) or None,
        n_boot=bootstrap,
        batch=batch,
        progress=not as_json and not (obj and getattr(obj, "quiet", False)),
        group_by=group_by,
    )
    click.echo(json.dumps(res.to_dict(), indent=2) if as_json else format_report(res))


@detector.command("explain", epilog="Example: forensics detector explain default face.png --out heat.png")
@click.argument("model")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--out", required=True, help="Output PNG (heatmap over the image).")
@click.option("--raw", is_flag=True, help="Write the bare heatmap (grey) instead of an overlay.")
@click.option("--device", default="auto")
def explain_cmd(model: str, image: str, out: str, raw: bool, device: str) -> None:
    """Write a Grad-CAM (or saliency) heatmap for one face crop; prints the calibrated P(fake)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from detectors.explain import overlay
    from detectors.modelfile import load_model
    from forensics_core.errors import DataError

    m = load_model(model, device=device)
    try:
        with Image.open(image) as im:
            face = np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{image}: not a readable image ({type(exc).__name__})") from None
    heat = m.explain(face)
    p = float(m.predict_proba([face])[0])
    img = (np.clip(heat, 0, 1) * 255).astype(np.uint8) if raw else overlay(face, heat)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(out)
    click.echo(json.dumps({"image": image, "fake_probability": p, "heatmap": out, "model": m.name}))


@detector.command(
    "calibrate",
    epilog="Example: forensics detector calibrate runs/00001-npr-r64/model --data ds/val "
    "--method isotonic --out recal/",
)
@click.argument("model")
@click.option("--data", "data", multiple=True, required=True, help="Held-out dataset dir(s) (never the test set).")
@click.option("--split", multiple=True, default=("val",), show_default=True,
              help="Rows of --data to fit on (repeatable): val or train; crossval / test (the held-out test rows) "
              "are refused.")
@click.option("--method", type=RegistryChoice("detectors.calibration:calibrator_names"), default="temperature")
@click.option("--out", required=True, help="Where to write the recalibrated model (weights copied unchanged).")
@click.option(
    "--hold/--no-hold",
    default=True,
    show_default=True,
    help="Hold the fpr1 / fpr01 presets under every common delivery of the reals (as stored, JPEG q90 / q75 / "
    "q50, halved, halved + q75): each preset takes the highest threshold any of them needs. Needs reals "
    "imported with 'data import --store source'; others are calibrated as they are.",
)
@click.option(
    "--tta",
    type=RegistryChoice("detectors.base:TTA"),
    default=None,
    help="Test-time views to average at inference (flip: the crop and its mirror image), set before calibrating "
    "(the averaged logits need their own calibration). Default: the model's own.",
)
@click.option("--device", default="auto")
def calibrate_cmd(
    model: str, data: tuple[str, ...], split: tuple[str, ...], method: str, out: str, hold: bool, tta: str | None,
    device: str,
) -> None:
    """Refit calibration and threshold presets of a model on held-out data (weights unchanged)."""
    import shutil
    import sys

    from detectors.calibration import preset_support
    from detectors.data import check_both_classes, load_items
    from detectors.evaluate import check_fit_splits, recalibrate, recorded_delivery
    from detectors.modelfile import CARD, WEIGHTS, load_model

    check_fit_splits(split, "calibrate")
    m = load_model(model, device=device)
    card = dict(m.card)
    if tta is not None:
        m.detector.cfg.tta = tta
        card["config"] = {**card["config"], "tta": tta}
    items, sources = load_items(list(data), "eval", splits=tuple(split))
    check_both_classes(items, ", ".join(data))
    # the histories the model was validated with (training's --delivery): source-store items get the same ones
    rc = recalibrate(m, items, method, hold, recorded_delivery(m.card))
    cal, thr, hold_table = rc.calibrator, rc.thresholds, rc.hold_table
    dst = Path(out)
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(m.path) / WEIGHTS, dst / WEIGHTS)
    card["calibration"], card["thresholds"] = cal.to_dict(), thr
    card["threshold_support"] = preset_support(rc.n_real)
    card.setdefault("training", {})["recalibrated_on"] = [s.path for s in sources]
    card["training"]["recalibrated_by"] = "forensics " + " ".join(sys.argv[1:])
    card["training"].pop("threshold_hold", None)
    if hold_table:
        card["training"]["threshold_hold"] = hold_table
    (dst / CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    click.echo(
        json.dumps(
            {
                "model": str(dst),
                "calibration": card["calibration"] if method != "isotonic" else method,
                "thresholds": thr,
            }
        )
    )


@detector.command(
    "fuse",
    epilog="Example: forensics detector fuse runs/00003-npr-r128/model runs/00004-blend-r128/model "
    "--data ds_src/ --out fused/",
)
@click.argument("models", nargs=-1, required=True)
@click.option("--data", "data", multiple=True, required=True, help="Held-out dataset dir(s) (never the test set).")
@click.option("--split", multiple=True, default=("val",), show_default=True,
              help="Rows of --data to fit on (repeatable): val or train; crossval / test (the held-out test rows) "
              "are refused.")
@click.option(
    "--fusion",
    type=click.Choice(["max", "stack"]),
    default="max",
    show_default=True,
    help="max: each member standardised by the validation reals, then the loudest (members that look for "
    "different manipulations keep their own alarm); stack: logistic regression on the members' logits.",
)
@click.option(
    "--edge",
    default="",
    help="clamp or reflect: where the fused model's face window reaches past the photo, shrink it inside or "
    "reflect the photo (needed when the members were trained with different policies; default: theirs).",
)
@click.option(
    "--method",
    type=RegistryChoice("detectors.calibration:calibrator_names"),
    default=None,
    help="Calibration (default: platt for max fusion, whose logit is centred on the validation reals; temperature "
    "for stack).",
)
@click.option("--hold/--no-hold", default=True, show_default=True, help="Hold the FPR presets (see 'calibrate').")
@click.option("--name", default="", help="Model name (default: the members' names joined by '+').")
@click.option("--out", required=True, help="Where to write the fused model.")
def fuse_cmd(models: tuple[str, ...], data: tuple[str, ...], split: tuple[str, ...], **kw: Any) -> None:
    """Fuse trained models (e.g. an artifact detector and a blending detector) into one calibrated model file."""
    from detectors.fuse import FuseOptions, fuse

    kw["method"] = kw["method"] or ""  # FuseOptions picks by the fusion
    out = fuse(FuseOptions(models=list(models), data=list(data), splits=tuple(split), **kw))
    _record_command(out)
    card = json.loads((out / "model.json").read_text(encoding="utf-8"))
    click.echo(json.dumps({"model": str(out), "members": [m["name"] for m in card["training"]["fused_from"]],
                           "thresholds": card["thresholds"]}))
