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


def runtime_detail(e: BaseException) -> str:
    """The informative line of an OpenVINO exception, which stacks "Exception from FILE:LINE:" lines
    above the one line that says what is wrong."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not (ln.startswith("Exception from ") and ln.endswith(":"))]
    text = " ".join(useful) if useful else (lines[-1] if lines else type(e).__name__)
    return text if len(text) <= 300 else text[:297] + "..."
