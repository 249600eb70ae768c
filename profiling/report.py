"""The JSON report: the summary in base units (seconds, bytes), written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from vidprof.profiling.errors import RunError

REPORT_VERSION = 1


def check_writable(path: str, flag: str = "--report") -> None:
    """Fail before the run, not after it, when an output file cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise RunError(f"{flag} {path}: folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK):
        raise RunError(f"{flag} {path}: folder {folder} is not writable; choose another path")


REQUIRED = ("frames", "wall_seconds", "fps", "stages", "e2e", "transfer", "startup", "busy", "bottleneck")


def write_report(path: str, report: dict[str, Any]) -> None:
    write_json(path, {"vidprof_report": REPORT_VERSION, **report})


def write_json(path: str, doc: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a file, and a crash leaves the old one."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".vidprof-report-", suffix=".json", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)


def read_report(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError as e:
        raise RunError(f"report {path}: no such file; expected a JSON file written by `vidprof run --report`") from e
    except json.JSONDecodeError as e:
        raise RunError(f"report {path}: not valid JSON ({e.msg} at line {e.lineno}); "
                       "expected a file written by `vidprof run --report`") from e
    if isinstance(doc, dict) and "vidprof_tune" in doc:
        raise RunError(f"report {path}: a `vidprof tune` report; `vidprof report` draws the report of one run "
                       "(`vidprof run --report`); rerun the recommended command with --report")
    if not isinstance(doc, dict) or "vidprof_report" not in doc:
        raise RunError(f"report {path}: JSON without a vidprof_report field; expected a file written by "
                       "`vidprof run --report`")
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise RunError(f"report {path}: missing {', '.join(missing)}; expected a complete file written by "
                       "`vidprof run --report`")
    return doc
