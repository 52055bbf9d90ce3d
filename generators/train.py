"""The one trainer for every generator family: presets + overrides -> config, run dirs, checkpoints, exact resume.

Layout of a run (StyleGAN2-ADA's habits, without pickles)::

    runs/00003-dcgan-64/
        options.json            everything needed to rebuild the run (config, data, tags, versions)
        metrics.jsonl           one JSON object per log interval: step, losses, img/s, diversity
        samples/step-000500.png fixed-seed sample grids
        checkpoints/step-000500/{modules,optim}.safetensors + state.json

``state.json`` holds the optimiser state's non-tensor part, the Python / NumPy RNG states and the data loader
position; the torch RNG states are tensors in ``optim.safetensors``. Restoring all of them makes N steps + resume N
steps bit-identical to 2N steps on CPU (tested).

Multi-process training: launch with ``torchrun --nproc_per_node K -m generators.train ...``. Families own their
loops and call G and D several times per step (R1 needs a double backward), which ``DistributedDataParallel``'s
reducer does not support well, so instead every optimiser gets a step pre-hook that averages its gradients over
the processes: the same arithmetic as DDP, in one place, for every family. Only rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import torch

from forensics_core.errors import ForensicsError, UsageError
from forensics_core.runs import append_jsonl, init_distributed, next_run_dir, rank_device, write_json
from forensics_core.training import Every, run_steps
from generators.base import INPUT_KINDS, GenConfig, GeneratorFamily
from generators.checkpoints import (  # re-exported: the trainer's public names before the split
    ASSETS,
    Checkpoint,
    build_family,
    export_reference,
    init_weights,
    list_checkpoints,
    load_checkpoint,
    load_module_tensors,
    load_run,
    module_tensors,
    reference_names,
    save_checkpoint,
)
from generators.registry import GENERATORS

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger(__name__)


class TrainingError(ForensicsError):
    """Training cannot go on (non-finite loss, replicas out of sync)."""


@dataclass
class TrainOptions:
    """Trainer options (not the model's): what to train on, for how long, where to write, how often."""

    family: str
    data: list[str]
    out: str = "runs"
    steps: int = 1000
    preset: str = ""
    device: str = "auto"
    amp: bool = False
    seed: int = 0
    sample_every: int = 500
    ckpt_every: int = 1000
    log_every: int = 10
    diversity_every: int = 500
    keep_ckpts: int = 3
    n_grid: int = 16
    progress: bool = True
    #: wall-clock budget in minutes (0 = none): training stops early, at a checkpoint, once it is spent, so a CPU
    #: run fits a time box and ``--resume`` can continue it exactly (the step target stays ``steps``)
    max_minutes: float = 0.0
    #: start from these weights (run dir, checkpoint dir or shipped reference name) with fresh optimisers: a
    #: fine-tune, e.g. of a shipped generator with other learning rates; recorded in options.json
    init: str = ""
    init_modules: list[str] = field(default_factory=list)  # restrict --init to these modules (empty = all)


# ---------------------------------------------------------------------------------------------------------------
# Config resolution
# ---------------------------------------------------------------------------------------------------------------


def _parse_value(raw: Any, current: Any) -> Any:
    """Coerce a ``--set`` string to the type of the field's current value."""
    if not isinstance(raw, str):
        return raw
    if isinstance(current, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {raw!r}")
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    if isinstance(current, (list, tuple)):
        return type(current)(json.loads(raw))
    return raw


def resolve_config(
    family_name: str, res: int | None = None, preset: str = "", overrides: dict[str, Any] | None = None
) -> GenConfig:
    """Config defaults <- preset (named, or the one named after ``res``) <- ``res`` <- overrides."""
    cls = GENERATORS.get(family_name).obj
    overrides = dict(overrides or {})
    if res is not None and res not in cls.resolutions:
        raise UsageError(
            f"{family_name}: resolution {res} is not supported (choose one of {', '.join(map(str, cls.resolutions))})"
        )
    if preset and preset not in cls.presets:
        known = ", ".join(cls.presets) or "none"
        raise UsageError(f"{family_name}: unknown preset {preset!r} (known: {known})")
    name = preset or (str(res) if res is not None and str(res) in cls.presets else "")
    values: dict[str, Any] = dict(cls.presets.get(name, {}))
    if res is not None:
        values["res"] = res
    defaults = cls.Config()
    names = {f.name for f in fields(cls.Config)}
    for k, v in overrides.items():
        if k not in names:
            raise UsageError(f"{family_name}: unknown option {k!r} (options: {', '.join(sorted(names))})")
        try:
            values[k] = _parse_value(v, getattr(defaults, k))
        except (ValueError, json.JSONDecodeError) as exc:
            raise UsageError(f"{family_name}: option {k}={v!r}: {exc}") from None
    cfg = cls.Config(**values)
    if cfg.res not in cls.resolutions:
        raise UsageError(f"{family_name}: resolution {cfg.res} is not supported (choose one of {cls.resolutions})")
    return cfg


# ---------------------------------------------------------------------------------------------------------------
# Distributed helpers
# ---------------------------------------------------------------------------------------------------------------


def _attach_grad_averaging(family: GeneratorFamily, world: int) -> None:
    import torch.distributed as dist

    def hook(opt: torch.optim.Optimizer, *_: Any) -> None:
        for g in opt.param_groups:
            for p in g["params"]:
                if p.grad is None:  # keep collectives aligned: a missing grad counts as zero on this rank
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
                p.grad.div_(world)

    for opt in family.optimizers().values():
        opt.register_step_pre_hook(hook)


def _broadcast_modules(family: GeneratorFamily) -> None:
    import torch.distributed as dist

    for mod in family.modules().values():
        for t in list(mod.parameters()) + list(mod.buffers()):
            dist.broadcast(t.data, 0)


def replicas_in_sync(family: GeneratorFamily) -> bool:
    """True when every rank holds the same parameters (checked at the end of a DDP run)."""
    import torch.distributed as dist

    total = torch.zeros((), dtype=torch.float64)
    for mod in family.modules().values():
        for p in mod.parameters():
            total += p.detach().double().sum().cpu()
    gathered = [torch.zeros_like(total) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, total)
    return all(torch.equal(g, gathered[0]) for g in gathered)


# ---------------------------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------------------------


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> Path:
    """A PNG mosaic of NCHW images in [-1, 1] (rows of ``nrow``, square-ish by default)."""
    from PIL import Image

    from generators.data import to_uint8

    x = to_uint8(images)
    n, h, w, c = x.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / nrow))
    canvas = np.full((rows * h, nrow * w, c), 255, np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        canvas[r * h : (r + 1) * h, k * w : (k + 1) * w] = x[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas.squeeze(-1) if c == 1 else canvas).save(path)
    return path


def grid_samples(family: GeneratorFamily, n: int, seed: int, inputs: torch.Tensor | None) -> torch.Tensor:
    """Fixed-seed samples for grids; edit / super-resolution kinds show input rows above output rows, and local
    edits (inpainting) a third row with the mask of what was synthesised (white), so the picture shows where to look.

    Runs under ``fork_rng`` so family code that draws from the global RNG cannot perturb training (exact resume).
    """
    devices = [family.device.index or 0] if family.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        if family.kind in INPUT_KINDS and inputs is not None:
            k = min(n, inputs.shape[0])
            samples = family.sample(k, g, inputs=inputs[:k].to(family.device))
            out = samples.images.cpu()
            src = inputs[:k]
            if src.shape[-1] != out.shape[-1]:
                src = torch.nn.functional.interpolate(src, size=out.shape[-2:], mode="nearest")
            rows = [src, out]
            masks = samples.masks
            if masks is not None and not bool((masks > 0.5).all()):  # whole-image edits have nothing to point at
                rows.append(masks.cpu().float().mul(2).sub(1).expand(-1, out.shape[1], -1, -1))
            return torch.cat(rows)
        return family.sample(n, g).images.cpu()


class Trainer:
    """Holds one training run; ``run()`` trains up to ``opts.steps`` total steps (resumable)."""

    def __init__(
        self, opts: TrainOptions, cfg: GenConfig, resume: str | os.PathLike[str] | None = None
    ) -> None:
        from forensics_core.config import resolve_device
        from generators.data import FaceImages, discover

        self.opts, self.cfg = opts, cfg
        self.device = resolve_device(opts.device)
        self.dist = init_distributed(self.device)
        self.device = rank_device(self.dist, self.device)
        if opts.amp and self.device.type != "cuda":
            log.warning("--amp only applies on CUDA; training in float32 on %s", self.device)
        self.entry = GENERATORS.get(opts.family)
        items = discover(opts.data)
        self.dataset = FaceImages(items, cfg.res)
        self.items = items
        torch.manual_seed(opts.seed + self.dist.rank)
        np.random.seed(opts.seed + self.dist.rank)
        random.seed(opts.seed + self.dist.rank)
        self.family = build_family(opts.family, cfg, self.device)
        from generators.data import BatchLoader

        self.loader = BatchLoader(self.dataset, cfg.batch, seed=opts.seed, rank=self.dist.rank, world=self.dist.world)
        self.step = 0
        if resume is not None:
            self.run_dir = Path(resume)
            cks = list_checkpoints(self.run_dir)
            if not cks:
                raise UsageError(f"--resume {resume}: the run has no checkpoint to resume from")
            state = load_checkpoint(self.family, cks[-1])
            self.step = int(state["step"])
            self.loader.load_state_dict(state["loader"])
            if self.dist.enabled:  # every rank restored the same tensors; reseed per rank like a fresh start
                torch.manual_seed(opts.seed + self.dist.rank + 7919 * self.step)
        else:
            if opts.init:
                init_weights(self.family, opts.init, opts.init_modules)
            main = self.dist.main
            self.run_dir = next_run_dir(opts.out, f"{opts.family}-{cfg.res}", create=False) if main else Path()
        if self.dist.enabled:
            import torch.distributed as dist

            box = [str(self.run_dir)]
            dist.broadcast_object_list(box, 0)
            self.run_dir = Path(box[0])
            _broadcast_modules(self.family)
            _attach_grad_averaging(self.family, self.dist.world)
        self.grid_inputs = None
        if self.family.kind in INPUT_KINDS:
            k = min(opts.n_grid, len(self.dataset))
            self.grid_inputs = torch.stack([self.dataset[i][0] for i in range(k)])
        self.real_diversity: float | None = None

    # -- outputs (rank 0 only) ----------------------------------------------------------------------------
    def write_options(self) -> None:
        from generators.data import data_hash

        meta = self.entry.meta
        opts = {
            "family": self.opts.family,
            "tags": {k: meta.get(k, "") for k in ("family", "upsampler", "kind")},
            "config": asdict(self.cfg),
            "train": asdict(self.opts),
            "data": [str(Path(d).resolve()) for d in self.opts.data],
            "data_hash": data_hash(self.items),
            "n_images": len(self.items),
            "world_size": self.dist.world,
            "device": str(self.device),
            "torch": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.run_dir / "options.json", opts, newline=True)

    def _log(self, row: dict[str, Any]) -> None:
        append_jsonl(self.run_dir / "metrics.jsonl", row)

    def _diversity(self) -> dict[str, float]:
        from generators.metrics import diversity

        n = min(32, len(self.dataset))
        with torch.random.fork_rng(devices=[]):  # loading the feature net must not touch the training RNG
            if self.real_diversity is None:
                self.real_diversity = diversity(torch.stack([self.dataset[i][0] for i in range(n)]))
        fake = grid_samples(self.family, n, self.opts.seed + 1, self.grid_inputs)
        if self.grid_inputs is not None:  # edit kinds return inputs then outputs: keep the outputs
            fake = fake[len(fake) // 2 :]
        d = diversity(fake)
        ratio = d / max(self.real_diversity, 1e-8)
        if ratio < 0.25:
            log.warning(
                "step %d: sample diversity %.3f is %.0f%% of the real data's (%.3f): possible mode collapse",
                self.step, d, 100 * ratio, self.real_diversity,
            )
        return {"diversity": d, "diversity_real": self.real_diversity, "diversity_ratio": ratio}

    # -- loop ---------------------------------------------------------------------------------------------
    def _out_of_time(self, deadline: float) -> bool:
        """Whether the wall-clock budget is spent; every process follows rank 0's clock so they stop together."""
        over = time.monotonic() >= deadline
        if self.dist.enabled and deadline != math.inf:
            import torch.distributed as dist

            flag = torch.tensor([float(over)], device=self.device)
            dist.broadcast(flag, 0)
            over = bool(flag.item())
        return over

    def run(self) -> Path:
        opts = self.opts
        main = self.dist.main
        if main and not (self.run_dir / "options.json").is_file():
            self.write_options()
        bar = None
        if main and opts.progress and self.step < opts.steps:
            from tqdm.auto import tqdm

            bar = tqdm(total=opts.steps, initial=self.step, desc=f"{opts.family}-{self.cfg.res}", unit="step")
        amp = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if opts.amp and self.device.type == "cuda"
            else nullcontext()
        )
        acc: dict[str, list[float]] = {}  # losses since the last metrics line
        t0, n0 = time.perf_counter(), 0  # and when that line was written, images seen since
        deadline = time.monotonic() + 60 * opts.max_minutes if opts.max_minutes > 0 else math.inf

        def step_fn(step: int) -> dict[str, float]:
            nonlocal n0
            batch = next(self.loader)
            with amp:
                losses = self.family.train_step(batch, step)
            self.step = step + 1
            n0 += batch.image.shape[0] * self.dist.world
            for k, v in losses.items():
                if not math.isfinite(v):
                    raise TrainingError(
                        f"{opts.family}: {k} became {v} at step {self.step}; try a lower learning rate (--set lr=...)"
                    )
                acc.setdefault(k, []).append(v)
            return losses

        def log_metrics(step: int, losses: dict[str, float], last: bool) -> None:
            nonlocal acc, t0, n0
            dt = time.perf_counter() - t0
            row = {"step": step, "img_per_s": round(n0 / max(dt, 1e-9), 2), "time": round(time.time(), 3)}
            row.update({k: round(sum(v) / len(v), 5) for k, v in acc.items()})
            if step % opts.diversity_every == 0 or last:
                row.update({k: round(v, 5) for k, v in self._diversity().items()})
            self._log(row)
            if bar is not None:
                bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k not in ("step", "time")})
            acc, t0, n0 = {}, time.perf_counter(), 0

        def save_samples(step: int, losses: dict[str, float], last: bool) -> None:
            imgs = grid_samples(self.family, opts.n_grid, opts.seed, self.grid_inputs)
            save_grid(imgs, self.run_dir / "samples" / f"step-{step:06d}.png")

        def save_ckpt(step: int, losses: dict[str, float], last: bool) -> None:
            save_checkpoint(self.run_dir, self.family, step, self.loader.state_dict(), {})
            for old in list_checkpoints(self.run_dir)[: -max(1, opts.keep_ckpts)]:
                shutil.rmtree(old)

        tasks: list[Every] = []  # only rank 0 writes
        if main:
            tasks.append(Every(opts.log_every, log_metrics))
            if bar is not None:
                tasks.append(Every(1, lambda step, losses, last: bar.update(1)))
            tasks += [Every(opts.sample_every, save_samples), Every(opts.ckpt_every, save_ckpt)]
        run_steps(self.step, opts.steps, step_fn, tasks, stop=lambda step: self._out_of_time(deadline))
        if bar is not None:
            bar.close()
        if self.dist.enabled and not replicas_in_sync(self.family):
            raise TrainingError(f"{opts.family}: processes diverged (parameters differ across ranks)")
        return self.run_dir


class FreshRunOptions(TypedDict, total=False):
    """The keyword options of :func:`make_options` that only a fresh run reads (a resumed run keeps its saved
    config): :func:`train` passes them through, so their defaults live in ``make_options`` alone."""

    res: int | None
    batch: int | None
    preset: str
    amp: bool
    seed: int
    init: str


def train(
    family_name: str,
    data_dirs: list[str] | tuple[str, ...],
    overrides: dict[str, Any] | None = None,
    out: str | os.PathLike[str] = "runs",
    *,
    steps: int = 1000,
    device: str = "auto",
    trainer_options: dict[str, Any] | None = None,
    resume: str | os.PathLike[str] | None = None,
    **fresh: Unpack[FreshRunOptions],
) -> Path:
    """Train ``family_name`` on ``data_dirs`` and return the run dir (see module docstring for its layout).

    ``resume`` continues that run with its saved options (``fresh`` and ``overrides`` are then unused); only the
    step target, device and trainer options change."""
    if resume is not None:
        opts, cfg = resume_options(resume, steps=steps, device=device, **(trainer_options or {}))
    else:
        opts, cfg = make_options(
            family_name, data_dirs, overrides, out, steps=steps, device=device, trainer_options=trainer_options, **fresh
        )
    return Trainer(opts, cfg, resume=resume).run()


def make_options(
    family_name: str,
    data_dirs: list[str] | tuple[str, ...],
    overrides: dict[str, Any] | None = None,
    out: str | os.PathLike[str] = "runs",
    *,
    res: int | None = None,
    steps: int = 1000,
    batch: int | None = None,
    preset: str = "",
    device: str = "auto",
    amp: bool = False,
    seed: int = 0,
    trainer_options: dict[str, Any] | None = None,
    init: str = "",
) -> tuple[TrainOptions, GenConfig]:
    """Validate everything cheap (names, resolution, options, data dirs) and resolve the two configs.

    With ``init`` the starting model's own config is the base that ``res`` / ``batch`` / overrides change.
    """
    ov = dict(overrides or {})
    if batch is not None:
        ov["batch"] = batch
    ov.setdefault("seed", seed)
    if init:
        src = load_run(init, device="cpu")
        if src.name != family_name:
            raise UsageError(f"--init {init}: holds a {src.name} model, not {family_name}")
        base = {k: v for k, v in asdict(src.cfg).items() if k != "seed"}
        ov = {**base, **({"res": res} if res is not None else {}), **ov}
    elif res is None and not preset:
        res = 64
    cfg = resolve_config(family_name, res, preset, ov)
    if steps < 1:
        raise UsageError(f"--steps must be >= 1, got {steps}")
    if not data_dirs:
        raise UsageError("no training data: pass --data DIR (a dataset dir with manifest.jsonl or an image folder)")
    for d in data_dirs:
        if not Path(d).is_dir():
            from forensics_core.errors import DataError

            raise DataError(f"{d}: data directory does not exist")
    topts = dict(trainer_options or {})
    known = {f.name for f in fields(TrainOptions)}
    bad = set(topts) - known
    if bad:
        raise UsageError(f"unknown trainer option(s) {', '.join(sorted(bad))}")
    opts = TrainOptions(
        family=family_name, data=[str(d) for d in data_dirs], out=str(out), steps=steps, preset=preset,
        device=device, amp=amp, seed=cfg.seed, init=init, **topts,
    )
    return opts, cfg


def resume_options(
    run_dir: str | os.PathLike[str], steps: int | None = None, device: str | None = None, **trainer: Any
) -> tuple[TrainOptions, GenConfig]:
    """Rebuild a run's options from its ``options.json``; only the step target, device and trainer knobs change."""
    p = Path(run_dir)
    if not (p / "options.json").is_file():
        raise UsageError(f"--resume {run_dir}: not a run dir (no options.json)")
    saved = json.loads((p / "options.json").read_text())
    t = dict(saved["train"])
    t.update({k: v for k, v in trainer.items() if v is not None})
    if steps is not None:
        t["steps"] = steps
    if device is not None:
        t["device"] = device
    known = {f.name for f in fields(TrainOptions)}
    opts = TrainOptions(**{k: v for k, v in t.items() if k in known})
    cls = GENERATORS.get(saved["family"]).obj
    cfg_known = {f.name for f in fields(cls.Config)}
    cfg = cls.Config(**{k: v for k, v in saved["config"].items() if k in cfg_known})
    return opts, cfg


def describe(opts: TrainOptions, cfg: GenConfig) -> dict[str, Any]:
    """The resolved configuration as printed by ``--dry-run``."""
    entry = GENERATORS.get(opts.family)
    return {
        "family": opts.family,
        "tags": {k: entry.meta.get(k, "") for k in ("family", "upsampler", "kind")},
        "config": asdict(cfg),
        "train": asdict(opts),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m generators.train`` / ``torchrun -m generators.train``: the ``gan train`` command standalone."""
    import sys

    from forensics_core.clirun import CONTEXT_SETTINGS, configure_logging, run_click
    from generators.cli import gan

    configure_logging()
    return run_click(gan, ["train", *(argv if argv is not None else sys.argv[1:])], "forensics gan", **CONTEXT_SETTINGS)


__all__ = [
    "ASSETS", "Checkpoint", "FreshRunOptions", "TrainOptions", "Trainer", "TrainingError", "build_family", "describe",
    "export_reference", "init_weights", "list_checkpoints", "load_checkpoint", "load_module_tensors", "load_run",
    "make_options", "module_tensors", "reference_names", "resolve_config", "resume_options", "save_checkpoint",
    "train",
]

if __name__ == "__main__":
    raise SystemExit(main())
