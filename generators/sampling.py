"""Sample a trained run or a shipped reference model into a labelled dataset dir (images + ``manifest.jsonl``).

Every row carries the provenance a benchmark needs to split and to audit: generator, family and upsampler tags,
the method (synthesis / edit / super-resolution), the sha256 of the checkpoint, the seed, truncation and condition,
and for edits the sha256 of the real parent plus the mask path (localisation ground truth).

Resumable: images are produced in fixed batches whose seed is ``seed * 1_000_003 + first_index``, so re-running
the same command skips finished batches and regenerates the missing ones identically (same ``--batch`` needed).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from forensics_core.dataset import ManifestRow, ManifestWriter
from forensics_core.errors import UsageError
from forensics_core.hashing import sha256_file
from generators.base import INPUT_KINDS, GeneratorFamily
from generators.registry import GENERATORS

log = logging.getLogger(__name__)

METHODS = {"noise": "synthesis", "conditional": "synthesis", "image2image": "edit", "superres": "super-resolution",
           "autoencoder": "reconstruction"}


@dataclass
class SampleReport:
    out: str
    written: int
    skipped: int
    seconds: float
    images_per_s: float


def _save(pixels: np.ndarray, path: Path, jpeg_quality: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels)
    tmp = path.with_name(path.name + ".tmp")
    if jpeg_quality is None:
        im.save(tmp, "PNG")
    else:
        im.save(tmp, "JPEG", quality=int(jpeg_quality))
    tmp.replace(path)


def _clean(v: Any) -> Any:
    """JSON-safe manifest values (tensors / numpy scalars from family meta)."""
    if torch.is_tensor(v):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def sample_to_dataset(
    model: str | GeneratorFamily,
    n: int,
    out: str | Path,
    *,
    truncation: float | None = None,
    condition: str | None = None,
    inputs: str | Path | None = None,
    input_res: int | None = None,
    jpeg_quality: int | None = None,
    seed: int = 0,
    batch: int = 32,
    device: str = "auto",
    split: str = "",
    progress: bool = True,
    **family_kwargs: Any,
) -> SampleReport:
    """Write ``n`` generated (or edited) images with manifest rows to ``out``; returns counts and speed.

    ``input_res``: edit the inputs at that size instead of the model's training resolution (fully convolutional
    editors: an autoencoder trained on 128 px faces reconstructs a 512 px photo with the same decoder, so its trace
    can be learned at the scale full-size photos reach a detector)."""
    from generators.checkpoints import load_run
    from generators.data import FaceImages, discover, to_uint8

    if n < 1:
        raise UsageError(f"--n must be >= 1, got {n}")
    if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
        raise UsageError(f"--jpeg-quality must be in 1..100, got {jpeg_quality}")
    if truncation is not None and not 0 < truncation <= 2:
        raise UsageError(f"--truncation must be in (0, 2], got {truncation}")
    fam = load_run(str(model), device=device) if not isinstance(model, GeneratorFamily) else model
    name = getattr(fam, "generator_name", fam.name)
    meta = GENERATORS.get(name).meta if name in GENERATORS else {}
    ck = getattr(fam, "checkpoint", None)
    src_items = None
    if fam.kind in INPUT_KINDS:
        if inputs is None:
            raise UsageError(f"{name} ({fam.kind}) edits real faces: pass --input DIR")
        src_items = discover([inputs], labels=("real", "fake"), include_held_out=True)
        if len(src_items) < n:
            log.warning("%s: only %d input images; writing %d edits instead of %d", inputs, len(src_items),
                        len(src_items), n)
            n = len(src_items)
        if input_res is not None and not 16 <= input_res <= 4096:
            raise UsageError(f"--input-res {input_res}: must be between 16 and 4096")
        src = FaceImages(src_items, input_res or fam.cfg.res, cache_bytes=0)
    elif inputs is not None or input_res is not None:
        raise UsageError(f"{name} ({fam.kind}) generates from noise; --input / --input-res do not apply")
    ext = ".png" if jpeg_quality is None else ".jpg"
    out = Path(out)
    t0, written, skipped = time.time(), 0, 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"sample {name}", unit="img")
    with ManifestWriter(out) as mw:
        for start in range(0, n, batch):
            k = min(batch, n - start)
            paths = [f"images/{start + j:06d}{ext}" for j in range(k)]
            if all(p in mw.done for p in paths):
                skipped += k
                if bar is not None:
                    bar.update(k)
                continue
            batch_seed = seed * 1_000_003 + start
            g = torch.Generator().manual_seed(batch_seed)
            kwargs: dict[str, Any] = {"truncation": truncation, "condition": condition, **family_kwargs}
            if src_items is not None:
                kwargs["inputs"] = torch.stack([src[start + j][0] for j in range(k)]).to(fam.device)
            with torch.no_grad():
                s = fam.sample(k, g, **{kk: v for kk, v in kwargs.items() if v is not None})
            pix = to_uint8(s.images)
            masks = to_uint8(s.masks * 2 - 1) if s.masks is not None else None
            for j, rel in enumerate(paths):
                if rel in mw.done:
                    skipped += 1
                    continue
                _save(pix[j], out / rel, jpeg_quality)
                extra: dict[str, Any] = {
                    "seed": batch_seed, "batch_index": j, "checkpoint_sha256": ck.sha256 if ck else "",
                    "checkpoint_step": ck.step if ck else 0, "kind": fam.kind, "res": int(pix.shape[1]),
                }
                if truncation is not None:
                    extra["truncation"] = truncation
                if condition:
                    extra["condition"] = condition
                extra.update({kk: str(v) for kk, v in family_kwargs.items() if v is not None})
                if j < len(s.meta):
                    extra.update(_clean(s.meta[j]))
                parent = ""
                if src_items is not None:
                    item = src_items[start + j]
                    parent = sha256_file(item.path)
                    extra["parent_path"] = str(item.path)
                if masks is not None:
                    mrel = f"masks/{start + j:06d}.png"
                    _save(masks[j], out / mrel, None)
                    extra["mask"] = mrel
                if jpeg_quality is not None:
                    extra["jpeg_quality"] = jpeg_quality
                mw.write(ManifestRow(
                    path=rel, label="fake", sha256=sha256_file(out / rel), generator=name,
                    family=meta.get("family", name), upsampler=meta.get("upsampler", ""),
                    method=METHODS.get(fam.kind, fam.kind), source="generators.sampling", split=split,
                    parent=parent, licence="generated by deepfake-forensics; see generators/assets/MODEL_CARD.md",
                    extra=extra,
                ))
                written += 1
            if bar is not None:
                bar.update(k)
    if bar is not None:
        bar.close()
    dt = time.time() - t0
    return SampleReport(str(out), written, skipped, round(dt, 2), round(written / max(dt, 1e-9), 2))
