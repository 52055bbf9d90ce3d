"""``forensics detector fuse``: one model file from several trained ones (an ``ensemble`` with their weights).

Why fuse trained models instead of training an ensemble: the members look for different manipulations (GAN
upsampling artifacts, swap blending boundaries) and are trained on different positives (labelled fakes, self-blends
of reals), so they are trained apart and combined afterwards on validation data. ``max`` fusion
(:class:`detectors.models.ensemble.EnsembleConfig`) standardises each member by the validation reals and keeps the
loudest, so a blending alarm is not muted by a validation set that holds no swaps; the fused logit is then
calibrated and its presets held under every common delivery like any model (:func:`detectors.evaluate.recalibrate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forensics_core.errors import UsageError

#: config keys every member shares with the ensemble (taken from the ensemble, not from the member)
COMMON = ("res", "crop", "margin", "edge", "seed")


@dataclass
class FuseOptions:
    models: list[str]
    data: list[str]
    out: str
    splits: tuple[str, ...] = ("val",)
    fusion: str = "max"
    #: ``clamp`` / ``reflect``: the fused model's edge policy when the members' differ ("" = theirs, which must agree)
    edge: str = ""
    #: calibration; "" = ``platt`` for ``max`` fusion, ``temperature`` for ``stack``. Why: a ``max`` logit is
    #: measured from the validation reals' mean, so a scale alone (temperature) puts every real-looking face at
    #: P(fake) 0.5 (measured: T = 148, reals' median 0.501); Platt's intercept moves them back down
    method: str = ""
    hold: bool = True
    name: str = ""
    device: str = "auto"
    seed: int = 0


def _check_compatible(models: list[Any], edge: str) -> None:
    """One crop for every member: same size, crop and margin; the window's edge policy too unless ``edge`` picks
    one. Normalisation may differ (the ensemble maps its input to each member's, see ``EnsembleDetector``)."""
    from forensics_core.faces.crops import EDGES

    if edge and edge not in EDGES:
        raise UsageError(f"detector fuse: --edge must be one of {', '.join(EDGES)}, got '{edge}'")
    specs = {(m.preprocess.size, m.preprocess.crop, m.preprocess.margin) for m in models}
    if len(specs) > 1:
        names = ", ".join(f"{m.name} ({m.preprocess.size} px, {m.preprocess.crop}, margin {m.preprocess.margin})"
                          for m in models)
        raise UsageError(f"detector fuse: members must share one input size, crop and margin: {names}")
    if not edge and len({m.preprocess.edge for m in models}) > 1:
        names = ", ".join(f"{m.name} ({m.preprocess.edge})" for m in models)
        raise UsageError(f"detector fuse: members crop with different edge policies ({names}): choose one with --edge")
    if any(m.card["detector"] in ("ensemble", "video") for m in models):
        raise UsageError("detector fuse: members must be single image detectors (not ensemble or video)")


def build_fused(models: list[Any], fusion: str, edge: str = "") -> Any:
    """An ``ensemble`` detector whose members are ``models``' detectors with their trained weights; ``edge``
    (``clamp`` / ``reflect``, default: the members' shared one) is how the fused model's window meets the photo's
    edge."""
    from detectors.registry import build_detector

    _check_compatible(models, edge)
    first = models[0].detector.cfg
    det = build_detector(
        "ensemble",
        members=tuple(m.card["detector"] for m in models),
        member_cfgs=tuple({k: v for k, v in m.card["config"].items() if k not in COMMON} for m in models),
        fusion=fusion, res=first.res, crop=first.crop, margin=first.margin, edge=edge or first.edge,
    )
    for member, m in zip(det.members, models):
        member.load_state_dict(m.detector.state_dict())
    return det.eval()


def member_real_logits(det: Any, reals: list, delivery: Any, seed: int) -> np.ndarray:
    """Every member's logits ``(N, k)`` on the validation reals, with the same fixed histories calibration uses."""
    import torch

    from detectors.data import ByteCache, eval_array

    spec = det.preprocess
    arr = eval_array(
        ByteCache(reals), spec.size, spec.margin, delivery=delivery, seed=seed, crop=spec.crop, edge=spec.edge
    )
    with torch.inference_mode():
        return torch.cat([det.member_logits(spec.to_tensor(arr[i : i + 256], "cpu"))
                          for i in range(0, len(arr), 256)]).double().numpy()


def fuse(opts: FuseOptions) -> Path:
    """Load, fuse, fit the real reference and the calibration on ``opts.data``, write ``opts.out``."""
    from detectors.calibration import Identity, preset_support
    from detectors.data import check_both_classes, load_items
    from detectors.evaluate import check_fit_splits, recalibrate, recorded_delivery
    from detectors.modelfile import Model, load_model, save_model

    check_fit_splits(opts.splits, "fuse")
    if len(opts.models) < 2:
        raise UsageError("detector fuse: give at least two models")
    models = [load_model(m, device="cpu") for m in opts.models]
    det = build_fused(models, opts.fusion, opts.edge)
    items, sources = load_items(list(opts.data), "eval", splits=opts.splits)
    check_both_classes(items, ", ".join(opts.data))
    delivery = next((d for d in (recorded_delivery(m.card) for m in models) if d is not None), None)
    if opts.fusion == "max":
        det.fit_real_reference(member_real_logits(det, [it for it in items if it.y == 0], delivery, opts.seed))
    raw = Model(name="fused", sha256="", card={}, preprocess=det.preprocess, thresholds={}, detector=det,
                calibrator=Identity(), device="cpu")
    method = opts.method or ("platt" if opts.fusion == "max" else "temperature")
    rc = recalibrate(raw, items, method, opts.hold, delivery)
    trainings = [m.card.get("training", {}) for m in models]
    training = {
        "detector": "ensemble",
        "fused_from": [{"name": m.name, "detector": m.card["detector"], "sha256": m.sha256, "model": m.path,
                        "families": t.get("families", []), "datasets": t.get("datasets", [])}
                       for m, t in zip(models, trainings)],
        "fusion": opts.fusion,
        "families": sorted({f for t in trainings for f in t.get("families", [])}),
        "datasets": [d for t in trainings for d in t.get("datasets", [])],
        "val_datasets": [s.path for s in sources],
        "delivery": next((t["delivery"] for t in trainings if t.get("delivery")), {"preset": "none"}),
        "calibration_split": f"real reference, calibration and presets on {', '.join(opts.splits)} of "
        + ", ".join(opts.data) + ("; FPR presets held under every common delivery" if rc.hold_table else ""),
        **({"threshold_hold": rc.hold_table} if rc.hold_table else {}),
    }
    licences = sorted({m.card.get("licence", "") for m in models} - {""})
    return save_model(
        opts.out, det, rc.calibrator, rc.thresholds, training=training, licence=" ".join(licences),
        threshold_support=preset_support(rc.n_real), name=opts.name or "+".join(m.name for m in models),
        description="Fused: " + " | ".join(f"{m.card['detector']} ({m.name})" for m in models)
        + f", {opts.fusion} of real-standardised logits" * (opts.fusion == "max"),
    )
