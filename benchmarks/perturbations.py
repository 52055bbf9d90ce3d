"""Named, parameterised perturbations: what platforms do to an image between the generator and the detector.

Each perturbation is a registered function ``f(image, **params) -> image`` built on the deterministic primitives in
:mod:`forensics_core.degrade` (the same ones training augmentation uses, so "trained with JPEG 30-100" and "tested at
JPEG 50" mean the same JPEG). A perturbation is written as a short spec string that is also its cache key:

    none                     identity
    jpeg(q=50)               JPEG re-encode at quality 50
    downscale(s=0.5)         resize by 0.5 (area), the detector's preprocessing brings it back to its input size
    upscale(s=2)             resize by 2 (bicubic)
    blur(sigma=1.5)          Gaussian blur
    crop(f=0.8)              keep the central 80% of each side
    screenshot(r=1.25)       display scaling by r then capture back at 1x (bilinear up, area down), PNG-lossless
    reencode(n=3, q=75)      n JPEG generations at quality q with a 0.9x / back resize between them (social chains)
    jpeg(q=90)>downscale(s=0.5)>jpeg(q=75)    any chain, applied left to right

Specs are canonicalised (parameters sorted, numbers printed minimally), so ``jpeg(q=50.0)`` and ``jpeg(q=50)`` hit
the same cache rows. Unknown names or parameters are one-line :class:`~forensics_core.errors.UsageError`\\ s raised when
the benchmark file is validated, before any work.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from forensics_core import degrade as D  # the primitives, the chain grammar and its executor (OpenCV loads on use)
from forensics_core.errors import UsageError
from forensics_core.registry import Registry

PerturbFn = Callable[..., np.ndarray]

PERTURBATIONS: Registry[PerturbFn] = Registry("perturbation", entry_point_group="forensics.perturbations")


def register_perturbation(name: str, *, axis: str | None = None, description: str = ""):
    """Register ``f(image, **params)``; ``axis`` names the parameter robustness curves are plotted against."""
    return PERTURBATIONS.register(name, axis=axis, description=description)


@register_perturbation("none", description="identity (the clean reference point of every curve)")
def none(image: np.ndarray) -> np.ndarray:
    return image


@register_perturbation("jpeg", axis="q", description="JPEG re-encode at quality q (95..30)")
def jpeg(image: np.ndarray, q: float = 75) -> np.ndarray:
    return D.jpeg(image, q=int(q))


def _fraction(step: str, param: str, value: float) -> float:
    """``value`` as a float when it lies in (0, 1], else the :class:`UsageError` that names the step and parameter."""
    if not 0 < value <= 1:
        raise UsageError(f"{step}({param}={value}): {param} must be in (0, 1]")
    return float(value)


@register_perturbation("downscale", axis="s", description="resize by s in (0, 1] with area interpolation")
def downscale(image: np.ndarray, s: float = 0.5) -> np.ndarray:
    return D.resize(image, scale=_fraction("downscale", "s", s), interp="area")


@register_perturbation("upscale", axis="s", description="resize by s >= 1 with bicubic interpolation")
def upscale(image: np.ndarray, s: float = 2.0) -> np.ndarray:
    if s < 1:
        raise UsageError(f"upscale(s={s}): s must be >= 1")
    return D.resize(image, scale=float(s), interp="bicubic")


@register_perturbation("blur", axis="sigma", description="Gaussian blur with standard deviation sigma (pixels)")
def blur(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    return D.blur(image, sigma=float(sigma))


@register_perturbation("crop", axis="f", description="keep the central fraction f of each side")
def crop(image: np.ndarray, f: float = 0.8) -> np.ndarray:
    return D.crop(image, frac=_fraction("crop", "f", f))


@register_perturbation("screenshot", axis="r", description="display scaling by r, captured back at 1x")
def screenshot(image: np.ndarray, r: float = 1.25) -> np.ndarray:
    """Why two resamplings: a screenshot of a scaled display interpolates up, then the capture box-filters down."""
    return D.rescale(image, scale=float(r), interp="bilinear", back="area")


@register_perturbation("reencode", axis="n", description="n JPEG generations at quality q with resampling between")
def reencode(image: np.ndarray, n: float = 3, q: float = 75) -> np.ndarray:
    out = image
    for i in range(int(n)):
        if i:
            out = D.rescale(out, scale=0.9, interp="area", back="bilinear")
        out = D.jpeg(out, q=int(q))
    return out


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


@dataclass(frozen=True)
class Step:
    name: str
    params: tuple[tuple[str, float], ...] = ()

    @property
    def key(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}({', '.join(f'{k}={_fmt(v)}' for k, v in self.params)})"


@dataclass(frozen=True)
class Perturbation:
    """A parsed, validated chain of steps. ``key`` is canonical and used as the cache key and in reports."""

    steps: tuple[Step, ...]

    @property
    def key(self) -> str:
        keys = [s.key for s in self.steps if s.name != "none"]
        return ">".join(keys) if keys else "none"

    @property
    def family(self) -> str:
        """What a robustness curve groups on: the single step's name (``chain`` for multi-step specs)."""
        real = [s for s in self.steps if s.name != "none"]
        return "none" if not real else (real[0].name if len(real) == 1 else "chain")

    @property
    def level(self) -> float | None:
        """The value along the step's ``axis`` (e.g. JPEG quality), or None for identity and chains."""
        real = [s for s in self.steps if s.name != "none"]
        if len(real) != 1:
            return None
        axis = PERTURBATIONS.get(real[0].name).meta.get("axis")
        return dict(real[0].params).get(axis) if axis else None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        calls = ((PERTURBATIONS.get(s.name).obj, dict(s.params)) for s in self.steps)
        return np.ascontiguousarray(D.apply_steps(image, calls))


def _parse_step(step: Any) -> Step:
    """A :class:`Step` from one parsed step (``forensics_core.degrade.StepText``): known name, accepted numeric
    params."""
    text = step.text
    fn = PERTURBATIONS.get(step.name).obj
    accepted = [p for p in inspect.signature(fn).parameters if p != "image"]
    params: dict[str, float] = {}
    for k, eq, v in step.args:
        if not eq or k not in accepted:
            known = ", ".join(accepted) or "none"
            raise UsageError(f"perturbation {text!r}: unknown parameter {k!r} (accepted: {known})")
        try:
            params[k] = float(v)
        except ValueError:
            raise UsageError(f"perturbation {text!r}: {k}={v!r} is not a number") from None
    return Step(step.name, tuple(sorted(params.items())))


def parse_perturbation(spec: str | dict[str, Any]) -> Perturbation:
    """Parse ``"jpeg(q=50)>downscale(s=0.5)"`` or ``{"name": "jpeg", "q": 50}`` into a :class:`Perturbation`."""
    if isinstance(spec, dict):
        d = dict(spec)
        name = d.pop("name", None)
        if not name:
            raise UsageError(f"perturbation {spec!r}: a mapping needs a 'name'")
        spec = f"{name}({', '.join(f'{k}={v}' for k, v in d.items())})" if d else str(name)
    spec = str(spec)
    steps = D.split_chain(spec)
    if steps is None:
        bad = next(p for p in re.split(r"[|>]", spec) if D.split_chain(p) is None)
        raise UsageError(f"perturbation {bad!r}: expected NAME or NAME(k=v, ...)")
    return Perturbation(tuple(_parse_step(s) for s in steps))


def expand_grid(grid: dict[str, dict[str, list[float]]]) -> list[str]:
    """``{"jpeg": {"q": [95, 50]}}`` -> ``["jpeg(q=95)", "jpeg(q=50)"]`` (one parameter swept per entry)."""
    out: list[str] = []
    for name, sweeps in grid.items():
        for param, values in (sweeps or {}).items():
            out.extend(f"{name}({param}={v})" for v in values)
    return out


def list_perturbations() -> list[str]:
    return PERTURBATIONS.names()
