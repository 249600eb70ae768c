"""What-if delays added inside a stage (``--inject STAGE=DURATION``).

A sleep stands for waiting (I/O, a slower device); ``busy`` burns CPU instead, standing for more
work. Either way the OS and the GIL add their own latency under load (a woken thread waits for a
core and the GIL), so each delay also times itself: ``actual`` is what it really cost, reported
beside the nominal value and used as the ground truth the stage's figure is checked against.
"""

from __future__ import annotations

import hashlib
import threading
import time

from vidprof.profiling.figures import Figure

# Hashing releases the GIL for buffers over 2 KiB: burning CPU this way keeps the delay from
# starving the other stages' Python threads, which a pure-Python spin loop would do.
_BURN = bytes(32 * 1024)


class Delay:
    def __init__(self, seconds: float, busy: bool = False) -> None:
        self.seconds = seconds
        self.busy = busy
        self._lock = threading.Lock()
        self.actual = Figure()  # bounded: a run with a what-if delay may be long too

    def __call__(self) -> None:
        t0 = time.perf_counter_ns()
        if self.busy:
            end = t0 + int(self.seconds * 1e9)
            while time.perf_counter_ns() < end:
                hashlib.sha256(_BURN)
        else:
            time.sleep(self.seconds)
        # Several OpenVINO callback threads may time an inference delay at once: add under a lock.
        with self._lock:
            self.actual.add((time.perf_counter_ns() - t0) / 1e9)
