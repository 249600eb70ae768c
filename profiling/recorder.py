"""The recorder: turns each finished frame's marks into samples and Prometheus observations.

All frames (completed or failed) are handed to ``frame_done`` from one thread, the
postprocess thread; drops come from the decode thread and are counted under a lock.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from vidprof.profiling.marks import STAGES, WAITS, Marks
from vidprof.profiling.metrics import StreamMetrics


@dataclass
class Transfer:
    """Host<->device traffic of one frame."""

    h2d_bytes: int = 0
    h2d_ns: int = 0
    d2h_bytes: int = 0
    d2h_ns: int = 0


# Why a frame failed: a fixed set, so the report and any label stay bounded.
FAILURE_REASONS: tuple[str, ...] = ("damaged", "preprocess", "inference", "postprocess")


class FrameSink(Protocol):
    """What the runner reports frames to; the real recorder or a no-op for overhead benchmarks."""

    def frame_done(self, marks: Marks, transfer: Transfer, failed: bool, error: str | None = None,
                   reason: str | None = None) -> None: ...

    def frame_dropped(self, marks: Marks | None = None) -> None: ...


@dataclass
class Samples:
    """Per-frame figures of completed frames, compact (8 bytes a value)."""

    stages: dict[str, array] = field(default_factory=lambda: {s: array("d") for s in STAGES})
    waits: dict[str, array] = field(default_factory=lambda: {w: array("d") for w in WAITS})
    e2e: array = field(default_factory=lambda: array("d"))
    # e2e minus (stages + waits); zero by construction unless a mark is missing.
    unaccounted: array = field(default_factory=lambda: array("d"))
    h2d_seconds: array = field(default_factory=lambda: array("d"))
    d2h_seconds: array = field(default_factory=lambda: array("d"))


class Recorder:
    """Keeps every frame's figures and feeds the Prometheus metrics."""

    def __init__(self, metrics: StreamMetrics | None) -> None:
        self._m = metrics
        self.samples = Samples()
        self.completed = 0
        self.failed = 0
        self.dropped = 0
        self.h2d_bytes = 0
        self.d2h_bytes = 0
        self.busy_seconds: dict[str, float] = {s: 0.0 for s in STAGES}
        self.first_error: str | None = None
        self.failed_reasons: dict[str, int] = dict.fromkeys(FAILURE_REASONS, 0)
        # Stage time of frames dropped on the way: work done, so it counts as busy.
        self.dropped_busy_seconds: dict[str, float] = {s: 0.0 for s in STAGES}
        self._drop_lock = threading.Lock()

    @property
    def metrics(self) -> StreamMetrics | None:
        return self._m

    @classmethod
    def merge(cls, recorders: Sequence[Recorder], samples: bool = True) -> Recorder:
        """One recorder holding the figures of several (the streams of a run), for the aggregate summary.

        ``samples=False`` adds up the counters and busy time only: cheap enough for a per-second row."""
        out = cls(None)
        for r in recorders:
            out.completed += r.completed
            out.failed += r.failed
            out.dropped += r.dropped
            out.h2d_bytes += r.h2d_bytes
            out.d2h_bytes += r.d2h_bytes
            out.first_error = out.first_error or r.first_error
            for reason, n in r.failed_reasons.items():
                out.failed_reasons[reason] += n
            for st in STAGES:
                out.busy_seconds[st] += r.busy_seconds[st]
                out.dropped_busy_seconds[st] += r.dropped_busy_seconds[st]
            if samples:
                o, s = out.samples, r.samples
                for st in STAGES:
                    o.stages[st].extend(s.stages[st])
                for w in WAITS:
                    o.waits[w].extend(s.waits[w])
                for name in ("e2e", "unaccounted", "h2d_seconds", "d2h_seconds"):
                    getattr(o, name).extend(getattr(s, name))
        return out

    def frame_done(self, marks: Marks, transfer: Transfer, failed: bool, error: str | None = None,
                   reason: str | None = None) -> None:
        s = self.samples
        m = self._m
        # Each stage's duration once: this runs for every frame. Busy time counts every stage a frame
        # went through, failed or not: the work was done.
        durations = [(stage, sec) for stage in STAGES if (sec := marks.stage_seconds(stage)) is not None]
        for stage, sec in durations:
            self.busy_seconds[stage] += sec
        if failed:
            self.failed += 1
            if reason in self.failed_reasons:
                self.failed_reasons[reason] += 1
            if self.first_error is None and error:
                self.first_error = error
            if m is not None:
                m.frames["failed"].inc()
            return
        total = 0.0
        for stage, sec in durations:
            total += sec
            s.stages[stage].append(sec)
            if m is not None:
                m.stage_latency[stage].observe(sec)
        for name, sec in marks.waits_seconds().items():
            total += sec
            s.waits[name].append(sec)
            if m is not None:
                m.stage_queue[name].observe(sec)
        e2e = marks.e2e_seconds()
        if e2e is not None:
            s.e2e.append(e2e)
            s.unaccounted.append(e2e - total)
            if m is not None:
                m.frame_latency.observe(e2e)
        h2d, d2h = transfer.h2d_ns / 1e9, transfer.d2h_ns / 1e9
        s.h2d_seconds.append(h2d)
        s.d2h_seconds.append(d2h)
        self.h2d_bytes += transfer.h2d_bytes
        self.d2h_bytes += transfer.d2h_bytes
        self.completed += 1
        if m is not None:
            m.transfer_seconds["host_to_device"].observe(h2d)
            m.transfer_seconds["device_to_host"].observe(d2h)
            m.transfer_bytes["host_to_device"].inc(transfer.h2d_bytes)
            m.transfer_bytes["device_to_host"].inc(transfer.d2h_bytes)
            m.frames["completed"].inc()

    def frame_dropped(self, marks: Marks | None = None) -> None:
        with self._drop_lock:
            self.dropped += 1
            if marks is not None:
                for stage in STAGES:
                    self.dropped_busy_seconds[stage] += marks.stage_seconds(stage) or 0.0
        if self._m is not None:
            self._m.frames["dropped"].inc()


class NullRecorder:
    """Counts frames and nothing else: the baseline for measuring instrumentation overhead."""

    def __init__(self) -> None:
        self.completed = 0
        self.failed = 0
        self.dropped = 0

    def frame_done(self, marks: Marks, transfer: Transfer, failed: bool, error: str | None = None,
                   reason: str | None = None) -> None:
        if failed:
            self.failed += 1
        else:
            self.completed += 1

    def frame_dropped(self, marks: Marks | None = None) -> None:
        self.dropped += 1
