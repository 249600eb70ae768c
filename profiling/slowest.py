"""The slowest frames of each stream, end to end, kept in bounded memory: a heap of K per stream.

A percentile says *that* p99 is 80 ms; these say *which* frames were slow and what each waited for. The
runner hands every frame to a ``SlowestFrames`` sink after the recorder; the report lists them
(``RunReport.slowest``) and the trace (``profiling.trace``) keeps the same frames, chosen by the same rule
(:class:`TopK`), so a frame named in the report is always in the trace.

``FrameTimes`` is one frame's marks, copied into a flat tuple: a frame's ``Marks`` hold two dicts, and a
trace keeps thousands of frames. ``FrameTimes.parts`` lays a frame out as the stages and waits of
``profiling.marks``, with the same arithmetic, so every figure here equals the report's to the nanosecond.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Iterator
from typing import Generic, NamedTuple, TypeVar

from vidprof.profiling.marks import STAGES, Marks
from vidprof.profiling.recorder import Transfer
from vidprof.profiling.report import SlowFrame

DEFAULT_SLOWEST = 5

T = TypeVar("T")

# FrameTimes spells the stages out in this order (a loop costs more on every frame): keep the two in step.
assert STAGES == ("decode", "preprocess", "inference", "postprocess"), STAGES

# Outcomes, as the frames counter names them.
COMPLETED, FAILED, DROPPED = "completed", "failed", "dropped"


class Part(NamedTuple):
    """One span of a frame's life: a stage it ran, or a wait (``kind``), from ``start`` to ``end`` (clock ns).

    ``name`` is the stage (``profiling.marks.STAGES``) or the wait (``WAITS``: the queue before a stage, named
    after that stage, and ``infer_wait``, the wait for a free infer request)."""

    kind: str  # "stage" | "wait"
    name: str
    start: int
    end: int


class FrameTimes(NamedTuple):
    """One frame's marks as plain integers (clock ns; None where the frame never got there)."""

    stream: int  # the stream's index
    frame: int  # the frame's index in its stream
    outcome: str  # completed | failed | dropped
    request: int | None  # the infer request that ran it
    start: tuple[int | None, ...]  # per stage, in STAGES order
    end: tuple[int | None, ...]
    infer_wait_start: int | None

    @classmethod
    def of(cls, stream: int, marks: Marks, outcome: str) -> FrameTimes:
        # Spelled out rather than a loop over STAGES: a trace runs this for every frame.
        s, e = marks.start.get, marks.end.get
        return cls(stream, marks.frame, outcome, marks.request,
                   (s("decode"), s("preprocess"), s("inference"), s("postprocess")),
                   (e("decode"), e("preprocess"), e("inference"), e("postprocess")), marks.infer_wait_start)

    @property
    def e2e_ns(self) -> int | None:
        """From decode start to postprocess end, as ``Marks.e2e_seconds``."""
        s, e = self.start[0], self.end[3]
        return None if s is None or e is None else e - s

    @property
    def first_ns(self) -> int | None:
        """The frame's earliest mark: its decode start, which every frame has but a dropped one's maybe."""
        if self.start[0] is not None:  # the usual case first: a trace asks this of a thousand frames at once
            return self.start[0]
        marks = [t for t in (*self.start, *self.end, self.infer_wait_start) if t is not None]
        return min(marks) if marks else None

    @property
    def last_ns(self) -> int | None:
        """The frame's latest mark: its postprocess end, unless it stopped on the way."""
        if self.end[3] is not None:
            return self.end[3]
        marks = [t for t in (*self.start, *self.end, self.infer_wait_start) if t is not None]
        return max(marks) if marks else None

    def parts(self) -> list[Part]:
        """The frame's stages and waits in pipeline order. The conditions and subtractions are
        ``Marks.stage_seconds`` and ``Marks.waits_seconds``' own: a part exists here exactly when the
        recorder has a figure for it, and lasts exactly as long."""
        (ds, ps, is_, qs), (de, pe, ie, qe) = self.start, self.end
        w = self.infer_wait_start
        out: list[Part] = []
        if ds is not None and de is not None:
            out.append(Part("stage", "decode", ds, de))
        if de is not None and ps is not None:
            out.append(Part("wait", "preprocess", de, ps))
        if ps is not None and pe is not None:
            out.append(Part("stage", "preprocess", ps, pe))
        if pe is not None and w is not None:
            out.append(Part("wait", "inference", pe, w))
            if is_ is not None:
                out.append(Part("wait", "infer_wait", w, is_))
        if is_ is not None and ie is not None:
            out.append(Part("stage", "inference", is_, ie))
        if ie is not None and qs is not None:
            out.append(Part("wait", "postprocess", ie, qs))
        if qs is not None and qe is not None:
            out.append(Part("stage", "postprocess", qs, qe))
        return out


class TopK(Generic[T]):
    """The ``k`` items with the largest keys seen so far, in O(k) memory.

    A tie keeps the item seen first: an item must beat the smallest kept key to get in. Two TopK fed the
    same keys in the same order keep the same items, which is how the report and the trace agree."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._heap: list[tuple[int, int, T]] = []  # (key, -arrival, item): the smallest key, then latest, goes first
        self._seen = 0

    def would_keep(self, key: int) -> bool:
        """Cheap test before building the item: most frames are not among the slowest."""
        return self.k > 0 and (len(self._heap) < self.k or key > self._heap[0][0])

    def offer(self, key: int, item: T) -> tuple[bool, T | None]:
        """Keep ``item`` if its key is among the k largest: (kept, the item it pushed out or None)."""
        if not self.would_keep(key):
            return False, None
        self._seen += 1
        entry = (key, -self._seen, item)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
            return True, None
        return True, heapq.heapreplace(self._heap, entry)[2]

    def items(self) -> list[T]:
        """Largest key first; among equal keys, the first seen first."""
        return [item for _, _, item in sorted(self._heap, key=lambda e: (-e[0], -e[1]))]

    def __iter__(self) -> Iterator[T]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._heap)


class _StreamSlowest:
    """The FrameSink of one stream: offers each completed frame to the stream's heap."""

    def __init__(self, owner: SlowestFrames, index: int, label: str) -> None:
        self._owner = owner
        self.index, self.label = index, label
        self.top: TopK[FrameTimes] = TopK(owner.k)

    def frame_done(self, marks: Marks, transfer: Transfer, failed: bool, error: str | None = None,
                   reason: str | None = None) -> None:
        # Runs on the stream's postprocess thread for every frame: one subtraction and one comparison,
        # unless the frame is among the slowest so far.
        if failed:
            return
        s, e = marks.start.get("decode"), marks.end.get("postprocess")
        if s is None or e is None or not self.top.would_keep(e - s):
            return
        self.top.offer(e - s, FrameTimes.of(self.index, marks, COMPLETED))

    def frame_dropped(self, marks: Marks | None = None) -> None:
        pass  # a dropped frame has no end-to-end latency


class SlowestFrames:
    """Keeps the ``k`` slowest completed frames (end to end) of each stream.

    ``sink(index, label)`` makes a stream's FrameSink; each is fed by one thread (the stream's postprocess
    thread), so the heaps need no lock. ``frames()`` reads them at the end as the report's ``SlowFrame``s."""

    def __init__(self, k: int = DEFAULT_SLOWEST, run_start_ns: Callable[[], int] | None = None) -> None:
        if k < 0:
            raise ValueError(f"slowest frames per stream: expected 0 or more, got {k}")
        self.k = k
        self._run_start_ns = run_start_ns or (lambda: 0)
        self._streams: list[_StreamSlowest] = []
        self._lock = threading.Lock()  # streams are added from the runner's thread only; cheap insurance

    def sink(self, index: int, label: str) -> _StreamSlowest:
        s = _StreamSlowest(self, index, label)
        with self._lock:
            self._streams.append(s)
        return s

    def frames(self) -> tuple[SlowFrame, ...]:
        """Every stream's slowest frames, stream by stream, slowest first."""
        origin = self._run_start_ns()
        with self._lock:
            streams = list(self._streams)
        return tuple(slow_frame(s.label, t, origin) for s in streams for t in s.top.items())


def slow_frame(label: str, t: FrameTimes, origin_ns: int) -> SlowFrame:
    """A FrameTimes as the report's SlowFrame: seconds computed as the recorder computes them."""
    stages: dict[str, float] = {}
    waits: dict[str, float] = {}
    for p in t.parts():
        (stages if p.kind == "stage" else waits)[p.name] = (p.end - p.start) / 1e9
    e2e = t.e2e_ns
    first = t.start[0] if t.start[0] is not None else (t.first_ns or origin_ns)
    return SlowFrame(label, t.frame, (e2e or 0) / 1e9, (first - origin_ns) / 1e9, stages, waits, t.request)
