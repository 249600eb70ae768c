"""Per-thread CPU time of this process, from /proc: which threads spend the CPU of a run.

``ThreadCpu`` samples ``/proc/self/task/*/schedstat`` (nanoseconds on the CPU, per thread) every
``interval`` seconds while a run goes on, and keeps each thread's last value: a thread that ends
between two samples loses at most one interval of its time. Python threads are named from
``threading.enumerate()`` (their native ids); every other thread (OpenVINO's workers and callback
threads, FFmpeg's decoder threads) is named by its kernel ``comm``.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict


def _read_ns(tid: str) -> int | None:
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _comm(tid: str) -> str:
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


class ThreadCpu:
    """CPU seconds per thread between ``start()`` and ``stop()`` (a context manager)."""

    def __init__(self, interval: float = 0.25) -> None:
        self._interval = interval
        self._base: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._names: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-thread-cpu", daemon=True)

    def _sample(self) -> None:
        py = {str(t.native_id): t.name for t in threading.enumerate() if t.native_id is not None}
        for tid in os.listdir("/proc/self/task"):
            ns = _read_ns(tid)
            if ns is None:
                continue
            self._last[tid] = ns
            if tid not in self._names:
                self._names[tid] = py.get(tid) or f"[{_comm(tid)}]"

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> ThreadCpu:
        for tid in os.listdir("/proc/self/task"):
            ns = _read_ns(tid)
            if ns is not None:
                self._base[tid] = ns
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()

    def seconds(self) -> dict[str, float]:
        """Thread name -> CPU seconds in the window (threads of the same name added up; the sampler's own
        thread left out)."""
        out: dict[str, float] = defaultdict(float)
        for tid, ns in self._last.items():
            name = self._names.get(tid, "?")
            if name == "bench-thread-cpu":
                continue
            out[name] += (ns - self._base.get(tid, 0)) / 1e9
        return dict(out)


def group(seconds: dict[str, float]) -> dict[str, float]:
    """Names folded into kinds: a stream's threads lose their stream label (``vidprof-0-decode`` ->
    ``decode``), unnamed native threads (OpenVINO's, FFmpeg's) group by their kernel name."""
    out: dict[str, float] = defaultdict(float)
    for name, s in seconds.items():
        if name.startswith("vidprof-"):
            name = name.split("-", 2)[-1] if name.count("-") >= 2 else name
        out[name] += s
    return dict(out)
