"""The generator registry: every family (GAN, editor, super-resolution, diffusion, video) registers here.

``GENERATORS.register(name, family=..., upsampler=..., kind=...)`` decorates a :class:`generators.base.GeneratorFamily`
subclass. Tags are what the benchmark protocols split on (leave-one-family-out, leave-one-upsampler-out), so every
entry must carry ``family`` and ``upsampler``. Third-party families plug in through the entry-point group
``forensics.generators``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forensics.registry import Registry

if TYPE_CHECKING:
    from generators.base import GeneratorFamily

# Modules imported on first lookup; each registers its families on import.
BUILTIN_MODULES: tuple[str, ...] = ("generators.families",)

GENERATORS: Registry[type[GeneratorFamily]] = Registry(
    "generator family", entry_point_group="forensics.generators", builtin_modules=BUILTIN_MODULES
)


def register_generator(name: str, *, family: str, upsampler: str, kind: str, description: str = ""):
    """Register a family class under ``name`` with the tags the benchmarks split on."""
    return GENERATORS.register(name, family=family, upsampler=upsampler, kind=kind, description=description)


def list_generators(pattern: str = "*") -> list[str]:
    return GENERATORS.names(pattern)


def get_generator(name: str) -> type[GeneratorFamily]:
    return GENERATORS.get(name).obj
