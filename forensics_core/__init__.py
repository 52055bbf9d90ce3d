"""The foundation layer: everything about media, faces and datasets that needs no model.

Media I/O (:mod:`forensics_core.media`), face detection, alignment and the shared crop step
(:mod:`forensics_core.faces`), hashing and the hash split (:mod:`forensics_core.hashing`), dataset manifests and
importers, delivery degradations, threshold policies, input expansion, result sinks, the generic
:class:`~forensics_core.registry.Registry`, the training-run toolkit (:mod:`forensics_core.runs`,
:mod:`forensics_core.training`) and the one version number (:mod:`forensics_core._version`).

Why a package of its own: the top-level packages are the layers (``forensics_core`` <- ``generators`` <-
``detectors`` <- ``forensics`` <- ``benchmarks``), so which way an import points is visible from its first word and
``tests/test_layers.py`` needs no hand-kept list. Nothing here imports a package above it; the package root
imports nothing, so ``import forensics_core.errors`` stays cheap.
"""
