"""SIGTERM and SIGHUP as graceful stops, the way systemd and Kubernetes stop a service.

Both are handled like Ctrl-C: the first stops the sources and drains what is in flight, a second drops
what is still queued (counted as dropped), and the complete report, text file and final push are
written; the exit code is 128 + the signal's number (143 for SIGTERM, 129 for SIGHUP). SIGHUP is taken
as a stop, not ignored: a profiler whose terminal closed should still leave its report.

The handler raises ``Terminated`` (a KeyboardInterrupt, so every Ctrl-C path handles it) only while
``armed``; while the results are being written it only records the signal, so a stop never leaves half a
report, and the exit code still says which signal came.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_state = {"armed": True, "signum": 0}


def _handler(signum: int, _frame: FrameType | None) -> None:
    _state["signum"] = signum
    if _state["armed"]:
        raise Terminated(signum)


def install() -> None:
    """Take over SIGTERM and SIGHUP (main thread only; elsewhere, e.g. in tests, leave them alone)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _state.update(armed=True, signum=0)
    for sig in HANDLED:
        signal.signal(sig, _handler)


def arm() -> None:
    """Signals raise again; one that came while disarmed is raised now."""
    _state["armed"] = True
    if _state["signum"]:
        raise Terminated(_state["signum"])


def disarm() -> None:
    _state["armed"] = False


def received() -> str:
    """The name of the signal that stopped the run (e.g. 'SIGTERM'), or '' (none, or Ctrl-C)."""
    return signal.Signals(_state["signum"]).name if _state["signum"] else ""


def exit_code() -> int:
    """128 + the signal's number; 130 (SIGINT) for Ctrl-C."""
    return 128 + (_state["signum"] or signal.SIGINT)
