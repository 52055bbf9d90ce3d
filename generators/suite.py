"""``make suite`` / ``python -m generators.suite``: retrain the reference generators with the committed presets.

For every registered family (or ``--only``): train at ``--res`` on the shared real faces, ship the latest weights
as fp16 safetensors under ``generators/assets/<name>/`` (``load_run(name)`` finds them), save a sample grid to
``docs/img/gan/<name>.png`` (edits as input / output rows), evaluate against real faces in the project's own
feature space, and rewrite ``generators/assets/MODEL_CARD.md`` plus ``benchmarks/results/gan_suite.{md,json}``.
The step counts below are the committed budget for a 2-core CPU; pass ``--steps`` to scale them all.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from generators.base import INPUT_KINDS
from generators.registry import GENERATORS
from generators.train import ASSETS, export_reference, grid_samples, load_run, save_grid, train

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
GRIDS = REPO / "docs" / "img" / "gan"
RESULTS = REPO / "benchmarks" / "results"

#: CPU step budget per family at 64 px (batch from the family's 64 px preset); others get DEFAULT_STEPS
SUITE_STEPS: dict[str, int] = {
    "dcgan": 3000, "dcgan-k3": 3000, "resgan": 2000, "pixelshuffle": 2000, "stylegan2": 2000,
    "cgan": 2000, "cyclegan": 1500, "inpaint": 1500, "srgan": 1500,
}
DEFAULT_STEPS = 1500
#: per-family config overrides used by the suite (kept here so the run is reproducible from this file)
SUITE_OVERRIDES: dict[str, dict[str, Any]] = {}


def default_data() -> list[str]:
    """The imported shared faces if the Foundation import exists, else the raw UTKFace folder."""
    from forensics.config import shared_data_dir

    imported = Path(os.environ.get("FORENSICS_WORK", "work")) / "data" / "shared128"
    if (imported / "manifest.jsonl").is_file():
        return [str(imported)]
    d = shared_data_dir()
    if d is None:
        raise SystemExit("no data: pass --data DIR (../shared/data is not present)")
    return [str(d / "real_faces" / "utkface_bagashvilit")]


def grid_for(name: str, data: list[str], n: int = 16, seed: int = 0) -> Path:
    """A sample grid of the shipped reference model (inputs above outputs for edit kinds)."""
    from generators.data import FaceImages, discover

    fam = load_run(name, device="cpu")
    inputs = None
    if fam.kind in INPUT_KINDS:
        ds = FaceImages(discover(data, include_held_out=True)[:n], fam.cfg.res)
        inputs = torch.stack([ds[i][0] for i in range(len(ds))])
    imgs = grid_samples(fam, n, seed, inputs)
    k = len(imgs) // 2 if inputs is not None else None
    return save_grid(imgs, GRIDS / f"{name}.png", nrow=k or None)


def write_model_card() -> Path:
    """Rebuild MODEL_CARD.md from every shipped ``model.json`` (the card never holds numbers typed by hand)."""
    cards = [json.loads(p.read_text()) | {"name": p.parent.name} for p in sorted(ASSETS.glob("*/model.json"))]
    lines = [
        "# Reference generators (model card)",
        "",
        "Trained by `make suite` (`python -m generators.suite`) with the presets committed in `generators/`.",
        "Weights are fp16 safetensors (EMA generator when the family keeps one, plus the discriminator).",
        "Training data: real faces from `../shared/data` (UTKFace, research / non-commercial licence): the weights",
        "are for research on synthetic-face detection and are not for redistribution beyond that use.",
        "Metrics are in the feature space of `featnet.safetensors` (trained by the project, see",
        "`generators/metrics.py`); they compare generators with each other, not with published FID numbers.",
        "",
        "| name | family | upsampler | kind | res | steps | images | KID | precision | recall | C2ST acc | diversity |"
        " MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cards:
        m = c.get("metrics", {})
        mb = (ASSETS / c["name"] / "model.safetensors").stat().st_size / 2**20

        def f(k: str, m: dict = m) -> str:
            return f"{m[k]:.3f}" if isinstance(m.get(k), (int, float)) else "-"

        t = c.get("tags", {})
        lines.append(
            f"| {c['name']} | {t.get('family', '')} | {t.get('upsampler', '')} | {t.get('kind', '')} | "
            f"{c['config'].get('res')} | {c.get('steps')} | {c.get('n_images')} | {f('kid')} | {f('precision')} | "
            f"{f('recall')} | {f('c2st_accuracy')} | {f('diversity')} | {mb:.1f} |"
        )
    lines += ["", "Data hash per model (sha256 of names and sizes of the training images):", ""]
    lines += [f"- `{c['name']}`: `{c.get('data_hash', '')}` ({', '.join(c.get('data', []))})" for c in cards]
    path = ASSETS / "MODEL_CARD.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_suite(
    names: list[str], data: list[str], res: int, out: Path, device: str, steps_scale: float, eval_n: int,
    from_runs: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Train (or take from ``from_runs``), export, evaluate and grid each family; returns one result row each."""
    from generators.metrics import FEATNET_PATH, evaluate

    results = []
    for name in names:
        steps = max(1, int(SUITE_STEPS.get(name, DEFAULT_STEPS) * steps_scale))
        t0 = time.time()
        if from_runs and name in from_runs:
            run = Path(from_runs[name])
            steps = json.loads((run / "options.json").read_text())["train"]["steps"]
        else:
            run = train(name, data, SUITE_OVERRIDES.get(name), out, res=res, steps=steps, device=device,
                        trainer_options={"sample_every": max(steps // 10, 1), "ckpt_every": max(steps // 5, 1)})
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        img_s = sum(r["img_per_s"] for r in rows) / max(len(rows), 1)
        metrics: dict[str, Any] = {}
        card_extra = {"train_img_per_s": round(img_s, 2), "train_device": json.loads(
            (run / "options.json").read_text()).get("device", "")}
        d = export_reference(run, name, card_extra)
        steps = json.loads((d / "model.json").read_text())["steps"]
        if FEATNET_PATH.is_file() and eval_n:
            metrics = evaluate(name, data, n=eval_n, device=device).to_dict()
            card_path = ASSETS / name / "model.json"
            card = json.loads(card_path.read_text()) | {"metrics": metrics}
            card_path.write_text(json.dumps(card, indent=2) + "\n")
        grid_for(name, data)
        results.append({"name": name, "run": str(run), "steps": steps, "train_img_per_s": round(img_s, 2), **metrics})
        log.warning("suite: %s done in %.0fs", name, time.time() - t0)
    write_model_card()
    return results


def write_results(results: list[dict[str, Any]], command: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gan_suite.json").write_text(json.dumps({"command": command, "results": results}, indent=2) + "\n")
    keys = ["name", "steps", "train_img_per_s", "kid", "precision", "recall", "coverage", "c2st_accuracy", "diversity"]
    lines = ["# Generator suite", "", f"Command: `{command}`", "", "| " + " | ".join(keys) + " |",
             "|" + "---|" * len(keys)]
    for r in results:
        lines.append("| " + " | ".join(f"{r[k]:.4g}" if isinstance(r.get(k), float) else str(r.get(k, "-"))
                                       for k in keys) + " |")
    (RESULTS / "gan_suite.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    import sys

    from forensics.config import home_dir

    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog="Example: python -m generators.suite --only dcgan"
    )
    p.add_argument("--data", nargs="+", default=None, help="real-face dirs (default: the imported shared faces)")
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--only", nargs="+", default=None, help="family names (default: every registered family)")
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every committed step budget")
    p.add_argument("--out", type=Path, default=home_dir() / "suite-runs")
    p.add_argument("--device", default="auto")
    p.add_argument("--eval-n", type=int, default=500)
    p.add_argument("--card-only", action="store_true", help="only rebuild MODEL_CARD.md from shipped model.json")
    p.add_argument("--from-run", nargs="+", default=[], metavar="NAME=RUN",
                   help="ship an existing run instead of training NAME (latest checkpoint)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if a.card_only:
        print(write_model_card())
        return 0
    from_runs = dict(x.split("=", 1) for x in a.from_run)
    names = a.only or (list(from_runs) if from_runs else GENERATORS.names())
    results = run_suite(names, a.data or default_data(), a.res, a.out, a.device, a.steps_scale, a.eval_n, from_runs)
    write_results(results, "python -m generators.suite " + " ".join(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
