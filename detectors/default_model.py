"""Train the shipped default model: ``python -m detectors.default_model [--data DS ...] [--max-minutes 20]``.

Recipe ``default`` (:mod:`detectors.recipes`): an NPR residual CNN at 128 px (pixel-unshuffled, so it runs fast on
CPU) trained on normalised real faces (UTKFace, FFHQ train) and fakes (the shared StyleGAN2 *train* split plus any
of the project's own generator datasets), with identical augmentation on both classes, calibrated on a held-out
validation split. ``crossval`` rows are never used for training or validation; ``--eval-crossval`` scores them
afterwards and records the result in the model card.

Without ``--data`` the datasets are discovered under ``--data-root`` (default ``$FORENSICS_TRAIN_DATA`` or the
repo's sibling ``../scratch/data``): every folder holding a ``manifest.jsonl``. The result is installed into
``forensics/assets/models/default/`` (``--install-to`` to change) with ``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from detectors.model_card import INTENDED_USE, OUT_OF_SCOPE, failure_modes, lineage, write_model_card
from detectors.recipes import DEFAULT_LICENCE
from forensics_core.config import ASSETS_DIR, REPO_ROOT
from forensics_core.errors import DataError, ForensicsError

MAX_BYTES = 25 * 1024 * 1024


def default_data_root() -> Path:
    return Path(os.environ.get("FORENSICS_TRAIN_DATA", REPO_ROOT.parent / "scratch" / "data"))


def discover(root: Path, max_depth: int = 3) -> list[Path]:
    """Dataset dirs (with ``manifest.jsonl``) under ``root``, shallowest first, not nested in one another."""
    found: list[Path] = []
    for mp in sorted(root.rglob("manifest.jsonl")):
        d = mp.parent
        if len(d.relative_to(root).parts) > max_depth:
            continue
        if any(p in d.parents for p in found):
            continue
        found.append(d)
    return found


def plan_splits(dirs: list[Path]) -> tuple[list[str], list[str]]:
    """Use the datasets' own ``val`` rows when they hold both classes; otherwise a hash hold-out of train."""
    from forensics_core.dataset import read_manifest

    labels: set[str] = set()
    usable: list[str] = []
    for d in dirs:
        rows = read_manifest(d)
        if not any(r.split in ("train", "", "val") for r in rows):
            continue  # a crossval/test-only dataset: evaluation data, never training data
        usable.append(str(d))
        labels |= {r.label for r in rows if r.split == "val"}
    if not usable:
        raise DataError(f"{', '.join(map(str, dirs))}: no dataset with train rows")
    return usable, (usable if labels == {"real", "fake"} else [])



def main(argv: list[str] | None = None) -> int:
    from detectors.augment import AUGMENT_PRESETS, DELIVERY_PRESETS
    from detectors.train.options import KEEP

    ap = argparse.ArgumentParser(
        prog="python -m detectors.default_model",
        description="Train, calibrate and install the shipped default detector. "
        "Example: nice -n 10 python -m detectors.default_model --max-minutes 20 --eval-crossval",
    )
    ap.add_argument("--data", action="append", default=[], help="dataset dir (repeatable); default: discover")
    ap.add_argument("--data-root", type=Path, default=None, help="where to discover dataset dirs")
    ap.add_argument("--out", default=str(REPO_ROOT.parent / "scratch" / "detectors" / "runs"))
    ap.add_argument("--install-to", type=Path, default=ASSETS_DIR / "models" / "default")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--res", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--eval-crossval", action="store_true", help="score crossval rows afterwards (never trained on)")
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--augment", choices=list(AUGMENT_PRESETS), default=None)
    ap.add_argument("--delivery", choices=list(DELIVERY_PRESETS), default=None,
                    help="delivery histories for both classes before the face crop (needs --store source imports)")
    ap.add_argument("--patience", type=int, default=None, help="epochs without a better val AUC before stopping")
    ap.add_argument("--keep", choices=list(KEEP), default=None,
                    help="write the best-validation-AUC epoch (default) or the last one (a saturated fine-tune)")
    ap.add_argument("--install-run", type=Path, default=None,
                    help="skip training: install RUN/model, or a model dir (a candidate trained earlier with "
                    "--no-install, or recalibrated / fused from one)")
    ap.add_argument("--name", default=None, help="model name written into the card (e.g. default-npr128-v3)")
    ap.add_argument("--selection", type=Path, default=None,
                    help="selection.json (python -m benchmarks.transfer --select) recorded in the card")
    ap.add_argument("--selection-transfer", type=Path, default=None,
                    help="selection-transfer.json (python -m benchmarks.transfer --select-transfer), into the card")
    ap.add_argument("--transfer", type=Path, default=None,
                    help="a crossval results folder of python -m benchmarks.transfer, rendered into the card")
    ap.add_argument("--grouped-loo", type=Path, default=None,
                    help="a leave-one-group-out run folder (forensics bench run ...loo-group.yaml), its held-out "
                    "group table rendered into the card")
    ap.add_argument("--families", action="append", default=None, help="only these fake families (repeatable)")
    ap.add_argument("--match-res", action="store_true", default=None, help="resolution-match reals to the fakes")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (a fine-tune wants less than the recipe's)")
    ap.add_argument(
        "--init-model",
        default=None,
        help="fine-tune this model file / installed name (e.g. default) on the data instead of starting afresh",
    )
    args = ap.parse_args(argv)
    try:
        return _run(args, argv)
    except ForensicsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    import torch

    from detectors.recipes import get_recipe
    from detectors.train.loop import train
    from detectors.train.options import TrainOptions

    if args.install_run:
        model_dir = args.install_run if (args.install_run / "model.json").is_file() else args.install_run / "model"
        return _install(args, model_dir, _run_command(model_dir))
    recipe = get_recipe(args.recipe)
    dirs = [Path(d) for d in args.data] or discover(args.data_root or default_data_root())
    if not dirs:
        raise DataError(f"{args.data_root or default_data_root()}: no dataset dirs found (pass --data)")
    data, val = plan_splits(dirs)
    opts = {
        **recipe.options,
        "data": data,
        "val": val,
        "out": args.out,
        "device": args.device,
        "licence": recipe.licence,
    }
    for k in ("max_minutes", "epochs", "res", "threads", "augment", "lr", "init_model", "match_res", "families",
              "delivery", "patience", "keep"):
        if getattr(args, k) is not None:
            opts[k] = getattr(args, k)
    torch.set_num_threads(opts.get("threads") or 1)
    run = train(TrainOptions(**opts))
    model_dir = run / "model"
    card = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    command = "python -m detectors.default_model " + " ".join(argv if argv is not None else sys.argv[1:])
    card["training"]["command"] = command
    if args.eval_crossval:
        from detectors.modelfile import load_model

        card["metrics"].update(_crossval_metrics(load_model(model_dir, device=args.device), dirs))
    (model_dir / "model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return _install(args, model_dir, command)


def _run_command(model_dir: Path) -> str:
    """The command that trained a model (recorded in its model.json by this module or ``detector train``)."""
    card = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    return card.get("training", {}).get("command", "")


def backfill_sources(card: dict) -> None:
    """Give each training dataset of a card written before datasets recorded their sources (v14 and older) the
    list of public sources with repository and commit, read from its manifest when that folder is on disk again
    (rebuilt by the command the card names) and its train rows are the ones the card counted (same count per
    label); otherwise the dataset stays without, rather than naming sources it may not have used."""
    from detectors.data import load_items

    for d in card.get("training", {}).get("datasets", []):
        if d.get("sources") or not (Path(d["path"]) / "manifest.jsonl").is_file():
            continue
        _, (now,) = load_items([d["path"]], "train")
        if now.n == d["n"] and now.by_label == d["by_label"]:
            d["sources"] = now.sources


def _install(args: argparse.Namespace, model_dir: Path, command: str) -> int:
    """Record selection / transfer results in the card, write MODEL_CARD.md, check the size, install."""
    card = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    card["lineage"] = card.get("lineage") or lineage(card)  # read once, while the ancestors still resolve
    backfill_sources(card)
    if args.name:
        card["name"] = args.name
    if args.selection:
        card["selection"] = json.loads(args.selection.read_text(encoding="utf-8"))
    res = None
    if args.transfer:
        res = json.loads((args.transfer / "results.json").read_text(encoding="utf-8"))
        if res["model"]["sha256"] != card["weights_sha256"]:
            raise DataError(f"{args.transfer}: results are for weights {res['model']['sha256'][:12]}, not this model")
        card["transfer"] = {"command": res["command"], "markdown": (args.transfer / "report.md").read_text()}
    if args.selection_transfer:
        card["selection_transfer"] = json.loads(args.selection_transfer.read_text(encoding="utf-8"))
    card["intended_use"], card["out_of_scope"] = INTENDED_USE, OUT_OF_SCOPE
    # every default model is trained on the shared and pinned sources only (no other face set may be used), so its
    # weights carry their research / non-commercial terms, whatever an older card said
    card["licence"] = DEFAULT_LICENCE
    card["failure_modes"] = failure_modes(card, res)
    if args.grouped_loo:
        run = json.loads((args.grouped_loo / "results.json").read_text(encoding="utf-8"))["run"]
        card["grouped_loo"] = {"command": run["command"], "markdown": (args.grouped_loo / "report.md").read_text()}
    (model_dir / "model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    write_model_card(model_dir, card, command)
    size = (model_dir / "model.safetensors").stat().st_size
    if size > MAX_BYTES:
        raise DataError(f"{model_dir}: weights are {size / 2**20:.1f} MB, over the 25 MB budget")
    if not args.no_install:
        dst = args.install_to
        dst.mkdir(parents=True, exist_ok=True)
        for f in ("model.safetensors", "model.json", "MODEL_CARD.md"):
            shutil.copyfile(model_dir / f, dst / f)
        print(f"installed {dst}")
    print(str(model_dir))
    return 0


def _crossval_metrics(model, dirs: list[Path]) -> dict:
    """``crossval``: the datasets whose crossval split holds both classes on their own (the shared StyleGAN2 vs
    FFHQ headline, comparable across model versions); ``crossval_all`` / ``crossval_by_generator``: every crossval
    row, so fake-only sets (the project's generator samples) are scored against those reals, one row per generator."""
    from detectors.evaluate import evaluate_model
    from detectors.metrics import MIN_BOOT

    labels = {d: {r.label for r in _rows(d) if r.split == "crossval"} for d in dirs}
    paired = [str(d) for d, ls in labels.items() if ls == {"real", "fake"}]
    every = [str(d) for d, ls in labels.items() if ls]
    out: dict = {}
    if paired:
        res = evaluate_model(model, paired, splits=("crossval",), n_boot=MIN_BOOT)
        out.update(crossval=res.overall, cpu_images_per_s_eval=res.images_per_s)
    if every and every != paired:
        res = evaluate_model(model, every, splits=("crossval",), n_boot=MIN_BOOT, group_by="generator")
        out.update(crossval_all=res.overall, crossval_by_generator=res.by_group)
    return out


def _rows(d: Path):
    from forensics_core.dataset import read_manifest

    return read_manifest(d)


if __name__ == "__main__":
    sys.exit(main())
