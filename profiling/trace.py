"""``vidprof run --trace FILE``: every kept frame's stages, waits and infer request as a Perfetto trace.

Tracks (open the file in the Perfetto UI):

    stream <label>                 one group per stream
      decode                       slices "frame N"
      queue before preprocess      several rows when frames wait side by side
      preprocess
      queue before inference
      wait for infer request       the submitting thread's wait for a free request
      queue before postprocess
      postprocess
      frames queued before ...     counters: frames between two stages
    infer requests
      request 0 .. request N-1     which frame (or batch, with --batch) each request ran, and when
      busy, waiting                counters: requests running; frames waiting for a request

Every slice of a frame carries its ``stream``, ``frame`` and ``outcome`` (completed, failed, dropped) as
debug annotations, and one flow links the frame's slices in order, so clicking a frame on any track
follows it through the pipeline. A slice starts and ends at the frame's marks, the very integers the
recorder subtracted (``FrameTimes.parts``): trace timestamps are the clock's nanoseconds unchanged, so a
slice's duration is the report's per-frame figure to the nanosecond.

Bounded: the trace keeps, per stream, frames 0 to N-1 (``--trace-frames N``, whatever their outcome), the
K slowest completed frames (``--slowest K``: the frames the report's ``slowest[]`` lists, chosen by the same
rule), and for each of those the frames of any stream whose life overlapped it (at most
``CONTEXT_LIMIT``), so what the slow frame waited for is in the trace too. During the run each frame costs
a tuple of integers; the file is built after the run, in chunks, so memory stays bounded whatever the
length of the run. Counters are derived from the kept frames' marks: exact where the trace keeps every
frame (the start of the run), and around each kept slow frame they count the frames kept with it.
"""

from __future__ import annotations

import heapq
import os
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vidprof.profiling.errors import RunError
from vidprof.profiling.marks import Marks
from vidprof.profiling.recorder import Transfer
from vidprof.profiling.slowest import COMPLETED, DEFAULT_SLOWEST, DROPPED, FAILED, FrameTimes, Part, TopK

DEFAULT_TRACE_FRAMES = 2000
RING = 1024  # the latest frames of all streams, where a new slow frame finds the frames that overlapped it
CONTEXT_LIMIT = 512  # frames kept around one slow frame
CHUNK = 4096  # packets serialised at a time: the file is written in pieces, never held whole

# Track names, in the order they appear under a stream (the same words as the report's figures).
STREAM_TRACKS: tuple[tuple[str, str], ...] = (
    ("stage", "decode"), ("wait", "preprocess"), ("stage", "preprocess"), ("wait", "inference"),
    ("wait", "infer_wait"), ("wait", "postprocess"), ("stage", "postprocess"))
TRACK_NAMES: dict[tuple[str, str], str] = {
    ("stage", "decode"): "decode",
    ("wait", "preprocess"): "queue before preprocess",
    ("stage", "preprocess"): "preprocess",
    ("wait", "inference"): "queue before inference",
    ("wait", "infer_wait"): "wait for infer request",
    ("wait", "postprocess"): "queue before postprocess",
    ("stage", "postprocess"): "postprocess",
}
# Per stream: frames between two stages (in the queue, or blocked putting into a full one).
QUEUE_COUNTERS: dict[str, str] = {w: f"frames queued before {w}" for w in ("preprocess", "inference", "postprocess")}
BUSY_COUNTER = "infer requests busy"
WAITING_COUNTER = "frames waiting for an infer request"
REQUESTS_TRACK = "infer requests"
SEQUENCE_ID = 1  # one writer: every packet on one sequence


def stream_track_name(label: str) -> str:
    return f"stream {label}"


def request_track_name(request: int) -> str:
    return f"request {request}"


def flow_id(stream: int, frame: int) -> int:
    """One flow per frame, unique in the trace (and never 0, which Perfetto ignores)."""
    return ((stream + 1) << 32) | (frame & 0xFFFF_FFFF)


def kept_sentence(frames: int, slowest: int) -> str:
    """What a trace keeps, in words: the report (``config.trace.kept``) and the CLI say it."""
    first = f"frames 0 to {frames - 1} of each stream, whatever their outcome" if frames > 0 else ""
    slow = (f"each stream's {slowest} slowest completed frames end to end (the report's slowest[]) with the frames "
            f"of any stream that overlapped each in time (at most {CONTEXT_LIMIT} per slow frame)" if slowest > 0
            else "")
    return "; ".join(x for x in (first, slow) if x) or "no frames (--trace-frames 0 and --slowest 0)"


@dataclass
class _Slow:
    """A kept slow frame and the frames that overlapped it."""

    times: FrameTimes
    first: int
    last: int
    context: list[FrameTimes] = field(default_factory=list)
    alive: bool = True  # False once a slower frame pushed it out of its stream's heap

    def overlaps(self, t: FrameTimes) -> bool:
        a, b = t.first_ns, t.last_ns
        return a is not None and b is not None and a < self.last and b > self.first


@dataclass
class _Stream:
    index: int
    label: str
    top: TopK[_Slow]
    first: list[FrameTimes] = field(default_factory=list)
    seen: int = 0


class _StreamSink:
    """One stream's FrameSink (``Runner(observe=...)``): copies each frame's marks to the trace."""

    def __init__(self, owner: TraceRecorder, index: int) -> None:
        self._owner, self._index = owner, index

    def frame_done(self, marks: Marks, transfer: Transfer, failed: bool, error: str | None = None,
                   reason: str | None = None) -> None:
        self._owner.add(FrameTimes.of(self._index, marks, FAILED if failed else COMPLETED))

    def frame_dropped(self, marks: Marks | None = None) -> None:
        if marks is not None and marks.frame >= 0:
            self._owner.add(FrameTimes.of(self._index, marks, DROPPED))


class TraceRecorder:
    """Keeps the frames a trace shows while the pipeline runs; ``write(path)`` makes the file after it.

    ``observe`` is the runner's hook: ``Runner(config, observe=trace.observe)``."""

    def __init__(self, frames_per_stream: int = DEFAULT_TRACE_FRAMES, slowest: int = DEFAULT_SLOWEST) -> None:
        if frames_per_stream < 0 or slowest < 0:
            raise ValueError(f"trace frames {frames_per_stream}, slowest {slowest}: expected 0 or more")
        self.frames_per_stream = frames_per_stream
        self.slowest = slowest
        self._streams: dict[int, _Stream] = {}
        self._ring: deque[FrameTimes] = deque(maxlen=RING)
        self._open: list[_Slow] = []  # slow frames still taking the frames that overlapped their end
        # Streams report from their own threads (postprocess; decode, preprocess, submit for drops): one lock, held
        # for a few list operations per frame.
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- during the run
    def observe(self, index: int, label: str) -> _StreamSink:
        with self._lock:
            self._streams[index] = _Stream(index, label, TopK(self.slowest))
        return _StreamSink(self, index)

    def add(self, t: FrameTimes) -> None:
        with self._lock:
            st = self._streams[t.stream]
            st.seen += 1
            if 0 <= t.frame < self.frames_per_stream:
                st.first.append(t)
            if self._open:
                self._take_late(t)
            e2e = t.e2e_ns
            if t.outcome == COMPLETED and e2e is not None and st.top.would_keep(e2e):
                first, last = t.first_ns, t.last_ns
                assert first is not None and last is not None  # a completed frame has every mark
                slow = _Slow(t, first, last)
                # The frames that finished before it and overlapped it: what it waited behind.
                slow.context = [r for r in self._ring if slow.overlaps(r)][-CONTEXT_LIMIT:]
                _, out = st.top.offer(e2e, slow)
                if out is not None:
                    out.alive = False
                self._open.append(slow)
            self._ring.append(t)

    def _take_late(self, t: FrameTimes) -> None:
        """Give ``t`` to the slow frames it overlapped; close those no frame can overlap any more."""
        first, last = t.first_ns, t.last_ns
        keep = []
        for s in self._open:
            if not s.alive:
                continue
            if s.overlaps(t) and len(s.context) < CONTEXT_LIMIT:
                s.context.append(t)
            # A frame still in flight when the slow one ended has had as long again to finish.
            if len(s.context) < CONTEXT_LIMIT and not (first is not None and last is not None
                                                       and first >= s.last and last > 2 * s.last - s.first):
                keep.append(s)
        self._open = keep

    # ----------------------------------------------------------------- after the run
    def kept(self) -> list[tuple[str, FrameTimes]]:
        """The frames the trace shows, each once, with its stream's label, in order of their first mark."""
        with self._lock:
            streams = list(self._streams.values())
            labels = {s.index: s.label for s in streams}
            frames: dict[tuple[int, int], FrameTimes] = {}
            for st in streams:
                for t in st.first:
                    frames[(t.stream, t.frame)] = t
            for st in streams:
                for slow in st.top.items():
                    for t in (slow.times, *slow.context):
                        frames.setdefault((t.stream, t.frame), t)
        return sorted(((labels[t.stream], t) for t in frames.values()),
                      key=lambda lt: (lt[1].first_ns or 0, lt[1].stream, lt[1].frame))

    def describe(self) -> dict[str, Any]:
        """What the trace holds, for the report (``config.trace``) and the message after the run."""
        with self._lock:
            seen = sum(s.seen for s in self._streams.values())
        return {"frames_per_stream": self.frames_per_stream, "slowest_per_stream": self.slowest,
                "context_per_slow_frame": CONTEXT_LIMIT, "frames_seen": seen,
                "kept": kept_sentence(self.frames_per_stream, self.slowest)}

    def write(self, path: str) -> dict[str, Any]:
        """Write the trace file; returns ``describe()`` with the file and the number of frames in it."""
        frames = self.kept()
        with self._lock:
            labels = [(s.index, s.label) for s in sorted(self._streams.values(), key=lambda s: s.index)]
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                write_trace(f, labels, frames, self.describe()["kept"])
            os.replace(tmp, path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise RunError(f"--trace {path}: cannot write ({e.strerror or e}); choose a writable path") from e
        return {**self.describe(), "file": path, "frames": len(frames)}


# ----------------------------------------------------------------- the file
class _Writer:
    """Packets in chunks of TraceProtoBuilder: a builder holds CHUNK packets, is serialised, and the next
    one starts. Serialised Trace messages concatenate into one Trace, so the file is one valid trace."""

    def __init__(self, f: Any) -> None:
        from perfetto.trace_builder.proto_builder import TraceProtoBuilder  # imported with --trace only

        self._new = TraceProtoBuilder
        self._f = f
        self._builder = TraceProtoBuilder()
        self._n = 0
        self._first = True

    def packet(self, ts: int | None = None) -> Any:
        if self._n >= CHUNK:
            self.flush()
        p = self._builder.add_packet()
        self._n += 1
        if ts is not None:
            p.timestamp = ts
        p.trusted_packet_sequence_id = SEQUENCE_ID
        if self._first:
            p.first_packet_on_sequence = True
            p.sequence_flags = 1  # SEQ_INCREMENTAL_STATE_CLEARED: nothing interned, nothing to carry over
            self._first = False
        return p

    def flush(self) -> None:
        if self._n:
            self._f.write(self._builder.serialize())
            self._builder = self._new()
            self._n = 0


class _Uuids:
    def __init__(self) -> None:
        self._next = 0x5649_4450_0000_0000  # "VIDP": away from small numbers other tools' tracks may use

    def __call__(self) -> int:
        self._next += 1
        return self._next


def _lanes(parts: list[tuple[int, int, Any]]) -> list[tuple[int, int, int, Any]]:
    """Give each (start, end, x) the lowest row free at its start, so slices on one row never overlap:
    frames waiting side by side in one queue get one row each (Perfetto draws same-named rows as one track)."""
    free: list[tuple[int, int]] = []  # (end, lane) of lanes in use
    spare: list[int] = []
    lanes = 0
    out = []
    for start, end, x in sorted(parts, key=lambda p: (p[0], p[1])):
        while free and free[0][0] <= start:
            heapq.heappush(spare, heapq.heappop(free)[1])
        if spare:
            lane = heapq.heappop(spare)
        else:
            lane, lanes = lanes, lanes + 1
        heapq.heappush(free, (end, lane))
        out.append((lane, start, end, x))
    return out


def _counter(deltas: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(ts, +1/-1) events as (ts, value) samples, one per distinct time: at one instant departures count
    before arrivals, so a frame handed on at the same nanosecond does not show as a spike."""
    out: list[tuple[int, int]] = []
    value = 0
    for ts, d in sorted(deltas):
        value += d
        if out and out[-1][0] == ts:
            out[-1] = (ts, value)
        else:
            out.append((ts, value))
    return out


Member = tuple[str, FrameTimes, Part]  # (stream label, frame, the part this slice shows)


def write_trace(f: Any, streams: Iterable[tuple[int, str]], frames: list[tuple[str, FrameTimes]],
                note: str = "") -> None:
    """Write ``frames`` (label, times) as a Perfetto trace to the binary file ``f``.

    Every event is sorted by time before it is written (ties keep each track's own order), so a reader
    that does not sort, or a slice of zero length at another's start, still sees slices nest.

    A batch (``--batch``: frames that ran together on one request, with the same start and end) is one slice
    on its request's track, part of each of its frames' flows."""
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

    w = _Writer(f)
    uuid = _Uuids()
    streams = list(streams)
    multi = len(streams) > 1

    def descriptor(name: str, parent: int | None = None, rank: int | None = None, counter: bool = False,
                   description: str = "") -> int:
        u = uuid()
        td = w.packet().track_descriptor
        td.uuid = u
        td.name = name
        if parent is not None:
            td.parent_uuid = parent
        if rank is not None:
            td.sibling_order_rank = rank
        if counter:
            td.counter.unit = pb.CounterDescriptor.UNIT_COUNT
        if description:
            td.description = description
        td.child_ordering = pb.TrackDescriptor.EXPLICIT
        return u

    # Layout: which track (and row) each slice goes on, and the counters' steps.
    by_track: dict[tuple[int, str, str], list[tuple[int, int, list[Member]]]] = {}
    by_request: dict[int, dict[tuple[int, int], list[Member]]] = {}
    waiting: list[tuple[int, int]] = []
    queued: dict[tuple[int, str], list[tuple[int, int]]] = {}
    last_part: dict[tuple[int, int], Part] = {}  # flows: each frame's last slice ends its flow
    count: dict[tuple[int, int], int] = {}
    for label, t in frames:
        parts = t.parts()
        if parts:
            last_part[(t.stream, t.frame)] = parts[-1]
            count[(t.stream, t.frame)] = len(parts)
        for p in parts:
            member = (label, t, p)
            if p.kind == "stage" and p.name == "inference":
                req = by_request.setdefault(t.request if t.request is not None else -1, {})
                req.setdefault((p.start, p.end), []).append(member)
                continue
            by_track.setdefault((t.stream, p.kind, p.name), []).append((p.start, p.end, [member]))
            if p.name == "infer_wait":
                waiting += [(p.start, 1), (p.end, -1)]
            elif p.kind == "wait":
                queued.setdefault((t.stream, p.name), []).extend([(p.start, 1), (p.end, -1)])
    # Busy requests: one per request running, whatever the number of frames in its batch.
    busy = [step for runs in by_request.values() for s, e in runs for step in ((s, 1), (e, -1))]

    events: list[tuple[int, int, int, Any]] = []  # (ts, order, track uuid, what): sorted before writing
    order = 0

    def slices(track: int, placed: Iterable[tuple[int, int, list[Member]]]) -> None:
        nonlocal order
        for start, end, members in placed:
            events.append((start, order, track, ("B", members)))
            events.append((end, order + 1, track, ("E", None)))
            order += 2

    def counter(track: int, samples: list[tuple[int, int]]) -> None:
        nonlocal order
        for ts, v in samples:
            events.append((ts, order, track, ("C", v)))
            order += 1

    # Tracks: a group per stream with its stage and wait tracks in pipeline order, then the requests.
    for rank, (index, label) in enumerate(streams):
        group = descriptor(stream_track_name(label), rank=rank, description=note)
        r = 0
        for kind, name in STREAM_TRACKS:
            placed = _lanes(by_track.get((index, kind, name), []))
            rows = max((lane for lane, *_ in placed), default=0) + 1
            for lane in range(rows):
                track = descriptor(TRACK_NAMES[(kind, name)], group, r)
                r += 1
                slices(track, ((s, e, x) for ln, s, e, x in placed if ln == lane))
        for name, title in QUEUE_COUNTERS.items():
            track = descriptor(title, group, r, counter=True)
            r += 1
            counter(track, _counter(queued.get((index, name), [])))
    group = descriptor(REQUESTS_TRACK, rank=len(streams))
    for r, request in enumerate(sorted(by_request)):
        track = descriptor(request_track_name(request) if request >= 0 else "request unknown", group, r)
        # Not spread over rows: one request runs one frame (or batch) at a time; the trace shows it as it was.
        slices(track, ((s, e, members) for (s, e), members in sorted(by_request[request].items())))
    n = len(by_request)
    counter(descriptor(BUSY_COUNTER, group, n, counter=True), _counter(busy))
    counter(descriptor(WAITING_COUNTER, group, n + 1, counter=True), _counter(waiting))

    events.sort(key=lambda e: (e[0], e[1]))
    begin, end, cnt = pb.TrackEvent.TYPE_SLICE_BEGIN, pb.TrackEvent.TYPE_SLICE_END, pb.TrackEvent.TYPE_COUNTER

    def annotate(ev: Any, key: str, value: int | str) -> None:
        a = ev.debug_annotations.add()
        a.name = key
        if isinstance(value, int):
            a.int_value = value
        else:
            a.string_value = value

    for ts, _, track, (what, x) in events:
        ev = w.packet(ts).track_event
        ev.track_uuid = track
        if what == "E":
            ev.type = end
            continue
        if what == "C":
            ev.type = cnt
            ev.counter_value = x
            continue
        ev.type = begin
        members: list[Member] = x
        label, t, p = members[0]
        on_request = (p.kind, p.name) == ("stage", "inference")  # the slice is on a request track
        if len(members) == 1:
            ev.name = f"{label}: frame {t.frame}" if multi and on_request else f"frame {t.frame}"
            # Inline rather than annotate(): this runs for every slice, and the file is written while the user waits.
            notes = ev.debug_annotations
            a = notes.add()
            a.name, a.string_value = "stream", label
            a = notes.add()
            a.name, a.int_value = "frame", t.frame
            a = notes.add()
            a.name, a.string_value = "outcome", t.outcome
        else:
            who = [f"{lb} {m.frame}" if multi else str(m.frame) for lb, m, _ in members]
            ev.name = f"batch of {len(members)}: frames {', '.join(who)}"
            annotate(ev, "batch", len(members))
            annotate(ev, "frames", ", ".join(f"{lb} frame {m.frame} ({m.outcome})" for lb, m, _ in members))
        if on_request and t.request is not None:
            annotate(ev, "request", t.request)
        for _, m, mp in members:
            key = (m.stream, m.frame)
            if count.get(key, 0) > 1:
                # A frame's parts differ in kind or name, so equality finds its last one.
                (ev.terminating_flow_ids if mp == last_part[key] else ev.flow_ids).append(flow_id(m.stream, m.frame))
    w.flush()
