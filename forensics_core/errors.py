"""Error types shared by every part of the toolkit.

Every error the toolkit raises on purpose derives from :class:`ForensicsError`, whose message is one line that
names the object (file, option, model) and the cause. The CLI prints that line and exits with ``exit_code``; a
batch catches it per item and carries on, so a single hostile file never stops a run.
"""

from __future__ import annotations


class ForensicsError(Exception):
    """Base class: a one-line, user-facing message and the process exit code it maps to."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        # Messages must stay on one line: pipelines grep them and analysts read them in tables.
        super().__init__(" ".join(str(message).split()))


class UsageError(ForensicsError):
    """A wrong option, an unknown name or an impossible combination of settings."""


class UnknownNameError(UsageError, KeyError):
    """A registry lookup failed; the message lists close matches so typos are cheap to fix."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return self.args[0] if self.args else ""


class ModelFileError(ForensicsError):
    """A model file is missing, unsafe (pickle) or inconsistent with its metadata."""


class DataError(ForensicsError):
    """A dataset directory or manifest is missing, empty or malformed."""
