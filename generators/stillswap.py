"""Still-image face swaps and feature splices between real photos, with exact masks: a held-out manipulation set.

The ``surround`` detector trains on edits made in its own crop (:mod:`detectors.manipulate`: alpha blends of
jittered donors). A check of what it learnt must use edits made another way, on photos it never trained on. This
module makes them with the video pipeline's compositing (:func:`generators.video.blend.paste_back`): the donor
photo's face is aligned to a canonical frame on its 5 landmarks, warped back through the *target's* alignment,
colour-transferred in LAB (Reinhard) and composited by Poisson cloning (``cv2.seamlessClone``, never used in
training) or by a feathered mask, at the target photo's own resolution; the whole photo is then saved as a JPEG
of a drawn quality, and so is each real it is compared with. Two kinds:

- ``swap``: the inner face (:func:`generators.video.blend.face_mask`), as face swaps replace it;
- ``splice``: one or more of the eyes, the nose and the mouth (ellipses on the landmarks), as the CIPLAB-style
  expert splices replace them; the manifest's ``region_code`` says which, in CIPLAB's order (left eye, right eye,
  nose, mouth).

``make_swap_dataset`` writes a dataset dir (``docs/datasets.md``) of reals and edits, each a ``source``-store row
with its landmarks (so detectors crop it as ``scan`` would) and each edit with its mask (``masks/*.png``,
255 = replaced): ground truth for the ``localisation`` benchmark protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ALIGN_SIZE = 256
ALIGN_MARGIN = 0.6
REGION_ORDER = ("left_eye", "right_eye", "nose", "mouth")


@dataclass
class StillSwapConfig:
    """What :func:`make_swap_dataset` draws for each edit."""

    p_splice: float = 0.4
    p_poisson: float = 0.6
    jpeg_range: tuple[int, int] = (70, 95)
    seed: int = 0


def _align(img: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face aligned to the canonical frame and the 2x3 matrix image -> frame."""
    import cv2

    from forensics_core.faces.crops import canonical_landmarks, similarity_transform

    m = similarity_transform(np.asarray(lm, np.float64), canonical_landmarks(ALIGN_SIZE, ALIGN_MARGIN))
    face = cv2.warpAffine(img, m, (ALIGN_SIZE, ALIGN_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return face, m


def part_mask(regions: tuple[bool, ...]) -> np.ndarray:
    """Ellipses over the chosen parts (``regions`` in :data:`REGION_ORDER`) in the canonical frame."""
    import cv2

    from forensics_core.faces.crops import canonical_landmarks

    p = canonical_landmarks(ALIGN_SIZE, ALIGN_MARGIN)
    d = float(np.hypot(*(p[1] - p[0])))
    centres = [p[0], p[1], (p[2] + (p[0] + p[1]) / 2) / 2, (p[3] + p[4]) / 2]
    axes = [(0.36, 0.22), (0.36, 0.22), (0.24, 0.45), (0.55, 0.28)]
    m = np.zeros((ALIGN_SIZE, ALIGN_SIZE), np.float32)
    for on, c, (ax, ay) in zip(regions, centres, axes):
        if on:
            cv2.ellipse(m, (int(c[0]), int(c[1])), (int(ax * d), int(ay * d)), 0.0, 0.0, 360.0, 1.0, -1)
    return m


def swap_photo(
    target: np.ndarray, target_lm: np.ndarray, donor: np.ndarray, donor_lm: np.ndarray,
    regions: tuple[bool, ...] | None = None, mode: str = "poisson",
) -> tuple[np.ndarray, np.ndarray]:
    """``target`` with the donor's face (``regions`` None) or its chosen parts pasted in: (image, mask uint8)."""
    from forensics_core.faces.crops import canonical_landmarks
    from generators.video.blend import BlendConfig, face_mask, paste_back

    face, _ = _align(donor, donor_lm)
    _, m_target = _align(target, target_lm)
    if regions is None:
        mask = face_mask(ALIGN_SIZE, canonical_landmarks(ALIGN_SIZE, ALIGN_MARGIN), scale=0.85)
    else:
        mask = part_mask(regions)
    return paste_back(target, face, mask, m_target, BlendConfig(mode=mode, feather=0.05))


def _read(path: Path) -> np.ndarray:
    import cv2

    from forensics_core.errors import DataError

    arr = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise DataError(f"{path}: not a decodable image")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def _jpeg(img: np.ndarray, q: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(q)])
    if not ok:
        raise ValueError("JPEG encode failed")
    return buf.tobytes()


def make_swap_dataset(
    source: str | Path, out: str | Path, split: str = "val", n: int = 200, cfg: StillSwapConfig | None = None
) -> Path:
    """Write ``n`` reals of ``source``'s ``split`` (a ``--store source`` import) and ``n`` edits of them (each
    target's donor: another of those reals), both classes as JPEGs of one quality distribution; returns ``out``."""
    import cv2

    from forensics_core.dataset import ManifestRow, read_manifest, write_manifest
    from forensics_core.errors import DataError
    from forensics_core.hashing import sha256_bytes

    cfg = cfg or StillSwapConfig()
    src = Path(source)
    rows = [r for r in read_manifest(src) if r.label == "real" and r.split == split
            and r.extra.get("store") == "source" and r.extra.get("crop_landmarks") is not None]  # fmt: skip
    if len(rows) < 2:
        raise DataError(f"{src}: fewer than two source-store real rows in split '{split}'")
    rng = np.random.default_rng(cfg.seed)
    rows = [rows[i] for i in sorted(rng.choice(len(rows), size=min(n, len(rows)), replace=False))]
    images = [_read(src / r.path) for r in rows]
    marks = [np.asarray(r.extra["crop_landmarks"], np.float64).reshape(5, 2) for r in rows]
    out = Path(out)
    (out / "real").mkdir(parents=True, exist_ok=True)
    (out / "fake").mkdir(exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    manifest: list[ManifestRow] = []
    for i, (row, img) in enumerate(zip(rows, images)):
        j = (i + 1 + int(rng.integers(len(rows) - 1))) % len(rows)
        splice = rng.random() < cfg.p_splice
        regions = None
        if splice:
            regions = tuple(bool(b) for b in rng.random(4) < 0.5)
            if not any(regions):
                regions = tuple(k == int(rng.integers(4)) for k in range(4))
        mode = "poisson" if rng.random() < cfg.p_poisson else "soft"
        fake, mask = swap_photo(img, marks[i], images[j], marks[j], regions, mode)
        common = {"store": "source", "crop_landmarks": marks[i].round(3).tolist(),
                  "src_width": int(img.shape[1]), "src_height": int(img.shape[0]), "source_format": "jpeg"}
        for label, pixels in (("real", img), ("fake", fake)):
            data = _jpeg(pixels, int(rng.integers(cfg.jpeg_range[0], cfg.jpeg_range[1] + 1)))
            path = f"{label}/{i:05d}.jpg"
            (out / path).write_bytes(data)
            extra: dict[str, Any] = dict(common)
            if label == "fake":
                cv2.imwrite(str(out / f"masks/{i:05d}.png"), mask)
                code = "".join("1" if r else "0" for r in regions) if regions else "face"
                extra.update({"mask": f"masks/{i:05d}.png", "kind": "splice" if splice else "swap",
                              "region_code": code, "blend": mode, "donor": rows[j].sha256})  # fmt: skip
            manifest.append(ManifestRow(
                path=path, label=label, sha256=sha256_bytes(data), generator="stillswap",
                family="stillswap" if label == "fake" else "", method="edit" if label == "fake" else "",
                source=f"{src.name}/{split}", split="test", parent=row.sha256,
                licence="edits of the shared data's reals: internal evaluation only", extra=extra,
            ))  # fmt: skip
    write_manifest(out, manifest)
    return out
