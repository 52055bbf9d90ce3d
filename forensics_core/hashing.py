"""sha256 of files and bytes, and the deterministic hash split: the one copy of each.

Everything that names content by its hash (dataset manifests, model files, checkpoints, scan records, duplicate
detection) and everything that assigns rows to train / val / test by hashing a key uses these functions, so the
same file or key gives the same answer in every part of the toolkit.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from typing import NamedTuple

HASH_CHUNK = 1 << 20


class FileHash(NamedTuple):
    sha256: str  # hex digest
    size: int  # bytes read


def hash_file(path: str | os.PathLike[str], *, untrusted: bool = False, timeout_s: float | None = None) -> FileHash:
    """sha256 and size of a file, read in 1 MiB blocks.

    ``untrusted`` (user files: scan inputs, probed media) opens through
    :func:`forensics_core.media.sniff.open_for_read`: a FIFO, socket or device is refused (never opened blocking) and a
    missing or unreadable file raises :class:`~forensics_core.media.UnreadableMediaError`. Files the toolkit wrote
    itself (datasets, checkpoints, model files) are opened plainly and keep their ``OSError``.

    ``timeout_s`` bounds the hashing (checked per block read): a huge or very slow file becomes an
    ``UnreadableMediaError`` instead of holding a scan, which hashes lazily in its main thread. An I/O error while
    reading stays an ``OSError``; callers word it for their records.
    """
    if untrusted:
        from forensics_core.media.sniff import open_for_read

        fh = open_for_read(path)
    else:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with block below
    h = hashlib.sha256()
    n = 0
    end = None if timeout_s is None else time.monotonic() + timeout_s
    with fh:
        while block := fh.read(HASH_CHUNK):
            h.update(block)
            n += len(block)
            if end is not None and time.monotonic() > end:
                from forensics_core.media import UnreadableMediaError

                raise UnreadableMediaError(path, f"timed out after {timeout_s:g} s while hashing ({n} bytes read)")
    return FileHash(h.hexdigest(), n)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file the toolkit wrote or was given as data (see :func:`hash_file`)."""
    return hash_file(path).sha256


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    """The hex sha256 of ``text`` encoded as UTF-8 (keys, paths, fingerprints)."""
    return sha256_bytes(text.encode("utf-8"))


def hash_fraction(key: str, *, denominator: int = 1 << 32) -> float:
    """A stable number in [0, 1] from ``key``: the first 32 bits of its sha256 over ``denominator``."""
    return int(sha256_text(key)[:8], 16) / denominator


#: The divisor the benchmark protocols and the detector's own holdout have always used. It differs from 2**32 for
#: one 32-bit value next to each cut (e.g. 0.7), so they keep it and no committed split moves.
LEGACY_DENOMINATOR = 0xFFFFFFFF


def hash_split(key: str, fractions: float | Mapping[str, float] = 0.1, *, denominator: int = 1 << 32) -> str:
    """Deterministic split assignment from a hash of ``key`` (same answer on every machine and every run).

    ``fractions`` maps split names to their shares in order: the key goes to the first name whose cumulative
    share exceeds :func:`hash_fraction`, the last name takes the rest. A single number is a validation fraction:
    ``{"val": f, "train": 1 - f}``.
    """
    if not isinstance(fractions, Mapping):
        fractions = {"val": float(fractions), "train": 1.0 - float(fractions)}
    names = list(fractions)
    u = hash_fraction(key, denominator=denominator)
    acc = 0.0
    for name in names[:-1]:
        acc += fractions[name]
        if u < acc:
            return name
    return names[-1]
