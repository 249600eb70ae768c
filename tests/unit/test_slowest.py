"""The slowest frames and the trace's bookkeeping, on marks made by hand: the same accounting as the
recorder, the same choice of frames in the report and the trace, bounded memory, and the words."""

from __future__ import annotations

import io
import itertools
import json
import random
from pathlib import Path

import pytest

from tests.integration.trace_helpers import parse
from vidprof.profiling.clock import FakeClock
from vidprof.profiling.errors import RunError
from vidprof.profiling.marks import Marks
from vidprof.profiling.recorder import Recorder, Transfer
from vidprof.profiling.report import RunReport, SlowFrame
from vidprof.profiling.slowest import COMPLETED, FrameTimes, SlowestFrames, TopK
from vidprof.profiling.slowest_text import culprit, explain, slowest_lines
from vidprof.profiling.summary import RunInfo, StreamInfo, Summary
from vidprof.profiling.trace import (
    BUSY_COUNTER,
    CONTEXT_LIMIT,
    REQUESTS_TRACK,
    RING,
    TraceRecorder,
    _counter,
    _lanes,
    flow_id,
    write_trace,
)

MS = 1_000_000


def marks(frame: int, t0: int, gaps_ms: tuple[float, ...] = (2, 1, 3, 4, 5, 6, 7, 8), request: int | None = 0,
          upto: int = 9) -> Marks:
    """A frame from ``t0``: decode, queue, preprocess, queue, infer wait, inference, queue, postprocess lasting
    ``gaps_ms``; ``upto`` marks set (fewer: a frame that stopped on the way)."""
    c = FakeClock(t0)
    m = Marks()
    m.frame, m.request = frame, request
    steps = [("start", "decode"), ("end", "decode"), ("start", "preprocess"), ("end", "preprocess"), ("wait", None),
             ("start", "inference"), ("end", "inference"), ("start", "postprocess"), ("end", "postprocess")]
    for i, (kind, stage) in enumerate(steps[:upto]):
        if kind == "wait":
            m.infer_wait_start = c.now_ns()
        else:
            getattr(m, kind)[stage] = c.now_ns()
        if i < len(gaps_ms):
            c.advance(gaps_ms[i] / 1e3)
    return m


@pytest.mark.parametrize("upto", range(10))
def test_frame_parts_are_the_recorders_figures(upto: int) -> None:
    m = marks(3, 1_000 * MS, (2.5, 0.001, 3, 4.25, 0, 6, 7, 8), upto=upto)
    t = FrameTimes.of(0, m, COMPLETED)
    parts = t.parts()
    assert {p.name: (p.end - p.start) / 1e9 for p in parts if p.kind == "stage"} == \
        {s: v for s in ("decode", "preprocess", "inference", "postprocess") if (v := m.stage_seconds(s)) is not None}
    assert {p.name: (p.end - p.start) / 1e9 for p in parts if p.kind == "wait"} == m.waits_seconds()
    assert all(a.end == b.start for a, b in itertools.pairwise(parts))  # no gap, pipeline order
    assert (t.e2e_ns / 1e9 if t.e2e_ns is not None else None) == m.e2e_seconds()


def test_topk_keeps_the_largest_and_on_ties_the_first_seen() -> None:
    top: TopK[str] = TopK(3)
    for key, item in [(5, "a"), (9, "b"), (5, "c"), (7, "d"), (5, "e"), (9, "f"), (1, "g")]:
        top.offer(key, item)
    assert top.items() == ["b", "f", "d"]
    assert len(top) == 3
    none: TopK[str] = TopK(0)
    assert none.offer(10, "x") == (False, None) and none.items() == []
    ties: TopK[str] = TopK(2)
    for item in "abcd":
        ties.offer(4, item)
    assert ties.items() == ["a", "b"]


def test_slowest_frames_per_stream_with_their_start_in_the_run() -> None:
    slowest = SlowestFrames(2, run_start_ns=lambda: 1_000 * MS)
    a, b = slowest.sink(0, "front"), slowest.sink(1, "back")
    for i, (sink, extra) in enumerate([(a, 1), (a, 30), (a, 5), (a, 20), (b, 2), (b, 3)]):
        a_marks = marks(i, (1_000 + 100 * i) * MS, (2, extra, 3, 4, 5, 6, 7, 8))
        sink.frame_done(a_marks, Transfer(), failed=False)
    a.frame_done(marks(99, 1_000 * MS, (2, 500, 3, 4, 5, 6, 7, 8)), Transfer(), failed=True)  # failed: not listed
    a.frame_dropped(marks(98, 1_000 * MS))
    got = slowest.frames()
    assert [(f.stream, f.frame) for f in got] == [("front", 1), ("front", 3), ("back", 5), ("back", 4)]
    f = got[0]
    assert f.start == 0.1 and f.e2e == pytest.approx(0.065) and f.waits["preprocess"] == 0.03
    assert f.request == 0 and sum(f.stages.values()) + sum(f.waits.values()) == pytest.approx(f.e2e)


def report_with(slowest: tuple[SlowFrame, ...]) -> RunReport:
    rec = Recorder(None)
    for i in range(20):  # typical frames: inference ~20 ms, hardly any wait for a request
        rec.frame_done(marks(i, i * 50 * MS, (1, 1, 2, 0.2, 0.3, 20, 0.2, 1)), Transfer(), False)
    info = RunInfo(wall_seconds=1.0, frames_read=20)
    return Summary.build([rec], info, streams=[StreamInfo("0", "clip", "file", 20, None, rec, 1.0)],
                         slowest=slowest).run_report


SLOW = SlowFrame("0", 812, 0.0732, 12.34, {"decode": 0.001, "preprocess": 0.002, "inference": 0.021,
                                          "postprocess": 0.001},
                 {"preprocess": 0.0001, "inference": 0.0001, "infer_wait": 0.048, "postprocess": 0.0001}, 2)


def test_the_slow_part_is_the_one_furthest_above_its_median() -> None:
    rep = report_with((SLOW,))
    c = culprit(SLOW, rep.streams["0"])
    # Inference is not the longest part here (48 ms waiting is), and it is only 1 ms above its median.
    assert c is not None and (c.kind, c.name) == ("wait", "infer_wait")
    assert explain(SLOW, rep.streams["0"]) == \
        "frame 812 at 12.3 s: 73.2 ms, 48.0 ms of it waiting for a free infer request (p50 0.30 ms)"
    slow_inference = SlowFrame("0", 9, 0.06, 1.0, {"inference": 0.055}, {"infer_wait": 0.005}, 1)
    assert explain(slow_inference, rep.streams["0"]).endswith("55.0 ms of it in inference on request 1 (p50 20.0 ms)")
    assert explain(slow_inference, None) == "frame 9 at 1.0 s: 60.0 ms, 55.0 ms of it in inference on request 1"
    lines = slowest_lines(rep)
    assert lines[1] == "  " + explain(SLOW, rep.streams["0"]) and len(lines) == 2


def test_slowest_round_trips_through_json_and_older_files_have_none(tmp_path: Path) -> None:
    rep = report_with((SLOW,))
    doc = json.loads(json.dumps(rep.to_json()))
    assert doc["slowest"][0]["frame"] == 812 and doc["slowest"][0]["waits"]["infer_wait"] == 0.048
    assert RunReport.from_json(doc) == rep
    del doc["slowest"]
    assert RunReport.from_json(doc).slowest == () and "slowest" not in RunReport.from_json(doc).extra
    doc["slowest"] = [{**SLOW.to_json(), "e2e": "slow"}]
    with pytest.raises(RunError, match=r"slowest\[0\]\.e2e is 'slow', not a number"):
        RunReport.from_json(doc)
    doc["slowest"] = {"0": []}
    with pytest.raises(RunError, match="slowest is an object, not a list of frames"):
        RunReport.from_json(doc)


def test_the_summary_prints_the_slowest_frames() -> None:
    from rich.console import Console

    from vidprof.profiling.console import render_summary

    out = io.StringIO()
    render_summary(report_with((SLOW,)), console=Console(file=out, width=160, highlight=False), notes=io.StringIO())
    assert "frame 812 at 12.3 s: 73.2 ms, 48.0 ms of it waiting for a free infer request" in out.getvalue()


def feed(trace: TraceRecorder, slowest: SlowestFrames, streams: int, frames: int, seed: int = 1) -> None:
    """Frames of several streams, overlapping in time, some slow, handed over as the runner does."""
    rng = random.Random(seed)
    sinks = [(trace.observe(s, f"s{s}"), slowest.sink(s, f"s{s}")) for s in range(streams)]
    for i in range(frames):
        for s, (tsink, ssink) in enumerate(sinks):
            slow = rng.random() < 0.01
            m = marks(i, (i * 10 + s) * MS, (1, rng.choice((1, 2)), 2, 1, 40 if slow else 1, 8, 1, 1),
                      request=(i + s) % 4)
            failed = rng.random() < 0.01
            ssink.frame_done(m, Transfer(), failed)
            tsink.frame_done(m, Transfer(), failed)


def test_the_trace_stays_bounded_and_keeps_the_reports_slowest_frames() -> None:
    n, k, streams, frames = 50, 5, 3, 5_000
    trace, slowest = TraceRecorder(n, k), SlowestFrames(k)
    feed(trace, slowest, streams, frames)
    st = list(trace._streams.values())
    assert all(len(s.first) == n for s in st) and len(trace._ring) == RING
    assert all(len(x.context) <= CONTEXT_LIMIT for s in st for x in s.top.items())
    assert len(trace._open) <= streams * k
    kept = trace.kept()
    assert len(kept) <= streams * (n + k * (1 + CONTEXT_LIMIT))
    frames_kept = {(label, t.frame) for label, t in kept}
    assert {(f.stream, f.frame) for f in slowest.frames()} <= frames_kept
    # The same frames chosen by the same rule, tie for tie (many frames here have equal latencies).
    assert [(f.stream, f.frame) for f in slowest.frames()] == \
        [(s.label, x.times.frame) for s in st for x in s.top.items()]
    assert trace.describe()["frames_seen"] == streams * frames


def test_a_slow_frame_keeps_the_frames_that_overlapped_it(tmp_path: Path) -> None:
    trace = TraceRecorder(0, 1)
    sink = trace.observe(0, "0")
    for i in range(10):  # frames 60 ms apart, each 29 ms; frame 5 takes 200 ms
        gaps = (1, 1, 2, 1, 180 if i == 5 else 1, 20, 1, 3)
        sink.frame_done(marks(i, i * 60 * MS, gaps), Transfer(), False)
    kept = sorted(t.frame for _, t in trace.kept())
    assert kept == [5, 6, 7, 8]  # 6..8 started before frame 5 ended; 4 ended before it started


def test_lanes_never_overlap_and_use_as_few_rows_as_needed() -> None:
    spans = [(0, 10, "a"), (5, 15, "b"), (10, 20, "c"), (12, 13, "d"), (20, 20, "e"), (20, 30, "f")]
    placed = _lanes(spans)
    rows: dict[int, list[tuple[int, int]]] = {}
    for lane, s, e, _ in placed:
        rows.setdefault(lane, []).append((s, e))
    assert len(rows) == 3  # at most three spans overlap (b, c, d at 12)
    for row in rows.values():
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(row))


def test_counter_samples_count_departures_before_arrivals() -> None:
    assert _counter([(5, 1), (7, -1), (7, 1), (9, -1), (3, 1), (4, -1)]) == [(3, 1), (4, 0), (5, 1), (7, 1), (9, 0)]


def test_a_batch_is_one_slice_on_its_request_in_each_frames_flow(tmp_path: Path) -> None:
    a, b = marks(0, 0), marks(7, 1 * MS)
    # Ran together: one request, the same start and end (as the inference stage marks a batch).
    b.start["inference"], b.end["inference"], b.request = a.start["inference"], a.end["inference"], 0
    b.start["postprocess"] = max(b.start["postprocess"], b.end["inference"])
    b.end["postprocess"] = b.start["postprocess"] + MS
    frames = [("cam", FrameTimes.of(0, a, COMPLETED)), ("door", FrameTimes.of(1, b, COMPLETED))]
    path = tmp_path / "batch.pftrace"
    with open(path, "wb") as f:
        write_trace(f, [(0, "cam"), (1, "door")], frames)
    trace = parse(path)
    on_request = [s for s in trace.slices if s.group == REQUESTS_TRACK]
    assert len(on_request) == 1 and on_request[0].args["batch"] == 2
    assert on_request[0].name == "batch of 2: frames cam 0, door 7"
    assert set(on_request[0].flows) == {flow_id(0, 0), flow_id(1, 7)}
    assert [v for _, v in trace.counters[f"{REQUESTS_TRACK}/{BUSY_COUNTER}"]] == [1, 0]


def test_gantt_chart_of_the_slowest_frames() -> None:
    pytest.importorskip("matplotlib")
    from vidprof.profiling import html_report

    png = html_report.render_gantt(report_with((SLOW,)))
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    assert html_report.render_gantt(report_with(())) is None
