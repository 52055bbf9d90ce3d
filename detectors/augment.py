"""Training augmentation: random degradation chains applied identically to BOTH classes.

Why both classes: if only fakes were JPEG'd or resized, "was re-encoded" would become the label. Applying the same
random chains to reals and fakes removes those shortcuts and models what platforms do (Wang et al. 2020,
CNNDetection: blur + JPEG augmentation is what makes detectors transfer). The primitives are the deterministic
ones in :mod:`forensics_core.degrade`; randomness lives only here, driven by a seeded ``numpy`` generator.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from forensics_core import degrade as D


@dataclass
class AugmentConfig:
    """Probabilities and ranges of each random step (``strength=0`` turns everything off except crop/flip)."""

    p_crop: float = 0.5
    crop_min: float = 0.85
    p_flip: float = 0.5
    p_resize: float = 0.3
    resize_range: tuple[float, float] = (0.5, 2.0)
    p_blur: float = 0.2
    blur_max: float = 1.5
    p_color: float = 0.3
    p_jpeg: float = 0.5
    jpeg_range: tuple[int, int] = (30, 100)
    p_reencode: float = 0.1
    p_noise: float = 0.1

    @classmethod
    def preset(cls, name: str) -> AugmentConfig:
        """``none`` | ``flip`` | ``light`` | ``default`` | ``strong`` (:data:`AUGMENT_PRESETS`).

        ``flip`` goes with a delivery history (:class:`DeliveryConfig`): compression, resampling, blur and noise
        then happen once, at the source's native resolution before the face crop, as they do to a real upload;
        repeating them after the crop would add a second, differently-gridded history no scanned file has."""
        return _preset(cls, AUGMENT_PRESETS, name, "augmentation")


def _preset(cls: type, presets: dict[str, dict | None], name: str, what: str):
    """``cls(**presets[name])`` (``None`` for a preset that turns the step off); one-line error for other names."""
    if name not in presets:
        from forensics_core.errors import UsageError

        raise UsageError(f"unknown {what} preset '{name}' ({', '.join(presets)})")
    kw = presets[name]
    return None if kw is None else cls(**kw)


#: named augmentation strengths: overrides of :class:`AugmentConfig`'s defaults
AUGMENT_PRESETS: dict[str, dict | None] = {
    "none": dict(p_crop=0, p_flip=0, p_resize=0, p_blur=0, p_color=0, p_jpeg=0, p_reencode=0, p_noise=0),
    "flip": dict(p_crop=0, p_resize=0, p_blur=0, p_color=0.2, p_jpeg=0, p_reencode=0, p_noise=0),
    "light": dict(p_resize=0.1, p_blur=0.1, p_jpeg=0.3, jpeg_range=(60, 100), p_reencode=0.0, p_noise=0.05),
    "default": {},
    "strong": dict(p_resize=0.5, p_blur=0.3, p_color=0.5, p_jpeg=0.7, p_reencode=0.2, p_noise=0.2),
}


def random_chain(rng: np.random.Generator, cfg: AugmentConfig) -> D.Chain:
    """Draw one degradation chain; the result is a deterministic :class:`forensics_core.degrade.Chain`."""
    ops: list[D.Op] = []
    if rng.random() < cfg.p_crop:
        ops.append(
            D.op("crop", frac=float(rng.uniform(cfg.crop_min, 1.0)), x=float(rng.random()), y=float(rng.random()))
        )
    if rng.random() < cfg.p_flip:
        ops.append(D.op("flip"))
    if rng.random() < cfg.p_resize:
        lo, hi = np.log(cfg.resize_range[0]), np.log(cfg.resize_range[1])
        interp = str(rng.choice(["area", "bilinear", "bicubic", "nearest"]))
        ops.append(
            D.op(
                "rescale",
                scale=float(np.exp(rng.uniform(lo, hi))),
                interp=interp,
                back=str(rng.choice(["bilinear", "bicubic", "area"])),
            )
        )
    if rng.random() < cfg.p_blur:
        ops.append(D.op("blur", sigma=float(rng.uniform(0.2, cfg.blur_max))))
    if rng.random() < cfg.p_color:
        ops.append(
            D.op(
                "color",
                brightness=float(rng.uniform(0.8, 1.2)),
                contrast=float(rng.uniform(0.8, 1.2)),
                saturation=float(rng.uniform(0.7, 1.3)),
            )
        )
    if rng.random() < cfg.p_noise:
        ops.append(D.op("noise", sigma=float(rng.uniform(1, 4)), seed=int(rng.integers(1 << 30))))
    if rng.random() < cfg.p_jpeg:
        ops.append(D.op("jpeg", q=int(rng.integers(cfg.jpeg_range[0], cfg.jpeg_range[1] + 1))))
        if rng.random() < cfg.p_reencode:  # a re-share: second encode at another quality
            ops.append(D.op("jpeg", q=int(rng.integers(cfg.jpeg_range[0], cfg.jpeg_range[1] + 1))))
    return D.Chain(tuple(ops))


def augment(img: np.ndarray, size: int, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Random chain, then resize to the detector input ``size``."""
    return D.resize_to(random_chain(rng, cfg)(img), size)


def match_resolution(img: np.ndarray, native: int, side: int) -> np.ndarray:
    """Give a real image the resolution of a fake whose source was ``side`` px: shrink to that size (area) and
    bring it back with the bilinear resampling the face aligner uses. Reals whose own ``native`` size is already
    at or below ``side`` are left as they are.

    Why: the project's generators draw 64 px faces that the importer enlarges to 128 px, so without this every
    fake is soft and most reals are sharp, and a detector learns "smooth = fake" (it then flags studio portraits).
    Matching the reals' resolution distribution to the fakes' leaves only the generators' own traces to learn."""
    if _at_or_below(img, native, side):
        return img
    return D.rescale(img, scale=side / min(img.shape[:2]), interp="area", back="bilinear")


def _at_or_below(img: np.ndarray, native: int, side: int) -> bool:
    """The real needs no matching: its stored image or its source (``native``) is already no larger than ``side``."""
    return side >= min(img.shape[:2]) or bool(native and native <= side)


def shrink_to_fake_size(
    img: np.ndarray, landmarks: np.ndarray | None, native: int, side: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`match_resolution` without the way back, for crops that never warp (``crop=native``): the real is left
    at the fake's source size (landmarks follow), so its delivery history and the crop's enlargement happen at
    that size exactly as they happen to a 64 px generator sample.

    Why: bringing it back first (bilinear, before delivery) while the fakes are enlarged by the crop (after
    delivery) made the enlargement path itself a label: a native-crop model trained that way read halved reals as
    fakes."""
    if _at_or_below(img, native, side):
        return img, landmarks
    return deliver(img, landmarks, [D.op("resize", scale=side / min(img.shape[:2]), interp="area")])


def match_real_resolution(img: np.ndarray, item: Any, side: int, crop: str) -> tuple[np.ndarray, Any]:
    """Resolution matching of one real ``item`` (a :class:`detectors.data.Item`) as its crop policy needs it, for
    training and the benchmark runner alike: a ``source``-store real under ``crop=native`` stays at ``side`` with
    its landmarks moved (:func:`shrink_to_fake_size`); anything else is shrunk and brought back
    (:func:`match_resolution`). Returns the image and the item (a copy when its landmarks moved)."""
    if crop == "native" and item.store == "source":
        img, lm = shrink_to_fake_size(img, item.landmarks, item.native, side)
        return img, replace(item, landmarks=lm)
    return match_resolution(img, item.native, side), item


@dataclass
class DeliveryConfig:
    """One distribution of delivery histories, drawn for every training and validation image of either class.

    Why: public face sets reach us with class-specific histories (FFHQ reals as PNG, StyleGAN2 fakes as JPEG q75),
    so a detector trained on them learns "was compressed" instead of "was generated", and then flags one JPEG'd
    real photo in ten. Giving both classes histories from *one* distribution, at the source's native resolution
    and before the face is cropped (where a platform applies them), leaves no history that predicts the label.
    A history is: nothing (``p_none``), or an optional earlier JPEG, an optional platform resample (factor and
    kernel drawn), optional mild blur / noise, and a final JPEG at quality 40-100 (sometimes twice)."""

    p_none: float = 0.2
    p_early_jpeg: float = 0.25
    early_jpeg_range: tuple[int, int] = (70, 100)
    p_resample: float = 0.4
    resample_range: tuple[float, float] = (0.5, 1.0)
    #: of the resampled files, the share resized by exactly one half instead of a factor drawn from
    #: ``resample_range``: thumbnails and re-served copies halve (1024 -> 512, 256 -> 128) more often than they
    #: take any other factor, and a 2x area downscale leaves its own fixed-phase grid for the crop to enlarge
    p_halve: float = 0.0
    p_blur: float = 0.1
    blur_max: float = 1.0
    p_noise: float = 0.1
    noise_max: float = 3.0
    p_jpeg: float = 0.8
    jpeg_range: tuple[int, int] = (40, 100)
    p_second_jpeg: float = 0.2
    #: a *lossless* source (PNG: the FFHQ thumbnails, every generator sample) first gets a camera / upload JPEG with
    #: this probability, whatever its class and before the history above: a set whose every file is a JPEG (the
    #: StyleGAN2 fakes, UTKFace) otherwise makes "never compressed" a trait of the lossless sets' class
    p_lossless_jpeg: float = 0.0
    lossless_jpeg_range: tuple[int, int] = (60, 95)
    #: a resample never takes the image's shorter side below this many pixels (0: no floor): with factors down
    #: to 0.25 a 512 px photo becomes the 128 px thumbnail platforms serve, while a 128 px thumbnail would become
    #: a 32 px face no upload has (the floor is applied only when the caller gives the image's side)
    min_side: int = 0
    #: a source whose face window (the part inside the photo, its shorter side) is larger than this many pixels is
    #: first resized (random kernel) so that window lies in [max_face / 2, max_face], before anything else (0: off).
    #: Why: the only 512 px sources are one fake set (SD 1.4 blonde women) and one real set (Unsplash men), so "a
    #: big face, shrunk by the crop" and its content become labels; normalising the scale of big sources leaves
    #: the content only (applied only when the caller gives the window's side)
    max_face: int = 0

    @classmethod
    def preset(cls, name: str) -> DeliveryConfig | None:
        """``none`` (no history: the stored pixels as they are) | ``mixed`` (the distribution above) | ``camera``
        (``mixed``, and lossless sources first get a camera JPEG with probability 0.85): :data:`DELIVERY_PRESETS`."""
        return _preset(cls, DELIVERY_PRESETS, name, "delivery")


#: ``rescaled`` and the presets that only add exact halvings to it
_RESCALED = {"p_lossless_jpeg": 0.85, "p_resample": 0.8, "resample_range": (0.3, 1.0)}

#: named delivery distributions: overrides of :class:`DeliveryConfig`'s defaults (``None``: no history); each
#: step adds the delivery its predecessor's models still read worst (the measurements: CHANGELOG.md, "Experiment
#: notes moved from code comments")
#: ``platform``: ``camera`` where most files were also resized on the way (p 0.6, factor 0.4-1.0), as uploads
#: re-served by a platform are: a detector that met halved faces rarely in training reads them poorly
#: ``rescaled``: ``platform`` where nearly every file was resized and a third to under half size (p 0.8, factor
#: 0.3-1.0): halved faces stayed the weakest delivery after ``platform``
#: ``halving``: ``rescaled`` where 40 % of the resized files were halved exactly (``p_halve``): after ``rescaled``
#: the 2x downscale was still the one delivery short of the goal
#: ``thumbnails``: ``halving`` with 80 % of the resized files halved, a platform that serves mostly thumbnails
#: ``quarter``: ``halving`` with factors down to 0.2 (floored at 96 px): 512 px photos served as 128 px
#: thumbnails, the 0.25x rows of the transfer_val protocol
#: ``quarter-matched``: ``quarter`` where every lossless source first gets a JPEG of the quality the StyleGAN2
#: scrape was stored at (q70-80): with 15 % of the PNG reals never compressed and every fake a q75 JPEG, the
#: plain-RGB candidate learned compression as a fake trait (its val reals' median P(fake) rose 0.013 -> 0.209
#: under JPEG q50, ``val-rgb-nosd``)
DELIVERY_PRESETS: dict[str, dict | None] = {
    "none": None,
    "mixed": {},
    "camera": {"p_lossless_jpeg": 0.85},
    "platform": {"p_lossless_jpeg": 0.85, "p_resample": 0.6, "resample_range": (0.4, 1.0)},
    "rescaled": _RESCALED,
    "halving": {**_RESCALED, "p_halve": 0.4},
    "thumbnails": {**_RESCALED, "p_halve": 0.8},
    "quarter": {**_RESCALED, "p_halve": 0.3, "resample_range": (0.2, 1.0), "min_side": 96},
    "quarter-matched": {**_RESCALED, "p_halve": 0.3, "resample_range": (0.2, 1.0), "min_side": 96,
                        "p_lossless_jpeg": 1.0, "lossless_jpeg_range": (70, 80)},
    "quarter-faces": {**_RESCALED, "p_halve": 0.3, "resample_range": (0.2, 1.0), "min_side": 96, "max_face": 192},
}

RESAMPLE_KERNELS = ("area", "bilinear", "bicubic", "lanczos")


def random_delivery(
    rng: np.random.Generator, cfg: DeliveryConfig, lossless: bool = False, side: int = 0, face: int = 0
) -> list[D.Op]:
    """Draw one delivery history as a list of deterministic ops (``resize`` changes the image size); ``lossless``:
    the source was stored without compression (see ``DeliveryConfig.p_lossless_jpeg``); ``side``: the image's
    shorter side, for ``DeliveryConfig.min_side``; ``face``: the face window's side inside the photo, for
    ``DeliveryConfig.max_face``."""
    ops: list[D.Op] = []
    if cfg.max_face and face > cfg.max_face:  # drawn only then: other presets keep their random streams
        target = float(rng.uniform(cfg.max_face / 2, cfg.max_face))
        ops.append(D.op("resize", scale=target / face, interp=str(rng.choice(RESAMPLE_KERNELS))))
        side = int(side * target / face)
    if lossless and rng.random() < cfg.p_lossless_jpeg:
        lo, hi = cfg.lossless_jpeg_range
        ops.append(D.op("jpeg", q=int(rng.integers(lo, hi + 1))))
    if rng.random() < cfg.p_none:
        return ops
    if rng.random() < cfg.p_early_jpeg:
        ops.append(D.op("jpeg", q=int(rng.integers(cfg.early_jpeg_range[0], cfg.early_jpeg_range[1] + 1))))
    if rng.random() < cfg.p_resample:
        lo, hi = cfg.resample_range
        # p_halve is drawn only when set, so the presets without it keep their exact random streams
        halve = cfg.p_halve > 0 and rng.random() < cfg.p_halve
        scale = 0.5 if halve else float(rng.uniform(lo, hi))
        if cfg.min_side and side:
            scale = max(scale, min(1.0, cfg.min_side / side))
        ops.append(D.op("resize", scale=scale, interp=str(rng.choice(RESAMPLE_KERNELS))))
    if rng.random() < cfg.p_blur:
        ops.append(D.op("blur", sigma=float(rng.uniform(0.3, cfg.blur_max))))
    if rng.random() < cfg.p_noise:
        ops.append(D.op("noise", sigma=float(rng.uniform(0.5, cfg.noise_max)), seed=int(rng.integers(1 << 30))))
    if rng.random() < cfg.p_jpeg:
        q = lambda: int(rng.integers(cfg.jpeg_range[0], cfg.jpeg_range[1] + 1))  # noqa: E731
        ops.append(D.op("jpeg", q=q()))
        if rng.random() < cfg.p_second_jpeg:
            ops.append(D.op("jpeg", q=q()))
    return ops


def deliver(
    img: np.ndarray, landmarks: np.ndarray | None, ops: list[D.Op]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply a delivery history; face landmarks follow any resize (pixel-centre convention, like ``cv2.resize``)."""
    lm = None if landmarks is None else np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    for o in ops:
        h, w = img.shape[:2]
        img = o(img)
        if lm is not None and img.shape[:2] != (h, w):
            ratio = np.array([img.shape[1] / w, img.shape[0] / h])
            lm = (lm + 0.5) * ratio - 0.5
    return img, lm


@dataclass
class FramingConfig:
    """Random framings of training crops: how tightly the photo was cut around the face and how much context the
    model's window holds, drawn alike for both classes.

    Why: a model trained on one framing (the FFHQ / thumbnail one) reads the face's share of its input as
    evidence, and scores photos cut tighter than that toward "real" whatever their class. A *tight* draw cuts the
    source to a square of ``tight_range`` times the model's window around the face (shifted by up to
    ``tight_shift`` of it), as a profile picture is cut, before the delivery history; the window then reaches past
    the photo and the crop's ``edge`` policy fills it as ``scan`` will. A *zoom* draw scales the window by
    ``zoom_range`` (more or less context) and moves it by up to ``shift_max`` of its side."""

    p_tight: float = 0.2
    tight_range: tuple[float, float] = (0.45, 0.9)
    tight_shift: float = 0.1
    #: a window with at least this share outside the photo counts as tightly framed when the classes are balanced
    #: (:func:`balanced_tight_rates`); a tight draw leaves 1 - tight_range**2 outside: 0.19-0.80
    tight_at: float = 0.3
    p_zoom: float = 0.6
    zoom_range: tuple[float, float] = (0.8, 1.3)
    shift_max: float = 0.06

    @classmethod
    def preset(cls, name: str) -> FramingConfig | None:
        """``none`` (the window as ``scan`` cuts it) | ``photos`` (the draws above): :data:`FRAMING_PRESETS`."""
        return _preset(cls, FRAMING_PRESETS, name, "framing")


FRAMING_PRESETS: dict[str, dict | None] = {"none": None, "photos": {}}


@dataclass(frozen=True)
class Framing:
    """One drawn framing: ``tight`` (kept side as a fraction of the window, 0 = the photo as it is) with its
    centre offset, and the window's ``zoom`` and ``shift``."""

    tight: float = 0.0
    tight_offset: tuple[float, float] = (0.0, 0.0)
    zoom: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)


def random_framing(rng: np.random.Generator, cfg: FramingConfig, p_tight: float | None = None) -> Framing:
    """One framing draw; ``p_tight`` overrides ``cfg.p_tight`` (a per-item rate from :func:`balanced_tight_rates`)."""
    tight, offset, zoom, shift = 0.0, (0.0, 0.0), 1.0, (0.0, 0.0)
    if rng.random() < (cfg.p_tight if p_tight is None else p_tight):
        tight = float(rng.uniform(*cfg.tight_range))
        offset = (float(rng.uniform(-cfg.tight_shift, cfg.tight_shift)),
                  float(rng.uniform(-cfg.tight_shift, cfg.tight_shift)))
    if rng.random() < cfg.p_zoom:
        lo, hi = np.log(cfg.zoom_range[0]), np.log(cfg.zoom_range[1])
        zoom = float(np.exp(rng.uniform(lo, hi)))
        shift = (float(rng.uniform(-cfg.shift_max, cfg.shift_max)), float(rng.uniform(-cfg.shift_max, cfg.shift_max)))
    return Framing(tight, offset, zoom, shift)


def balanced_tight_rates(
    outside: np.ndarray, y: np.ndarray, weights: np.ndarray, cfg: FramingConfig
) -> np.ndarray:
    """Per-item tight-cut rates that give both classes the same share of tightly framed windows.

    Why: how much of the window lies outside the photo (``outside``: :func:`detectors.data.window_outside`) is a
    trait of each *source*, not of the class, yet it becomes a label: UTKFace's 200 px faces are cut so tightly
    that 70 % of their window lies outside them, the FFHQ-framed fakes' 2 % (a model trained with the window clamped
    learned "the face fills the input = real"). Items already
    tightly framed (``outside >= cfg.tight_at``) get no extra cut; the others of class ``c`` are cut with the rate
    that lifts the class's sampling-weighted tight share to the target: the tightest class's natural share plus
    ``cfg.p_tight`` of the rest (so the tightest class's other sources are cut too, at rate ``cfg.p_tight``)."""
    pads = outside >= cfg.tight_at
    rates = np.zeros(len(pads))
    share = {c: float(weights[(y == c) & pads].sum() / max(weights[y == c].sum(), 1e-12)) for c in (0, 1)}
    top = max(share.values())
    target = top + (1.0 - top) * cfg.p_tight
    for c in (0, 1):
        rest = (y == c) & ~pads
        rates[rest] = 0.0 if share[c] >= 1 else (target - share[c]) / (1 - share[c])
    return np.clip(rates, 0.0, 1.0)


def cut_tight(
    img: np.ndarray, landmarks: np.ndarray, framing: Framing, size: int, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """The photo cut to a square of ``framing.tight`` times the native window around the face (the part inside
    the image), landmarks moved with it; unchanged when the draw was not tight."""
    if not framing.tight:
        return img, landmarks
    from forensics_core.faces.crops import native_window

    x0, y0, side = native_window(img.shape, landmarks, size, margin, "reflect")
    cx = x0 + side / 2 + framing.tight_offset[0] * side
    cy = y0 + side / 2 + framing.tight_offset[1] * side
    half = framing.tight * side / 2
    h, w = img.shape[:2]
    xa, ya = max(0, int(round(cx - half))), max(0, int(round(cy - half)))
    xb, yb = min(w, int(round(cx + half))), min(h, int(round(cy + half)))
    if xb - xa < 16 or yb - ya < 16:
        return img, landmarks
    return np.ascontiguousarray(img[ya:yb, xa:xb]), np.asarray(landmarks, np.float64) - [xa, ya]
