"""Detector training options: :class:`TrainOptions` (written to ``training_options.json`` before any work, so a run
is reproducible from that file alone) and the learning-rate schedules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

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
