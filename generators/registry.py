"""The generator registry: every family (GAN, editor, super-resolution, diffusion, video) registers here.

``GENERATORS.register(name, family=..., upsampler=..., kind=...)`` decorates a :class:`generators.base.GeneratorFamily`
subclass. Tags are what the benchmark protocols split on (leave-one-family-out, -upsampler-out, -group-out), so every
entry must carry ``family`` and ``upsampler``. Third-party families plug in through the entry-point group
``forensics.generators``.

``components`` names what a family shares with others (trained weights it borrows, a network trunk, a
discriminator that shaped its generator, mask code). Holding out one family's *name* while a sibling that shares its
decoder trains is not a held-out test, so :func:`family_groups` joins families that share any component and the
``leave-one-group-out`` benchmark protocol holds out whole groups.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from forensics_core.registry import Registry

if TYPE_CHECKING:
    from generators.base import GeneratorFamily

# Modules imported on first lookup; each registers its families on import.
BUILTIN_MODULES: tuple[str, ...] = ("generators.families",)

GENERATORS: Registry[type[GeneratorFamily]] = Registry(
    "generator family", entry_point_group="forensics.generators", builtin_modules=BUILTIN_MODULES
)


def register_generator(
    name: str,
    *,
    family: str | None = None,
    upsampler: str,
    kind: str,
    description: str = "",
    components: tuple[str, ...] = (),
):
    """Register a family class under ``name`` with the tags the benchmarks split on; ``components`` are the shared
    parts (see the module docstring) that make families one group for held-out protocols.

    The decorator is the one place a family states its name and tags: it also sets ``name``, ``family``,
    ``upsampler`` and ``kind`` on the class, so the class body never repeats them (a subclass registered under its
    own name gets its own values, the parent keeps its). ``family`` defaults to ``name``: a family is its own
    family tag unless it is a variant of another one that leave-one-family-out must hold out with it (``dcgan-k3``
    keeps ``family="dcgan"``).
    """
    family = family or name
    add = GENERATORS.register(
        name, family=family, upsampler=upsampler, kind=kind, description=description, components=tuple(components)
    )

    def deco(cls: type[GeneratorFamily]) -> type[GeneratorFamily]:
        cls.name, cls.family, cls.upsampler, cls.kind = name, family, upsampler, kind
        return add(cls)

    return deco


def get_generator(name: str) -> type[GeneratorFamily]:
    return GENERATORS.get(name).obj


def family_components() -> dict[str, set[str]]:
    """``family`` tag -> the union of the components its registered generators declare (``dcgan-k3`` adds to
    ``dcgan``: samples carry the family tag, not the generator name)."""
    out: dict[str, set[str]] = {}
    for e in GENERATORS.entries():
        fam = str(e.meta.get("family") or e.name)
        out.setdefault(fam, set()).update(e.meta.get("components") or ())
    return out


def family_groups(families: Iterable[str], components: dict[str, set[str]] | None = None) -> list[list[str]]:
    """The connected components of "shares a component with" over ``families``, each sorted, ordered by first member.

    A family the registry does not know (a third-party or external set) declares nothing and is its own group.
    ``components`` defaults to :func:`family_components`; tests pass their own.
    """
    comps = family_components() if components is None else components
    fams = sorted(set(families))
    parent = {f: f for f in fams}

    def root(f: str) -> str:
        while parent[f] != f:
            parent[f] = parent[parent[f]]
            f = parent[f]
        return f

    owner: dict[str, str] = {}
    for f in fams:
        for c in sorted(comps.get(f, ())):
            if c in owner:
                a, b = root(owner[c]), root(f)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                owner[c] = f
    groups: dict[str, list[str]] = {}
    for f in fams:
        groups.setdefault(root(f), []).append(f)
    return sorted(groups.values())
