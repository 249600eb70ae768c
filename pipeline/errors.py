"""Errors a user can act on. Each message says what was expected, what arrived and what to do."""

from __future__ import annotations


class VidprofError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(VidprofError):
    """A setting that cannot work whatever the machine: exit 2."""

    exit_code = 2


class RunError(VidprofError):
    """Something found while acting on valid settings (missing file, broken model, busy port): exit 1."""

    exit_code = 1
