"""The detector training loop (:func:`train`): one loop for every registered detector, single process or
``torchrun`` DDP, with checkpoints to resume from and early stopping on validation AUC.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from detectors.train.finalize import finalize_model, stratified_halves
from detectors.train.options import KEEP, LR_SCHEDULES, TrainOptions, lr_factor
from detectors.train.views import TrainingView, _AugDataset, _collate, add_self_blends
from forensics_core.errors import DataError, UsageError
from forensics_core.hashing import sha256_text
from forensics_core.runs import (
    MetricsLog,
    init_distributed,
    next_run_dir,
    rank_device,
    restore_run_checkpoint,
    save_run_checkpoint,
    write_json,
)
from forensics_core.training import Budget, EarlyStop, Every, run_steps

log = logging.getLogger(__name__)


# -- checkpoints (the layout is forensics_core.runs's; the reader is the model-file one, which checks the file) --------
def save_checkpoint(run: Path, model: Any, opt: Any, state: dict[str, Any]) -> None:
    """Weights and optimiser tensors in safetensors, the rest (epoch, best, param groups) in JSON."""
    save_run_checkpoint(run, model, opt, state, opt_prefix="opt", default=float)


def load_checkpoint(run: Path, model: Any, opt: Any) -> dict[str, Any]:
    from detectors.modelfile import read_state_dict
    from forensics_core.errors import ModelFileError

    if not (run / "checkpoint.json").is_file():
        raise ModelFileError(f"{run}: no checkpoint.json to resume from")
    meta = json.loads((run / "checkpoint.json").read_text(encoding="utf-8"))
    restore_run_checkpoint(read_state_dict(run / "checkpoint.safetensors"), meta, model, opt, opt_prefix="opt")
    return meta


# -- the loop -------------------------------------------------------------------------------------------------
def _scores(det: Any, arr: np.ndarray, device: Any, batch: int = 256) -> np.ndarray:
    import torch

    det.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(arr), batch):
            x = det.preprocess.normalise(torch.from_numpy(arr[i : i + batch]).to(device))
            out.append(det(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _subsample(items: list, n: int, seed: int) -> list:
    if len(items) <= n:
        return items
    rng = np.random.default_rng(seed)
    ys = np.array([it.y for it in items])
    keep: list[int] = []
    for c in (0, 1):
        idx = np.flatnonzero(ys == c)
        keep += list(rng.choice(idx, size=min(idx.size, n // 2), replace=False))
    return [items[i] for i in sorted(keep)]


def _init_model(opts: TrainOptions) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The detector config, float32 weights and identity (name, weights sha256: an installed name such as
    ``default`` changes when a new model is installed) of ``opts.init_model``; ``train`` lays the command-line
    options over that config (the architecture must stay loadable, checked by ``load_state_dict``)."""
    from detectors.modelfile import config_from_json, load_model

    src = load_model(opts.init_model, device="cpu")
    if src.card["detector"] != opts.detector:
        raise UsageError(
            f"--init-model {opts.init_model}: it is a '{src.card['detector']}' model, not '{opts.detector}'"
        )
    state = {k: v.float() if v.is_floating_point() else v for k, v in src.detector.state_dict().items()}
    origin = {"model": opts.init_model, "name": src.card.get("name", ""), "sha256": src.sha256}
    return config_from_json(src.card["config"]), state, origin


def train(opts: TrainOptions) -> Path:
    """Train, calibrate and write ``RUN/model``; returns the run dir."""
    import torch

    from detectors.augment import AugmentConfig, DeliveryConfig, FramingConfig
    from detectors.data import (
        ByteCache,
        balanced_weights,
        check_both_classes,
        crop_policy_gap,
        eval_array,
        fake_resolutions,
        load_items,
        split_holdout,
    )
    from detectors.metrics import roc_auc
    from detectors.registry import DETECTORS, build_detector
    from forensics_core.config import resolve_device

    if opts.keep not in KEEP:
        raise UsageError(f"keep={opts.keep!r}: choose one of {', '.join(KEEP)}")
    if not 0 <= opts.sbi <= 1:
        raise UsageError(f"sbi={opts.sbi}: the share of reals to self-blend must be in [0, 1]")
    if opts.lr_schedule not in LR_SCHEDULES:
        raise UsageError(f"lr_schedule={opts.lr_schedule!r}: choose one of {', '.join(LR_SCHEDULES)}")
    ddp = init_distributed(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    distributed, rank, main_proc = ddp.enabled, ddp.rank, ddp.main
    if distributed:  # each rank on its own GPU (or the CPU); --device is for single-process runs
        device = rank_device(ddp, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    else:
        device = resolve_device(opts.device)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    t_start = time.time()

    det_cls = DETECTORS.get(opts.detector).obj
    init_cfg, init_state, init_from = _init_model(opts) if opts.init_model and not opts.resume else ({}, None, {})
    cfg_over = {**init_cfg, **opts.detector_cfg}
    if opts.res:
        cfg_over["res"] = opts.res
    cfg_over.setdefault("seed", opts.seed)
    det = build_detector(opts.detector, **cfg_over)
    det.initialise(weights=opts.weights, init_from_gan=opts.init_from_gan)
    if init_state is not None:
        det.load_state_dict(init_state)
    res = det.cfg.res
    framing = FramingConfig.preset(opts.framing)
    if framing is not None and det.cfg.crop != "native":
        raise UsageError(f"--framing {opts.framing}: needs --set crop=native (framings move the native window)")

    # data
    train_items, train_src = load_items(
        opts.data, "train", opts.families, opts.exclude_families, exclude_generators=opts.exclude_generators
    )
    if opts.val:
        val_items, val_src = load_items(
            opts.val, "val", opts.families, opts.exclude_families, exclude_generators=opts.exclude_generators
        )
    else:
        train_items, val_items = split_holdout(train_items)
        val_src = []
    if det_cls.needs_fakes:
        check_both_classes(train_items, "training data")
    elif not any(it.y == 0 for it in train_items):
        raise DataError("training data: no real items (blend makes its positives from reals)")
    if det_cls.needs_fakes:
        check_both_classes(val_items, "validation data")
    elif not any(it.y == 0 for it in val_items):
        raise DataError("validation data: no real items (blend validates on self-blends of val reals)")
    val_items = _subsample(val_items, opts.max_val, opts.seed)
    train_paths = {str(it.path) for it in train_items}
    overlap = sum(str(it.path) in train_paths for it in val_items)
    if overlap:
        raise DataError(f"validation shares {overlap} files with training data; use a separate --val split")

    # run dir (rank 0 creates it; others only train)
    if opts.resume:
        run = Path(opts.resume)
        if not (run / "training_options.json").is_file():
            raise UsageError(f"--resume {run}: not a detector run dir (no training_options.json)")
    elif main_proc:
        run = next_run_dir(opts.out, f"{opts.detector}-r{res}")
    else:
        run = Path(opts.out) / ".ddp-rank-scratch"
    if main_proc and not opts.resume:
        write_json(run / "training_options.json", asdict(opts))
    mlog = MetricsLog(run / "metrics.jsonl", enabled=main_proc)

    cache = ByteCache(train_items)
    val_cache = ByteCache(val_items)
    delivery = DeliveryConfig.preset(opts.delivery)
    margin, crop, edge = det.cfg.margin, det.cfg.crop, det.cfg.edge
    for what, its in (("training", train_items), ("validation", val_items)):
        if gap := crop_policy_gap(its, crop):
            log.warning("%s data: %s", what, gap)
    val_x = eval_array(val_cache, res, margin, delivery=delivery, seed=opts.seed, crop=crop, edge=edge)
    val_x, val_y = det.validation_views(val_x, np.array([it.y for it in val_items]), opts.seed)
    weights = balanced_weights(train_items, opts.group_weights)
    p_tight = None
    if framing is not None:  # both classes get the same share of windows that reach past the photo
        from detectors.augment import balanced_tight_rates
        from detectors.data import window_outside

        outside = np.array([window_outside(it, res, margin) for it in train_items])
        ys = np.array([it.y for it in train_items])
        p_tight = balanced_tight_rates(outside, ys, weights, framing)
        tight = outside >= framing.tight_at
        mlog.write(event="framing",
                   natural_tight_share={c: float(2 * weights[(ys == c) & tight].sum()) for c in (0, 1)},
                   extra_tight_rate={c: float(p_tight[(ys == c) & ~tight].max(initial=0.0)) for c in (0, 1)})
    aug_cfg = AugmentConfig.preset(opts.augment)
    fake_sizes = fake_resolutions(train_items, weights) if opts.match_res else None
    if opts.match_res and fake_sizes is None:
        raise DataError("--match-res: no training fake records its source size (src_width / src_height or res)")
    view = TrainingView(res, aug_cfg, fake_sizes, margin, delivery, crop, edge, framing)
    mlog.write(
        event="start",
        n_train=len(train_items),
        n_val=len(val_items),
        detector=opts.detector,
        config=det.config_dict(),
        device=str(device),
    )

    det.to(device)
    params = [p for p in det.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay) if params else None
    start_epoch, step = 0, 0
    budget = Budget(opts.max_minutes, opts.max_steps, started=t_start)  # the clock started before loading data
    early = EarlyStop(opts.patience)
    # Early stopping compares val AUCs, which only mean the same thing on the same validation items.
    val_key = sha256_text("\n".join(sorted(str(it.path) for it in val_items)))[:16]
    if opts.resume and opt is not None:
        meta = load_checkpoint(run, det, opt)
        start_epoch, step = meta["epoch"] + 1, meta["step"]
        budget.spent_s = float(meta.get("elapsed_s", 0.0))  # the budget the earlier sessions of this run used
        if meta.get("val_key") == val_key:  # resumed on other data: the old best is not comparable
            early = EarlyStop(opts.patience, meta["best_auc"], meta["bad_epochs"])
        mlog.write(event="resume", epoch=start_epoch, val_changed=meta.get("val_key") != val_key)
    model: Any = det
    if distributed and det.gradient_trained:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(_LossModule(det), find_unused_parameters=True)
    else:
        model = _LossModule(det)

    steps_per_epoch = opts.steps_per_epoch or max(1, len(train_items) // opts.batch)

    def progress(step: int) -> float:
        """The share of the budget spent: the larger of the time and step shares (the run stops at either)."""
        by_steps = step / (opts.max_steps or opts.epochs * steps_per_epoch)
        if opts.max_minutes:
            return max(by_steps, budget.elapsed_s() / (60 * opts.max_minutes))
        return by_steps

    use_amp = opts.amp and device.type in ("cuda", "cpu")
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda") if use_amp and device.type == "cuda" else None
    best_state = {k: v.detach().clone() for k, v in det.state_dict().items()}
    stopped = "epochs"
    rng = np.random.default_rng((opts.seed, rank))
    sbi_rng = np.random.default_rng((opts.seed, rank, 11))

    if det.gradient_trained and opt is not None:
        from tqdm.auto import tqdm

        world = ddp.world
        for epoch in range(start_epoch, opts.epochs):
            order = rng.choice(len(train_items), size=steps_per_epoch * opts.batch, p=weights)
            ds = _AugDataset(cache, order, view, opts.seed * 1000 + rank, epoch, p_tight)
            loader = torch.utils.data.DataLoader(
                ds, batch_size=opts.batch, shuffle=False, num_workers=opts.workers, collate_fn=_collate, drop_last=True
            )
            det.train()
            t_epoch = time.time()
            import sys

            bar = tqdm(
                loader,
                desc=f"epoch {epoch}",
                disable=not (opts.progress and main_proc),
                leave=False,
                mininterval=0.5 if sys.stderr.isatty() else 60.0,
            )
            losses: list[float] = []

            # this epoch's batches, losses and bar are bound as defaults: the two functions belong to this epoch
            def train_step(done: int, batches: Any = iter(bar), losses: list[float] = losses, bar: Any = bar) -> Any:
                xb, yb = next(batches)
                for g in opt.param_groups:
                    g["lr"] = opts.lr * lr_factor(opts.lr_schedule, progress(done))
                x = det.preprocess.normalise(xb.to(device, non_blocking=True))
                y = yb.to(device)
                if opts.sbi > 0:
                    x, y = add_self_blends(x, y, opts.sbi, margin, sbi_rng)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    loss, logs = model(x, y)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                losses.append(float(loss.detach()))
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", refresh=False)
                return logs

            def log_step(step: int, logs: dict[str, Any], last: bool, epoch: int = epoch,
                         losses: list[float] = losses) -> None:
                mlog.write(event="step", epoch=epoch, step=step, loss=float(np.mean(losses[-50:])),
                           lr=opt.param_groups[0]["lr"], **logs)

            step = run_steps(
                step, step + len(loader), train_step, [Every(50, log_step, at_last=False)],
                stop=lambda step: budget.out_of_time() or budget.out_of_steps(step),
            )
            bar.close()
            val_s = _scores(det, val_x, device)
            auc = roc_auc(val_y, val_s)
            imgs_s = len(losses) * opts.batch * world / max(time.time() - t_epoch, 1e-9)
            mlog.write(
                event="epoch",
                epoch=epoch,
                step=step,
                loss=float(np.mean(losses)) if losses else None,
                val_auc=auc,
                train_images_per_s=imgs_s,
                elapsed_s=time.time() - budget.started,
            )
            if main_proc and opts.progress:
                log.warning(
                    "epoch %d: loss %.4f val AUC %.4f (%.0f img/s)",
                    epoch,
                    np.mean(losses) if losses else float("nan"),
                    auc,
                    imgs_s,
                )
            if early.update(auc):
                best_state = {k: v.detach().clone() for k, v in det.state_dict().items()}
            if main_proc:
                save_checkpoint(
                    run, det, opt,
                    {"epoch": epoch, "best_auc": early.best, "bad_epochs": early.bad, "step": step, "val_key": val_key,
                     "elapsed_s": budget.elapsed_s()},
                )
            if early.stop:
                stopped = "early-stop"
                break
            if reason := budget.stop_reason(step):
                stopped = reason
                break
        if opts.keep == "best":
            det.load_state_dict(best_state)

    if not main_proc:
        if distributed:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        return run

    # closed-form fitting (spectrum, ensemble stacker) on augmented train items and on val
    from detectors.base import ArrayData

    n_pf = min(opts.post_fit_items, len(train_items))
    pf_idx = np.random.default_rng(opts.seed + 7).choice(len(train_items), size=n_pf, replace=False)
    pf_x = np.zeros((n_pf, res, res, 3), np.uint8)
    for k, i in enumerate(pf_idx):
        pf_rng = np.random.default_rng((opts.seed, 99, int(i)))
        tight = None if p_tight is None else float(p_tight[int(i)])
        pf_x[k] = view(cache.image(int(i)), train_items[int(i)], pf_rng, tight)
    pf_y = np.array([train_items[int(i)].y for i in pf_idx])
    half_a = stratified_halves(val_y)
    det.eval()
    with torch.no_grad():
        to_t = lambda a: det.preprocess.normalise(torch.from_numpy(a).to(device))  # noqa: E731
        det.post_fit(
            ArrayData(to_t(pf_x).cpu(), torch.from_numpy(pf_y)),
            ArrayData(to_t(val_x[half_a]).cpu(), torch.from_numpy(val_y[half_a])),
        )

    val_s = _scores(det, val_x, device)
    held, held_sources = _held_pass(det, val_items, res, margin, device, crop, edge) if delivery else ({}, None)
    run_info = {
        "stopped": stopped,
        "best_val_auc_during_training": early.best,
        "kept": opts.keep,
        "steps": step,
        "minutes": (time.time() - t_start) / 60,
        **({"init_from": init_from} if init_from else {}),
    }
    model_dir = finalize_model(
        run / "model", det, val_s, val_y, half_a, opts, train_src, val_src, run_info, n_train=len(train_items),
        held=held, held_sources=held_sources,
    )
    mlog.write(event="done", model=str(model_dir), **run_info)
    if distributed:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return run


def _held_pass(
    det: Any, items: list, res: int, margin: float, device: Any, crop: str, edge: str = "clamp"
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """:func:`detectors.calibration.held_real_logits` with the detector being trained (views as validation
    makes them)."""
    from detectors.calibration import held_real_logits
    from detectors.data import ByteCache, eval_array

    cache: ByteCache | None = None  # one read of the reals for every delivery

    def score(reals: list, chain: Any) -> np.ndarray:
        nonlocal cache
        cache = cache or ByteCache(reals)
        return _scores(det, eval_array(cache, res, margin, history=chain, crop=crop, edge=edge), device)

    return held_real_logits(items, score)


class _LossModule:
    """Wraps ``detector.loss`` as ``forward`` so DDP's gradient hooks see it (DDP syncs only through forward)."""

    def __new__(cls, det: Any):  # built lazily so this module imports without torch
        from torch import nn

        class LossModule(nn.Module):
            def __init__(self, d: Any) -> None:
                super().__init__()
                self.det = d

            def forward(self, x: Any, y: Any) -> Any:
                return self.det.loss(x, y)

        return LossModule(det)
