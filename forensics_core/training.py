"""The one training loop every trainer runs: steps up to a target, a run budget, periodic tasks, early stopping.

The GAN trainer (:mod:`generators.train`), the video generators (:mod:`generators.video.train`) and the detector
trainer (:mod:`detectors.train`) each supply what only they know: a step callable (one optimiser update, its own
batches, losses and random draws) and the periodic tasks (a ``metrics.jsonl`` line, a sample grid, a checkpoint in
that trainer's layout from :mod:`forensics_core.runs`). :func:`run_steps` owns the order: step, count, decide whether
this was
the last step (the step target or the :class:`Budget`), then run every task that is due. Keeping that order in one
place is what makes runs resume exactly: a task sees the same step numbers whether or not the run was interrupted.
The detector trainer wraps it in epochs (validation, :class:`EarlyStop`). Nothing here imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: a periodic task: ``fn(step, logs, last)`` with the step count done, the last step's return value and whether
#: it was the run's (or this stretch's) last step
Task = Callable[[int, Any, bool], None]


@dataclass
class Every:
    """Run ``fn`` after every ``n``-th step and, when ``at_last``, after the last step too (so a run that stops
    early on its budget still logs and checkpoints where it stopped)."""

    n: int
    fn: Task
    at_last: bool = True

    def due(self, step: int, last: bool) -> bool:
        return step % self.n == 0 or (last and self.at_last)


@dataclass
class Budget:
    """When a run stops besides its step target: ``max_minutes`` of wall clock (counting ``spent_s``, what earlier
    sessions of a resumed run used) and ``max_steps`` optimiser steps (``None`` / 0: no limit)."""

    max_minutes: float | None = None
    max_steps: int | None = None
    spent_s: float = 0.0
    #: ``time.time()`` when this session started (trainers start the clock before loading data: it counts)
    started: float = field(default_factory=time.time)

    @property
    def deadline(self) -> float | None:
        return self.started + 60 * self.max_minutes - self.spent_s if self.max_minutes else None

    def elapsed_s(self) -> float:
        """Seconds the whole run has used, earlier sessions included (what a checkpoint records)."""
        return self.spent_s + time.time() - self.started

    def out_of_time(self) -> bool:
        deadline = self.deadline
        return deadline is not None and time.time() > deadline

    def out_of_steps(self, step: int) -> bool:
        return bool(self.max_steps) and step >= self.max_steps  # type: ignore[operator]

    def stop_reason(self, step: int) -> str | None:
        """``max-minutes`` / ``max-steps`` once either is spent (time first), else ``None``."""
        if self.out_of_time():
            return "max-minutes"
        if self.out_of_steps(step):
            return "max-steps"
        return None


def run_steps(
    step: int,
    steps: int,
    train_step: Callable[[int], Any],
    tasks: Sequence[Every] = (),
    stop: Callable[[int], bool] | None = None,
) -> int:
    """Train from ``step`` (steps done so far) up to ``steps`` and return the steps done.

    After each ``train_step(step)`` the count goes up; the step is the last when it reaches ``steps`` or ``stop``
    (asked only before the target: a DDP trainer's ``stop`` is a collective) says so; then every due task runs in
    the order given. Why tasks and not a callback per event: the trainers differ in what they do, not when."""
    while step < steps:
        logs = train_step(step)
        step += 1
        last = step == steps or (stop is not None and stop(step))
        for task in tasks:
            if task.due(step, last):
                task.fn(step, logs, last)
        if last:
            break
    return step


@dataclass
class EarlyStop:
    """Early stopping on a validation score where higher is better (the detector's val AUC): ``best`` so far and
    ``bad`` evaluations since it improved; the run stops once ``bad`` reaches ``patience``."""

    patience: int
    best: float = -1.0
    bad: int = 0

    def update(self, score: float) -> bool:
        """Record one evaluation; ``True`` when it is a new best (the caller keeps those weights)."""
        if score > self.best:
            self.best, self.bad = score, 0
            return True
        self.bad += 1
        return False

    @property
    def stop(self) -> bool:
        return self.bad >= self.patience
