"""The ``forensics`` root: fast, torch-free help, version, lazy subcommands with examples, doctor end to end."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import click
import pytest

import cli
from forensics import __version__


def _py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_help_lists_groups_without_importing_torch() -> None:
    r = _py(
        "import sys, cli; rc = cli.main(['--help']); "
        "print('HEAVY', sorted(m for m in ('torch', 'cv2', 'av', 'facenet_pytorch') if m in sys.modules), rc)"
    )
    assert r.returncode == 0, r.stderr
    for name in cli.COMMANDS:
        assert name in r.stdout
    assert "HEAVY [] 0" in r.stdout


def test_doctor_help_is_torch_free() -> None:
    r = _py("import sys, cli; cli.main(['doctor', '--help']); print('TORCH', 'torch' in sys.modules)")
    assert "Example: forensics doctor" in r.stdout and "TORCH False" in r.stdout


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"forensics, version {__version__}"


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["no-such-command"]) == 2
    assert "no-such-command" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_command_has_help_with_example(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = cli.COMMANDS[name][0].split(":")[0]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            pytest.skip(f"{module} is not written yet")
        raise
    assert cli.main([name, "--help"]) == 0
    assert "Example:" in capsys.readouterr().out


@click.command()
@click.argument("path")
def _load_cmd(path: str) -> None:
    """Test-only command: load one image."""
    from forensics_core.media import load_image

    load_image(path)


def test_media_error_is_one_line_exit_2(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ForensicsError raised inside a command becomes ``error: <file>: <cause>`` and exit code 2."""
    bad = tmp_path / "x.jpg"
    bad.write_text("not an image")
    monkeypatch.setitem(cli.COMMANDS, "load-test", (f"{__name__}:_load_cmd", "test only"))
    assert cli.main(["load-test", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: content is a text file") and err.count("\n") == 1


@pytest.mark.slow
def test_doctor_json_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    """Every real check (torch import, MTCNN weights) through the CLI; in-process to pay for torch only once."""
    rc = cli.main(["doctor", "--json"])
    out = json.loads(capsys.readouterr().out)
    by = {c["name"]: c for c in out["checks"]}
    assert {"python", "torch", "cuda", "opencv", "ffmpeg", "mtcnn", "default-model", "shared-data"} <= set(by)
    assert by["mtcnn"]["ok"], by["mtcnn"]["detail"]
    assert rc == (0 if out["ok"] else 1)
    assert all(c["ok"] for c in out["checks"] if c["essential"]) == out["ok"]


def test_one_set_parser_for_every_command() -> None:
    """``--set KEY=VALUE`` is parsed in one place (``forensics_core.config.parse_sets``) for gan and detector
    commands."""
    from forensics_core.config import parse_sets
    from forensics_core.errors import UsageError

    assert parse_sets(["lr = 1e-3", "ch=16", "name=a=b"]) == {"lr": "1e-3", "ch": "16", "name": "a=b"}
    assert parse_sets(("widths=[16,32]", "dropout=0.1", "with_rgb=true", "act=gelu"), json_values=True) == {
        "widths": (16, 32), "dropout": 0.1, "with_rgb": True, "act": "gelu"
    }
    for bad in ("lr", "=5"):
        with pytest.raises(UsageError, match="expected key=value"):
            parse_sets([bad])
    import detectors.cli
    import generators.train

    assert detectors.cli.parse_sets is parse_sets and not hasattr(detectors.cli, "_parse_set")
    assert not hasattr(generators.train, "parse_sets")  # gan train calls forensics_core.config.parse_sets too


def test_one_value_parser_for_every_command() -> None:
    """Numbers on a command line read the same everywhere: degradation chains, ``gan`` family options and ``--set``
    all go through ``forensics_core.config.parse_value`` (plain: int, float, else text; ``json_values``: JSON, else
    text)."""
    from forensics_core.config import parse_value
    from forensics_core.degrade import parse_chain
    from generators.cli import _extra_kwargs

    assert [parse_value(v) for v in ("75", "0.5", "1e-3", "area", "true", "[1,2]")] == [
        75, 0.5, 1e-3, "area", "true", "[1,2]"
    ]
    assert [parse_value(v, json_values=True) for v in ("75", "0.5", "true", "[1,2]", "gelu", "null")] == [
        75, 0.5, True, (1, 2), "gelu", None
    ]
    assert dict(parse_chain("jpeg:q=75|resize:scale=0.5,interp=area").ops[1].params) == {
        "scale": 0.5, "interp": "area"
    }
    assert _extra_kwargs(["--steps", "50", "--guidance=3.5", "--region", "eyes", "--flag"]) == {
        "steps": 50, "guidance": 3.5, "region": "eyes", "flag": "true"
    }
    import forensics_core.degrade
    import generators.cli

    assert not hasattr(forensics_core.degrade, "_parse_value") and not hasattr(generators.cli, "_number")


def test_choice_options_read_the_registries_they_list() -> None:
    """``--augment``, ``--group-by``, ``--store``, ``--label`` / ``--binary`` (and the other registry-backed choices)
    take their names from the registry or table they name, so a new entry is accepted without a CLI edit."""
    from click import Group

    from detectors.augment import AUGMENT_PRESETS, DELIVERY_PRESETS
    from detectors.calibration import calibrator_names
    from detectors.cli import detector
    from detectors.evaluate import GROUP_BY
    from forensics.commands.data import data
    from forensics.commands.faces import faces
    from forensics_core.clirun import RegistryChoice, registry_names
    from forensics_core.dataset import LABELS
    from forensics_core.faces.detectors import FACE_DETECTORS
    from forensics_core.importers import STORES

    def choices(group: Group, command: str, option: str) -> tuple[str, ...]:
        (param,) = [p for p in group.commands[command].params if p.name == option]
        assert isinstance(param.type, RegistryChoice), f"{command} --{option} repeats a list by hand"
        return tuple(param.type.choices)

    assert choices(detector, "train", "augment") == tuple(AUGMENT_PRESETS)
    assert choices(detector, "train", "delivery") == tuple(DELIVERY_PRESETS)
    assert choices(detector, "train", "calibration") == tuple(calibrator_names())
    assert choices(detector, "eval", "group_by") == tuple(GROUP_BY)
    assert choices(data, "import", "store") == STORES
    assert choices(data, "pin", "binary") == choices(faces, "extract", "label") == LABELS
    assert registry_names("forensics_core.faces.detectors:FACE_DETECTORS") == FACE_DETECTORS.names()
    assert RegistryChoice(lambda: ["a", "b"]).choices == ("a", "b")
