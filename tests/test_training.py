"""forensics_core.training: the one step loop the GAN, video and detector trainers share (order of steps and tasks, the
budget's stopping reasons, early stopping), and a video run interrupted and resumed equals an uninterrupted one."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from forensics_core.training import Budget, EarlyStop, Every, run_steps


def test_run_steps_runs_due_tasks_in_order_and_at_the_last_step() -> None:
    seen: list[tuple] = []
    done = run_steps(1, 5, lambda s: s * 10, [
        Every(2, lambda s, logs, last: seen.append(("log", s, logs, last))),
        Every(3, lambda s, logs, last: seen.append(("ckpt", s, logs, last)), at_last=False),
    ])
    assert done == 5
    assert seen == [("log", 2, 10, False), ("ckpt", 3, 20, False), ("log", 4, 30, False), ("log", 5, 40, True)]
    assert run_steps(5, 5, lambda s: 1 / 0) == 5  # nothing left to do: no step runs


def test_run_steps_stop_ends_the_run_early_and_is_not_asked_at_the_target() -> None:
    asked: list[int] = []
    seen: list[int] = []

    def stop(step: int) -> bool:
        asked.append(step)
        return step == 3

    assert run_steps(0, 10, lambda s: None, [Every(100, lambda s, logs, last: seen.append(s))], stop=stop) == 3
    assert asked == [1, 2, 3] and seen == [3]  # the budget's last step still logs and checkpoints
    asked.clear()
    assert run_steps(0, 2, lambda s: None, stop=stop) == 2 and asked == [1]


def test_budget_stop_reasons_and_early_stop() -> None:
    assert Budget().stop_reason(10**6) is None and Budget().deadline is None
    assert Budget(max_steps=4).stop_reason(3) is None and Budget(max_steps=4).stop_reason(4) == "max-steps"
    spent = Budget(max_minutes=1.0, max_steps=4, spent_s=61.0)  # earlier sessions used the whole minute
    assert spent.stop_reason(4) == "max-minutes" and spent.elapsed_s() >= 61.0
    early = EarlyStop(patience=2)
    assert [early.update(a) for a in (0.6, 0.7, 0.7, 0.65)] == [True, True, False, False]
    assert early.stop and early.best == 0.7 and early.bad == 2


def test_swap_interrupted_and_resumed_equals_uninterrupted(face_clips, tmp_path) -> None:
    from generators.video.swap import SwapConfig
    from generators.video.train import train_swap

    a, b = face_clips
    full = train_swap(a, b, tmp_path / "full", SwapConfig(size=16, width=8, latent=16, batch=2, steps=4), save_every=2)
    half = train_swap(a, b, tmp_path / "half", SwapConfig(size=16, width=8, latent=16, batch=2, steps=2), save_every=2)
    cfg = SwapConfig(size=16, width=8, latent=16, batch=2, steps=4)
    assert train_swap(a, b, tmp_path / "half", cfg, resume=str(half), save_every=2) == half
    x, y = load_file(full / "checkpoint.safetensors"), load_file(half / "checkpoint.safetensors")
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)  # weights, optimiser, RNG state

    def rows(run):
        return [{k: v for k, v in json.loads(s).items() if k != "steps_per_s"}
                for s in (run / "metrics.jsonl").read_text().splitlines()]

    assert rows(full) == rows(half) and [r["step"] for r in rows(full)] == [2, 4]
