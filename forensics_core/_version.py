"""The toolkit's one version number: ``pyproject.toml`` reads it (setuptools dynamic version), code imports it.

A module of its own, with no imports, so model files, reports and the CLI can stamp the version without loading
the ``forensics`` package root's lazy API.
"""

__version__ = "0.1.0"
