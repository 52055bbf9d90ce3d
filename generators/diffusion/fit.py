"""Time-boxed training and evaluation of the diffusion families without the full GAN trainer.

``forensics gan train ldm-ae ...`` (``generators.train``) is the main path: run dirs, exact resume, DDP. This
module is the small, dependency-light path used to build and check the reference autoencoder on a CPU: it trains
any registered family for a wall-clock budget on a deterministic train / held-out split, writes a single
``model.safetensors`` (modules prefixed by name, e.g. ``AE.encoder...``, the format ``ae_run`` / ``ldm_run``
accept) plus ``options.json`` and ``metrics.jsonl``, and measures autoencoder reconstruction PSNR / SSIM on the
held-out faces, which the trainer does not (it is specific to autoencoders).

Example:
    python -m generators.diffusion.fit train ldm-ae --data ../shared/data/real_faces/utkface_bagashvilit \
        --res 64 --minutes 10 --out $FORENSICS_WORK/diffusion/ae64
    python -m generators.diffusion.fit eval-ae $FORENSICS_WORK/diffusion/ae64 --grid docs/img/gan/ae-recon.png
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import click
import torch
import torch.nn.functional as F

from forensics.errors import UsageError
from generators.base import GeneratorFamily

WEIGHTS = "model.safetensors"
OPTIONS = "options.json"


# ----------------------------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------------------------


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [-1, 1] (peak 1 after mapping to [0, 1])."""
    mse = ((a - b) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004: Gaussian 11x11 window, K1 = 0.01, K2 = 0.03) on [0, 1] intensities,
    averaged over channels and valid window positions (the convention of scikit-image's ``gaussian_weights``)."""
    x, y = (a + 1) / 2, (b + 1) / 2
    c = x.shape[1]
    g = torch.exp(-((torch.arange(window, dtype=x.dtype) - window // 2) ** 2) / (2 * sigma**2))
    g = (g / g.sum()).to(x.device)
    k = (g[:, None] * g[None, :]).expand(c, 1, window, window)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, k, groups=c)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx**2
    vy = blur(y * y) - my**2
    cxy = blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


# ----------------------------------------------------------------------------------------------------------------
# data split, weights
# ----------------------------------------------------------------------------------------------------------------


def split_items(items: list[Any], holdout: int) -> tuple[list[Any], list[Any]]:
    """Deterministic train / held-out split by a hash of each image's relative path (not its position), so the
    held-out faces stay the same when the folder grows."""
    ranked = sorted(items, key=lambda it: hashlib.sha256(it.rel.encode()).hexdigest())
    return ranked[holdout:], ranked[:holdout]


def save_weights(family: GeneratorFamily, path: Path) -> None:
    from safetensors.torch import save_file

    state = {
        f"{name}.{key}": value.detach().contiguous().cpu()
        for name, module in family.modules().items()
        for key, value in module.state_dict().items()
    }
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)  # never leave a half-written weights file behind


def load_weights(family: GeneratorFamily, path: Path) -> None:
    from safetensors.torch import load_file

    if not path.is_file():
        raise UsageError(f"{path}: weights file not found")
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(path)).items():
        prefix, _, rest = key.partition(".")
        groups.setdefault(prefix, {})[rest] = value
    for name, module in family.modules().items():
        if name not in groups:
            raise UsageError(f"{path}: no weights for module '{name}'")
        module.load_state_dict(groups[name])


def build(name: str, res: int, batch: int, preset: str | None, overrides: dict[str, Any]) -> GeneratorFamily:
    """Family from registry defaults + preset + overrides (the same merge order as the trainer)."""
    from generators.registry import get_generator

    cls = get_generator(name)
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    values: dict[str, Any] = {}
    if preset:
        if preset not in cls.presets:
            raise UsageError(f"{name}: unknown preset '{preset}'; known: {', '.join(cls.presets)}")
        values.update(cls.presets[preset])
    values.update({"res": res, "batch": batch})
    for key, raw in overrides.items():
        if key not in fields:
            raise UsageError(f"{name}: unknown option '{key}'; known: {', '.join(sorted(fields))}")
        values[key] = _coerce(fields[key].default, raw)
    return cls(cls.Config(**values))


def _coerce(default: Any, raw: str) -> Any:
    """A ``--set`` string converted to the type of the field's default (bool before int: bool is an int)."""
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes")
    if isinstance(default, (int, float)):
        try:
            return type(default)(raw)
        except ValueError:
            raise UsageError(f"--set value '{raw}' is not a {type(default).__name__}") from None
    return raw


def _parse_sets(sets: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for s in sets:
        if "=" not in s:
            raise UsageError(f"--set '{s}' must look like key=value")
        k, v = s.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def load_fitted(run: Path) -> tuple[GeneratorFamily, dict[str, Any]]:
    """A family rebuilt from ``options.json`` with the run's weights loaded."""
    opts_path = run / OPTIONS
    if not opts_path.is_file():
        raise UsageError(f"{run}: not a fit run (no {OPTIONS})")
    from generators.registry import get_generator

    opts = json.loads(opts_path.read_text())
    cls = get_generator(opts["family"])
    names = {f.name for f in dataclasses.fields(cls.Config)}
    family = cls(cls.Config(**{k: v for k, v in opts["config"].items() if k in names}))
    load_weights(family, run / WEIGHTS)
    return family, opts


# ----------------------------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------------------------


@click.group()
def main() -> None:
    """Train and evaluate the diffusion families on a time budget (CPU-friendly)."""


@main.command()
@click.argument("family")
@click.option("--data", "data_dirs", multiple=True, required=True, help="dataset dir(s) or image folder(s)")
@click.option("--res", default=64, show_default=True)
@click.option("--batch", default=16, show_default=True)
@click.option("--preset", default=None, help="named preset of the family (e.g. 64, tiny)")
@click.option("--minutes", default=10.0, show_default=True, help="wall-clock budget")
@click.option("--steps", default=0, help="stop after this many steps (0 = only the time budget)")
@click.option("--holdout", default=200, show_default=True, help="faces kept out of training for evaluation")
@click.option("--set", "sets", multiple=True, help="config override key=value (repeatable)")
@click.option("--init", default=None, help="start from this model.safetensors")
@click.option("--threads", default=1, show_default=True)
@click.option("--out", required=True, type=click.Path(path_type=Path))
def train(family: str, data_dirs: tuple[str, ...], res: int, batch: int, preset: str | None, minutes: float,
          steps: int, holdout: int, sets: tuple[str, ...], init: str | None, threads: int, out: Path) -> None:
    """Train FAMILY for --minutes on real faces, checkpointing model.safetensors every minute.

    Example: python -m generators.diffusion.fit train ldm-ae --data faces/ --res 64 --minutes 10 --out runs/ae64
    """
    from generators.data import BatchLoader, FaceImages, data_hash, discover

    torch.set_num_threads(threads)
    overrides = _parse_sets(sets)
    fam = build(family, res, batch, preset, overrides)
    if init:
        load_weights(fam, Path(init))
    torch.manual_seed(fam.cfg.seed)
    items = discover(list(data_dirs))
    train_items, held = split_items(items, holdout)
    loader = BatchLoader(FaceImages(train_items, res), batch, seed=fam.cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    options = {
        "family": family,
        "config": dataclasses.asdict(fam.cfg),
        "data": [str(d) for d in data_dirs],
        "data_hash": data_hash(train_items),
        "holdout": [it.rel for it in held],
        "n_train": len(train_items),
        "minutes": minutes,
        "init": init,
        "threads": threads,
        "feat_source": getattr(getattr(fam, "trainer", None) or getattr(fam, "ae_trainer", None), "feat_source", None),
    }
    t0 = time.time()
    last_save = t0
    step = 0
    with open(out / "metrics.jsonl", "a") as log:
        while time.time() - t0 < minutes * 60 and (steps <= 0 or step < steps):
            losses = fam.train_step(next(loader), step)
            step += 1
            if step % 10 == 0:
                rec = {"step": step, "elapsed_s": round(time.time() - t0, 1), **{k: round(v, 5) for k, v in
                                                                                 losses.items()}}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                click.echo(json.dumps(rec))
            if time.time() - last_save > 60:
                save_weights(fam, out / WEIGHTS)
                last_save = time.time()
    save_weights(fam, out / WEIGHTS)
    options.update({"steps_done": step, "train_s": round(time.time() - t0, 1),
                    "images_per_s": round(step * batch / max(time.time() - t0, 1e-9), 2)})
    (out / OPTIONS).write_text(json.dumps(options, indent=2))
    click.echo(f"trained {family}: {step} steps in {options['train_s']} s -> {out / WEIGHTS}")


def save_grid(rows: list[torch.Tensor], path: Path, scale: int = 2) -> None:
    """Stack equal-length image rows (N, 3, H, W in [-1, 1]) into one PNG, upscaled by nearest for viewing."""
    from PIL import Image

    from generators.data import to_uint8

    tiles = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)[None]
    arr = to_uint8(tiles)[0]
    img = Image.fromarray(arr)
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


@main.command("eval-ae")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--grid", default=None, type=click.Path(path_type=Path), help="write a before/after PNG here")
@click.option("--json-out", default=None, type=click.Path(path_type=Path))
def eval_ae(run: Path, grid: Path | None, json_out: Path | None) -> None:
    """Reconstruction PSNR / SSIM of a trained autoencoder (ldm-ae, ae-recon or ldm) on the held-out faces.

    Example: python -m generators.diffusion.fit eval-ae runs/ae64 --grid docs/img/gan/ae-recon.png
    """
    from generators.data import FaceImages, ImageItem, cond_from_utk_name

    torch.set_num_threads(1)
    fam, opts = load_fitted(run)
    ae = fam.modules()["AE"].eval()
    res = opts["config"]["res"]
    root = Path(opts["data"][0])
    held = FaceImages([ImageItem(root / rel, cond_from_utk_name(rel), rel) for rel in opts["holdout"]], res)
    ps, ss, firsts = [], [], None
    t0 = time.time()
    with torch.no_grad():
        for i in range(0, len(held), 25):
            x = torch.stack([held[j][0] for j in range(i, min(i + 25, len(held)))])
            r = ae.reconstruct(x)
            ps.append(psnr(r, x))
            ss.append(ssim(r, x))
            if firsts is None:
                firsts = (x[:8], r[:8])
    p, s = torch.cat(ps), torch.cat(ss)
    result = {"run": str(run), "family": opts["family"], "n": len(p), "res": res,
              "factor": opts["config"]["factor"], "steps": opts.get("steps_done"),
              "psnr_db": round(float(p.mean()), 3), "psnr_std": round(float(p.std()), 3),
              "ssim": round(float(s.mean()), 4), "ssim_std": round(float(s.std()), 4),
              "eval_s": round(time.time() - t0, 1)}
    click.echo(json.dumps(result))
    if json_out:
        json_out.write_text(json.dumps(result, indent=2))
    if grid and firsts is not None:
        save_grid([firsts[0], firsts[1]], grid)


@main.command("sample-grid")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--n", default=16, show_default=True)
@click.option("--steps", default=50, show_default=True)
@click.option("--guidance", default=1.0, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(path_type=Path))
def sample_grid(run: Path, n: int, steps: int, guidance: float, seed: int, out: Path) -> None:
    """A grid of ``ldm`` samples (DDIM) from a fit run.

    Example: python -m generators.diffusion.fit sample-grid runs/ldm64 --steps 50 --out docs/img/gan/ldm.png
    """
    torch.set_num_threads(1)
    fam, _ = load_fitted(run)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    imgs = fam.sample(n, g, steps=steps, guidance=guidance).images
    per_row = 8
    save_grid([imgs[i : i + per_row] for i in range(0, n - n % per_row, per_row)], out)
    click.echo(json.dumps({"n": n, "steps": steps, "images_per_s": round(n / (time.time() - t0), 3)}))


def run() -> None:
    """Entry point: one-line ``error: ...`` and exit 2 for toolkit errors, like ``forensics``."""
    from forensics.errors import ForensicsError

    try:
        main(standalone_mode=False)
    except ForensicsError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    run()

