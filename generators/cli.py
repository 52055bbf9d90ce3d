"""``forensics gan``: list, train, sample and evaluate the generator families (GAN and diffusion) through one CLI.

torch is imported inside the commands so that ``forensics gan --help`` stays fast.
Exit codes: 0 ok, 2 usage / data / model error (one line on stderr).
"""

from __future__ import annotations

import json
from typing import Any

import click


def _extra_kwargs(args: list[str]) -> dict[str, Any]:
    """``--steps 50 --guidance 3 --region eyes`` (family options not known to the CLI) -> kwargs."""
    from forensics_core.config import parse_value
    from forensics_core.errors import UsageError

    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            raise UsageError(f"unexpected argument {a!r} (family options look like --steps 50)")
        key = a[2:].replace("-", "_")
        if "=" in key:
            key, val = key.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            val, i = args[i + 1], i + 2
        else:
            val, i = "true", i + 1
        out[key] = parse_value(val)
    return out


@click.group("gan", epilog="Example: forensics gan train dcgan --data faces/ --res 64 --steps 2000")
def gan() -> None:
    """Train, sample and evaluate the GAN and diffusion generator suite."""


@gan.command("list", epilog="Example: forensics gan list --json")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@click.argument("pattern", default="*")
def list_cmd(pattern: str, as_json: bool) -> None:
    """List registered generator families with their tags, resolutions and presets."""
    from generators.registry import GENERATORS
    from generators.train import reference_names

    refs = set(reference_names())
    rows = []
    for e in GENERATORS.entries(pattern):
        rows.append({
            "name": e.name, "family": e.meta.get("family", ""), "upsampler": e.meta.get("upsampler", ""),
            "kind": e.meta.get("kind", getattr(e.obj, "kind", "")),
            "resolutions": list(getattr(e.obj, "resolutions", ())), "presets": list(getattr(e.obj, "presets", {})),
            "reference": e.name in refs, "components": list(e.meta.get("components") or ()),
            "description": e.description,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    w = max([len(r["name"]) for r in rows] + [4])
    click.echo(f"{'name':<{w}}  {'family':<12} {'upsampler':<13} {'kind':<12} {'res':<16} ref  description")
    for r in rows:
        res = ",".join(map(str, r["resolutions"]))
        ref = "yes" if r["reference"] else "-"
        click.echo(f"{r['name']:<{w}}  {r['family']:<12} {r['upsampler']:<13} {r['kind']:<12} {res:<16} {ref:<4} "
                   f"{r['description']}")


@gan.command("train", epilog="Example: forensics gan train stylegan2 --data faces/ --res 64 --steps 5000 --set lr=1e-3")
@click.argument("family")
@click.option(
    "--data", "data", multiple=True, type=click.Path(), help="Dataset dir (manifest.jsonl) or image folder; repeatable."
)
@click.option("--res", type=int, default=None, help="Output resolution (default: preset / 64).")
@click.option("--steps", type=int, default=1000, show_default=True, help="Total optimisation steps.")
@click.option("--batch", type=int, default=None, help="Batch size per process (default: preset).")
@click.option("--out", default="runs", show_default=True, type=click.Path(), help="Parent of the numbered run dirs.")
@click.option("--preset", default="", help="Named preset of the family (default: the one named after --res).")
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")
@click.option("--resume", type=click.Path(), default=None, help="Continue a run dir up to --steps total steps.")
@click.option("--init", "init", default="",
              help="Start a new run from these weights (run dir, checkpoint or shipped name), fresh optimisers; "
                   "its config is the base that --res / --batch / --set change.")
@click.option("--init-modules", default="", help="Comma-separated modules --init loads (e.g. G,G_ema: D starts fresh).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@click.option("--amp", is_flag=True, help="bfloat16 autocast on CUDA.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sample-every", type=int, default=None, help="Steps between sample grids (default 500).")
@click.option("--ckpt-every", type=int, default=None, help="Steps between checkpoints (default 1000).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a family config field; repeatable.")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs / CI).")
@click.option("--max-minutes", type=float, default=None,
              help="Stop (with a checkpoint) after this many minutes of training; --resume continues.")
def train_cmd(
    family: str, data: tuple[str, ...], res: int | None, steps: int, batch: int | None, out: str, preset: str,
    dry_run: bool, resume: str | None, init: str, init_modules: str, device: str, amp: bool, seed: int,
    sample_every: int | None, ckpt_every: int | None, sets: tuple[str, ...], no_progress: bool,
    max_minutes: float | None,
) -> None:
    """Train FAMILY on real faces; writes runs/NNNNN-FAMILY-RES/ (options, metrics, grids, checkpoints)."""
    from forensics_core.config import parse_sets
    from generators import train as T

    trainer_opts = {"sample_every": sample_every, "ckpt_every": ckpt_every, "progress": not no_progress,
                    "max_minutes": max_minutes, "init_modules": [m for m in init_modules.split(",") if m] or None}
    trainer_opts = {k: v for k, v in trainer_opts.items() if v is not None}
    if resume:
        opts, cfg = T.resume_options(resume, steps=steps, device=device, **trainer_opts)
    else:
        opts, cfg = T.make_options(
            family, list(data), parse_sets(sets), out, res=res, steps=steps, batch=batch, preset=preset,
            device=device, amp=amp, seed=seed, trainer_options=trainer_opts, init=init,
        )
    if dry_run:
        click.echo(json.dumps(T.describe(opts, cfg), indent=2))
        return
    run_dir = T.Trainer(opts, cfg, resume=resume).run()
    click.echo(str(run_dir))


@gan.command(
    "sample",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    epilog="Example: forensics gan sample stylegan2 --n 100 --out fakes/ --truncation 0.7",
)
@click.argument("model")
@click.option("--n", "n", type=int, default=100, show_default=True, help="Number of images.")
@click.option("--out", required=True, type=click.Path(), help="Dataset dir to write (resumable).")
@click.option("--truncation", type=float, default=None, help="Truncation psi (latent families).")
@click.option("--condition", default=None, help="Attributes, e.g. gender=female,age=20-29 (conditional families).")
@click.option("--input", "inputs", type=click.Path(), default=None, help="Real faces to edit (image2image / superres).")
@click.option("--input-res", type=int, default=None,
              help="Edit the inputs at this size instead of the model's training resolution (fully convolutional "
              "editors such as the autoencoders: e.g. 512 for reconstructions of full-size photos).")
@click.option("--jpeg-quality", type=int, default=None, help="Write JPEG at this quality instead of PNG.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch", type=int, default=32, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--split", default="", help="Manifest split to record (train/val/test/crossval).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def sample_cmd(
    ctx: click.Context, model: str, n: int, out: str, truncation: float | None, condition: str | None,
    inputs: str | None, input_res: int | None, jpeg_quality: int | None, seed: int, batch: int, device: str,
    split: str, as_json: bool,
) -> None:
    """Sample MODEL (a run dir or a shipped reference name) into a labelled dataset dir.

    Options the CLI does not know (--steps 50 --guidance 3 --strength 0.5 --region eyes) go to the family.
    """
    from dataclasses import asdict

    from generators.sampling import sample_to_dataset

    extra = _extra_kwargs(list(ctx.args))
    quiet = bool(getattr(ctx.find_root().obj, "quiet", False))
    rep = sample_to_dataset(
        model, n, out, truncation=truncation, condition=condition, inputs=inputs, input_res=input_res,
        jpeg_quality=jpeg_quality, seed=seed, batch=batch, device=device, split=split,
        progress=not quiet and not as_json, **extra,
    )
    if as_json:
        click.echo(json.dumps(asdict(rep)))
    else:
        click.echo(f"{rep.written} written, {rep.skipped} already present -> {rep.out} ({rep.images_per_s} img/s)")


@gan.command("eval", epilog="Example: forensics gan eval runs/00000-dcgan-64 --data faces/ --n 500 --json")
@click.argument("run")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(), help="Real faces to compare with.")
@click.option("--n", "n", type=int, default=500, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def eval_cmd(run: str, data: tuple[str, ...], n: int, seed: int, device: str, as_json: bool) -> None:
    """KID, precision / recall / coverage, C2ST accuracy and diversity of RUN against real faces."""
    from generators.metrics import evaluate

    res = evaluate(run, list(data), n=n, seed=seed, device=device)
    if as_json:
        click.echo(json.dumps(res.to_dict()))
        return
    for k, v in res.to_dict().items():
        click.echo(f"{k:<15} {v:.4f}" if isinstance(v, float) else f"{k:<15} {v}")
