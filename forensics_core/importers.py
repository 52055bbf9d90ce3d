"""Turn foreign face sets into toolkit datasets (``manifest.jsonl`` + normalised JPEGs).

Why normalise: in public sets the two classes almost never share a format. In ``../shared/data`` the real FFHQ
thumbnails are PNG while the StyleGAN2 fakes are JPEG q75 with a faint watermark, and the framings differ. A
detector trained on such raw files learns "PNG vs JPEG" or "where is the watermark", not generator traces. So
every item, whatever its class, goes through the *same* pipeline: decode -> align by the MTCNN landmarks (or
centre-crop square) -> resize to one size -> re-encode as JPEG at one quality.

Layouts (how a foreign set is organised) are entries of the :data:`LAYOUTS` registry; a third-party package can
add one through the ``forensics.data_layouts`` entry-point group. See ``docs/datasets.md``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forensics_core.dataset import LABELS, ManifestRow, ManifestWriter, Provenance, sort_manifest
from forensics_core.errors import DataError, ForensicsError, UsageError
from forensics_core.hashing import hash_split, sha256_bytes, sha256_text
from forensics_core.plumbing import RunCounts
from forensics_core.registry import Registry

log = logging.getLogger(__name__)

SPLIT_DIRS = ("train", "val", "test", "crossval")


@dataclass
class ImportItem(Provenance):
    """One source file plus the manifest fields a layout knows about it (everything but the normalised output)."""

    src: str  # absolute path of the source file
    rel: str  # path relative to the import root: stable key for naming, splitting and messages
    label: str
    md5: str = ""  # expected md5 of the source bytes when the layout knows it (verified before use)
    extra: dict[str, Any] = field(default_factory=dict)

    def out_path(self, suffix: str = ".jpg") -> str:
        """Output path inside the dataset: ``<label>/<source slug>/<sha256(rel)[:16]><suffix>``.

        Derived from the relative source path only, so a resumed import knows what is done without reading any
        source file, and hostile file names never reach the output tree.
        """
        key = sha256_text(self.rel)[:16]
        return f"{self.label}/{_slug(self.source or 'items')}/{key}{suffix}"


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s.replace("/", "__")).strip("._") or "items"


def split_from_path(rel: str) -> str:
    """``train`` / ``val`` / ``test`` / ``crossval`` when a folder of ``rel`` is named so, else ``""``."""
    for part in Path(rel).parts[:-1]:
        if part.lower() in SPLIT_DIRS:
            return part.lower()
    return ""


# --------------------------------------------------------------------------------------------------------------
# layouts
# --------------------------------------------------------------------------------------------------------------
@dataclass
class LayoutOptions:
    """Options every layout understands. ``label_map`` maps class-folder names to labels (``folders``)."""

    val_fraction: float = 0.1
    label_map: dict[str, str] = field(default_factory=lambda: {"real": "real", "fake": "fake"})
    labels_csv: str | None = None


class Layout(ABC):
    """How a foreign set is organised on disk: lists its items with label and provenance."""

    @abstractmethod
    def items(self, src: Path, opts: LayoutOptions) -> Iterator[ImportItem]:
        """Yield every candidate item under ``src``."""


LAYOUTS: Registry[type[Layout]] = Registry("dataset layout", entry_point_group="forensics.data_layouts")


def _finish_split(item: ImportItem, opts: LayoutOptions) -> ImportItem:
    """Split from a ``val``/``test``/``crossval`` folder, else a hash-based train/val split of the relative path
    (see :func:`split_for`)."""
    item.split = split_for(item.rel, opts.val_fraction)
    return item


def split_for(rel: str, val_fraction: float) -> str:
    """The split of a source file: its ``val`` / ``test`` / ``crossval`` folder, else a hash-based train / val
    split of its relative path. Files in a ``train`` folder are hashed too, so that every source with training
    rows also gives validation rows: calibration and threshold presets fitted on one source's reals (UTKFace)
    do not hold on another's (FFHQ)."""
    split = split_from_path(rel)
    return split if split not in ("", "train") else hash_split(rel, val_fraction)


@LAYOUTS.register("folders", description="SRC/real/**, SRC/fake/** (class folder names via --label-map)")
class FoldersLayout(Layout):
    """``SRC/<class>/[<source>/]...``: the class folder gives the label (through ``label_map``), the first folder
    below it (if any) gives ``source`` and, for fakes, ``generator``; a ``train``/``val``/``test``/``crossval``
    folder anywhere gives the split."""

    def items(self, src: Path, opts: LayoutOptions) -> Iterator[ImportItem]:
        from forensics_core.faces.extract import MEDIA_EXTENSIONS

        found = False
        for cls_dir in sorted(p for p in src.iterdir() if p.is_dir() and p.name in opts.label_map):
            found = True
            label = opts.label_map[cls_dir.name]
            for f in sorted(cls_dir.rglob("*")):
                rel_cls = f.relative_to(cls_dir)
                if not f.is_file() or f.suffix.lower() not in MEDIA_EXTENSIONS or f.name.startswith("."):
                    continue
                sub = [p for p in rel_cls.parts[:-1] if p.lower() not in SPLIT_DIRS]
                source = f"{cls_dir.name}/{sub[0]}" if sub else cls_dir.name
                generator = sub[0] if (sub and label == "fake") else ""
                yield _finish_split(
                    ImportItem(
                        src=str(f),
                        rel=str(f.relative_to(src)),
                        label=label,
                        source=source,
                        generator=generator,
                        family=(generator or "unknown") if label == "fake" else "real",
                        # the source file's own name: data some sets carry only there (CIPLAB's region codes)
                        extra={"source_path": str(f.relative_to(src))},
                    ),
                    opts,
                )
        if not found:
            raise DataError(f"{src}: no class folders {sorted(opts.label_map)} (layout 'folders'; see --label-map)")


# Substring of a set name -> generator family. Ordered: the first match wins (stylegan2 before stylegan).
FAMILY_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("stylegan3", "stylegan3"),
    ("stylegan2", "stylegan2"),
    ("stylegan", "stylegan"),
    ("progan", "progan"),
    ("biggan", "biggan"),
    ("sadtalker", "reenactment"),
    ("tpsmm", "reenactment"),
    ("diffusion", "diffusion"),
    ("sd1", "stable-diffusion"),
)
# Top-level folder of a ../shared/data-style tree -> manipulation method.
METHOD_BY_TOP: dict[str, str] = {"gan_faces": "gan", "diffusion_faces": "diffusion", "real_faces": "", "videos": ""}
# Licence notes (from ../shared/data/README.md): none of it may be redistributed.
LICENCE_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("utkface", "UTKFace: non-commercial research only; do not redistribute"),
    ("ffhq", "FFHQ thumbnails: research / non-commercial (CC BY-NC-SA 4.0 collection); do not redistribute"),
    ("tpdne", "StyleGAN2 output (thispersondoesnotexist.com): research / non-commercial; do not redistribute"),
    ("sd14", "Stable Diffusion 1.4 output (CreativeML OpenRAIL-M model); the repository states no licence for "
     "the images: research use; do not redistribute"),
    ("unsplash", "Unsplash photos (Unsplash licence); the repository states no licence of its own: research use; "
     "do not redistribute"),
)
DEFAULT_LICENCE = "research / non-commercial (see the source set's README); do not redistribute"
UTK_GENDER = {0: "male", 1: "female"}
UTK_RACE = {0: "white", 1: "black", 2: "asian", 3: "indian", 4: "other"}


def utkface_attributes(name: str) -> dict[str, Any]:
    """``age_gender_race_date.jpg.chip.jpg`` -> ``{"age", "gender", "race"}``; ``{}`` for malformed names (a few
    UTKFace files lack a field)."""
    m = re.match(r"^(\d+)_(\d)_(\d)_", name)
    if not m:
        return {}
    age, g, r = int(m.group(1)), int(m.group(2)), int(m.group(3))
    return {"age": age, "gender": UTK_GENDER.get(g, str(g)), "race": UTK_RACE.get(r, str(r))}


def _first_match(table: tuple[tuple[str, str], ...], text: str, default: str) -> str:
    return next((v for k, v in table if k in text.lower()), default)


@LAYOUTS.register("labels-csv", description="../shared/data style labels.csv (path,binary,label,set,...)")
class LabelsCsvLayout(Layout):
    """``SRC/labels.csv`` with columns ``path, binary, label, set, source_repo, commit, md5`` (paths relative to
    SRC). ``source`` is the set folder without its split (``gan_faces/tpdne-stylegan2_bhunakit``); the set name
    before the uploader suffix (``tpdne-stylegan2``) is the generator of fake sets, its family comes from
    :data:`FAMILY_KEYWORDS`. UTKFace file names also give age, gender and race (kept in ``extra``)."""

    required = ("path", "binary", "set")

    def items(self, src: Path, opts: LayoutOptions) -> Iterator[ImportItem]:
        csv_path = Path(opts.labels_csv) if opts.labels_csv else src / "labels.csv"
        if not csv_path.is_file():
            raise DataError(f"{csv_path}: labels file not found (layout 'labels-csv')")
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in self.required if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{csv_path}: missing column(s) {', '.join(missing)}")
            for i, row in enumerate(reader, 2):
                yield self._item(src, csv_path, i, row, opts)

    def _item(self, src: Path, csv_path: Path, line: int, row: dict[str, str], opts: LayoutOptions) -> ImportItem:
        rel = row["path"].strip()
        label = row["binary"].strip().lower()
        if label not in LABELS or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise DataError(f"{csv_path}:{line}: bad row (path {rel!r}, binary {row['binary']!r})")
        set_dir = row["set"].strip().strip("/")
        split = split_for(rel, opts.val_fraction)
        source = "/".join(p for p in Path(set_dir).parts if p.lower() not in SPLIT_DIRS)
        parts = Path(source).parts
        set_name = parts[1].split("_")[0] if len(parts) > 1 else source
        top = parts[0] if parts else ""
        fake = label == "fake"
        extra: dict[str, Any] = {
            "source_path": rel,
            "source_repo": row.get("source_repo", ""),
            "source_commit": row.get("commit", ""),
            "source_label": row.get("label", ""),
        }
        if "utkface" in source.lower():
            extra.update(utkface_attributes(Path(rel).name))
        item = ImportItem(
            src=str(src / rel),
            rel=rel,
            label=label,
            source=source,
            generator=set_name if fake else "",
            family=_first_match(FAMILY_KEYWORDS, set_name, set_name) if fake else "real",
            method=METHOD_BY_TOP.get(top, ""),
            split=split,
            licence=_first_match(LICENCE_KEYWORDS, source, DEFAULT_LICENCE),
            md5=row.get("md5", "").strip().lower(),
            extra=extra,
        )
        return item


@LAYOUTS.register("manifest", description="dataset dir(s) with manifest.jsonl (e.g. 'gan sample' output)")
class ManifestLayout(Layout):
    """SRC is a dataset (``manifest.jsonl``) or a folder of datasets, typically written by ``forensics gan sample``
    or ``video make-dataset``. Every row is normalised like any other import (so generated fakes get the same
    alignment and JPEG as real faces: otherwise a detector learns the sampler's framing) and keeps its provenance:
    label, generator, family, upsampler, method, split and the generator's own fields (seed, checkpoint, condition,
    mask...). The row's ``parent`` (the real face an edit started from) is kept as ``extra.edit_parent``; the new
    ``parent`` is the sampled file."""

    def items(self, src: Path, opts: LayoutOptions) -> Iterator[ImportItem]:
        from forensics_core.dataset import MANIFEST, read_manifest

        roots = [src] if (src / MANIFEST).is_file() else sorted(p.parent for p in src.glob(f"*/{MANIFEST}"))
        if not roots:
            raise DataError(f"{src}: no {MANIFEST} in it or in its sub-folders (layout 'manifest')")
        for root in roots:
            prefix = "" if root == src else f"{root.name}/"
            for row in read_manifest(root):
                if Path(row.path).is_absolute() or ".." in Path(row.path).parts:
                    raise DataError(f"{root / MANIFEST}: row path {row.path!r} leaves the dataset")
                extra = dict(row.extra)
                if row.parent:
                    extra["edit_parent"] = row.parent
                item = ImportItem(
                    src=str(root / row.path), rel=prefix + row.path, label=row.label, extra=extra,
                    **{**row.provenance(), "source": row.source or root.name},
                )
                if not item.split:
                    item.split = hash_split(item.rel, opts.val_fraction)
                yield item


# --------------------------------------------------------------------------------------------------------------
# normalisation
# --------------------------------------------------------------------------------------------------------------
STORES = ("aligned", "source")
#: source regions start on a multiple of this, so a JPEG source keeps its 8x8 block grid phase
GRID = 8
#: context kept around the crop's footprint in a source region (room for crop jitter and resampling kernels)
REGION_PAD = 16


def face_region(shape: tuple[int, ...], landmarks: np.ndarray, size: int, margin: float) -> tuple[int, int, int, int]:
    """``x0, y0, x1, y1`` of the source pixels the aligned ``size`` crop is sampled from (its footprint under the
    inverse alignment transform), padded by :data:`REGION_PAD`, clipped to the image, origin snapped to the grid."""
    from forensics_core.faces.crops import canonical_landmarks, similarity_transform

    m = similarity_transform(np.asarray(landmarks, float).reshape(5, 2), canonical_landmarks(size, margin))
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], float) @ inv.T
    h, w = shape[:2]
    x0 = max(0, int(np.floor(corners[:, 0].min())) - REGION_PAD) // GRID * GRID
    y0 = max(0, int(np.floor(corners[:, 1].min())) - REGION_PAD) // GRID * GRID
    x1 = min(w, int(np.ceil(corners[:, 0].max())) + REGION_PAD)
    y1 = min(h, int(np.ceil(corners[:, 1].max())) + REGION_PAD)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0, 0, w, h
    return x0, y0, x1, y1


@dataclass
class NormaliseConfig:
    """The one pipeline applied to every item of every class (see the module docstring).

    ``store``: ``aligned`` writes the face crop (``size`` px, JPEG at ``jpeg_quality``); ``source`` writes the
    region of the source the crop is taken from, uncropped and unresampled, as lossless PNG, with the face
    landmarks in its pixels (``extra.crop_landmarks``). Training then gives each item a delivery history at
    native resolution *before* the crop, as a platform does before ``scan`` crops it, and the stored pixels carry
    no history of the importer's own."""

    size: int = 128
    align: bool = False
    margin: float = 0.3
    jpeg_quality: int = 90
    detector: str = "mtcnn"
    min_prob: float = 0.9
    device: str = "cpu"
    store: str = "aligned"

    @property
    def suffix(self) -> str:
        return ".png" if self.store == "source" else ".jpg"

    def __post_init__(self) -> None:
        if not 16 <= self.size <= 4096:
            raise UsageError(f"--size {self.size}: must be between 16 and 4096")
        if not 1 <= self.jpeg_quality <= 100:
            raise UsageError(f"--jpeg-quality {self.jpeg_quality}: must be between 1 and 100")
        if self.margin < 0:
            raise UsageError(f"--margin {self.margin}: must be >= 0")
        if self.store not in STORES:
            raise UsageError(f"--store {self.store}: choose one of {', '.join(STORES)}")


class Normaliser:
    """Decode -> align (largest confident face) or centre-crop -> resize -> JPEG bytes. One per process."""

    def __init__(self, cfg: NormaliseConfig) -> None:
        self.cfg = cfg
        self._detector = None
        if cfg.align:
            from forensics_core.faces.detectors import get_face_detector

            self._detector = get_face_detector(cfg.detector, device=cfg.device, min_prob=cfg.min_prob)

    def __call__(self, pixels: np.ndarray) -> tuple[bytes, dict[str, Any]]:
        from PIL import Image

        from forensics_core.faces.crops import CropSpec, crop_faces

        info: dict[str, Any] = {"aligned": False, "src_width": int(pixels.shape[1]), "src_height": int(pixels.shape[0])}
        face = None
        if self._detector is not None:
            faces = self._detector.detect([pixels])[0]
            if faces:
                face = max(faces, key=lambda f: f.area)  # the subject, not a face in the background
                info.update(aligned=True, face=face.to_dict())
        if self.cfg.store == "source":
            return self._source_region(pixels, face, info)
        spec = CropSpec(self.cfg.size, "align", self.cfg.margin)
        out = crop_faces(pixels, [] if face is None else [face], spec, align_approx=True)[0].pixels
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=self.cfg.jpeg_quality, subsampling="4:2:0")
        return buf.getvalue(), info

    def _source_region(self, pixels: np.ndarray, face: Any, info: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """Lossless PNG of the face's source region (the whole centre square when no face was found)."""
        import cv2

        h, w = pixels.shape[:2]
        if face is not None:
            x0, y0, x1, y1 = face_region(pixels.shape, face.landmarks, self.cfg.size, self.cfg.margin)
            lm = np.asarray(face.landmarks, float).reshape(5, 2) - [x0, y0]
            info["crop_landmarks"] = [[round(float(x), 3), round(float(y), 3)] for x, y in lm]
        else:
            s = min(h, w)
            x0, y0 = (w - s) // 2, (h - s) // 2
            x1, y1 = x0 + s, y0 + s
        region = np.ascontiguousarray(pixels[y0:y1, x0:x1])
        ok, buf = cv2.imencode(".png", cv2.cvtColor(region, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise DataError("PNG encoding of the source region failed")
        info.update(store="source", crop_box=[int(x0), int(y0), int(x1), int(y1)])
        return buf.tobytes(), info


@dataclass
class ItemResult:
    """What a worker sends back: a manifest row (JSON dict), or a skip reason, or a one-line error."""

    rel: str
    row: ManifestRow | None = None
    skipped: str = ""
    error: str = ""


_NORMALISER: Normaliser | None = None


def _init_worker(cfg_dict: dict[str, Any]) -> None:
    """Process-pool initialiser: one thread per worker (processes are the parallelism) and one detector each."""
    global _NORMALISER
    if cfg_dict.get("align"):
        import torch

        torch.set_num_threads(1)
    _NORMALISER = Normaliser(NormaliseConfig(**cfg_dict))


def process_item(item: ImportItem, out_dir: str, normaliser: Normaliser | None = None) -> ItemResult:
    """Normalise one item into ``out_dir``; never raises for bad media (the batch must go on)."""
    from forensics_core import media
    from forensics_core.media.sniff import open_for_read

    norm = normaliser or _NORMALISER
    assert norm is not None, "process_item needs a Normaliser (or a worker initialised with _init_worker)"
    try:
        if media.sniff(item.src) == "video":
            return ItemResult(item.rel, skipped="video")
        with open_for_read(item.src) as f:  # a FIFO swapped in after the sniff must not block the import
            raw = f.read()
        if item.md5 and hashlib.md5(raw).hexdigest() != item.md5:
            raise DataError(f"{item.src}: md5 differs from the labels file (file changed or corrupt)")
        loaded = media.load_image(item.src)
        data, info = norm(loaded.pixels)
        rel_out = item.out_path(norm.cfg.suffix)
        dst = Path(out_dir) / rel_out
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, dst)
    except ForensicsError as exc:
        return ItemResult(item.rel, error=str(exc))
    except Exception as exc:  # a decoder bug on one hostile file must not end a 15k-item import
        return ItemResult(item.rel, error=f"{item.src}: {type(exc).__name__}: {exc}")
    extra = dict(item.extra)
    extra.update(info)
    extra["source_format"] = loaded.info.container
    row = ManifestRow(
        path=rel_out, label=item.label, sha256=sha256_bytes(data), parent=sha256_bytes(raw), extra=extra,
        **item.provenance(),
    )
    return ItemResult(item.rel, row=row)


# --------------------------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------------------------
@dataclass
class ImportReport(RunCounts):
    """Counts of one import run (``skipped_done`` > 0 means it resumed)."""

    skipped_done: int = 0
    skipped_video: int = 0
    aligned: int = 0
    errors: list[str] = field(default_factory=list)


def import_dataset(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    layout: str = "labels-csv",
    norm: NormaliseConfig | None = None,
    opts: LayoutOptions | None = None,
    workers: int = 1,
    on_error: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import ``src`` (organised as ``layout``) into the dataset directory ``out``.

    Resumable: items whose output path is already in ``out/manifest.jsonl`` are skipped without reading them.
    ``workers > 1`` uses a process pool (one detector per process, torch at one thread each). ``on_error`` gets one
    line per bad item, ``on_start(todo, skipped_done)`` is called once, ``progress(advance, done_so_far)`` per item.
    """
    src_p = Path(src)
    if not src_p.is_dir():
        raise DataError(f"{src}: import source is not a directory")
    norm = norm or NormaliseConfig()
    opts = opts or LayoutOptions()
    lay = LAYOUTS.get(layout).obj()
    report = ImportReport()
    _check_settings(Path(out), {"layout": layout, "normalise": asdict(norm)})
    with ManifestWriter(out) as writer:
        todo: list[ImportItem] = []
        for it in lay.items(src_p, opts):
            report.total += 1
            if it.out_path(norm.suffix) in writer.done:
                report.skipped_done += 1
            elif _is_video(it.src):  # decided here, not in a worker: a resumed run then starts no pool at all
                report.skipped_video += 1
            else:
                todo.append(it)
        if on_start:
            on_start(len(todo), report.skipped_done)

        def consume(res: ItemResult) -> None:
            if res.error:
                report.failed += 1
                report.errors.append(res.error)
                if on_error:
                    on_error(res.error)
            elif res.skipped:
                report.skipped_video += 1
            elif res.row is not None:
                writer.write(res.row)
                report.written += 1
                report.aligned += bool(res.row.extra.get("aligned"))
            if progress:
                progress(1, report.written)

        if todo and workers <= 1:  # nothing to do builds no face detector
            normaliser = Normaliser(norm)
            for it in todo:
                consume(process_item(it, str(out), normaliser))
        elif todo:
            _run_pool(todo, str(out), norm, workers, consume)
    sort_manifest(out)  # the same import, in any worker order or resumed, gives the same manifest bytes
    return report


def _is_video(path: str) -> bool:
    from forensics_core import media

    try:
        return media.sniff(path) == "video"
    except ForensicsError:
        return False  # not decidable here: process_item reports the file with its cause


SETTINGS_FILE = "import.json"


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Record the normalisation in ``out/import.json``; refuse to resume into a dataset normalised differently,
    because mixing two pipelines in one dataset reintroduces exactly the shortcut normalisation removes."""
    path = out / SETTINGS_FILE
    keep = {k: v for k, v in settings["normalise"].items() if k != "device"}
    settings = {**settings, "normalise": keep}
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != settings:
            raise UsageError(
                f"{out}: already holds an import made with different settings ({path}: {json.dumps(old)}); "
                "use a new --out directory"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _run_pool(
    todo: list[ImportItem], out: str, norm: NormaliseConfig, workers: int, consume: Callable[[ItemResult], None]
) -> None:
    """Bounded in-flight window so memory stays flat and results stream into the manifest as they finish."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # torch + fork is unsafe; spawn also matches macOS / Windows behaviour
    window = workers * 8
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(asdict(norm),)) as ex:
        pending = set()
        it = iter(todo)
        for item in it:
            pending.add(ex.submit(process_item, item, out))
            if len(pending) >= window:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    consume(fut.result())
        for fut in as_completed(pending):
            consume(fut.result())
