"""The detector registry: ``@register_detector("npr")`` on a :class:`detectors.base.Detector` subclass.

Built-in detectors live in :mod:`detectors.models` and are imported on first lookup (so ``forensics --help`` never
imports torch); third-party packages add detectors through the entry-point group ``forensics.detectors``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from forensics_core.errors import UsageError
from forensics_core.registry import Registry

if TYPE_CHECKING:
    from detectors.base import Detector

BUILTIN_MODULES: tuple[str, ...] = ("detectors.models",)

DETECTORS: Registry[type[Detector]] = Registry(
    "detector", entry_point_group="forensics.detectors", builtin_modules=BUILTIN_MODULES
)


def register_detector(name: str, *, description: str = "", tags: tuple[str, ...] = ()):
    """Register a Detector subclass; ``tags`` (e.g. ``artifact``, ``video``) are shown by ``detector list``."""

    def deco(cls):
        cls.name = name
        return DETECTORS.register(name, description=description, tags=tags)(cls)

    return deco


def list_detectors(pattern: str = "*") -> list[str]:
    return DETECTORS.names(pattern)


def make_config(name: str, overrides: dict[str, Any] | None = None):
    """The detector's config dataclass with ``overrides`` applied; unknown keys are a one-line usage error."""
    cls = DETECTORS.get(name).obj
    known = {f.name for f in dataclasses.fields(cls.Config)}
    overrides = dict(overrides or {})
    bad = sorted(set(overrides) - known)
    if bad:
        raise UsageError(f"detector '{name}': unknown option(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    return cls.Config(**overrides)


def build_detector(name: str, **overrides: Any) -> Detector:
    """The one factory: ``build_detector("timm", backbone="resnet18", res=64)``. Never loads external weights
    (that is :meth:`Detector.initialise`, called by training), so model files rebuild the exact architecture."""
    cls = DETECTORS.get(name).obj
    return cls(make_config(name, overrides))
