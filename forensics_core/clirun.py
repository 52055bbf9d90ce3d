"""Run a click command the way the ``forensics`` console script does: one-line errors, documented exit codes.

Shared by ``cli.py`` and by module entry points that run one subcommand standalone (``python -m generators.train``
/ ``torchrun -m generators.train``), so that no package imports ``cli.py`` to get the same behaviour.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import click

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
#: The root command's click context settings; a subcommand run standalone gets the same ``-h`` and help width.
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """``-v`` / ``-vv`` / ``-q`` of the root command as a logging level."""
    level = logging.WARNING - 10 * min(verbose, 2) if not quiet else logging.ERROR
    logging.basicConfig(level=level, format=LOG_FORMAT)


def run_click(command: click.Command, argv: list[str] | None, prog_name: str, **context: Any) -> int:
    """Invoke ``command``; toolkit errors become one line on stderr and exit code 2 (or the error's own code).
    ``context`` goes to click's context (e.g. ``**CONTEXT_SETTINGS`` for a subcommand run without the root)."""
    from forensics_core.errors import ForensicsError

    try:
        rv = command.main(args=argv, prog_name=prog_name, standalone_mode=False, **context)
    except ForensicsError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 2
    except click.ClickException as exc:
        exc.show()
        return 2
    except BrokenPipeError:  # `forensics scan ... | head` must not print a traceback
        return 0
    return rv if isinstance(rv, int) else 0


class RegistryHelpOption(click.Option):
    """A click option whose ``help`` may be a callable, called only when help is shown: an option that lists a
    registry's entries (``--evidence``) reads them from the registry, so a new entry appears in ``--help`` without
    an edit here, and loading the command for a run never imports the registry's modules."""

    def __init__(self, *args: Any, help: Any = None, **kwargs: Any) -> None:  # noqa: A002 (click's own name)
        self._help_fn = help if callable(help) else None
        super().__init__(*args, help=None if callable(help) else help, **kwargs)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        if self._help_fn is not None:
            self.help = self._help_fn()
        return super().get_help_record(ctx)


def registry_names(target: str) -> list[str]:
    """The names a ``"package.module:NAME"`` target holds, importing the module now: a
    :class:`forensics_core.registry.Registry`'s
    entries, a function's result (e.g. ``detectors.calibration:calibrator_names``, which orders them), or a mapping's
    keys / a sequence's items (preset tables such as ``detectors.augment:AUGMENT_PRESETS``)."""
    import importlib

    from forensics_core.registry import Registry

    module, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    if isinstance(obj, Registry):
        return obj.names()
    return list(obj() if callable(obj) else obj)


class RegistryChoice(click.Choice):
    """``click.Choice`` over a registry's names, read when first needed (parsing or help), not when the command
    module is imported: a newly registered entry is accepted and listed without touching the command. ``names`` is
    a ``"package.module:NAME"`` target (see :func:`registry_names`) or a function returning the names."""

    def __init__(self, names: str | Callable[[], Sequence[str]], case_sensitive: bool = True) -> None:
        self._names = (lambda: registry_names(names)) if isinstance(names, str) else names
        self._cached: tuple[str, ...] | None = None
        self.case_sensitive = case_sensitive

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        if self._cached is None:
            self._cached = tuple(self._names())
        return self._cached
