"""The run record every benchmark writes: what was run, from which commit, on what machine, with which model, when.

A number in ``benchmarks/results/`` is only worth keeping if it can be traced back to the code and the machine that
made it. The registered protocols (``benchmarks.runner``) and every side script (``transfer``, ``serve_load``,
``fuzz_scan``, ``kill_resume``, ``scan_speed``, ``faces_speed``, ``video_generators``) take that trace here, once,
when the run starts (the code that scores is the code of that moment; the load average is the load the run met):

- ``command``: ``python -m benchmarks.NAME ARGS`` as typed;
- ``commit``: ``git describe --always --dirty`` (``-dirty``: tracked files differed, so the commit alone may not
  reproduce the number; ``unknown`` outside a checkout), from :func:`forensics_core.sysinfo.git_describe`;
- ``environment``: :func:`forensics_core.sysinfo.environment` (CPU, core count, platform, Python / torch versions,
threads,
  GPU, load average at the start);
- ``model``: name and weights sha256 of the model file scored, where a model is involved;
- ``started``: UTC, ISO 8601.

The facts themselves are collected in ``forensics_core.sysinfo`` (the generator suite, below this layer, needs them
too); this
module only assembles them. Committed results keep the keys they were written with (``commit`` / ``git_commit``,
``machine``, ``date``...): each script fills those keys from its record, so old and new files read the same.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from forensics_core.sysinfo import environment, git_describe

__all__ = ["ModelRef", "RunRecord", "command_line", "model_ref", "short_commit", "start_record"]

#: how ``started`` is written (the form ``run.json`` has always used)
STARTED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class ModelRef:
    """The exact model a number was measured with: two files with one name are two models."""

    name: str
    weights_sha256: str


@dataclass
class RunRecord:
    command: str
    commit: str
    started: str
    environment: dict[str, Any] = field(default_factory=dict)
    model: ModelRef | None = None

    @property
    def dirty(self) -> bool:
        """True when tracked files differed from ``commit``: the number may not be reproducible from it alone."""
        return self.commit.endswith("-dirty")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def date(self) -> str:
        """``started`` as the reports print it: ``2026-12-04 19:48 UTC``."""
        return time.strftime("%Y-%m-%d %H:%M UTC", time.strptime(self.started, STARTED_FORMAT))

    def machine(self) -> str:
        """One line for a report: ``x86_64, 2 logical CPUs, Python 3.11.7``."""
        env = self.environment
        return f"{env.get('machine')}, {env.get('cpu_count')} logical CPUs, Python {env.get('python')}"

    def load(self) -> str:
        """The load averages at the start, ``8.1 / 8.1 / 7.6`` (``n/a`` where the OS has none)."""
        avg = self.environment.get("load_avg")
        return " / ".join(f"{x:.1f}" for x in avg) if avg else "n/a"


def short_commit(commit: str) -> str:
    """A commit as reports print it: a full 40-hex hash (results written before the record used them) cut to 12,
    a ``git describe`` string kept whole, so its ``-dirty`` flag is never cut off."""
    return commit[:12] if len(commit) == 40 and "-" not in commit else commit


def command_line(prog: str, argv: list[str] | None = None) -> str:
    """``python -m PROG ARGS``: ``argv`` as given to ``main`` (``None``: this process's own arguments)."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python -m", prog, *args])


def model_ref(card: dict[str, Any], sha256: str | None = None) -> ModelRef:
    """A :class:`ModelRef` from a model card (``model.json``); ``sha256`` overrides the card's ``weights_sha256``
    where the caller hashed the weights itself."""
    return ModelRef(name=str(card.get("name", "")), weights_sha256=sha256 or str(card.get("weights_sha256", "")))


def start_record(command: str, model: ModelRef | None = None) -> RunRecord:
    """The record of a run starting now: call it before any work (see the module docstring for why). ``command``
    is usually :func:`command_line`'s; the protocol runner passes the ``forensics bench run ...`` it was given."""
    return RunRecord(
        command=command,
        commit=git_describe(),
        started=time.strftime(STARTED_FORMAT, time.gmtime()),
        environment=environment(),
        model=model,
    )
