"""Training / evaluation data for detectors: dataset dirs (``forensics_core.dataset``) -> labelled, decoded faces.

Labels come from each manifest row (``real`` / ``fake``); ``family`` (or ``generator``, or the dataset's name)
is the group that balanced sampling and leave-one-out filters work on. Files are read once into memory as
*encoded bytes* (a 128 px JPEG is ~5 kB) and decoded per use, so tens of thousands of faces fit in RAM and every
epoch sees exactly the same pixels the benchmark will see.

Split rules (why: the shared ``crossval`` folders must never leak into training or model selection):
- training dirs use rows whose split is ``train`` or empty;
- validation dirs use rows whose split is ``val``; a dir without ``val`` rows contributes all its non-test rows;
- rows with split ``crossval`` or ``test`` are never used for training or validation.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forensics_core.dataset import read_manifest
from forensics_core.errors import DataError, UsageError
from forensics_core.hashing import LEGACY_DENOMINATOR, hash_split, sha256_file

HELD_OUT_SPLITS = ("crossval", "test")
LOSSLESS_FORMATS = ("png", "bmp", "tiff")


@dataclass
class Item:
    path: Path
    y: int
    group: str  # family / generator / dataset: what sampling balances and leave-one-out filters on
    generator: str
    dataset: str
    sha256: str = ""
    #: shorter side of the source image in pixels before the importer resized it (0 = unknown)
    native: int = 0
    #: ``source``: the file is an uncropped, losslessly stored source region and ``landmarks`` (5x2, in its pixels)
    #: say where the face is, so every view applies a delivery history first and then crops like ``scan``;
    #: ``aligned``: the file already is the face crop (older imports)
    store: str = "aligned"
    landmarks: np.ndarray | None = field(default=None, repr=False)
    #: the source file was stored without compression (PNG): delivery may give it a camera JPEG first
    lossless: bool = False
    #: ``(height, width)`` of the stored source region (from the import's ``crop_box``; ``None`` when unknown)
    shape: tuple[int, int] | None = None


def window_outside(item: Item, size: int, margin: float) -> float:
    """The share of a ``source`` item's ``native`` window that lies outside its stored image (what a ``reflect``
    crop fills with mirrored pixels; 0 when unknown). Measured on the shared data: UTKFace's 200 px faces 0.70 on
    median, FFHQ thumbnails and the StyleGAN2 scrape 0.02, SD 1.4 portraits 0.12. Training balances it between
    the classes (:func:`detectors.augment.balanced_tight_rates`), or it becomes a label."""
    if item.store != "source" or item.landmarks is None or item.shape is None:
        return 0.0
    from forensics_core.faces.crops import native_window

    x0, y0, side = native_window(item.shape, item.landmarks, size, margin, "reflect")
    h, w = item.shape
    inside = max(0, min(x0 + side, w) - max(x0, 0)) * max(0, min(y0 + side, h) - max(y0, 0))
    return 1.0 - inside / float(side * side)


@dataclass
class DataSource:
    """Provenance of one dataset dir for the model card."""

    path: str
    manifest_sha256: str
    n: int
    by_label: dict[str, int] = field(default_factory=dict)
    families: list[str] = field(default_factory=list)
    #: every source the rows came from, with the repository and commit it was pinned to (the model card's
    #: "trained on" list: :func:`source_summary`)
    sources: list[dict[str, Any]] = field(default_factory=list)


def source_summary(rows: list, dataset: str) -> list[dict[str, Any]]:
    """One entry per source of ``rows`` (a real set, a fake set or one of the project's generators): label, family,
    row count, and the public repository + commit the files were pinned to (``data import`` of a labels file keeps
    them; the project's own samples name the generator and its checkpoint instead)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        name = r.source if r.source and r.source != "generators.sampling" else (r.generator or dataset)
        e = out.setdefault((r.label, name), {
            "source": name, "label": r.label, "family": "" if r.label == "real" else (r.family or r.generator),
            "n": 0, "repo": r.extra.get("source_repo", ""), "commit": r.extra.get("source_commit", ""),
            "licence": r.licence,
        })
        e["n"] += 1
    return sorted(out.values(), key=lambda e: (e["label"], e["source"]))


def _group(row, dataset: str) -> str:
    """Fakes group by family (then generator); reals by source, so UTKFace cannot drown FFHQ in sampling."""
    if row.label == "real":
        return row.source or dataset
    return row.family or row.generator or dataset


def native_of(row) -> int:
    """The source's shorter side: ``src_width`` / ``src_height`` written by ``data import``, else a sampler's
    ``res``; 0 when the manifest says neither."""
    w, h = row.extra.get("src_width"), row.extra.get("src_height")
    if w and h:
        return int(min(w, h))
    return int(row.extra.get("res") or 0)


def _landmarks(row) -> np.ndarray | None:
    lm = row.extra.get("crop_landmarks")
    return None if lm is None else np.asarray(lm, dtype=np.float64).reshape(5, 2)


def item_from_row(path: Path, row, dataset: str) -> Item:
    """One manifest row (its file at ``path``) as an :class:`Item`: what :func:`face_view` needs to crop it."""
    box = row.extra.get("crop_box")
    return Item(
        path, row.y, _group(row, dataset), row.generator, dataset, row.sha256, native_of(row),
        store=row.extra.get("store", "aligned"), landmarks=_landmarks(row),
        lossless=row.extra.get("source_format") in LOSSLESS_FORMATS,
        shape=(int(box[3] - box[1]), int(box[2] - box[0])) if box else None,
    )


def load_items(
    dirs: list[str],
    role: str,
    families: list[str] | None = None,
    exclude_families: list[str] | None = None,
    splits: tuple[str, ...] | None = None,
    exclude_generators: list[str] | None = None,
) -> tuple[list[Item], list[DataSource]]:
    """Rows of ``dirs`` for ``role`` (``train`` | ``val`` | ``eval``) after the split rules and family filters.

    ``families`` / ``exclude_families`` filter *fake* rows by group (reals are kept: leave-one-family-out trains on
    all reals). ``exclude_generators`` drops fakes of one *source* of a family (the cross-source protocol: the
    shared ``tpdne-stylegan2`` left out while the project's own ``stylegan2`` stays). ``splits`` overrides the
    role's split rule (``eval`` uses all rows by default).
    """
    items: list[Item] = []
    sources: list[DataSource] = []
    for d in dirs:
        root = Path(d)
        rows = read_manifest(root)
        name = root.name
        if splits is not None:
            keep = [r for r in rows if r.split in splits]
        elif role == "train":
            keep = [r for r in rows if r.split in ("train", "")]
        elif role == "val":
            keep = [r for r in rows if r.split == "val"] or [r for r in rows if r.split not in HELD_OUT_SPLITS]
        else:
            keep = rows
        if role in ("train", "val"):
            keep = [r for r in keep if r.split not in HELD_OUT_SPLITS]
        if families:
            keep = [r for r in keep if r.label == "real" or _group(r, name) in families]
        if exclude_families:
            keep = [r for r in keep if r.label == "real" or _group(r, name) not in exclude_families]
        if exclude_generators:
            keep = [r for r in keep if r.label == "real" or r.generator not in exclude_generators]
        if not keep:
            raise DataError(f"{root}: no usable rows for {role} (split rule or family filter removed all)")
        items.extend(item_from_row(root / r.path, r, name) for r in keep)
        sources.append(
            DataSource(
                path=str(root),
                manifest_sha256=sha256_file(root / "manifest.jsonl"),
                n=len(keep),
                by_label=dict(Counter(r.label for r in keep)),
                families=sorted({_group(r, name) for r in keep if r.label == "fake"}),
                sources=source_summary(keep, name),
            )
        )
    return items, sources


def check_both_classes(items: list[Item], what: str) -> None:
    ys = {it.y for it in items}
    if ys != {0, 1}:
        missing = "fake" if 1 not in ys else "real"
        raise DataError(f"{what}: no {missing} items (a detector needs both classes)")


def balanced_weights(items: list[Item], group_weights: dict[str, float] | None = None) -> np.ndarray:
    """Sampling weights: each class gets half the mass; within a class, group g gets mass proportional to
    sqrt(n_g), so a big source (UTKFace) cannot drown a smaller one (FFHQ) and a handful of fixtures cannot claim
    a third of every batch either (a compromise between uniform-over-items and uniform-over-groups).

    ``group_weights`` multiplies named groups' mass (a fake family, a real source) before the class is normalised:
    with fourteen families the one real-world GAN gets an eighth of the fakes, and a run may say it matters more.
    An unknown name is an error (a typo must not train an unweighted model that claims otherwise)."""
    group_weights = group_weights or {}
    counts = Counter((it.y, it.group) for it in items)
    unknown = sorted(set(group_weights) - {g for _, g in counts})
    if unknown:
        known = ", ".join(sorted({g for _, g in counts}))
        raise UsageError(f"group weight for {', '.join(unknown)}: no such fake family or real source (have: {known})")
    if any(not w > 0 for w in group_weights.values()):
        raise UsageError(f"group weights must be > 0, got {group_weights}")
    mass = {k: float(np.sqrt(n)) * group_weights.get(k[1], 1.0) for k, n in counts.items()}
    class_norm: Counter[int] = Counter()
    for (y, _), m in mass.items():
        class_norm[y] += m
    w = np.array(
        [mass[(it.y, it.group)] / class_norm[it.y] / counts[(it.y, it.group)] for it in items], dtype=np.float64
    )
    return w / w.sum()


def fake_resolutions(items: list[Item], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The native sizes of the fakes and how often training draws each (from the sampling ``weights``): what
    resolution matching copies onto reals. None when no fake records its native size."""
    sizes: dict[int, float] = {}
    for it, w in zip(items, weights):
        if it.y == 1 and it.native > 0:
            sizes[it.native] = sizes.get(it.native, 0.0) + float(w)
    if not sizes:
        return None
    side = np.array(sorted(sizes), dtype=np.int64)
    p = np.array([sizes[int(s)] for s in side])
    return side, p / p.sum()


def split_holdout(items: list[Item], frac: float = 0.1, salt: str = "val") -> tuple[list[Item], list[Item]]:
    """Deterministic hash split (by file path) when no separate validation data exists."""
    shares = {"val": frac, "train": 1.0 - frac}
    val = [hash_split(f"{salt}:{it.path}", shares, denominator=LEGACY_DENOMINATOR) == "val" for it in items]
    return [it for it, v in zip(items, val) if not v], [it for it, v in zip(items, val) if v]


class ByteCache:
    """Encoded file bytes in memory, decoded to uint8 RGB on demand (one bad file -> one DataError naming it)."""

    def __init__(self, items: list[Item]) -> None:
        self.items = items
        self._bytes: list[bytes | None] = [None] * len(items)

    def raw(self, i: int) -> bytes:
        b = self._bytes[i]
        if b is None:
            try:
                b = self.items[i].path.read_bytes()
            except OSError as exc:
                raise DataError(f"{self.items[i].path}: cannot read ({exc.strerror})") from None
            self._bytes[i] = b
        return b

    def image(self, i: int) -> np.ndarray:
        import cv2

        arr = cv2.imdecode(np.frombuffer(self.raw(i), np.uint8), cv2.IMREAD_COLOR)
        if arr is None:
            raise DataError(f"{self.items[i].path}: not a decodable image")
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)

    def __len__(self) -> int:
        return len(self.items)


def face_view(
    img: np.ndarray,
    item: Item,
    size: int,
    margin: float = 0.3,
    rng: np.random.Generator | None = None,
    delivery: Any = None,
    history: Any = None,
    crop: str = "align",
    edge: str = "clamp",
    framing: Any = None,
    p_tight: float | None = None,
) -> np.ndarray:
    """The face crop a detector sees of one item, made the way ``forensics scan`` makes it.

    ``source`` items first get a random framing (when ``framing``, a :class:`detectors.augment.FramingConfig`, and
    ``rng`` are given: the photo cut tighter around the face), then a delivery history (when ``delivery`` and
    ``rng`` are given: see :class:`detectors.augment.DeliveryConfig`) at their native resolution, then the face
    crop at ``size`` as the model's ``crop`` / ``edge`` policy cuts it (with the drawn window zoom and shift; with
    no face found at import, the centre crop); ``history`` (a :class:`forensics_core.degrade.Chain`) is one fixed
    history instead of a drawn one; ``p_tight`` overrides the framing's tight-cut rate for this item (the class
    balance of :func:`detectors.augment.balanced_tight_rates`). ``aligned`` items are already crops: resized to
    ``size``."""
    from forensics_core.degrade import resize_to

    if item.store != "source":
        return resize_to(img, size)
    from detectors.augment import Framing, cut_tight, deliver, random_delivery, random_framing
    from forensics_core.faces.crops import CropSpec, crop_faces, native_crop
    from forensics_core.faces.types import Face

    lm = item.landmarks
    drawn = framing is not None and rng is not None and lm is not None
    fr = random_framing(rng, framing, p_tight) if drawn else Framing()
    if fr.tight and crop == "native":
        img, lm = cut_tight(img, lm, fr, size, margin)
    if history is not None:
        img, lm = deliver(img, lm, list(history.ops))
    elif delivery is not None and rng is not None:
        face = _face_side(img.shape, lm, size, margin) if delivery.max_face else 0
        img, lm = deliver(img, lm, random_delivery(rng, delivery, item.lossless, min(img.shape[:2]), face))
    if lm is not None and crop == "native" and fr != Framing():
        return native_crop(img, lm, size, margin, edge, fr.zoom, fr.shift)
    faces = [] if lm is None else [Face.from_landmarks(lm)]
    return crop_faces(img, faces, CropSpec(size, crop, margin, edge))[0].pixels


def _face_side(shape: tuple[int, ...], lm: np.ndarray | None, size: int, margin: float) -> int:
    """The shorter side of the native window's part inside the photo (0 without landmarks)."""
    if lm is None:
        return 0
    from forensics_core.faces.crops import native_window

    x0, y0, side = native_window(shape, lm, size, margin, "reflect")
    h, w = shape[:2]
    return max(0, min(min(x0 + side, w) - max(x0, 0), min(y0 + side, h) - max(y0, 0)))


def crop_policy_gap(items: list, crop: str) -> str | None:
    """Why ``crop`` cannot be applied as asked to some of ``items`` (``None`` when it can): an ``aligned``-store
    item is a face crop already, so any policy but ``align`` meets it only as a resize of that crop; a model
    trained or scored on them sees those faces unlike ``forensics scan`` does (re-import with ``--store
    source``)."""
    if crop == "align":
        return None
    n = sum(it.store != "source" for it in items)
    if not n:
        return None
    return (
        f"{n} of {len(items)} items are stored as aligned crops: crop={crop} cannot cut them from their images "
        "(they are resized instead); re-import them with --store source"
    )


def eval_array(
    cache: ByteCache, size: int, margin: float = 0.3, delivery: Any = None, seed: int = 0, history: Any = None,
    crop: str = "align", edge: str = "clamp",
) -> np.ndarray:
    """Every item's face view at ``size``: without ``delivery`` the deterministic, augmentation-free view used for
    eval; with it, each item gets its own fixed history (seeded by ``seed`` and its position), which is how
    validation reals cover every delivery a scanned file may have had; ``history`` gives every item the same one
    (how threshold presets are held under each common delivery: :data:`detectors.calibration.HOLD_UNDER`)."""
    out = np.empty((len(cache), size, size, 3), np.uint8)
    for i in range(len(cache)):
        rng = np.random.default_rng((seed, 7, i)) if delivery is not None else None
        out[i] = face_view(cache.image(i), cache.items[i], size, margin, rng, delivery, history, crop, edge)
    return out
