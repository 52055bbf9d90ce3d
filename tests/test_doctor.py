"""forensics doctor: registered checks, typed results, exit codes, JSON output."""

from __future__ import annotations

import json

import pytest

import cli
from forensics.commands import doctor as doc
from forensics_core.registry import Registry

ESSENTIAL = {"python", "torch", "opencv", "ffmpeg", "image-formats", "mtcnn"}
OPTIONAL = {"platform", "cuda", "mps", "default-model", "shared-data"}


def test_checks_are_registered_with_essential_flags() -> None:
    entries = {e.name: e.meta["essential"] for e in doc.DOCTOR_CHECKS.entries()}
    assert set(entries) >= ESSENTIAL | OPTIONAL
    assert all(entries[n] for n in ESSENTIAL) and not any(entries[n] for n in OPTIONAL)


@pytest.mark.parametrize("name", ["python", "platform", "opencv", "ffmpeg", "image-formats"])
def test_cheap_checks_pass_here(name: str) -> None:
    r = doc.run_check(name)
    assert isinstance(r, doc.CheckResult) and r.name == name
    assert r.ok, r.detail
    assert r.detail and "\n" not in r.detail and r.status == "ok"


def test_ffmpeg_check_reports_h264(capsys: pytest.CaptureFixture[str]) -> None:
    r = doc.run_check("ffmpeg")
    assert r.data["codecs"]["libx264 encoder"] and r.data["codecs"]["h264 decoder"]
    assert r.data["pyav"] and r.data["ffmpeg"]


def test_shared_data_check_lists_sets(shared_data) -> None:
    r = doc.run_check("shared-data")
    assert r.ok and r.data["path"] == str(shared_data)
    assert "videos/facenet-pytorch" in r.data["sets"]


def test_json_output_and_exit_code_zero(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["doctor", "--json", "--only", "p*"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["ok"] is True
    assert [c["name"] for c in out["checks"]] == ["python", "platform"]
    assert set(out["checks"][0]) >= {"name", "ok", "detail", "essential", "status", "data"}


def test_failures_set_exit_code_and_never_raise(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reg: Registry = Registry("doctor check")

    @reg.register("broken-dep", order=1, essential=True)
    def _broken():
        raise ImportError("No module named 'nothere'")

    @reg.register("optional-gpu", order=2, essential=False)
    def _gpu():
        return False, "no GPU", {}

    monkeypatch.setattr(doc, "DOCTOR_CHECKS", reg)
    assert cli.main(["doctor", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    by = {c["name"]: c for c in out["checks"]}
    assert out["ok"] is False
    assert by["broken-dep"]["status"] == "FAIL" and "ImportError" in by["broken-dep"]["detail"]
    assert by["optional-gpu"]["status"] == "warn"

    reg2: Registry = Registry("doctor check")
    reg2.add("optional-gpu", _gpu, order=1, essential=False)
    monkeypatch.setattr(doc, "DOCTOR_CHECKS", reg2)
    assert cli.main(["doctor"]) == 0  # only an optional check failed: still usable
    assert "warn" in capsys.readouterr().out


def test_unknown_only_pattern_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--only", "nothing-like-this"]) == 2
    assert capsys.readouterr().err.startswith("error: --only")


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "python\tessential" in lines and "cuda\toptional" in lines
