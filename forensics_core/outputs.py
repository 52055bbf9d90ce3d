"""Where scan results go: a table for people, ``--json`` / ``--jsonl`` / ``--csv`` for machines, ``--resume``.

Each format is a :class:`Sink` registered in :data:`SINKS` (``open`` -> ``write(result)`` per file -> ``close``),
so the CLI writes every requested format in one pass over the results without holding them in memory:

* ``jsonl``: one JSON object per line, flushed per line, so a pipeline can ``tail -f`` it and a killed run
  leaves at most one partial last line (``--resume`` trims it and appends).
* ``json``: one array, streamed element by element (valid JSON once the scan ends).
* ``csv``: one row per file with the file-level fields; cells that a spreadsheet would run as a formula are
  prefixed with ``'`` (CSV injection), and control characters in names are escaped.
* ``table``: a rich table printed at the end (only the display columns are kept per file).

File names are untrusted input: :func:`safe_text` escapes control characters (terminal escape sequences, new
lines) before a name reaches a terminal or a CSV cell. JSON keeps the exact path (it is escaped by JSON itself).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import suppress
from typing import Any, TextIO

from forensics_core.errors import UsageError
from forensics_core.registry import Registry

CSV_FIELDS = (
    "path", "sha256", "status", "verdict", "fake_probability", "n_faces", "no_face", "media_type", "frames_sampled",
    "duplicate_of", "model", "model_sha256", "threshold_policy", "threshold", "total_ms", "error",
)  # fmt: skip


def safe_text(s: Any, limit: int = 300) -> str:
    """A printable, one-line version of an untrusted string: control characters become ``\\xNN`` escapes."""
    out = []
    for ch in str(s):
        if unicodedata.category(ch)[0] == "C":
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_cell(s: Any) -> str:
    """:func:`safe_text` plus CSV-injection protection (a cell starting with = + - @ is not a formula)."""
    text = safe_text(s, limit=10_000)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text
    return text


def display_path(path: str) -> str:
    """Relative to the working directory when inside it (shorter tables), escaped for the terminal."""
    with suppress(ValueError):
        rel = os.path.relpath(path)
        if not rel.startswith(".."):
            path = rel
    return safe_text(path, limit=80)


class Sink(ABC):
    """One output format. ``target`` is a path or ``-`` (stdout); ``append`` continues a file (``--resume``)."""

    def __init__(self, target: str, append: bool = False) -> None:
        self.target = target
        self.append = append
        self._fh: TextIO | None = None
        self._own = False

    def _open(self) -> TextIO:
        if self._fh is None:
            if self.target == "-":
                self._fh = sys.stdout
            else:
                parent = os.path.dirname(os.path.abspath(self.target))
                os.makedirs(parent, exist_ok=True)
                self._fh = open(self.target, "a" if self.append else "w", encoding="utf-8", newline="")  # noqa: SIM115
                self._own = True
        return self._fh

    @abstractmethod
    def write(self, result: Any) -> None: ...

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            if self._own:
                self._fh.close()
        self._fh = None


SINKS: Registry[type[Sink]] = Registry("output format", "forensics.scan_outputs", ("forensics_core.outputs",))


@SINKS.register("jsonl", description="one JSON object per file and line, flushed per line")
class JsonlSink(Sink):
    def write(self, result: Any) -> None:
        fh = self._open()
        fh.write(json.dumps(result.to_dict(), ensure_ascii=False, allow_nan=False) + "\n")
        fh.flush()


@SINKS.register("json", description="one JSON array of all records")
class JsonSink(Sink):
    def __init__(self, target: str, append: bool = False) -> None:
        if append:
            raise UsageError("--resume appends JSONL; a JSON array cannot be appended (use --jsonl)")
        super().__init__(target)
        self._n = 0

    def write(self, result: Any) -> None:
        fh = self._open()
        fh.write(("[\n" if self._n == 0 else ",\n") + json.dumps(result.to_dict(), ensure_ascii=False))
        self._n += 1

    def close(self) -> None:
        fh = self._open()
        fh.write("[]\n" if self._n == 0 else "\n]\n")
        super().close()


@SINKS.register("csv", description="one row per file with the file-level fields")
class CsvSink(Sink):
    def __init__(self, target: str, append: bool = False) -> None:
        super().__init__(target, append)
        self._writer: Any = None

    def write(self, result: Any) -> None:
        if self._writer is None:
            fh = self._open()
            self._writer = csv.writer(fh)
            if not (self.append and fh.tell() > 0):
                self._writer.writerow(CSV_FIELDS)
        row = [safe_cell(v) if isinstance(v, str) else ("" if v is None else v) for v in csv_row(result)]
        self._writer.writerow(row)


def csv_row(result: Any) -> list[Any]:
    d = result.to_dict()
    return [
        d["path"], d["sha256"], d["status"], d["verdict"], d["fake_probability"], d["n_faces"], d["no_face"],
        d["media_type"], d["frames_sampled"], d["duplicate_of"], d["model"].get("name"), d["model"].get("sha256"),
        d["threshold"].get("policy"), d["threshold"].get("value"), d["timings_ms"].get("total"), d["error"],
    ]  # fmt: skip


@SINKS.register("table", description="a table for people, printed when the scan ends")
class TableSink(Sink):
    MAX_ROWS = 2000  # beyond this the table shows the flagged and failed files only

    def __init__(self, target: str = "-", append: bool = False) -> None:
        super().__init__(target, append)
        self.rows: list[tuple[str, ...]] = []
        self.counts = {"ok": 0, "flagged": 0, "error": 0, "duplicate": 0}

    def write(self, result: Any) -> None:
        self.counts["ok" if result.status == "ok" else "error"] += 1
        self.counts["flagged"] += int(result.flagged)
        self.counts["duplicate"] += int(result.duplicate_of is not None)
        if len(self.rows) >= self.MAX_ROWS and result.status == "ok" and not result.flagged:
            return
        if result.status != "ok":
            verdict, prob, faces = "ERROR", "", ""
            note = safe_text(result.error or "", limit=100)
        else:
            verdict = "FLAGGED" if result.flagged else "not flagged"
            prob = f"{result.fake_probability:.3f}" if result.fake_probability is not None else ""
            faces = "no face" if result.no_face else str(len(result.tracks) or len(result.faces))
            note = f"duplicate of {display_path(result.duplicate_of)}" if result.duplicate_of else ""
        self.rows.append((display_path(result.path), verdict, prob, faces, note))

    def close(self) -> None:
        from rich.console import Console
        from rich.table import Table

        console = Console(file=sys.stdout if self.target == "-" else open(self.target, "w", encoding="utf-8"))  # noqa: SIM115
        table = Table(title="forensics scan", show_lines=False, highlight=False)
        for col, just in (("file", "left"), ("verdict", "left"), ("P(fake)", "right"), ("faces", "right"),
                          ("note", "left")):  # fmt: skip
            table.add_column(col, justify=just, overflow="fold")
        for row in self.rows:
            style = "bold red" if row[1] == "FLAGGED" else ("yellow" if row[1] == "ERROR" else None)
            table.add_row(*row, style=style)
        console.print(table, markup=False) if self.rows else None
        c = self.counts
        console.print(
            f"{c['ok'] + c['error']} files: {c['flagged']} flagged, {c['ok'] - c['flagged']} not flagged, "
            f"{c['error']} errors, {c['duplicate']} duplicates",
            markup=False,
            highlight=False,
        )
        if self.target != "-":
            console.file.close()


def open_sinks(specs: Iterable[tuple[str, str]], append_to: str | None = None) -> list[Sink]:
    """``[("jsonl", "out.jsonl"), ("table", "-")]`` -> sinks; ``append_to`` names the file ``--resume`` continues."""
    sinks = []
    stdout_users = [fmt for fmt, target in specs if target == "-" and fmt != "table"]
    if len(stdout_users) > 1:
        raise UsageError(f"only one output can go to stdout ('-'), got {', '.join(stdout_users)}")
    for fmt, target in specs:
        cls = SINKS.get(fmt).obj
        append = append_to is not None and target != "-" and os.path.abspath(target) == os.path.abspath(append_to)
        sinks.append(cls(target, append=append))
    return sinks


# ---------------------------------------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------------------------------------
def read_done(path: str) -> set[tuple[str, str]]:
    """``(path, sha256)`` of every complete record in a JSONL results file (a partial last line is ignored).

    A record without a sha256 (a file that could not even be hashed: missing, a FIFO, a refused symlink) counts as
    ``(path, "")``, which is what such an input lists as again; it used to be left out, so every ``--resume``
    appended one more record for it.
    """
    done: set[tuple[str, str]] = set()
    if not os.path.exists(path):
        return done
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # the run was killed mid-line
            with suppress(json.JSONDecodeError, TypeError, KeyError):
                d = json.loads(line)
                if d.get("path"):
                    done.add((d["path"], d.get("sha256") or ""))
    return done


def trim_partial_line(path: str) -> int:
    """Cut a partial last line left by a killed run so appended records start on a fresh line; returns bytes cut."""
    if not os.path.exists(path):
        return 0
    with open(path, "rb+") as f:
        f.seek(0, io.SEEK_END)
        size = f.tell()
        if size == 0:
            return 0
        pos = size
        block = 65536
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                if keep < size:
                    f.truncate(keep)
                return size - keep
            pos = start
        f.truncate(0)
        return size
