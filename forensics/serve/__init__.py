"""``forensics serve``: the scan pipeline behind an HTTP API for moderation pipelines.

Layout: :mod:`~forensics.serve.app` (Starlette routes, limits, middleware), :mod:`~forensics.serve.pool` (scanner
processes behind a bounded queue), :mod:`~forensics.serve.metrics` (Prometheus), :mod:`~forensics.serve.logs`
(JSON logs with request ids), :mod:`~forensics.serve.settings`. The command is ``forensics.commands.serve``;
the user guide is ``docs/serve.md``.
"""

from __future__ import annotations

from forensics.serve.app import create_app
from forensics.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
