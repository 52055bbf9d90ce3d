"""JPEG quantisation tables, estimated quality and a double-compression hint.

The tables say which encoder and quality produced the file: standard IJG tables scaled to a quality (most
software), or custom tables (many cameras and phones). A photo that was decoded, edited and re-saved leaves a
trace in its DCT coefficients: quantised twice with different steps, their histograms show periodic gaps or
peaks (Lukas & Fridrich 2003). That is a *hint* of re-saving, which also happens to innocent photos.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from forensics.evidence import EvidenceResult, EvidenceSubject, register_evidence
from forensics.evidence._common import to_gray
from forensics_core.media.sniff import open_for_read

# ITU T.81 Annex K tables (natural order), the base of libjpeg's quality scaling.
STD_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64,
)  # fmt: skip
DC_COEFFS = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0))  # low frequencies: enough samples, clear histograms
HIST_RANGE = 24
DC_SINGLE, DC_SPAN = 0.3, 0.4  # histogram-excess level of single compression, and the span mapped to 0..1


def ijg_table(quality: int) -> np.ndarray:
    """The luminance table libjpeg writes for ``quality`` (1..100)."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((STD_LUMA * scale + 50) / 100), 1, 255)


def estimate_quality(luma: np.ndarray) -> tuple[int, float]:
    """Closest IJG quality and the mean absolute table difference (0 = exactly a standard table)."""
    errs = [(float(np.abs(ijg_table(q) - luma).mean()), q) for q in range(1, 101)]
    err, q = min(errs)
    return q, err


def _block_dct(gray: np.ndarray) -> np.ndarray:
    """DCT-II of every aligned 8x8 block: array (n_blocks, 8, 8)."""
    h, w = (gray.shape[0] // 8) * 8, (gray.shape[1] // 8) * 8
    blocks = (gray[:h, :w] - 128.0).reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    k = np.arange(8)
    d = np.sqrt(2 / 8) * np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 16)
    d[0] /= np.sqrt(2)
    return np.einsum("ij,njk,lk->nil", d, blocks, d)


def double_compression_score(gray: np.ndarray, table: np.ndarray) -> float:
    """Periodicity of de-quantised DCT histograms: ~0 for single compression, larger for double.

    For each low-frequency coefficient the values divided by the file's quantisation step are histogrammed; a
    second quantisation with a different step empties or over-fills bins periodically, which shows as a
    deviation from the histogram's own smoothed shape beyond what counting noise explains.
    """
    coeffs = _block_dct(gray)
    if coeffs.shape[0] < 64:
        return 0.0
    scores = []
    for u, v in DC_COEFFS:
        q = float(table[u * 8 + v])
        vals = np.rint(coeffs[:, u, v] / q).astype(int)
        h = np.bincount(np.clip(vals, -HIST_RANGE, HIST_RANGE) + HIST_RANGE, minlength=2 * HIST_RANGE + 1)
        h = h.astype(np.float64)[1:-1]  # drop the clipped end bins
        h[HIST_RANGE - 1] = 0.0  # the zero bin dominates and carries no periodicity
        smooth = np.convolve(h, np.ones(3) / 3, mode="same")
        excess = np.abs(h - smooth) - 1.5 * np.sqrt(smooth + 1.0)
        total = h.sum()
        if total < 50:
            continue
        scores.append(max(0.0, float(np.clip(excess, 0, None).sum() / total)))
    return float(np.mean(scores)) if scores else 0.0


@register_evidence(
    "jpeg",
    scope="file",
    media=("image",),
    description="Quantisation tables, quality, re-saving.",
    strength="double-compression hint from the DCT histograms: 0 = like a single save, 1 = strong periodic "
    "artefacts of an earlier compression (0.5 and above is reported as a re-save); none for other formats",
)
def jpeg(subject: EvidenceSubject) -> EvidenceResult:
    with open_for_read(subject.path) as fh, Image.open(fh) as im:
        if im.format != "JPEG":
            return EvidenceResult(
                "jpeg",
                "file",
                None,
                f"Not a JPEG file ({im.format}): no quantisation tables to read.",
                {"format": im.format},
            )
        tables = {int(k): [int(x) for x in v] for k, v in (getattr(im, "quantization", None) or {}).items()}
        subsampling = getattr(im, "layer", None)
    if not tables:
        return EvidenceResult("jpeg", "file", None, "JPEG without readable quantisation tables.", {})
    luma = np.array(tables[min(tables)], dtype=np.float64)
    quality, table_err = estimate_quality(luma)
    standard = table_err < 0.5
    # The DCT check needs the decoder's own 8x8 grid: pixels downscaled by the scan (huge images) no longer have it.
    dc = double_compression_score(to_gray(subject.pixels), luma) if subject.pixel_scale == 1.0 else 0.0
    # Calibrated on skimage's astronaut: single saves score 0.1-0.25, re-saves at a higher quality 0.5-0.85.
    hint = float(np.clip((dc - DC_SINGLE) / DC_SPAN, 0.0, 1.0))
    details = {
        "tables": {str(k): v for k, v in tables.items()},
        "estimated_quality": quality,
        "standard_ijg_tables": standard,
        "table_mismatch": table_err,
        "double_compression_score": dc,
        "components": [c[0] for c in subsampling] if subsampling else None,
        "double_compression_checked": subject.pixel_scale == 1.0,
    }
    src = "standard (libjpeg-style) tables" if standard else "custom tables (typical of cameras and some apps)"
    if hint >= 0.5:
        summary = (
            f"JPEG quality ~{quality}, {src}; DCT histograms show periodic artefacts consistent with the image "
            "having been JPEG-compressed before (re-saved after editing, or re-uploaded)."
        )
    else:
        summary = f"JPEG quality ~{quality}, {src}; no clear sign of double compression."
    return EvidenceResult("jpeg", "file", hint, summary, details)
