"""deepfake-forensics: find synthetic and manipulated faces in images and videos.

The Python API is ``from forensics import scan, load_model``. Both are imported lazily so that importing the
package (and therefore the CLI) stays fast and torch-free until a model is actually needed.
"""

from __future__ import annotations

from typing import Any

from forensics_core._version import __version__

__all__ = ["__version__", "scan", "load_model"]


def __getattr__(name: str) -> Any:
    if name == "scan":
        from forensics.pipeline import scan

        return scan
    if name == "load_model":
        from detectors.modelfile import load_model

        return load_model
    raise AttributeError(f"module 'forensics' has no attribute {name!r}")
