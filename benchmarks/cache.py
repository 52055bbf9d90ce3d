"""Score cache: one row per (model hash, item sha256, perturbation) so benchmark re-runs are incremental.

Why SQLite: it is in the standard library, a single file, safe under a killed process (each batch is one
transaction, so a kill loses at most the batch being scored) and fast at the point lookups a re-run makes. Keys are
content hashes, never paths: moving a dataset or renaming a model file keeps its cached scores, and a retrained
model (new weights, new hash) can never be served stale ones. Many runs may share one cache file (``--cache``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from forensics_core.errors import DataError
from forensics_core.plumbing import Closing

SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    model TEXT NOT NULL,
    item TEXT NOT NULL,
    perturbation TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (model, item, perturbation)
) WITHOUT ROWID;
"""


class ScoreCache(Closing):
    """Persistent ``(model, item, perturbation) -> P(fake)`` store with batched, transactional writes.

    ``hits`` and ``misses`` count lookups made through :meth:`get_many` in this process; the runner reports them so
    a user can see that a re-run computed nothing new.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path}: not a usable score cache ({exc})") from None
        self.hits = 0
        self.misses = 0
        self.written = 0

    def get_many(self, model: str, items: Sequence[str], perturbation: str) -> dict[str, float]:
        """Cached scores for ``items`` (missing keys are absent from the result)."""
        out: dict[str, float] = {}
        chunk = 500  # SQLite's bound-parameter limit is 999 on old builds
        for i in range(0, len(items), chunk):
            part = list(items[i : i + chunk])
            marks = ",".join("?" * len(part))
            cur = self._db.execute(
                f"SELECT item, score FROM scores WHERE model=? AND perturbation=? AND item IN ({marks})",
                (model, perturbation, *part),
            )
            out.update(cur.fetchall())
        self.hits += len(out)
        self.misses += len(set(items)) - len(out)
        return out

    def put_many(self, model: str, perturbation: str, scores: Iterable[tuple[str, float]]) -> None:
        """Store one batch in one transaction: a kill mid-batch leaves the cache as it was before the batch."""
        rows = [(model, item, perturbation, float(s)) for item, s in scores]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)", rows)
        self.written += len(rows)

    def count(self, model: str | None = None) -> int:
        if model is None:
            return int(self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM scores WHERE model=?", (model,)).fetchone()[0])

    def close(self) -> None:
        self._db.close()
