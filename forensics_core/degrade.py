"""Deterministic image degradations: what platforms do to a face before a detector sees it.

One implementation serves two users: detector training augmentation (random chains, ``detectors.augment``) and
benchmark robustness perturbations (fixed chains such as ``jpeg:q=50|resize:scale=0.5``). Every primitive takes
and returns an ``HxWx3 uint8 RGB`` array and is a pure function of its arguments (``noise`` takes a seed), so a
benchmark cache keyed by the chain string is valid across runs.

Chain syntax: one grammar (:func:`split_chain`) for every chain in the toolkit: these degradations
(:func:`parse_chain`, training augmentation, delivery presets) and the benchmark perturbations
(``benchmarks.perturbations.parse_perturbation``). Steps are separated by ``|`` or ``>`` and each is ``name``,
``name:key=value,key=value`` or ``name(key=value, key=value)``, so ``resize:scale=0.5,interp=bilinear|jpeg:q=75``
and ``jpeg(q=90)>downscale(s=0.5)`` both parse. What a name means and which parameters it takes is the caller's
registry (``DEGRADATIONS.names()`` lists the primitives here); :func:`apply_steps` runs any parsed chain. OpenCV is
imported on first use, so parsing and validating a chain (``forensics bench`` checking a benchmark file) does not
load it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forensics_core.config import parse_value
from forensics_core.errors import UsageError
from forensics_core.registry import Registry

Image = np.ndarray

DEGRADATIONS: Registry[Callable[..., Image]] = Registry("degradation")

#: interpolation name -> the OpenCV flag's name (looked up when used: OpenCV is imported lazily)
INTERP = {
    "nearest": "INTER_NEAREST",
    "bilinear": "INTER_LINEAR",
    "bicubic": "INTER_CUBIC",
    "area": "INTER_AREA",
    "lanczos": "INTER_LANCZOS4",
}


def _as_rgb(img: Image) -> Image:
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise UsageError(f"degradation expects an HxWx3 uint8 image, got shape {img.shape} dtype {img.dtype}")
    return np.ascontiguousarray(img)


def _interp(name: str) -> int:
    import cv2

    try:
        return getattr(cv2, INTERP[name])
    except KeyError:
        raise UsageError(f"unknown interpolation '{name}'; known: {', '.join(INTERP)}") from None


@DEGRADATIONS.register("jpeg")
def jpeg(img: Image, q: int = 75) -> Image:
    """Encode as JPEG at quality ``q`` (1-100, libjpeg via OpenCV, 4:2:0) and decode again."""
    import cv2

    img = _as_rgb(img)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(q)])
    if not ok:
        raise UsageError(f"jpeg: encoding failed at q={q}")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@DEGRADATIONS.register("resize")
def resize(img: Image, scale: float = 0.5, interp: str = "area") -> Image:
    """Rescale by ``scale`` (rounded to whole pixels, at least 1) with the named interpolation."""
    import cv2

    img = _as_rgb(img)
    h, w = img.shape[:2]
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    return cv2.resize(img, (nw, nh), interpolation=_interp(interp))


@DEGRADATIONS.register("resize_to")
def resize_to(img: Image, size: int = 64, interp: str = "auto") -> Image:
    """Resize to ``size`` x ``size`` (the detector input size).

    ``auto`` shrinks with the area filter and enlarges with the cubic one, as :func:`forensics_core.faces.native_crop`
    does for a file smaller than the crop: a small face then reaches a detector the same way through ``scan``, the
    benchmark runner and training. (The area filter enlarges an integer factor by pixel replication, which zeroes
    an NPR residual outright: the runner's after-crop 0.5x cell read 0.63 AUC that way, where ``scan`` of the same
    halved files read 0.90.)"""
    import cv2

    img = _as_rgb(img)
    if img.shape[0] == size and img.shape[1] == size:
        return img
    if interp == "auto":
        interp = "area" if min(img.shape[:2]) >= size else "bicubic"
    return cv2.resize(img, (int(size), int(size)), interpolation=_interp(interp))


@DEGRADATIONS.register("rescale")
def rescale(img: Image, scale: float = 0.5, interp: str = "bilinear", back: str = "bicubic") -> Image:
    """Down- (or up-) scale by ``scale`` and back to the original size: resolution loss at constant size."""
    import cv2

    img = _as_rgb(img)
    h, w = img.shape[:2]
    small = resize(img, scale, interp)
    return cv2.resize(small, (w, h), interpolation=_interp(back))


@DEGRADATIONS.register("blur")
def blur(img: Image, sigma: float = 1.0) -> Image:
    """Gaussian blur with standard deviation ``sigma`` pixels (kernel 6 sigma + 1); sigma <= 0 is identity."""
    import cv2

    img = _as_rgb(img)
    if sigma <= 0:
        return img.copy()
    k = int(2 * np.ceil(3 * sigma) + 1)
    return cv2.GaussianBlur(img, (k, k), sigmaX=float(sigma), sigmaY=float(sigma), borderType=cv2.BORDER_REFLECT)


@DEGRADATIONS.register("crop")
def crop(img: Image, frac: float = 0.9, x: float = 0.5, y: float = 0.5) -> Image:
    """Keep a ``frac`` x ``frac`` window whose position is given by ``x``, ``y`` in [0, 1] (0.5 = centred)."""
    img = _as_rgb(img)
    h, w = img.shape[:2]
    ch, cw = max(1, round(h * frac)), max(1, round(w * frac))
    y0 = round((h - ch) * min(max(y, 0.0), 1.0))
    x0 = round((w - cw) * min(max(x, 0.0), 1.0))
    return img[y0 : y0 + ch, x0 : x0 + cw].copy()


@DEGRADATIONS.register("noise")
def noise(img: Image, sigma: float = 3.0, seed: int = 0) -> Image:
    """Additive Gaussian noise of ``sigma`` grey levels, from a seeded generator (deterministic)."""
    img = _as_rgb(img)
    rng = np.random.default_rng(seed)
    out = img.astype(np.float32) + rng.normal(0.0, sigma, img.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@DEGRADATIONS.register("color")
def color(img: Image, brightness: float = 1.0, contrast: float = 1.0, saturation: float = 1.0) -> Image:
    """Colour jitter: multiply brightness, scale contrast around the mean grey, blend saturation with grey."""
    img = _as_rgb(img).astype(np.float32)
    img = img * brightness
    grey = img.mean(axis=2, keepdims=True)
    img = grey + (img - grey) * saturation
    img = img.mean() + (img - img.mean()) * contrast
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@DEGRADATIONS.register("screenshot")
def screenshot(img: Image, scale: float = 0.83, gamma: float = 1.0) -> Image:
    """Screenshot-like resample: a non-integer bilinear rescale (display scaling), gamma shift, PNG-lossless."""
    img = _as_rgb(img)
    out = resize(img, scale, "bilinear")
    if gamma != 1.0:
        lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma, 0, 255).astype(np.uint8)
        out = lut[out]
    return out


@DEGRADATIONS.register("flip")
def flip(img: Image) -> Image:
    """Horizontal mirror (faces are near-symmetric; a label-preserving augmentation)."""
    return _as_rgb(img)[:, ::-1].copy()


@dataclass(frozen=True)
class Op:
    """One degradation with its parameters; ``str(op)`` is the canonical chain syntax."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    def __call__(self, img: Image) -> Image:
        return DEGRADATIONS.get(self.name).obj(img, **dict(self.params))

    def __str__(self) -> str:
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_fmt(v)}" for k, v in self.params)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


@dataclass(frozen=True)
class Chain:
    """An ordered composition of ops; the empty chain is the identity (``str`` -> ``"none"``)."""

    ops: tuple[Op, ...] = field(default_factory=tuple)

    def __call__(self, img: Image) -> Image:
        return apply_steps(_as_rgb(img), ((DEGRADATIONS.get(o.name).obj, dict(o.params)) for o in self.ops))

    def __str__(self) -> str:
        return "|".join(str(o) for o in self.ops) or "none"


def op(name: str, **params: Any) -> Op:
    """Build an :class:`Op`, checking the name now rather than at first use."""
    DEGRADATIONS.get(name)
    return Op(name, tuple(sorted(params.items())))


@dataclass(frozen=True)
class StepText:
    """One step of a chain as written: its ``text`` (for error messages), ``name`` and raw ``args``, each
    ``(key, has_equals, value)`` stripped, in written order; the caller's registry gives them meaning."""

    text: str
    name: str
    args: tuple[tuple[str, bool, str], ...] = ()


_STEP = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(?:\((.*)\)|:(.*))?\s*$")
_SEPARATORS = re.compile(r"[|>]")


def split_chain(spec: str) -> list[StepText] | None:
    """The one chain grammar (see the module docstring): ``spec`` split into steps, or None where a step is not
    ``name``, ``name:k=v,...`` or ``name(k=v, ...)`` (each caller words that error for its own users)."""
    steps = []
    for part in _SEPARATORS.split(spec):
        m = _STEP.match(part)
        if not m:
            return None
        args = m.group(2) if m.group(2) is not None else (m.group(3) or "")
        parsed = []
        for kv in filter(None, (a.strip() for a in args.split(","))):
            k, eq, v = kv.partition("=")
            parsed.append((k.strip(), bool(eq), v.strip()))
        steps.append(StepText(part, m.group(1), tuple(parsed)))
    return steps


def apply_steps(img: Image, calls: Iterable[tuple[Callable[..., Image], dict[str, Any]]]) -> Image:
    """Run a parsed chain: each ``(function, parameters)`` on the previous output, left to right."""
    for fn, params in calls:
        img = fn(img, **params)
    return img


def parse_chain(spec: str) -> Chain:
    """Parse ``"resize:scale=0.5|jpeg:q=75"`` (``"none"`` or ``""`` is the identity chain)."""
    spec = spec.strip()
    if spec in ("", "none"):
        return Chain()
    ops = []
    for part in _SEPARATORS.split(spec):
        parsed = split_chain(part)
        if parsed is None:  # not a name: reported as the unknown degradation it names, as always
            DEGRADATIONS.get(part.strip().partition(":")[0].strip())
            raise UsageError(f"degradation chain '{spec}': cannot parse '{part.strip()}'")
        (step,) = parsed
        for k, eq, _ in step.args:
            if not eq:
                raise UsageError(f"degradation chain '{spec}': expected key=value, got '{k}'")
        ops.append(op(step.name, **{k: parse_value(v) for k, _, v in step.args}))
    return Chain(tuple(ops))


def apply_chain(img: Image, spec: str | Chain) -> Image:
    """Apply a chain given as a string or a :class:`Chain`."""
    chain = parse_chain(spec) if isinstance(spec, str) else spec
    return chain(img)
