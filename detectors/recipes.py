"""Named training recipes: the exact options behind shipped models, reproducible with one command.

``forensics detector train --recipe default --data DS...`` (or ``python -m detectors.default_model``) resolves a
recipe into :class:`detectors.train.options.TrainOptions`; explicit CLI options override it. Recipes hold *how* to
train, not *where* the data is: dataset dirs are always given (or discovered under a data root), so nothing depends
on one machine's paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from forensics_core.registry import Registry


@dataclass
class Recipe:
    name: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)
    #: where the result is installed by ``detectors.default_model`` (relative to forensics/assets/models)
    install_as: str = ""
    licence: str = ""


RECIPES: Registry[Recipe] = Registry("recipe")

DEFAULT_LICENCE = (
    "Weights: research and non-commercial use only, following the terms of the data they were trained on "
    "(UTKFace: non-commercial research; FFHQ thumbnails: CC BY-NC-SA 4.0; thispersondoesnotexist StyleGAN2 faces "
    "and the project's own generator outputs made from these sets: research / non-commercial; Stable Diffusion 1.4 "
    "and Unsplash images from repositories that state no licence of their own: research use). The code is "
    "Apache-2.0; the weights are not. No training image is redistributed in the weights file."
)

RECIPES.add(
    "default",
    Recipe(
        name="default",
        description="Shipped scan model: NPR residual + RGB CNN at 128 px (pixel-unshuffled), trained on "
        "source-stored imports with one delivery-history distribution for both classes.",
        options={
            "detector": "npr",
            "res": 128,
            "detector_cfg": {"widths": (24, 48, 96, 128), "unshuffle": 2, "with_rgb": True, "dropout": 0.2},
            "epochs": 60,
            "batch": 32,
            "lr": 2e-3,
            "weight_decay": 1e-4,
            "steps_per_epoch": 150,
            "patience": 8,
            "augment": "flip",
            "delivery": "mixed",
            "match_res": True,
            "calibration": "temperature",
            "max_val": 4000,
            "post_fit_items": 0,
            "fp16": True,
            "model_name": "default-npr128",
            "threads": 2,
        },
        install_as="default",
        licence=DEFAULT_LICENCE,
    ),
)

#: what the issue-#30 candidates share: native crops that reflect at the photo's edge, random framings, delivery
#: histories down to 0.25x, both classes alike, trained from scratch with a cosine learning rate over the time
#: budget, keeping the last epoch (validation AUC is in-distribution: transfer_val decides between candidates)
_TRANSFER = {
    "epochs": 400,
    "batch": 32,
    "weight_decay": 1e-4,
    "steps_per_epoch": 150,
    "patience": 25,
    "keep": "last",
    "lr_schedule": "cosine",
    "augment": "flip",
    "delivery": "quarter",
    "framing": "photos",
    "match_res": True,
    "calibration": "temperature",
    "max_val": 4000,
    "post_fit_items": 0,
    "fp16": True,
    "threads": 1,
}

RECIPES.add(
    "transfer-npr",
    Recipe(
        name="transfer-npr",
        description="Candidate (a) of issue #30: the default NPR + RGB architecture at 128 px, from scratch, with "
        "reflect-edge native crops, random framings and the 'quarter' delivery (down to 0.25x).",
        options={
            **_TRANSFER,
            "detector": "npr",
            "res": 128,
            "detector_cfg": {"widths": (24, 48, 96, 128), "unshuffle": 2, "with_rgb": True, "dropout": 0.2,
                             "residual": "luma", "chroma": "half", "crop": "native", "edge": "reflect"},
            "lr": 2e-3,
            "model_name": "transfer-npr128",
        },
        licence=DEFAULT_LICENCE,
    ),
)

RECIPES.add(
    "transfer-rgb",
    Recipe(
        name="transfer-rgb",
        description="Candidate (b) of issue #30: a semantic branch, timm resnet10t (4.9 M parameters, random init) "
        "on the plain RGB face at 128 px, same crops, framings and deliveries as transfer-npr.",
        options={
            **_TRANSFER,
            "detector": "timm",
            "res": 128,
            "detector_cfg": {"backbone": "resnet10t", "drop_rate": 0.2, "crop": "native", "edge": "reflect"},
            "lr": 1e-3,
            "model_name": "transfer-rgb128",
        },
        licence=DEFAULT_LICENCE,
    ),
)

RECIPES.add(
    "fast",
    Recipe(
        name="fast",
        description="A 64 px NPR model for quick experiments (minutes on CPU).",
        options={
            "detector": "npr",
            "res": 64,
            "epochs": 8,
            "batch": 64,
            "lr": 2e-3,
            "steps_per_epoch": 60,
            "patience": 3,
            "augment": "light",
            "model_name": "fast-npr64",
        },
        licence=DEFAULT_LICENCE,
    ),
)


def get_recipe(name: str) -> Recipe:
    return RECIPES.get(name).obj
