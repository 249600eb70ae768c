"""Read a vidprof trace back with the perfetto package's protos (no trace processor: it downloads a binary),
checking on the way what a trace processor needs: tracks described before use, events in time order, and
every end closing the slice it belongs to."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from vidprof.profiling.trace import REQUESTS_TRACK, TRACK_NAMES

PART_OF_TRACK = {name: part for part, name in TRACK_NAMES.items()}


@dataclass
class Slice:
    track: int
    name: str
    start: int
    end: int
    args: dict[str, Any]
    flows: list[int]
    terminating: list[int]
    part: tuple[str, str] = ("", "")  # (kind, name) as in FrameTimes.parts
    track_name: str = ""
    group: str = ""  # the parent track's name: "stream <label>" or "infer requests"


@dataclass
class Trace:
    tracks: dict[int, Any] = field(default_factory=dict)  # uuid -> TrackDescriptor
    slices: list[Slice] = field(default_factory=list)
    counters: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # "group/name" -> samples
    packets: int = 0

    def frame_slices(self) -> dict[tuple[str, int], list[Slice]]:
        """Each frame's slices (by stream label and frame index) in time order; a batch's slice, which names
        several frames, is left out."""
        out: dict[tuple[str, int], list[Slice]] = {}
        for s in self.slices:
            if "frame" in s.args:
                out.setdefault((s.args["stream"], s.args["frame"]), []).append(s)
        for v in out.values():
            v.sort(key=lambda s: s.start)
        return out


def _value(a: Any) -> Any:
    return a.int_value if a.HasField("int_value") else a.string_value


def parse(path: str | Path) -> Trace:
    raw = Path(path).read_bytes()
    t = pb.Trace()
    t.ParseFromString(raw)
    out = Trace(packets=len(t.packet))
    open_: dict[int, list[Slice]] = {}
    last_ts = 0
    for p in t.packet:
        assert p.trusted_packet_sequence_id == 1
        if p.HasField("track_descriptor"):
            td = p.track_descriptor
            assert td.uuid not in out.tracks, f"track {td.uuid} described twice"
            out.tracks[td.uuid] = td
            continue
        assert p.HasField("track_event"), p
        ev = p.track_event
        assert p.timestamp >= last_ts, "events are written in time order"
        last_ts = p.timestamp
        td = out.tracks[ev.track_uuid]  # described before its first event
        if ev.type == pb.TrackEvent.TYPE_COUNTER:
            group = out.tracks[td.parent_uuid].name
            out.counters.setdefault(f"{group}/{td.name}", []).append((p.timestamp, ev.counter_value))
        elif ev.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
            s = Slice(ev.track_uuid, ev.name, p.timestamp, -1, {a.name: _value(a) for a in ev.debug_annotations},
                      list(ev.flow_ids), list(ev.terminating_flow_ids), track_name=td.name,
                      group=out.tracks[td.parent_uuid].name)
            s.part = ("stage", "inference") if s.group == REQUESTS_TRACK else PART_OF_TRACK[td.name]
            stack = open_.setdefault(ev.track_uuid, [])
            # vidprof's slices never nest: a row holds one frame (or batch) at a time, so the previous slice
            # has ended before the next begins, and an end always closes the slice it belongs to.
            assert not stack, f"{s.name} begins on {td.name} while {stack[-1].name} is open"
            stack.append(s)
            out.slices.append(s)
        elif ev.type == pb.TrackEvent.TYPE_SLICE_END:
            stack = open_.get(ev.track_uuid)
            assert stack, f"an end without a begin on track {td.name}"
            stack.pop().end = p.timestamp
        else:
            raise AssertionError(f"unexpected event type {ev.type}")
    assert all(not v for v in open_.values()), "every slice is closed"
    return out
