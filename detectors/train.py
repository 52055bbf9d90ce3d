"""Detector training: one loop for every registered detector, single process or ``torchrun`` DDP.

Shape of a run (StyleGAN2-ADA style): options resolve into :class:`TrainOptions`, which is written to
``training_options.json`` in a numbered run dir (``runs/00003-npr-r128``) before any work; metrics are appended
to ``metrics.jsonl``; ``checkpoint.safetensors`` + ``checkpoint.json`` (weights, optimiser tensors, epoch, best AUC)
let ``--resume RUN`` continue; the final calibrated model is written to ``RUN/model/`` (see
:mod:`detectors.modelfile`).

What the loop does for generalisation:
- family-balanced sampling (each class half the mass, split equally between its families/generators), so one big
  generator dataset does not become "the" fake;
- the same random degradation chains (:mod:`detectors.augment`) on reals and fakes;
- early stopping on validation AUC (ranking), then calibration on a held-out half of validation, with thresholds
  picked on that half's reals and the card's val metrics measured on the other half.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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


#: the weights a run can write (``TrainOptions.keep``)
KEEP = ("best", "last")
#: learning-rate schedules (``TrainOptions.lr_schedule``)
LR_SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, progress: float) -> float:
    """The multiplier of the base learning rate at ``progress`` (0 = start, 1 = the run's budget spent): ``constant``
    1; ``cosine`` decays to 0 over the budget. Why: a from-scratch run with a time budget otherwise ends at its
    peak learning rate, and whichever weights it stops on carry that last step's noise."""
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


@dataclass
class TrainOptions:
    """Everything that defines a training run (``training_options.json`` reproduces it)."""

    detector: str
    data: list[str]
    val: list[str] = field(default_factory=list)
    detector_cfg: dict[str, Any] = field(default_factory=dict)
    res: int | None = None
    epochs: int = 10
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    steps_per_epoch: int | None = None
    patience: int = 3
    #: which weights the run writes: ``best`` (the epoch with the highest validation AUC: early stopping) or
    #: ``last`` (the final epoch). A fine-tune of a model whose validation AUC is already ~0.997 may want
    #: ``last``: that AUC is saturated, so "best" is whichever epoch won on noise; candidates are then compared on
    #: the validation transfer protocols
    keep: str = "best"
    #: ``constant`` or ``cosine`` (decays over the budget: the larger of the time share of ``max_minutes`` and the
    #: step share of ``max_steps`` (else ``epochs x steps_per_epoch``); the elapsed time is kept in the checkpoint,
    #: so a resumed run continues it
    lr_schedule: str = "constant"
    augment: str = "default"
    calibration: str = "temperature"
    families: list[str] = field(default_factory=list)
    exclude_families: list[str] = field(default_factory=list)
    #: fakes of these generators (manifest ``generator``) are left out of train and val (cross-source protocol)
    exclude_generators: list[str] = field(default_factory=list)
    #: sampling-mass multipliers by group (fake family or real source; :func:`detectors.data.balanced_weights`)
    group_weights: dict[str, float] = field(default_factory=dict)
    out: str = "runs/detectors"
    device: str = "auto"
    amp: bool = False
    workers: int = 0
    seed: int = 0
    max_minutes: float | None = None
    max_val: int = 4000
    post_fit_items: int = 4000
    weights: str | None = None
    init_from_gan: str | None = None
    #: start from a saved model file (dir, model.json or installed name such as ``default``): its detector config
    #: and weights, so a shipped model can be fine-tuned on new generator families instead of retrained
    init_model: str | None = None
    resume: str | None = None
    fp16: bool = False
    model_name: str = ""
    licence: str = ""
    threads: int | None = None
    progress: bool = True
    max_steps: int | None = None
    #: give every training real the resolution of a randomly drawn training fake (drawn as often as sampling
    #: draws each fake size): low-resolution generators then cannot teach "smooth = fake"
    match_res: bool = False
    #: delivery-history preset (:class:`detectors.augment.DeliveryConfig`) drawn for every training image and,
    #: one fixed history per item, for every validation image, so early stopping, calibration and the threshold
    #: presets see reals in every delivery a scanned file may have had. Needs ``data import --store source``
    #: datasets (the history goes on before the face crop); ignored for already-cropped rows
    delivery: str = "none"
    #: random framings of the training crops (:class:`detectors.augment.FramingConfig` preset: ``none`` |
    #: ``photos``): photos cut tighter around the face and windows with more or less context, for both classes,
    #: so a verdict does not depend on how tightly a photo is framed. Needs ``--set crop=native`` and
    #: ``source``-store datasets; pair it with ``--set edge=reflect``
    framing: str = "none"
    #: share of each batch's reals that are also self-blended (SBI: a jittered copy of the face blended into itself
    #: through a soft face mask, ``detectors.models.blend.self_blend``) and added as positives: blending traces
    #: without any generator's fingerprint, for any detector (``blend`` always does this)
    sbi: float = 0.0


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
class _AugDataset:
    """Map-style dataset over a schedule of item indices; the chain for position i is seeded by (seed, epoch, i)."""

    def __init__(
        self, cache: Any, order: np.ndarray, view: TrainingView, seed: int, epoch: int,
        p_tight: np.ndarray | None = None,
    ) -> None:
        self.cache, self.order, self.view = cache, order, view
        self.p_tight = p_tight  # per-item tight-cut rates (class-balanced framings) or None
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        j = int(self.order[i])
        rng = np.random.default_rng((self.seed, self.epoch, i))
        item = self.cache.items[j]
        view = self.view(self.cache.image(j), item, rng, None if self.p_tight is None else float(self.p_tight[j]))
        return view, item.y


@dataclass(eq=False)
class TrainingView:
    """What the detector sees of one training item: a real's resolution matched to a drawn fake size (when
    ``fake_sizes``, (sides, probabilities), is given), a framing, a delivery history and the face crop (``source``
    items, see :func:`detectors.data.face_view`), then the random augmentation chain, all alike for both classes.
    One recipe object, so the training loader and the ``post_fit`` sample draw their views the same way."""

    size: int
    aug_cfg: Any
    fake_sizes: tuple[np.ndarray, np.ndarray] | None = None
    margin: float = 0.3
    delivery: Any = None
    crop: str = "align"
    edge: str = "clamp"
    framing: Any = None

    def __call__(
        self, img: np.ndarray, item: Any, rng: np.random.Generator, p_tight: float | None = None
    ) -> np.ndarray:
        from detectors.augment import augment, match_real_resolution
        from detectors.data import face_view

        if self.fake_sizes is not None and item.y == 0:
            side = int(rng.choice(self.fake_sizes[0], p=self.fake_sizes[1]))
            img, item = match_real_resolution(img, item, side, self.crop)
        if item.store == "source":
            img = face_view(img, item, self.size, self.margin, rng, self.delivery, crop=self.crop, edge=self.edge,
                            framing=self.framing, p_tight=p_tight)
        return augment(img, self.size, rng, self.aug_cfg)


def add_self_blends(x: Any, y: Any, share: float, margin: float, rng: np.random.Generator) -> tuple[Any, Any]:
    """The batch plus self-blends of ``share`` of its reals as extra positives (labels 1)."""
    import torch

    from detectors.models.blend import self_blend

    reals = x[y == 0]
    k = int(round(share * reals.shape[0]))
    if k == 0:
        return x, y
    blends = self_blend(reals[:k], margin, rng)
    return torch.cat([x, blends]), torch.cat([y, torch.ones(k, dtype=y.dtype, device=y.device)])


def _collate(batch: list[tuple[np.ndarray, int]]):
    import torch

    return torch.from_numpy(np.stack([b[0] for b in batch])), torch.tensor([b[1] for b in batch])


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


def stratified_halves(y: np.ndarray) -> np.ndarray:
    """Boolean mask of half A: every other item *within each class*, so both halves keep both classes."""
    mask = np.zeros(len(y), dtype=bool)
    for c in (0, 1):
        idx = np.flatnonzero(y == c)
        mask[idx[::2]] = True
    return mask


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


def finalize_model(
    out: Path,
    det: Any,
    val_s: np.ndarray,
    val_y: np.ndarray,
    half_a: np.ndarray,
    opts: TrainOptions,
    train_src: list,
    val_src: list,
    run_info: dict[str, Any],
    n_train: int,
    held: dict[str, np.ndarray] | None = None,
    held_sources: dict[str, np.ndarray] | None = None,
) -> Path:
    """Calibrate on val half A; threshold presets on every val real (a preset's tail needs all the reals there
    are: see :func:`detectors.calibration.preset_support`), held under every delivery of ``held`` (val reals'
    logits re-delivered each way: :func:`detectors.calibration.held_real_logits`), for each source of
    ``held_sources`` (per delivery, aligned with ``held``) on its own too;
    metrics on half B; write the model file."""
    from detectors.calibration import fit_calibrator, hold_presets, preset_support, threshold_presets
    from detectors.metrics import MIN_BOOT, evaluate_scores
    from detectors.modelfile import save_model

    cal = fit_calibrator(opts.calibration, val_s[half_a], val_y[half_a])
    thresholds = threshold_presets(cal.predict_proba(val_s), val_y)
    hold_table: dict[str, Any] = {}
    if held:
        probs = {k: cal.predict_proba(v) for k, v in held.items()}
        thresholds, hold_table = hold_presets(thresholds, probs, held_sources)
    metrics: dict[str, Any] = {}
    b = ~half_a
    if 0 < val_y[b].sum() < b.sum():
        rep = evaluate_scores(
            val_y[b], val_s[b], cal.predict_proba(val_s[b]), thresholds, n_boot=MIN_BOOT, seed=opts.seed
        )
        metrics["val_heldout_half"] = rep.to_dict()
    training = {
        "detector": opts.detector,
        "datasets": [dataclasses.asdict(s) for s in train_src],
        "val_datasets": [dataclasses.asdict(s) for s in val_src],
        "families": sorted({f for s in train_src for f in s.families}),
        "exclude_families": opts.exclude_families,
        "exclude_generators": opts.exclude_generators,
        **({"group_weights": opts.group_weights} if opts.group_weights else {}),
        "n_train": n_train,
        "n_val": int(len(val_y)),
        "augment": opts.augment,
        "match_res": opts.match_res,
        "delivery": _delivery_record(opts.delivery),
        "framing": _framing_record(opts.framing),
        "calibration_split": "calibration on the even-indexed half of val, threshold presets on all val reals, "
        "metrics on the odd half (its preset accuracies are therefore in-sample)"
        + ("; every val image with one fixed delivery history" if opts.delivery != "none" else "")
        + ("; FPR presets held under every common delivery of the val reals (threshold_hold)" if hold_table else ""),
        **({"threshold_hold": hold_table} if hold_table else {}),
        "options": {k: v for k, v in asdict(opts).items() if k not in ("detector_cfg",)},
        **run_info,
    }
    return save_model(
        out,
        det,
        cal,
        thresholds,
        training=training,
        metrics=metrics,
        licence=opts.licence,
        fp16=opts.fp16,
        threshold_support=preset_support(int((val_y == 0).sum())),
        name=opts.model_name or opts.detector,
        description=_describe(opts.detector),
    )


def _delivery_record(preset: str) -> dict[str, Any]:
    """The delivery distribution as the model card states it (preset name and every probability / range)."""
    from detectors.augment import DeliveryConfig

    cfg = DeliveryConfig.preset(preset)
    return {"preset": preset, **(asdict(cfg) if cfg is not None else {})}


def _framing_record(preset: str) -> dict[str, Any]:
    """The framing distribution as the model card states it."""
    from detectors.augment import FramingConfig

    cfg = FramingConfig.preset(preset)
    return {"preset": preset, **(asdict(cfg) if cfg is not None else {})}


def _describe(name: str) -> str:
    from detectors.registry import DETECTORS

    return DETECTORS.get(name).description
