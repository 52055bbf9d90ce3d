"""Pinned training sources: files of public git repositories named by repository, commit, path and md5.

Why: a model card that says "trained on 1,000 Stable Diffusion faces" is only checkable when anyone can get the
same bytes again. A *source list* (CSV, committed under ``forensics/assets/sources/``) names every file: where it
is staged (``path``), its class (``binary``), a provenance label, the set folder (``set``, which becomes the
dataset's ``source`` / ``generator`` on import), the repository, the commit, the file's path in that commit, its
md5 and size. :func:`stage` copies those files out of a git checkout or mirror (or a plain folder holding the
repository's files), verifies every md5, and writes ``labels.csv`` next to them in the ``../shared/data`` format,
so ``forensics data import STAGED --layout labels-csv`` imports them like the shared sets. :func:`pin` writes the
rows of a new source from a checkout. Nothing is downloaded here: the checkout comes from ``git clone`` (or a
mirror) by whoever stages.
"""

from __future__ import annotations

import csv
import hashlib
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath

from forensics_core.config import ASSETS_DIR
from forensics_core.dataset import LABELS
from forensics_core.errors import DataError, UsageError
from forensics_core.plumbing import RunCounts

#: where the project's own pinned lists live (shipped with the package: a list of hashes, never the files)
SOURCES_DIR = ASSETS_DIR / "sources"


@dataclass(frozen=True)
class SourceFile:
    """One pinned file: a row of a source list (and of the staged ``labels.csv``)."""

    path: str  # where it is staged, relative to the staging folder (``set/name``)
    binary: str  # real | fake
    label: str  # what it is, in words (generator, prompt, origin)
    set: str  # the set folder (``diffusion_faces/sd14-blonde-woman_djbielejeski``)
    source_repo: str  # owner/name
    commit: str  # 40 hex digits
    source_path: str  # the file's path in that commit
    md5: str
    bytes: int

    def __post_init__(self) -> None:
        p = PurePosixPath(self.path)
        if not self.path or p.is_absolute() or ".." in p.parts:
            raise DataError(f"source row {self.path!r}: path must be relative and stay inside the staging folder")
        if self.binary not in LABELS:
            raise DataError(f"source row {self.path!r}: binary must be real or fake, got {self.binary!r}")
        if not re.fullmatch(r"[0-9a-f]{40}", self.commit):
            raise DataError(f"source row {self.path!r}: commit must be 40 hex digits, got {self.commit!r}")
        if not re.fullmatch(r"[0-9a-f]{32}", self.md5):
            raise DataError(f"source row {self.path!r}: md5 must be 32 hex digits, got {self.md5!r}")


COLUMNS = tuple(f.name for f in fields(SourceFile))


def read_source_list(path: str | Path) -> list[SourceFile]:
    """Rows of a source list; a name without ``/`` and ``.csv`` is looked up in :data:`SOURCES_DIR`."""
    p = Path(path)
    if not p.is_file() and p.name == str(path) and (SOURCES_DIR / f"{path}.csv").is_file():
        p = SOURCES_DIR / f"{path}.csv"
    if not p.is_file():
        known = ", ".join(sorted(q.stem for q in SOURCES_DIR.glob("*.csv")))
        raise UsageError(f"{path}: no such source list (file, or one of: {known})")
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{p}: missing column(s) {', '.join(missing)}")
        rows = []
        for i, r in enumerate(reader, 2):
            try:
                rows.append(SourceFile(**{c: (int(r[c]) if c == "bytes" else r[c].strip()) for c in COLUMNS}))
            except (DataError, ValueError) as exc:
                raise DataError(f"{p}:{i}: {exc}") from None
    dup = [k for k, n in _counts(r.path for r in rows).items() if n > 1]
    if dup:
        raise DataError(f"{p}: staged path {dup[0]!r} appears {1 + len(dup)} times or more")
    return rows


def _counts(xs: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in xs:
        out[x] = out.get(x, 0) + 1
    return out


def write_source_list(rows: list[SourceFile], path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))


# --------------------------------------------------------------------------------------------------------------
# reading files out of a checkout, a mirror or a plain folder
# --------------------------------------------------------------------------------------------------------------
class _GitReader:
    """Blobs of one git dir at given commits through one ``git cat-file --batch`` process."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir
        self._proc: subprocess.Popen[bytes] | None = None

    def has_commit(self, commit: str) -> bool:
        r = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "cat-file", "-e", f"{commit}^{{commit}}"],
            capture_output=True,
        )
        return r.returncode == 0

    def read(self, commit: str, path: str) -> bytes | None:
        if self._proc is None:
            self._proc = subprocess.Popen(
                ["git", "--git-dir", str(self.git_dir), "cat-file", "--batch"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(f"{commit}:{path}\n".encode())
        self._proc.stdin.flush()
        header = self._proc.stdout.readline().decode().split()
        if len(header) != 3 or header[1] != "blob":
            return None  # "<name> missing" (or not a file)
        data = self._proc.stdout.read(int(header[2]))
        self._proc.stdout.read(1)  # the newline after the contents
        return data

    def close(self) -> None:
        if self._proc is not None:
            self._proc.stdin.close()  # type: ignore[union-attr]
            self._proc.wait()
            self._proc = None


def _git_dir(path: Path) -> Path | None:
    """The git directory of ``path`` (a work tree, a bare repository or a ``.git`` folder), or None."""
    r = subprocess.run(["git", "-C", str(path), "rev-parse", "--absolute-git-dir"], capture_output=True, text=True)
    return Path(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip() else None


def _candidates(repo: str, roots: list[Path], itself: bool = True) -> Iterator[Path]:
    """Places that may hold ``repo``: ``root/owner+name[/repo]`` (the search tool's mirror layout),
    ``root/owner/name``, ``root/name`` and (``itself``) each root itself."""
    owner, _, name = repo.partition("/")
    for root in roots:
        here = (root / f"{owner}+{name}" / "repo", root / f"{owner}+{name}", root / owner / name, root / name)
        for p in (*here, root) if itself else here:
            if p.is_dir():
                yield p


class _Locator:
    """Finds each (repository, commit) among the ``--from`` roots once and reads its files."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = roots
        self._readers: dict[tuple[str, str], Callable[[str], bytes | None]] = {}
        self._git: dict[Path, _GitReader] = {}

    def reader(self, repo: str, commit: str) -> Callable[[str], bytes | None] | None:
        key = (repo, commit)
        if key not in self._readers:
            self._readers[key] = self._find(repo, commit)  # type: ignore[assignment]
        return self._readers[key]

    def _find(self, repo: str, commit: str) -> Callable[[str], bytes | None] | None:
        for cand in _candidates(repo, self.roots):
            gd = _git_dir(cand)
            if gd is not None:
                g = self._git.setdefault(gd, _GitReader(gd))
                if g.has_commit(commit):
                    return lambda p, g=g: g.read(commit, p)
        # a plain folder named after the repository (an unpacked archive): md5 still decides
        for cand in _candidates(repo, self.roots, itself=False):
            if _git_dir(cand) is None:
                return lambda p, root=cand: (root / p).read_bytes() if (root / p).is_file() else None
        return None

    def close(self) -> None:
        for g in self._git.values():
            g.close()


# --------------------------------------------------------------------------------------------------------------
# stage and pin
# --------------------------------------------------------------------------------------------------------------
@dataclass
class StageReport(RunCounts):
    """Counts of one ``stage`` run (``already``: files staged by an earlier run, kept)."""

    already: int = 0


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def stage(
    rows: list[SourceFile],
    roots: list[str | Path],
    out: str | Path,
    on_error: Callable[[str], None] = lambda msg: None,
) -> StageReport:
    """Copy every row's file out of ``roots`` into ``out/<path>``, verify its md5 and write ``out/labels.csv``.

    A file already staged with the right md5 is kept (a second run resumes); a missing repository, commit or file
    and an md5 mismatch are one-line errors through ``on_error`` and never stop the others. ``labels.csv`` lists
    only the files that are in place, so an import never meets a half-staged set.
    """
    if not roots:
        raise UsageError("stage: give at least one --from folder (a checkout, a mirror or a folder of mirrors)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loc = _Locator([Path(r) for r in roots])
    rep = StageReport(total=len(rows))
    staged: list[SourceFile] = []
    try:
        for r in rows:
            dst = out / r.path
            if dst.is_file() and _md5(dst.read_bytes()) == r.md5:
                rep.already += 1
                staged.append(r)
                continue
            read = loc.reader(r.source_repo, r.commit)
            if read is None:
                rep.failed += 1
                on_error(f"{r.path}: {r.source_repo}@{r.commit[:12]} not found under {', '.join(map(str, roots))}")
                continue
            data = read(r.source_path)
            if data is None:
                rep.failed += 1
                on_error(f"{r.path}: {r.source_path} is not in {r.source_repo}@{r.commit[:12]}")
                continue
            if _md5(data) != r.md5:
                rep.failed += 1
                on_error(f"{r.path}: md5 {_md5(data)} of {r.source_repo}@{r.commit[:12]}:{r.source_path} "
                         f"differs from the pinned {r.md5} (changed file or a git-lfs pointer)")
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".part")
            tmp.write_bytes(data)
            tmp.replace(dst)
            rep.written += 1
            staged.append(r)
    finally:
        loc.close()
        write_source_list(staged, out / "labels.csv")
    return rep


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "file"


def pin(
    root: str | Path, repo: str, commit: str, folder: str, set_name: str, binary: str, label: str,
    suffixes: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp"),
) -> list[SourceFile]:
    """Rows for every file under ``folder`` of ``repo`` at ``commit`` (read from the checkout or mirror ``root``),
    staged as ``set_name/<file name>``: the way a new source enters a source list."""
    gd = _git_dir(Path(root))
    if gd is None:
        raise UsageError(f"{root}: not a git checkout or mirror")
    r = subprocess.run(
        ["git", "--git-dir", str(gd), "ls-tree", "-r", "-z", "--name-only", commit, "--", folder],
        capture_output=True,
    )
    if r.returncode != 0:
        raise DataError(f"{root}: cannot list {folder!r} at {commit}: {r.stderr.decode().strip()}")
    names = sorted(n for n in r.stdout.decode().split("\0") if n and n.lower().endswith(suffixes))
    if not names:
        raise DataError(f"{repo}@{commit[:12]}:{folder}: no files ending in {', '.join(suffixes)}")
    g = _GitReader(gd)
    rows = []
    try:
        for n in names:
            data = g.read(commit, n)
            if data is None:
                raise DataError(f"{repo}@{commit[:12]}: cannot read {n}")
            rows.append(SourceFile(
                path=f"{set_name}/{_slug(PurePosixPath(n).name)}", binary=binary, label=label, set=set_name,
                source_repo=repo, commit=commit, source_path=n, md5=_md5(data), bytes=len(data),
            ))
    finally:
        g.close()
    return rows
