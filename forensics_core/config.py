"""Where things live: data directories, the package's shipped assets, and the compute device.

Paths come from environment variables first so that pipelines can relocate everything without code changes:
``FORENSICS_DATA`` (a ``../shared/data``-style folder) and ``FORENSICS_HOME`` (runs, caches).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
#: The shipped assets (demo photos, the default model file, source lists) stay in the ``forensics`` package that
#: ships them (pyproject package-data): the top-level packages sit side by side in a checkout and in site-packages,
#: so a path (not an import, which would point up the layers) finds them from here.
ASSETS_DIR = REPO_ROOT / "forensics" / "assets"


def shared_data_dir() -> Path | None:
    """The development data folder (``$FORENSICS_DATA`` or the repo's sibling ``../shared/data``), if present."""
    env = os.environ.get("FORENSICS_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for c in candidates:
        if (c / "labels.csv").is_file() or (c / "README.md").is_file():
            return c
    return None


def home_dir() -> Path:
    """Per-user state (caches, default run folders): ``$FORENSICS_HOME`` or ``~/.cache/deepfake-forensics``."""
    return Path(os.environ.get("FORENSICS_HOME", Path.home() / ".cache" / "deepfake-forensics"))


def resolve_device(spec: str = "auto"):
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device that is absent is a usage error."""
    import torch

    from forensics_core.errors import UsageError

    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"--device {spec}: not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {spec}: CUDA is not available on this machine (use --device cpu or auto)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError(f"--device {spec}: MPS is not available on this machine")
    backend = getattr(torch, dev.type, None)  # xpu, ...: torch.xpu.is_available() and the like
    if dev.type not in ("cpu", "cuda", "mps") and not (backend and getattr(backend, "is_available", bool)()):
        raise UsageError(f"--device {spec}: {dev.type} is not available on this machine (use --device cpu or auto)")
    return dev


def parse_value(text: str, *, json_values: bool = False) -> Any:
    """The one reading of a value written on a command line, so every option spells numbers the same way.

    Plain (degradation chains, ``forensics gan`` family options): an ``int`` where Python reads one, else a
    ``float``, else the text itself (``"75"`` -> 75, ``"0.5"`` -> 0.5, ``"area"`` -> ``"area"``). With
    ``json_values`` (``detector train --set``, whose config fields hold lists and booleans): JSON where it parses,
    lists as tuples because config fields hold them so (``"[16,32]"`` -> ``(16, 32)``, ``"true"`` -> True), else
    the text as written. Never raises: what is not a number (or JSON) stays a string for the caller to judge.
    """
    if json_values:
        try:
            val = json.loads(text)
        except json.JSONDecodeError:
            return text
        return tuple(val) if isinstance(val, list) else val
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_sets(pairs: Iterable[str], *, json_values: bool = False) -> dict[str, Any]:
    """The one parser of ``--set KEY=VALUE`` (repeatable) for every command: ``["lr=1e-3", "ch=16"]`` -> dict.

    Keys are stripped. Values stay stripped strings for a caller that coerces them to its config fields' types
    (``gan train``), or with ``json_values`` are read by :func:`parse_value` (``widths=[16,32]`` -> ``(16, 32)``)
    (``detector train``). A pair without ``=`` or without a key is a one-line usage error.
    """
    from forensics_core.errors import UsageError

    out: dict[str, Any] = {}
    for kv in pairs:
        k, eq, v = kv.partition("=")
        if not eq or not k.strip():
            raise UsageError(f"--set {kv!r}: expected key=value")
        out[k.strip()] = parse_value(v, json_values=True) if json_values else v.strip()
    return out
