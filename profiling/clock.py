"""Clocks, passed in so tests can use a fake one and assert exact timings."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int:
        """Monotonic time in nanoseconds."""
        ...


class MonotonicClock:
    """The real clock: ``perf_counter_ns`` is monotonic and has sub-µs resolution."""

    def now_ns(self) -> int:
        return time.perf_counter_ns()


class FakeClock:
    """A clock that moves only when told to; thread-safe so runner tests can share it."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += round(seconds * 1e9)
