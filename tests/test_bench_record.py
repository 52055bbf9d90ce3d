"""``benchmarks.record``: the one run record of the protocol runner and every side script."""

from __future__ import annotations

import json
import time

from benchmarks.record import (
    STARTED_FORMAT,
    ModelRef,
    RunRecord,
    command_line,
    model_ref,
    short_commit,
    start_record,
)


def test_start_record_names_command_commit_environment_and_model():
    from forensics_core.sysinfo import git_describe

    before = time.time()
    rec = start_record(command_line("benchmarks.x", ["--n", "3"]), model=ModelRef("m", "ab" * 32))
    assert rec.command == "python -m benchmarks.x --n 3"
    assert rec.commit == git_describe() and rec.dirty == rec.commit.endswith("-dirty")
    started = time.mktime(time.strptime(rec.started, STARTED_FORMAT)) - time.timezone
    assert before - 2 <= started <= time.time() + 1  # UTC, now
    env = rec.environment
    assert env["cpu_count"] >= 1 and env["python"] and env["machine"] and "torch" in env
    assert env["load_avg"] is None or len(env["load_avg"]) == 3
    d = json.loads(json.dumps(rec.to_dict()))  # a record is plain JSON
    assert d["model"] == {"name": "m", "weights_sha256": "ab" * 32} and d["commit"] == rec.commit


def test_record_lines_keep_the_committed_report_forms():
    """fuzz / kill_resume / faces_speed reports print these forms; committed results were written with them."""
    env = {"machine": "x86_64", "cpu_count": 2, "python": "3.11.7", "load_avg": [8.14, 8.05, 7.6]}
    rec = RunRecord(command="c", commit="abc1234-dirty", started="2026-12-04T19:48:05Z", environment=env)
    assert rec.date() == "2026-12-04 19:48 UTC"
    assert rec.machine() == "x86_64, 2 logical CPUs, Python 3.11.7"
    assert rec.load() == "8.1 / 8.1 / 7.6" and rec.dirty
    assert RunRecord(command="c", commit="abc1234", started=rec.started).load() == "n/a"


def test_model_ref_reads_the_card_unless_a_hash_is_given():
    card = {"name": "v14", "weights_sha256": "f2c1"}
    assert model_ref(card) == ModelRef("v14", "f2c1")
    assert model_ref(card, sha256="beef") == ModelRef("v14", "beef")


def test_serve_load_machine_keeps_its_committed_keys():
    from benchmarks.serve_load import machine_summary

    env = {"cpu_count": 2, "platform": "Linux-x", "python": "3.11.7", "load_avg": [1.0, 2.0, 3.0]}
    rec = RunRecord(command="c", commit="abc", started="2026-12-04T19:48:05Z", environment=env)
    assert machine_summary(rec) == {"cpus": 2, "platform": "Linux-x", "python": "3.11.7",
                                    "load_avg_at_start": [1.0, 2.0, 3.0]}  # fmt: skip


def test_short_commit_never_cuts_the_dirty_flag():
    assert short_commit("e8bc0d7-dirty") == "e8bc0d7-dirty"  # a describe string: whole
    assert short_commit("ea247b657a7938221a8a6aa36c45945b19ac9cfe") == "ea247b657a79"  # an old full hash: 12
    assert short_commit("unknown") == "unknown"
