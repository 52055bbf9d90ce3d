"""A small, typed registry used for generators, detectors, evidence analyses and benchmark protocols.

Modelled on timm's ``register_model`` / ``list_models`` / ``create_model`` and torchvision's duplicate check: one
decorator fills a dict, names are listed with wildcards, and third-party packages add entries through an
``importlib.metadata`` entry-point group, so no ``if name == ...`` chain exists anywhere in the toolkit.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar

from forensics_core.errors import UnknownNameError, UsageError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object plus free-form metadata (tags, config class, description)."""

    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def description(self) -> str:
        doc = self.meta.get("description") or getattr(self.obj, "__doc__", None) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry(Generic[T]):
    """Name -> object mapping with wildcard listing and entry-point plugins.

    ``kind`` is used in error messages ("unknown detector 'x'"). ``entry_point_group`` names the
    ``importlib.metadata`` group whose entry points are imported (once) before any lookup; importing a plugin
    module is expected to call :meth:`register` itself, or the entry point may resolve to the object directly.
    ``builtin_modules`` are imported lazily on first use so that listing the CLI does not import torch.
    """

    def __init__(
        self, kind: str, entry_point_group: str | None = None, builtin_modules: tuple[str, ...] = ()
    ) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.builtin_modules = builtin_modules
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False

    # -- registration -------------------------------------------------------------------------------------
    def register(self, name: str | None = None, **meta: Any) -> Callable[[T], T]:
        """Decorator: ``@REG.register("dcgan", family="dcgan", upsampler="convT-k4s2")``."""

        def deco(obj: T) -> T:
            self.add(name or getattr(obj, "__name__", None) or str(obj), obj, **meta)
            return obj

        return deco

    def add(self, name: str, obj: T, **meta: Any) -> None:
        if name in self._entries:
            if self._entries[name].obj is obj:  # re-import of the same module: harmless
                return
            raise UsageError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = Entry(name, obj, dict(meta))

    # -- lookup -------------------------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        import importlib

        for mod in self.builtin_modules:
            importlib.import_module(mod)
        if self.entry_point_group:
            for ep in metadata.entry_points(group=self.entry_point_group):
                try:
                    loaded = ep.load()
                except Exception as exc:  # a broken plugin must not break the built-ins
                    log.warning("plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)
                    continue
                if ep.name not in self._entries and not isinstance(loaded, type(metadata)):
                    self.add(ep.name, loaded, plugin=ep.value)

    def get(self, name: str) -> Entry[T]:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(self._entries))}"
            raise UnknownNameError(f"unknown {self.kind} '{name}'{hint}") from None

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def names(self, pattern: str = "*", *, sort: bool = True) -> list[str]:
        """Registered names matching ``pattern``, sorted, or (``sort=False``) in registration order: built-in
        modules in the order they are listed, then plugins (the order a help text lists them in)."""
        self._ensure_loaded()
        # "*" (every name) skips fnmatch: media sniffing lists the formats registry for every file it reads
        names = list(self._entries) if pattern == "*" else [n for n in self._entries if fnmatch.fnmatch(n, pattern)]
        return sorted(names) if sort else names

    def entries(self, pattern: str = "*") -> Iterator[Entry[T]]:
        for n in self.names(pattern):
            yield self._entries[n]
