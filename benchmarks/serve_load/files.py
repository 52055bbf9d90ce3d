"""The file set a load run sends: good face images (the shared crossval faces, else crops of scikit-image's
astronaut) and hostile files (text named .jpg, a truncated PNG, a PNG declaring 900 MP, a ZIP named .jpg, an upload
over the size limit), interleaved so every connection meets both."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forensics_core.config import shared_data_dir
from forensics_core.hashing import sha256_bytes

UPLOAD_MB = 1.0  # --max-upload-mb of the server under test: the oversize hostile file is 1.5x this


@dataclass
class Sample:
    name: str
    data: bytes
    kind: str  # 'good' or the hostile kind
    sha256: str = ""
    path: str = ""  # on disk, for the `forensics scan` baseline

    def __post_init__(self) -> None:
        self.sha256 = sha256_bytes(self.data)


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width x height``: the decompression-bomb guard must refuse it unread."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def good_files(n: int) -> list[Sample]:
    data = shared_data_dir()
    paths: list[Path] = []
    if data is not None:
        real = sorted((data / "real_faces" / "ffhq128_bhunakit" / "crossval").glob("*.png"))
        fake = sorted((data / "gan_faces" / "tpdne-stylegan2_bhunakit" / "crossval").glob("*.jpg"))
        for a, b in zip(real, fake):
            paths += [a, b]
    if len(paths) >= n:
        return [Sample(p.name, p.read_bytes(), "good") for p in paths[:n]]
    import io

    from PIL import Image
    from skimage import data as skdata

    img = skdata.astronaut()
    out = []
    rng = np.random.default_rng(0)
    for i in range(n):  # distinct 160 px crops around the face
        y, x = rng.integers(0, 40), rng.integers(100, 160)
        buf = io.BytesIO()
        Image.fromarray(img[y : y + 220, x : x + 220]).resize((160, 160)).save(buf, format="PNG")
        out.append(Sample(f"astronaut-{i}.png", buf.getvalue(), "good"))
    return out


def hostile_files(n: int, good: list[Sample]) -> list[Sample]:
    """``n`` hostile uploads, five kinds in turn, each unique (so the scan baseline cannot dedupe them)."""
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        kind = ("text", "truncated", "bomb", "zip", "oversize")[i % 5]
        if kind == "text":
            data = f"not a picture {i}\n".encode()
        elif kind == "truncated":
            src = good[i % len(good)].data
            data = src[: len(src) // 3] + bytes([i % 256])
        elif kind == "bomb":
            data = _png_declaring(30000 + i, 30000)
        elif kind == "zip":
            data = b"PK\x03\x04" + rng.bytes(512)
        else:
            data = rng.bytes(int(UPLOAD_MB * 1.5 * 1024 * 1024))
        out.append(Sample(f"hostile-{kind}-{i}.jpg", data, kind))
    return out


def interleave(good: list[Sample], hostile: list[Sample]) -> list[Sample]:
    """Hostile files spread evenly through the good ones (the mix is the same in any window of requests)."""
    out: list[Sample] = []
    step = max(1, len(good) // max(1, len(hostile)))
    h = iter(hostile)
    for i, g in enumerate(good):
        out.append(g)
        if (i + 1) % step == 0:
            nxt = next(h, None)
            if nxt is not None:
                out.append(nxt)
    out.extend(h)
    return out
