"""Training data for the generator families: dataset dirs (``manifest.jsonl``) or plain image folders.

Images come out as float tensors in [-1, 1] at the configured resolution with UTKFace attributes as ``cond``
(indices into :data:`generators.base.ATTRIBUTES`, -1 where unknown). The loader is deterministic and resumable:
its order is a pure function of (seed, epoch, rank), and its position is part of every checkpoint, so a resumed
run sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from forensics_core.dataset import MANIFEST, read_manifest
from forensics_core.errors import DataError
from forensics_core.hashing import sha256_text
from forensics_core.importers import utkface_attributes
from generators.base import ATTRIBUTES, Batch

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
#: splits never used for training: they exist to evaluate on
HELD_OUT_SPLITS = ("test", "crossval")


@dataclass(frozen=True)
class ImageItem:
    path: Path
    cond: tuple[int, ...]
    rel: str  # path relative to its dataset root (manifest path) - lands in ``parent`` provenance


def age_bucket(age: int) -> int:
    return min(max(int(age), 0) // 10, len(ATTRIBUTES["age"]) - 1)


def cond_from_utk_name(name: str) -> tuple[int, ...]:
    """``age_gender_race_date.jpg`` -> (gender, age bucket, race) in ATTRIBUTES order; -1 where unparseable.

    The name is parsed by :func:`forensics_core.importers.utkface_attributes` (the one UTKFace name parser; the importer
    stores the same attributes in manifest ``extra``), then indexed like any manifest attribute."""
    attrs = utkface_attributes(Path(name).name)
    return tuple(_attr_index(k, attrs.get(k)) for k in ATTRIBUTES)


def _attr_index(key: str, value: Any) -> int:
    vocab = ATTRIBUTES[key]
    if value is None or value == "":
        return -1
    if isinstance(value, str):
        v = value.strip().lower()
        if v in vocab:
            return vocab.index(v)
        if not v.lstrip("-").isdigit():
            return -1
        value = int(v)
    if key == "age":
        return age_bucket(int(value))  # ages are stored in years
    idx = int(value)
    return idx if 0 <= idx < len(vocab) else -1


def cond_from_extra(extra: dict[str, Any], fallback_name: str) -> tuple[int, ...]:
    """Attributes from a manifest row's ``extra`` (flat or under ``attributes``), else from the UTKFace name."""
    src = extra.get("attributes") if isinstance(extra.get("attributes"), dict) else extra
    if any(k in src for k in ATTRIBUTES):
        return tuple(_attr_index(k, src.get(k)) for k in ATTRIBUTES)
    for name in (fallback_name, str(extra.get("source_path", "")), str(extra.get("original", ""))):
        c = cond_from_utk_name(name)
        if c[0] != -1:
            return c
    return tuple(-1 for _ in ATTRIBUTES)


def discover(
    dirs: Sequence[str | os.PathLike[str]], labels: tuple[str, ...] = ("real",), include_held_out: bool = False
) -> list[ImageItem]:
    """List images of every dir: manifest rows with ``label`` in labels (held-out splits only when asked for
    evaluation), or every image of a plain folder."""
    items: list[ImageItem] = []
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            raise DataError(f"{root}: data directory does not exist")
        if (root / MANIFEST).is_file():
            rows = read_manifest(root)
            for r in rows:
                if r.label in labels and (include_held_out or r.split not in HELD_OUT_SPLITS):
                    items.append(ImageItem(root / r.path, cond_from_extra(r.extra, Path(r.path).name), r.path))
        else:
            for p in sorted(root.rglob("*")):
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                    items.append(ImageItem(p, cond_from_utk_name(p.name), str(p.relative_to(root))))
        if not items:
            raise DataError(f"{root}: no usable images (looked for {', '.join(IMAGE_SUFFIXES)} or real manifest rows)")
    return items


def data_hash(items: Sequence[ImageItem]) -> str:
    """A cheap fingerprint of a training set (names and sizes), recorded with every model trained on it."""
    return sha256_text("".join(f"{it.rel}\t{it.path.stat().st_size}\n" for it in sorted(items, key=lambda i: i.rel)))


def load_image(path: Path, res: int) -> np.ndarray:
    """Decode, centre-crop to square and resize to ``res`` (HxWx3 uint8). JPEG uses DCT-domain draft scaling."""
    with Image.open(path) as im:
        im.draft("RGB", (res * 2, res * 2))
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        if w != h:
            im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        if s != res:
            im = im.resize((res, res), Image.Resampling.LANCZOS if s > res else Image.Resampling.BICUBIC)
        return np.asarray(im, dtype=np.uint8)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float in [-1, 1]."""
    return torch.from_numpy(np.array(pixels, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div(127.5).sub(1)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """NCHW float in [-1, 1] -> NHWC uint8 (rounded, clipped)."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


class FaceImages(torch.utils.data.Dataset):
    """Decoded, resized face images with attribute labels; decodes once and keeps uint8 copies in memory."""

    def __init__(self, items: list[ImageItem], res: int, cache_bytes: int = 1 << 30) -> None:
        self.items, self.res = items, res
        self._cache: dict[int, np.ndarray] = {}
        self._cache_cap = cache_bytes // (res * res * 3)

    def __len__(self) -> int:
        return len(self.items)

    def pixels(self, i: int) -> np.ndarray:
        px = self._cache.get(i)
        if px is None:
            try:
                px = load_image(self.items[i].path, self.res)
            except (OSError, ValueError) as exc:  # one bad file must not stop training: use a grey stand-in
                log.warning("%s: unreadable image skipped (%s)", self.items[i].path, exc)
                px = np.full((self.res, self.res, 3), 127, np.uint8)
            if len(self._cache) < self._cache_cap:
                self._cache[i] = px
        return px

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_tensor(self.pixels(i)), torch.tensor(self.items[i].cond, dtype=torch.long)


class BatchLoader:
    """Endless, resumable batches: a DistributedSampler order per epoch, random flips from a derived seed.

    Drops the ragged tail of each epoch so every rank takes the same number of steps (DDP needs that).
    """

    def __init__(
        self, dataset: FaceImages, batch: int, seed: int = 0, rank: int = 0, world: int = 1, flip: bool = True
    ) -> None:
        if len(dataset) < batch * world:
            raise DataError(f"only {len(dataset)} training images for batch {batch} x {world} processes")
        self.dataset, self.batch, self.seed, self.flip = dataset, batch, seed, flip
        self.sampler = torch.utils.data.DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.rank = rank
        self.epoch, self.pos = 0, 0
        self._order: list[int] | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos, self._order = int(state["epoch"]), int(state["pos"]), None

    def _indices(self) -> list[int]:
        if self._order is None:
            self.sampler.set_epoch(self.epoch)
            self._order = list(iter(self.sampler))
        return self._order

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        order = self._indices()
        if self.pos + self.batch > len(order):
            self.epoch, self.pos, self._order = self.epoch + 1, 0, None
            order = self._indices()
        idx = order[self.pos : self.pos + self.batch]
        g = torch.Generator().manual_seed(hash((self.seed, self.epoch, self.pos, self.rank)) & 0x7FFF_FFFF)
        self.pos += self.batch
        images, conds = zip(*(self.dataset[i] for i in idx))
        x = torch.stack(images)
        if self.flip:
            mask = torch.rand(len(idx), generator=g) < 0.5
            x[mask] = x[mask].flip(-1)
        return Batch(image=x, cond=torch.stack(conds))
