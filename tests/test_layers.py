"""The package layers, kept by tests: imports point down, no loops, every package imports on its own.

The top-level package of a module *is* its layer, so the rule needs no hand-kept module list
(``docs/architecture.md`` draws the picture)::

    core         media, faces, hashing, datasets, importers, degrade, registry, runs, ...   rank 0
    generators   GAN / diffusion families, editors, video generators, dataset writer        rank 1
    detectors    registry, models, training, calibration, metrics, model files              rank 2
    forensics    the scan product: pipeline, scanning, api, report, evidence, serve, ...    rank 3
    benchmarks   protocols, runner, reports                                                  rank 4
    cli.py       the console root                                                            nothing imports it

A module may import its own layer and the layers below it. The checker reads every ``.py`` with ``ast`` and
collects every way one module names another: ``import`` / ``from ... import`` at module level *and inside
functions* (a lazy import is still a dependency: it only moves the failure to run time), relative imports (resolved
against the importing module), ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name, and
module-name strings such as a registry's ``builtin_modules`` or cli.py's ``"pkg.mod:attr"`` targets (a string
counts when, up to an optional ``:attr``, it names a module that exists in the tree: entry-point group names such
as ``"forensics.detectors"`` name no module and are not imports; a logger name or label that happens to name a
module counts too, which errs on the safe side). It then reports imports that point up, and loops between packages
with the edges that close them. The checker is plain functions over a root folder, so the tests
below also run it on tiny synthetic trees to show that it catches each form.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: layer rank by top-level package; ``cli`` is the console root above them all, which nothing may import
RANK = {"forensics_core": 0, "generators": 1, "detectors": 2, "forensics": 3, "benchmarks": 4}
PACKAGES = tuple(RANK)
TOP = "cli"

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

#: a literal that may name a module: dotted words, optionally ``:attribute`` (entry-point / lazy-command style)
MODULE_STRING = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|[A-Za-z_]\w*(?=:))(?::[A-Za-z_][\w.]*)?$")
IMPORT_FUNCTIONS = {"import_module", "__import__"}


@dataclass(frozen=True, order=True)
class Import:
    """One module naming another: ``how`` is ``import``, ``relative``, ``import_module`` or ``string``."""

    src: str
    dst: str
    how: str
    line: int

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst}  ({self.how}, line {self.line})"


def layer(module: str) -> str | None:
    """The layer of a dotted module name: its top-level package, or None for third-party / stdlib modules."""
    top = module.split(".")[0]
    return top if top in RANK or top == TOP else None


def points_up(src: str, dst: str) -> bool:
    """True when ``src`` may not import ``dst``: ``dst`` sits in a higher layer, or is the console root."""
    src_layer, dst_layer = layer(src), layer(dst)
    if dst_layer is None or src_layer is None or dst_layer == src_layer:
        return False
    return dst_layer == TOP or (src_layer != TOP and RANK[dst_layer] > RANK[src_layer])


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files(root: Path = ROOT) -> list[Path]:
    """``cli.py`` and every ``.py`` of the layer packages (shipped assets are data, not code)."""
    files = [root / f"{TOP}.py"] if (root / f"{TOP}.py").is_file() else []
    for pkg in PACKAGES:
        if (root / pkg).is_dir():
            files += sorted(p for p in (root / pkg).rglob("*.py") if "assets" not in p.relative_to(root).parts)
    return files


def is_module(name: str, root: Path) -> bool:
    rel = Path(*name.split("."))
    return (root / rel).is_dir() or (root / rel.with_suffix(".py")).is_file()


def relative_base(src: str, is_package: bool, level: int) -> str:
    """The package a ``from <level dots> import`` starts from. Climbing past the top-level package (which Python
    refuses unless the root itself is a package) keeps going, so such an import still names where it points."""
    parts = src.split(".") if is_package else src.split(".")[:-1]
    return ".".join(parts[: max(len(parts) - (level - 1), 0)])


def from_targets(base: str, names: Iterable[str], root: Path) -> list[str]:
    """``from base import a, b``: ``base.a`` when ``a`` is a module, else ``base`` (an attribute of it)."""
    out = []
    for name in names:
        sub = f"{base}.{name}" if base else name
        out.append(sub if name != "*" and is_module(sub, root) else base)
    return [t for t in out if t]


def call_name(node: ast.Call) -> str | None:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def imports_of(path: Path, root: Path = ROOT) -> list[Import]:
    """Every module ``path`` names, in all the forms the module docstring lists, resolved to dotted names."""
    src = module_name(path, root)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    out: list[Import] = []
    import_args: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(src, a.name, "import", node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                targets = from_targets(node.module, (a.name for a in node.names), root)
                out += [Import(src, t, "import", node.lineno) for t in targets]
            elif node.level > 0:
                base = relative_base(src, is_package, node.level)
                base = f"{base}.{node.module}" if base and node.module else base or (node.module or "")
                targets = from_targets(base, (a.name for a in node.names), root)
                out += [Import(src, t, "relative", node.lineno) for t in targets]
        elif isinstance(node, ast.Call) and call_name(node) in IMPORT_FUNCTIONS and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("."):
                import_args.add(id(arg))
                out.append(Import(src, arg.value, "import_module", node.lineno))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in import_args:
            m = MODULE_STRING.match(node.value)
            if m and layer(m.group(1)) and is_module(m.group(1), root):
                out.append(Import(src, m.group(1), "string", node.lineno))
    return [i for i in out if i.dst and i.dst != src]


def all_imports(root: Path = ROOT) -> list[Import]:
    return sorted(i for path in project_files(root) for i in imports_of(path, root))


def upward_imports(found: Iterable[Import]) -> list[Import]:
    return sorted(i for i in found if points_up(i.src, i.dst))


def package_loops(found: Iterable[Import]) -> list[list[Import]]:
    """Loops between top-level packages: each strongly connected group of packages (Tarjan) as the module imports
    that link them, so a report names the lines to change. Packages are the unit: two packages that import each
    other through any modules cannot be layered, even when no single module-level cycle exists yet."""
    edges: dict[tuple[str, str], list[Import]] = {}
    for i in found:
        a, b = layer(i.src), layer(i.dst)
        if a and b and a != b:
            edges.setdefault((a, b), []).append(i)
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [sorted(i for (a, b), imps in edges.items() if a in g and b in g for i in imps) for g in groups]


def report(title: str, rows: Iterable[object]) -> str:
    return title + "\n" + "\n".join(f"  {r}" for r in rows)


# -- the project ----------------------------------------------------------------------------------------------


def test_layer_map_knows_the_tree() -> None:
    assert layer("forensics_core.media.sniff") == "forensics_core" and layer("forensics.pipeline") == "forensics"
    assert layer("forensics.commands.scan") == "forensics" and layer("detectors.metrics") == "detectors"
    assert layer("numpy") is None and layer("cli") == "cli" and layer("forensics_core") == "forensics_core"
    assert len(project_files()) > 100
    assert {module_name(p).split(".")[0] for p in project_files()} == {*PACKAGES, TOP}


def test_checker_sees_every_form_in_the_tree() -> None:
    """The forms the project really uses are collected (so a later upward one would be): registry module tuples,
    cli.py's lazy ``module:attr`` targets, relative imports inside packages."""
    found = {(i.src, i.dst, i.how) for i in all_imports()}
    assert ("detectors.registry", "detectors.models", "string") in found
    assert ("cli", "forensics.commands.scan", "string") in found
    # a module naming itself is no dependency
    assert ("forensics_core.outputs", "forensics_core.outputs", "string") not in found
    assert any(how == "import" and dst.startswith("forensics_core.") for _, dst, how in found)


def test_imports_point_down_the_layers() -> None:
    found = {(i.src, i.dst): i for i in upward_imports(all_imports())}
    new = sorted(i for key, i in found.items() if key not in ALLOWED)
    fixed = sorted(set(ALLOWED) - set(found))
    assert not new, report("upward imports (see docs/architecture.md):", new)
    assert not fixed, report("no longer found; delete from ALLOWED in tests/test_layers.py:", fixed)


def test_no_import_loops_between_packages() -> None:
    loops = package_loops(all_imports())
    assert not loops, "\n".join(report("import loop between packages:", loop) for loop in loops)


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def trainer_imports(found: Iterable[Import]) -> list[Import]:
    return sorted(i for i in found if under(i.src, MODEL_CODE) and under(i.dst, TRAINERS))


def command_imports(found: Iterable[Import]) -> list[Import]:
    """Only cli.py and other commands import ``forensics.commands``: work a command does belongs in a plain module
    (the scan's in ``forensics.api``) that the demo, the server and tests can call without click."""
    return sorted(
        i for i in found if not under(i.src, ("forensics.commands", TOP)) and under(i.dst, ("forensics.commands",))
    )


def test_model_code_imports_no_trainer() -> None:
    bad = trainer_imports(all_imports())
    assert not bad, report("model code imports a trainer (use generators.checkpoints / detectors.modelfile):", bad)


def test_click_commands_are_leaves() -> None:
    bad = command_imports(all_imports())
    assert not bad, report("imports of click commands:", bad)


@pytest.mark.parametrize("name", [*PACKAGES, TOP])
def test_package_imports_first_in_a_fresh_interpreter(name: str) -> None:
    """Each top-level package imports on its own, first: no import cycle that only works in one order."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


# -- the checker on synthetic trees ---------------------------------------------------------------------------


def make_tree(root: Path, files: dict[str, str]) -> Path:
    """Every layer package (empty ``__init__``) plus ``files`` (relative path -> source)."""
    for pkg in PACKAGES:
        (root / pkg).mkdir(parents=True, exist_ok=True)
        (root / pkg / "__init__.py").touch()
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


CLEAN = {
    "forensics_core/registry.py": 'GROUP = "forensics.detectors"  # an entry-point group: names no module\n',
    "generators/families.py": "from forensics_core import registry\n",
    "detectors/models.py": "import importlib\n\nFAMILIES = importlib.import_module('generators.families')\n",
    "detectors/registry.py": 'BUILTIN_MODULES = ("detectors.models",)\n',
    "forensics/api.py": "from detectors.registry import BUILTIN_MODULES\nfrom . import pipeline\n",
    "forensics/pipeline.py": "",
    "benchmarks/run.py": 'TARGET = "forensics.api:run"\n',
    "cli.py": 'COMMANDS = {"bench": "benchmarks.run:main"}\n',
}


def test_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    found = all_imports(make_tree(tmp_path, CLEAN))
    assert not upward_imports(found) and not package_loops(found)
    how = {(i.src, i.dst): i.how for i in found}
    assert how[("detectors.models", "generators.families")] == "import_module"
    assert how[("forensics.api", "forensics.pipeline")] == "relative"
    assert how[("benchmarks.run", "forensics.api")] == "string"
    assert ("forensics_core.registry", "forensics.detectors") not in how  # no such module: not an import


@pytest.mark.parametrize(
    ("source", "how", "dst"),
    [
        ("from ..forensics import api\n", "relative", "forensics.api"),
        ("from ..forensics.api import run\n", "relative", "forensics.api"),
        ("import importlib\n\nAPI = importlib.import_module('forensics.api')\n", "import_module", "forensics.api"),
        ("def f():\n    return __import__('detectors.models')\n", "import_module", "detectors.models"),
        ('BUILTIN_MODULES = ("detectors.models",)\n', "string", "detectors.models"),
        ('LAZY = {"x": "generators.families:Family"}\n', "string", "generators.families"),
        ("import cli\n", "import", "cli"),
    ],
)
def test_checker_catches_each_upward_form(tmp_path: Path, source: str, how: str, dst: str) -> None:
    root = make_tree(tmp_path, {**CLEAN, "forensics_core/bad.py": source})
    bad = upward_imports(all_imports(root))
    assert [(i.src, i.dst, i.how) for i in bad] == [("forensics_core.bad", dst, how)]


def test_checker_resolves_relative_imports_for_the_other_rules(tmp_path: Path) -> None:
    """Relative imports stay inside their package, so they matter for the rules within a layer."""
    root = make_tree(
        tmp_path,
        {
            **CLEAN,
            "detectors/train.py": "",
            "detectors/modelfile.py": "from .train import fit\n",
            "forensics/commands/__init__.py": "",
            "forensics/commands/scan.py": "",
            "forensics/engines.py": "from .commands import scan\n",
        },
    )
    found = all_imports(root)
    assert [(i.src, i.dst) for i in trainer_imports(found)] == [("detectors.modelfile", "detectors.train")]
    assert [(i.src, i.dst) for i in command_imports(found)] == [("forensics.engines", "forensics.commands.scan")]


def test_checker_reports_loops_between_packages(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        {
            **CLEAN,
            "generators/sampling.py": "from detectors import models\n",
        },
    )
    found = all_imports(root)
    loops = package_loops(found)
    assert [[(i.src, i.dst) for i in loop] for loop in loops] == [
        [("detectors.models", "generators.families"), ("generators.sampling", "detectors.models")]
    ]
    assert [(i.src, i.dst) for i in upward_imports(found)] == [("generators.sampling", "detectors.models")]
