"""The recorder: turns each finished frame's marks into figures and Prometheus observations.

All frames (completed or failed) are handed to ``frame_done`` from one thread, the
postprocess thread; drops come from the decode thread and are counted under a lock.
Figures are bounded (``profiling.figures``): memory does not grow with the length of a run.
"""

from __future__ import annotations

import bisect
import threading
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vidprof.profiling.figures import Figure
from vidprof.profiling.marks import STAGES, WAITS, Marks
from vidprof.profiling.metrics import LATENCY_BUCKETS, StreamMetrics


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


def _hist() -> Figure:
    """A figure that also counts its values into the Prometheus buckets (exported without per-frame calls)."""
    return Figure(LATENCY_BUCKETS)


@dataclass
class Samples:
    """Per-frame figures of completed frames, each bounded in memory."""

    stages: dict[str, Figure] = field(default_factory=lambda: {s: _hist() for s in STAGES})
    waits: dict[str, Figure] = field(default_factory=lambda: {w: _hist() for w in WAITS})
    e2e: Figure = field(default_factory=_hist)
    # e2e minus (stages + waits); zero by construction unless a mark is missing.
    unaccounted: Figure = field(default_factory=Figure)
    h2d_seconds: Figure = field(default_factory=_hist)
    d2h_seconds: Figure = field(default_factory=_hist)

    def all(self) -> list[Figure]:
        return [*self.stages.values(), *self.waits.values(), self.e2e, self.unaccounted, self.h2d_seconds,
                self.d2h_seconds]

    def flush(self) -> None:
        for f in self.all():
            f.flush()


# A completed frame's row: its marks and transfer times, in nanoseconds, MISSING where a mark was not set.
_ROW = ("decode_start", "decode_end", "preprocess_start", "preprocess_end", "inference_start", "inference_end",
        "postprocess_start", "postprocess_end", "infer_wait_start", "h2d_ns", "d2h_ns")
_COL = {name: i for i, name in enumerate(_ROW)}
MISSING = -(2**62)  # not a clock reading: marks are nanoseconds of a monotonic clock, >= 0
# Rows buffered before they reach the figures: each flush costs ~15 numpy calls per figure whatever its size,
# so fewer, larger ones; a read (a scrape, the timeline's second) flushes at once, so none is ever stale.
ROWS_PER_FLUSH = 512


class Recorder:
    """Keeps every frame's figures; the Prometheus metrics read them at scrape time.

    Per completed frame this appends one row of integers (its marks) to a buffer; every ``ROWS_PER_FLUSH``
    frames, or whenever the figures are read (``samples``, a scrape's ``snapshot()``, ``recent()``), the
    rows become durations with numpy and reach the figures in bulk: histogram buckets, sums and counters
    are brought up to date then, so no ``observe()`` or ``inc()`` runs per frame, and the per-frame Python
    is one row instead of a dozen figure adds."""

    def __init__(self, metrics: StreamMetrics | None) -> None:
        self._m = metrics
        self._samples = Samples()
        self._rows = array("q")  # completed frames not yet in the figures, one _ROW each
        self._tags: list[Marks] = []  # their marks: the slowest frame of an interval becomes an exemplar
        self.completed = 0
        self.failed = 0
        self.dropped = 0
        self.h2d_bytes = 0
        self.d2h_bytes = 0
        self._busy: dict[str, float] = {s: 0.0 for s in STAGES}
        self.first_error: str | None = None
        self.failed_reasons: dict[str, int] = dict.fromkeys(FAILURE_REASONS, 0)
        # Stage time of frames dropped on the way: work done, so it counts as busy.
        self.dropped_busy_seconds: dict[str, float] = {s: 0.0 for s in STAGES}
        # frame_done (the postprocess thread), frame_dropped (decode/preprocess/submit threads) and a scrape
        # (snapshot) touch the same figures and counters. Reentrant: a reader holding it (the timeline) reads
        # ``samples``, which flushes under it.
        self._lock = threading.RLock()
        # Exemplars: per histogram and bucket, the latest (frame, value, unix time) that was the slowest frame
        # of the interval between two snapshots; filled by snapshot(), bounded by the buckets.
        self._exemplars: Exemplars = {}
        self._snapshot_wall = time.time()
        if metrics is not None:
            metrics.attach(self)

    @property
    def metrics(self) -> StreamMetrics | None:
        return self._m

    @property
    def lock(self) -> threading.RLock:
        """Held while a frame is recorded: a reader on another thread (the timeline) takes it too."""
        return self._lock

    @property
    def samples(self) -> Samples:
        """The figures, with every frame recorded so far in them."""
        with self._lock:
            self._flush_rows()
        return self._samples

    @property
    def busy_seconds(self) -> dict[str, float]:
        """Seconds each stage was busy with the frames recorded so far (completed and failed); a copy.

        Read every tick for each stream's busy gauge, so it adds up the rows still buffered without folding them
        into the figures: a fold costs ~100 us however few rows wait, and with many slow streams a tick finds
        only a dozen (measured: ~7 us a frame more than before rows, with 8 streams at ~26 FPS)."""
        with self._lock:
            out = dict(self._busy)
            if self._tags:
                rows = np.array(self._rows, dtype=np.int64).reshape(-1, len(_ROW))  # a copy: _rows stays growable
                for stage in STAGES:
                    out[stage] += float(_span(rows, f"{stage}_start", f"{stage}_end")[1].sum())
        return out

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
            busy = r.busy_seconds
            for st in STAGES:
                out._busy[st] += busy[st]
                out.dropped_busy_seconds[st] += r.dropped_busy_seconds[st]
            if samples:
                for mine, theirs in zip(out.samples.all(), r.samples.all(), strict=True):
                    mine.merge(theirs)
        return out

    def frame_done(self, marks: Marks, transfer: Transfer, failed: bool, error: str | None = None,
                   reason: str | None = None) -> None:
        with self._lock:
            self._frame_done(marks, transfer, failed, error, reason)

    def _frame_done(self, marks: Marks, transfer: Transfer, failed: bool, error: str | None,
                    reason: str | None) -> None:
        if failed:
            # Busy time counts every stage a frame went through, failed or not: the work was done.
            for stage in STAGES:
                sec = marks.stage_seconds(stage)
                if sec is not None:
                    self._busy[stage] += sec
            self.failed += 1
            if reason in self.failed_reasons:
                self.failed_reasons[reason] += 1
            if self.first_error is None and error:
                self.first_error = error
            return
        st, en, m = marks.start, marks.end, MISSING
        iws = marks.infer_wait_start
        self._rows.extend((st.get("decode", m), en.get("decode", m), st.get("preprocess", m), en.get("preprocess", m),
                           st.get("inference", m), en.get("inference", m), st.get("postprocess", m),
                           en.get("postprocess", m), m if iws is None else iws, transfer.h2d_ns, transfer.d2h_ns))
        self._tags.append(marks)
        self.h2d_bytes += transfer.h2d_bytes
        self.d2h_bytes += transfer.d2h_bytes
        self.completed += 1
        if len(self._tags) >= ROWS_PER_FLUSH:
            self._flush_rows()

    def _flush_rows(self) -> None:
        """The buffered rows into the figures, in frame order (under the lock): the accounting of
        ``Marks.stage_seconds``, ``waits_seconds`` and ``e2e_seconds``, a column at a time."""
        if not self._tags:
            return
        rows = np.frombuffer(self._rows, dtype=np.int64).reshape(-1, len(_ROW))
        tags = self._tags
        self._rows, self._tags = array("q"), []
        s = self._samples
        accounted = np.zeros(len(rows))
        for stage in STAGES:
            ok, sec = _span(rows, f"{stage}_start", f"{stage}_end")
            self._busy[stage] += float(sec.sum())
            accounted += sec
            _extend(s.stages[stage], sec, ok, tags)
        waits = {"preprocess": _span(rows, "decode_end", "preprocess_start"),
                 "inference": _span(rows, "preprocess_end", "infer_wait_start"),
                 # as in Marks.waits_seconds: the wait for a request counts only after a preprocessed frame
                 "infer_wait": _span(rows, "infer_wait_start", "inference_start", also="preprocess_end"),
                 "postprocess": _span(rows, "inference_end", "postprocess_start")}
        for name in WAITS:
            ok, sec = waits[name]
            accounted += sec
            _extend(s.waits[name], sec, ok, tags)
        ok, e2e = _span(rows, "decode_start", "postprocess_end")
        _extend(s.e2e, e2e, ok, tags)
        s.unaccounted.extend_tagged((e2e - accounted)[ok])
        s.h2d_seconds.extend_tagged(rows[:, _COL["h2d_ns"]] / 1e9)
        s.d2h_seconds.extend_tagged(rows[:, _COL["d2h_ns"]] / 1e9)

    def frame_dropped(self, marks: Marks | None = None) -> None:
        with self._lock:
            self.dropped += 1
            if marks is not None:
                for stage in STAGES:
                    self.dropped_busy_seconds[stage] += marks.stage_seconds(stage) or 0.0

    def snapshot(self) -> RecorderSnapshot:
        """Histogram buckets, sums and counters as of now, for a scrape (figures flushed first)."""
        with self._lock:
            self._flush_rows()
            s = self._samples
            hists = {("stage", st): s.stages[st] for st in STAGES}
            hists.update({("queue", w): s.waits[w] for w in WAITS})
            hists.update({("e2e", ""): s.e2e, ("transfer", "host_to_device"): s.h2d_seconds,
                          ("transfer", "device_to_host"): s.d2h_seconds})
            out: dict[tuple[str, str], tuple[np.ndarray, float]] = {}
            for key, fig in hists.items():
                fig.flush()
                out[key] = (fig.buckets.copy(), fig.sum)
            exemplars = self._take_exemplars(hists)
            return RecorderSnapshot(out, {"completed": self.completed, "dropped": self.dropped,
                                          "failed": self.failed},
                                    {"host_to_device": self.h2d_bytes, "device_to_host": self.d2h_bytes}, exemplars)

    def _take_exemplars(self, hists: dict[tuple[str, str], Figure]) -> Exemplars:
        """Each histogram's slowest frame since the last snapshot becomes the exemplar of the bucket it fell in
        (replacing that bucket's older one); every bucket keeps its latest. Timestamped with the frame's end
        (its postprocess end on the wall clock), kept between the last snapshot and now: Prometheus drops an
        exemplar older than the one it holds for the same bucket."""
        now = time.time()
        since, self._snapshot_wall = self._snapshot_wall, now
        clock_now = time.perf_counter_ns()  # the marks' clock (profiling.clock.MonotonicClock)
        for key, fig in hists.items():
            top = fig.take_top() if key[0] in EXEMPLAR_FAMILIES else None
            if top is None:
                continue
            value, marks = top
            if not isinstance(marks, Marks) or marks.frame < 0:
                continue
            end = marks.end.get("postprocess")
            at = now if end is None else now - (clock_now - end) / 1e9
            slots = self._exemplars.setdefault(key, [None] * (len(LATENCY_BUCKETS) + 1))
            slots[bisect.bisect_left(LATENCY_BUCKETS, value)] = (marks.frame, value, min(max(at, since), now))
        return {key: list(slots) for key, slots in self._exemplars.items()}

    def recent(self, n: int = 256) -> dict[str, list[float]]:
        """The latest ``n`` values of each stage and of the end-to-end latency (key "e2e"), for a live view."""
        with self._lock:
            self._flush_rows()
            s = self._samples
            return {**{st: s.stages[st].recent(n) for st in STAGES}, "e2e": s.e2e.recent(n)}


def _span(rows: np.ndarray, start: str, end: str, also: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(where both marks are set, and ``also`` if given; seconds from ``start`` to ``end`` there, 0 elsewhere)."""
    a, b = rows[:, _COL[start]], rows[:, _COL[end]]
    ok = (a != MISSING) & (b != MISSING)
    if also is not None:
        ok &= rows[:, _COL[also]] != MISSING
    return ok, np.where(ok, (b - a) / 1e9, 0.0)


def _extend(fig: Figure, values: np.ndarray, ok: np.ndarray, tags: list[Marks]) -> None:
    """The values of the frames where ``ok``, with their marks (for the exemplar), into ``fig``."""
    if ok.all():
        fig.extend_tagged(values, tags)
    else:
        idx = np.flatnonzero(ok)
        fig.extend_tagged(values[idx], [tags[i] for i in idx.tolist()])


# The histograms whose buckets carry exemplars (the slowest frame of each interval between two scrapes).
EXEMPLAR_FAMILIES: tuple[str, ...] = ("stage", "queue", "e2e")
ExemplarFrame = tuple[int, float, float]  # (frame index, value in seconds, unix time)
Exemplars = dict[tuple[str, str], list[ExemplarFrame | None]]  # (family, label) -> per bucket


@dataclass(frozen=True)
class RecorderSnapshot:
    histograms: dict[tuple[str, str], tuple[np.ndarray, float]]  # (family, label) -> (bucket counts, sum)
    frames: dict[str, int]  # outcome -> frames
    transfer_bytes: dict[str, int]  # direction -> bytes
    # (family, label) -> per bucket (as histograms' counts), the latest exemplar frame or None
    exemplars: Exemplars = field(default_factory=dict)


class Tee:
    """Hands every frame to two sinks: the recorder first, then an observer (e.g. a trace writer)."""

    def __init__(self, first: FrameSink, second: FrameSink) -> None:
        self.first, self.second = first, second

    def frame_done(self, marks: Marks, transfer: Transfer, failed: bool, error: str | None = None,
                   reason: str | None = None) -> None:
        self.first.frame_done(marks, transfer, failed, error, reason)
        self.second.frame_done(marks, transfer, failed, error, reason)

    def frame_dropped(self, marks: Marks | None = None) -> None:
        self.first.frame_dropped(marks)
        self.second.frame_dropped(marks)


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
