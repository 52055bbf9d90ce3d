"""Turn what the user typed (files, directories, globs, ``-`` for a list on stdin) into the files to scan.

Rules, all chosen for scanning untrusted upload folders:

* **Directories** are walked recursively in sorted order; hidden entries (``.name``) are skipped. A file with a
  media extension is always a candidate (so a text file renamed ``.jpg`` is *reported*, not silently dropped);
  a file without one is a candidate only if its magic bytes say image or video (uploads often have no
  extension), so ``README.md`` or ``index.csv`` next to the photos are skipped and counted, not reported.
* **Files named explicitly** are always candidates; a missing one becomes a per-file error, never a crash.
* **Symlinks** are not followed out of the scanned root (the directory being walked) unless
  ``follow_symlinks=True``: a link planted in an upload folder must not make the scanner read ``/etc/shadow``.
  Such a link is reported as a per-file error. Directory symlinks are descended only with ``follow_symlinks``
  (with loop protection).
* **Only regular files are read**: a FIFO, socket or device (even one named ``.jpg``) becomes a per-file
  ``UnreadableMediaError`` record and is never opened blocking (``forensics_core.media.sniff.open_for_read``).
* **Duplicates** by content (sha256) are scanned once; later copies carry ``duplicate_of`` (the first path).
  The same file reached twice (two overlapping arguments) is listed once.

Expansion is lazy (a generator) so a million-file folder starts scanning at once; the sha256 index for duplicate
detection is the only state that grows with the number of files (about 100 bytes per file).
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from forensics_core.hashing import hash_file

GLOB_CHARS = set("*?[")


@dataclass
class InputItem:
    """One file to scan. ``error`` is set when the file cannot even be listed or hashed (it is reported as is)."""

    path: str  # absolute, symlinks not resolved (what the user sees)
    sha256: str = ""
    size_bytes: int = 0
    duplicate_of: str | None = None
    error: str | None = None
    error_type: str | None = None


@dataclass
class ExpandStats:
    """Counters the CLI prints at the end: how many candidates were skipped, and why."""

    skipped_non_media: int = 0
    skipped_hidden: int = 0
    duplicates: int = 0
    listed: int = 0
    unmatched_patterns: list[str] = field(default_factory=list)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives on Windows
        return False


def _media_extensions() -> frozenset[str]:
    from forensics_core.faces.extract import MEDIA_EXTENSIONS

    return MEDIA_EXTENSIONS


def _looks_like_media(path: str) -> bool:
    """Magic-byte check for files without a media extension (cheap: reads the first bytes only)."""
    from forensics_core import media
    from forensics_core.errors import ForensicsError

    try:
        media.sniff(path)
    except ForensicsError:
        return False
    except OSError:
        return False
    return True


class InputExpander:
    """Iterate :class:`InputItem` for a list of input specs; see the module docstring for the rules."""

    def __init__(
        self,
        specs: Iterable[str],
        *,
        follow_symlinks: bool = False,
        stdin: TextIO | None = None,
        dedupe: bool = True,
        timeout_s: float | None = None,
    ) -> None:
        self.specs = list(specs)
        self.timeout_s = timeout_s  # per-file hashing limit (the scan's --timeout)
        self.follow_symlinks = follow_symlinks
        self.stdin = stdin
        self.dedupe = dedupe
        self.stats = ExpandStats()
        self._seen_paths: set[str] = set()
        self._first_by_sha: dict[str, str] = {}

    # -- public ---------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[InputItem]:
        for path, err in self._candidates():
            if path in self._seen_paths:
                continue
            self._seen_paths.add(path)
            self.stats.listed += 1
            if err is not None:
                yield InputItem(path, error=err[1], error_type=err[0])
                continue
            yield self._hashed(path)

    # -- internals ------------------------------------------------------------------------------------------
    def _hashed(self, path: str) -> InputItem:
        from forensics_core.media import MediaError

        try:
            digest, size = hash_file(path, untrusted=True, timeout_s=self.timeout_s)
        except MediaError as exc:  # not a regular file, missing, unreadable: its one-line record says which
            return InputItem(path, error=str(exc), error_type=type(exc).__name__)
        except OSError as exc:  # an I/O error while reading
            msg = f"{path}: read error ({exc.strerror or exc})"
            return InputItem(path, error=msg, error_type="UnreadableMediaError")
        item = InputItem(path, sha256=digest, size_bytes=size)
        if self.dedupe:
            first = self._first_by_sha.setdefault(digest, path)
            if first != path:
                item.duplicate_of = first
                self.stats.duplicates += 1
        return item

    def _specs(self) -> Iterator[str]:
        for spec in self.specs:
            if spec == "-":
                stream = self.stdin if self.stdin is not None else sys.stdin
                for line in stream:
                    line = line.rstrip("\r\n")
                    if line.strip() and not line.lstrip().startswith("#"):
                        yield line
            else:
                yield spec

    def _candidates(self) -> Iterator[tuple[str, tuple[str, str] | None]]:
        for spec in self._specs():
            if os.path.isdir(spec):
                yield from self._walk(spec)
            elif os.path.lexists(spec) or not (GLOB_CHARS & set(spec)):
                # an explicit file (or a missing one: reported per file by the loader as "no such file")
                yield os.path.abspath(spec), None
            else:
                matches = sorted(glob.glob(spec, recursive=True))
                if not matches:
                    self.stats.unmatched_patterns.append(spec)
                    yield os.path.abspath(spec), ("UnreadableMediaError", f"{spec}: no files match this pattern")
                for m in matches:
                    if os.path.isdir(m):
                        yield from self._walk(m)
                    else:
                        yield os.path.abspath(m), None

    def _walk(self, root: str) -> Iterator[tuple[str, tuple[str, str] | None]]:
        root_abs = os.path.abspath(root)
        root_real = os.path.realpath(root_abs)
        exts = _media_extensions()
        visited: set[str] = {root_real}
        for dirpath, dirnames, filenames in os.walk(root_abs, followlinks=self.follow_symlinks):
            keep = []
            for d in sorted(dirnames):
                if _is_hidden(d):
                    self.stats.skipped_hidden += 1
                    continue
                real = os.path.realpath(os.path.join(dirpath, d))
                if real in visited:  # symlink loop, or a second link to a directory already walked
                    continue
                visited.add(real)
                keep.append(d)
            dirnames[:] = keep
            for name in sorted(filenames):
                if _is_hidden(name):
                    self.stats.skipped_hidden += 1
                    continue
                path = os.path.join(dirpath, name)
                if os.path.islink(path) and not self.follow_symlinks:
                    target = os.path.realpath(path)
                    if not _within(target, root_real):
                        yield path, (
                            "UnsafeInputError",
                            f"{path}: symlink points outside the scanned folder (use --follow-symlinks to allow)",
                        )
                        continue
                if os.path.splitext(name)[1].lower() in exts or _looks_like_media(path):
                    yield path, None
                else:
                    self.stats.skipped_non_media += 1


def expand_paths(specs: Iterable[str], *, kind: str | None = None, follow_symlinks: bool = False) -> list[str]:
    """The files ``specs`` name, by the same rules as ``scan`` (folders walked in sorted order, hidden entries
    skipped, globs, the symlink policy) but without hashing: for commands that take a list of media, such as
    ``forensics video make-dataset --real``.

    ``kind='video'`` (or ``'image'``) keeps, among the files found in folders, those whose *content* is of that
    kind, so a thumbnail next to the clips is not taken for a clip. Files named explicitly are always kept, so a
    wrong one is reported by the command instead of silently dropped. Symlinks refused by the policy are left out.
    """
    from forensics_core import media
    from forensics_core.errors import ForensicsError

    def wanted(path: str) -> bool:
        try:
            return kind is None or media.sniff(path) == kind
        except (ForensicsError, OSError):
            return False

    expander = InputExpander([], follow_symlinks=follow_symlinks)
    out: list[str] = []
    for spec in specs:
        if os.path.isdir(spec):
            found = [p for p, err in expander._walk(spec) if err is None and wanted(p)]
        else:
            expander.specs = [spec]
            found = [p for p, err in expander._candidates() if err is None]
        out.extend(p for p in found if p not in out)
    return out
