"""The package layers, kept by tests: imports point down, every package imports on its own, nothing imports cli.py.

Layers, low to high (``docs/architecture.md`` draws them); the top-level package of a module is its layer::

    core (media, faces, dataset, importers, degrade, config, errors, ...)              rank 0
    generators                                                                          rank 1
    detectors                                                                           rank 2
    forensics: the scan product (pipeline, scanning, api, report, evidence, commands, serve, ...)   rank 3
    benchmarks                                                                          rank 4
    cli.py                                                                              nothing imports it

A module may import its own layer and the layers below it. The static check reads every ``.py`` with ``ast`` and
collects absolute imports at module level *and inside functions* (a lazy import is still a dependency: it only
moves the failure to run time).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "generators", "detectors", "forensics", "benchmarks")
RANK = {"core": 0, "generators": 1, "detectors": 2, "forensics": 3, "benchmarks": 4}

#: Known upward imports not fixed yet: (importing module, imported module) -> why. The test fails on any import
#: not listed here, and on a listed one that has gone (so the list only shrinks). Empty is the goal.
ALLOWED: dict[tuple[str, str], str] = {}


#: Trainers, and the model code that must load weights without them (STYLE.md: "model code never imports a
#: trainer"): the scan product counts as model code here, since a scan never trains.
TRAINERS = ("generators.train", "generators.video.train", "detectors.train")
MODEL_CODE = (
    "generators.base", "generators.checkpoints", "generators.diffusion", "generators.families", "generators.layers",
    "generators.registry", "generators.video.methods", "generators.video.runs", "detectors.models",
    "detectors.modelfile", "detectors.registry", "forensics",
)


def layer(module: str) -> str | None:
    """The layer of a dotted module name inside this project, or None for third-party / stdlib modules."""
    top = module.split(".")[0]
    if top == "cli":
        return "cli"
    return top if top in PACKAGES else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Absolute imports anywhere in the file; ``from pkg import sub`` counts as ``pkg.sub`` when ``sub`` is a module."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                rel = Path(*sub.split("."))
                is_module = (ROOT / rel).is_dir() or (ROOT / rel.with_suffix(".py")).is_file()
                out.add(sub if is_module else node.module)
    return out


def project_files() -> list[Path]:
    files = [ROOT / "cli.py"]
    for pkg in PACKAGES:
        files += sorted(p for p in (ROOT / pkg).rglob("*.py") if "assets" not in p.relative_to(ROOT).parts)
    return files


def upward_imports() -> set[tuple[str, str]]:
    bad: set[tuple[str, str]] = set()
    for path in project_files():
        src = module_name(path)
        src_layer = layer(src)
        for dst in imports(path):
            dst_layer = layer(dst)
            if dst_layer is None or dst_layer == src_layer:
                continue
            if dst_layer == "cli" or (src_layer != "cli" and RANK[dst_layer] > RANK[src_layer]):
                bad.add((src, dst))
    return bad


def test_layer_map_knows_the_tree() -> None:
    assert layer("core.media.sniff") == "core" and layer("forensics.pipeline") == "forensics"
    assert layer("forensics.commands.scan") == "forensics" and layer("core.runs") == "core"
    assert layer("detectors.metrics") == "detectors" and layer("numpy") is None and layer("cli") == "cli"
    assert len(project_files()) > 100


def test_imports_point_down_the_layers() -> None:
    found = upward_imports()
    new = sorted(found - set(ALLOWED))
    fixed = sorted(set(ALLOWED) - found)
    assert not new, "upward imports (see docs/architecture.md):\n" + "\n".join(f"  {a} -> {b}" for a, b in new)
    assert not fixed, "no longer found; delete from ALLOWED in tests/test_layers.py:\n" + "\n".join(map(str, fixed))


def test_model_code_imports_no_trainer() -> None:
    def under(name: str, prefixes: tuple[str, ...]) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    bad = sorted(
        (module_name(path), dst)
        for path in project_files()
        if under(module_name(path), MODEL_CODE)
        for dst in imports(path)
        if under(dst, TRAINERS)
    )
    assert not bad, "model code imports a trainer (use generators.checkpoints / detectors.modelfile):\n" + "\n".join(
        f"  {a} -> {b}" for a, b in bad
    )


def test_click_commands_are_leaves() -> None:
    """Only cli.py and other commands import ``forensics.commands``: work a command does belongs in a plain module
    (the scan's in ``forensics.api``) that the demo, the server and tests can call without click."""
    bad = sorted(
        (module_name(path), dst)
        for path in project_files()
        if not module_name(path).startswith(("forensics.commands", "cli"))
        for dst in imports(path)
        if dst.startswith("forensics.commands")
    )
    assert not bad, "imports of click commands:\n" + "\n".join(f"  {a} -> {b}" for a, b in bad)


@pytest.mark.parametrize("name", [*PACKAGES, "cli"])
def test_package_imports_first_in_a_fresh_interpreter(name: str) -> None:
    """Each top-level package imports on its own, first: no import cycle that only works in one order."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
