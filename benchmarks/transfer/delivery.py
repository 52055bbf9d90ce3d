"""How a file reaches the scan: the delivery variants a platform applies (re-encoding, downscaling, tighter
framing) and the scan itself (:func:`_score`).

One module, so every protocol writes a variant and scores it the same way, and the scan settings a result records
(:data:`SCAN_OVERRIDES`) are the ones its scores were made with.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from forensics_core.errors import DataError


def _write_variant(src: Path, dst_dir: Path, variant: str) -> Path:
    """Write ``src`` under ``variant`` into ``dst_dir``: ``raw`` copies the bytes; otherwise ``+``-joined steps
    applied in order: ``jpegQ`` re-encodes at quality Q, ``downS`` resizes by S (area; ``downS:lanczos`` with the
    Lanczos filter), ``centreP`` keeps the centre P % of each side (no resampling: a tighter framing). The file is
    PNG (lossless, so only the named steps differ) unless the last step is a JPEG."""
    import cv2

    dst_dir.mkdir(parents=True, exist_ok=True)
    if variant == "raw":
        dst = dst_dir / src.name
        shutil.copyfile(src, dst)
        return dst
    img = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{src}: not a decodable image")
    steps = variant.split("+")
    last_jpeg = steps[-1].startswith("jpeg")
    for step in steps[:-1] if last_jpeg else steps:  # a final JPEG is the file's own encoding, not a round trip
        img = _variant_step(img, step, variant)
    if last_jpeg:
        dst = dst_dir / (src.stem + ".jpg")
        cv2.imwrite(str(dst), img, [cv2.IMWRITE_JPEG_QUALITY, _quality(steps[-1], variant)])
    else:
        dst = dst_dir / (src.stem + ".png")
        cv2.imwrite(str(dst), img)
    return dst


def centre_box(shape: tuple[int, ...], frac: float) -> tuple[int, int, int, int]:
    """``y0, x0, height, width`` of the centre ``frac`` of each side of an image of ``shape`` (the ``centreP``
    step: a tighter framing, no resampling)."""
    h, w = shape[:2]
    ch, cw = max(1, round(h * frac)), max(1, round(w * frac))
    return (h - ch) // 2, (w - cw) // 2, ch, cw


_KERNELS = {"area": "INTER_AREA", "lanczos": "INTER_LANCZOS4", "bicubic": "INTER_CUBIC", "bilinear": "INTER_LINEAR"}


def _quality(step: str, variant: str) -> int:
    try:
        q = int(step[4:])
    except ValueError:
        q = 0
    if not 1 <= q <= 100:
        raise DataError(f"variant '{variant}': '{step}' needs a JPEG quality 1-100")
    return q


def _variant_step(img: np.ndarray, step: str, variant: str) -> np.ndarray:
    """One step of a variant (see :func:`_write_variant`); a JPEG step round-trips through the encoder."""
    import cv2

    try:
        if step.startswith("jpeg"):
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, _quality(step, variant)])
            return cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if step.startswith("down"):
            factor, _, kernel = step[4:].partition(":")
            interp = getattr(cv2, _KERNELS[kernel or "area"])
            s = float(factor)
            h, w = img.shape[:2]
            return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)
        if step == "wipecorner":  # the StyleGAN2 scrape's faint watermark sits in the bottom-right corner
            h, w = img.shape[:2]
            y0, x0 = int(h * 0.88), int(w * 0.7)
            band = img[max(0, 2 * y0 - h) : y0, x0:][::-1]  # the rows just above, mirrored: same texture, no mark
            out = img.copy()
            out[y0 : y0 + band.shape[0], x0:] = band
            return out
        if step.startswith("centre"):
            y0, x0, ch, cw = centre_box(img.shape[:2], float(step[6:]) / 100)
            return img[y0 : y0 + ch, x0 : x0 + cw]
    except (ValueError, KeyError):
        pass
    raise DataError(f"unknown variant step '{step}' in '{variant}' (raw, jpegQ, downS[:kernel], centreP, wipecorner)")


#: scan settings every protocol scores with besides the model (``--face-detector``, ``--detect-max-side``; empty:
#: the scan defaults), recorded in each result: the face stage decides where the window lands
SCAN_OVERRIDES: dict[str, Any] = {}


def _score(model: Any, files: list[Path], threads: int) -> np.ndarray:
    """Calibrated P(fake) of each file through the scan pipeline (NaN where scan could not score it)."""
    from forensics import scan

    out = np.full(len(files), np.nan)
    files = [f.resolve() for f in files]  # scan reports absolute paths
    index = {str(f): i for i, f in enumerate(files)}
    results = scan([str(f) for f in files], model=model, evidence="none", threads=threads, timeout_s=120,
                   **SCAN_OVERRIDES)
    for r in results:
        if r.fake_probability is not None and r.path in index:
            out[index[r.path]] = float(r.fake_probability)
    return out
