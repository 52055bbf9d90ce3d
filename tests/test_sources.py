"""Pinned training sources: rows from a git checkout (``pin``), files staged from it with every md5 checked
(``stage``), one-line errors for a missing commit, file or a changed byte, and a staged folder the ``labels-csv``
importer reads."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from forensics_core.errors import DataError, UsageError
from forensics_core.sources import SourceFile, pin, read_source_list, stage, write_source_list


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "HOME": str(repo), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


@pytest.fixture()
def repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository ``owner+name`` (the mirror layout) with two images in a folder, one with a space in its name."""
    r = tmp_path / "mirrors" / "owner+faces"
    (r / "imgs").mkdir(parents=True)
    (r / "imgs" / "a (1).png").write_bytes(b"\x89PNG fake one")
    (r / "imgs" / "b.jpg").write_bytes(b"\xff\xd8 fake two")
    (r / "README.md").write_text("not an image")
    _git(r, "init", "-q")
    _git(r, "add", "-A")
    _git(r, "commit", "-qm", "one")
    commit = _git(r, "rev-parse", "HEAD")
    (r / "imgs" / "b.jpg").write_bytes(b"changed later")  # the working tree moved on; the pin is the commit
    _git(r, "commit", "-qam", "two")
    return r, commit


def test_pin_then_stage_verifies_every_md5(tmp_path, repo):
    r, commit = repo
    rows = pin(r, "owner/faces", commit, "imgs", "diffusion_faces/sdx_owner", "fake", "fake:test")
    assert [x.source_path for x in rows] == ["imgs/a (1).png", "imgs/b.jpg"]
    assert rows[0].path == "diffusion_faces/sdx_owner/a_1_.png"
    assert rows[1].md5 == hashlib.md5(b"\xff\xd8 fake two").hexdigest()
    write_source_list(rows, tmp_path / "list.csv")
    assert read_source_list(tmp_path / "list.csv") == rows
    errors: list[str] = []
    rep = stage(rows, [tmp_path / "mirrors"], tmp_path / "out", errors.append)
    assert (rep.written, rep.failed, errors) == (2, 0, [])
    assert (tmp_path / "out" / rows[1].path).read_bytes() == b"\xff\xd8 fake two"  # the pinned bytes, not HEAD's
    again = stage(rows, [r], tmp_path / "out")  # a checkout given directly; everything already in place
    assert (again.already, again.written) == (2, 0)
    # the staged folder is a labels-csv source: the importer's layout reads it with class, set and md5
    from forensics_core.importers import LabelsCsvLayout, LayoutOptions

    items = list(LabelsCsvLayout().items(tmp_path / "out", LayoutOptions()))
    assert {(i.label, i.source, i.family, i.method) for i in items} == {
        ("fake", "diffusion_faces/sdx_owner", "sdx", "diffusion")}
    assert all(i.md5 for i in items)


def test_stage_reports_each_problem_and_stages_the_rest(tmp_path, repo):
    r, commit = repo
    good, other = pin(r, "owner/faces", commit, "imgs", "x/y_z", "real", "real:test")
    changed = SourceFile(**{**other.__dict__, "md5": "0" * 32})
    missing = SourceFile(**{**other.__dict__, "path": "x/y_z/gone.png", "source_path": "imgs/gone.png"})
    elsewhere = SourceFile(**{**other.__dict__, "path": "x/y_z/c.png", "source_repo": "someone/else"})
    errors: list[str] = []
    rep = stage([good, changed, missing, elsewhere], [tmp_path / "mirrors"], tmp_path / "out", errors.append)
    assert (rep.written, rep.failed) == (1, 3)
    assert any("differs from the pinned" in e for e in errors)
    assert any("imgs/gone.png is not in owner/faces" in e for e in errors)
    assert any("someone/else" in e and "not found" in e for e in errors)
    assert read_source_list(tmp_path / "out" / "labels.csv") == [good]  # only what is in place is listed


def test_source_rows_are_checked(tmp_path, repo):
    r, commit = repo
    row = pin(r, "owner/faces", commit, "imgs", "x/y_z", "real", "r")[0].__dict__
    for bad in ({"path": "../escape.png"}, {"binary": "maybe"}, {"commit": "abc"}, {"md5": "xyz"}):
        with pytest.raises(DataError):
            SourceFile(**{**row, **bad})
    with pytest.raises(UsageError, match="no such source list"):
        read_source_list("no-such-list")
    with pytest.raises(DataError, match="no files"):
        pin(r, "owner/faces", commit, "nothing-here", "x/y_z", "real", "r")


def test_the_shipped_list_pins_the_issue_sources():
    rows = read_source_list("sd-regularisation")
    by = {(x.source_repo, x.commit, x.binary) for x in rows}
    assert by == {
        ("djbielejeski/Stable-Diffusion-Regularization-Images-blonde_woman",
         "6e330fff0911c44f263e6913508133f947ffeac4", "fake"),
        ("djbielejeski/Stable-Diffusion-Regularization-Images-man_unsplash",
         "279c4a62da2a409c4e21137aef0ed192ec1b101e", "real"),
    }
    assert sum(x.binary == "fake" for x in rows) == 1000 and sum(x.binary == "real" for x in rows) == 394


def test_stage_command_exit_codes(tmp_path, repo):
    from cli import root

    r, commit = repo
    rows = pin(r, "owner/faces", commit, "imgs", "x/y_z", "real", "r")
    write_source_list([*rows, SourceFile(**{**rows[0].__dict__, "path": "x/y_z/q.png", "md5": "1" * 32})],
                      tmp_path / "l.csv")
    res = CliRunner().invoke(root, ["data", "stage", str(tmp_path / "l.csv"), "--from", str(tmp_path / "mirrors"),
                                    "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "2 staged" in res.output and "1 failed" in res.output
    out = CliRunner().invoke(root, ["data", "pin", str(r), "--repo", "owner/faces", "--commit", commit,
                                    "--folder", "imgs", "--set", "x/y_z", "--binary", "real", "--label", "r"])
    assert out.exit_code == 0 and out.output.splitlines()[0].startswith("path,binary,label,set")
    assert len(out.output.splitlines()) == 3
