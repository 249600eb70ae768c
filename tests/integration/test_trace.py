"""`--trace`: a real run's Perfetto trace, read back with the perfetto protos, agrees with the report to the
nanosecond; flows follow each frame; an infer request runs one frame at a time; the trace stays bounded;
and the report's slowest frames are the trace's."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import CLIP_FRAMES
from tests.integration.trace_helpers import Trace, parse
from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.runner import Runner
from vidprof.profiling.marks import STAGES, WAITS
from vidprof.profiling.report import RunReport
from vidprof.profiling.trace import (
    BUSY_COUNTER,
    CONTEXT_LIMIT,
    QUEUE_COUNTERS,
    REQUESTS_TRACK,
    WAITING_COUNTER,
    TraceRecorder,
    flow_id,
    stream_track_name,
)
from vidprof.stages.inference import InferenceOptions

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = 30  # frames of the synthetic stream
NIREQ = 3


def run(tmp: Path, trace: TraceRecorder, **kw: Any) -> tuple[Runner, RunReport, Trace]:
    runner = Runner(RunConfig(**kw), CollectorRegistry(), observe=trace.observe, slowest=trace.slowest)
    runner.run()
    rep = runner.summary().run_report
    assert rep.fault is None and rep.frames.failed == 0, rep.fault or rep.first_error
    path = tmp / "run.pftrace"
    trace.write(str(path))
    return runner, rep, parse(path)


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, clip: str, detector: str) -> tuple[Runner, RunReport, Trace]:
    """Two streams of different lengths through one model with 3 requests, every frame kept (few frames:
    the recorder's figures are exact, one value per frame)."""
    return run(tmp_path_factory.mktemp("trace"), TraceRecorder(2000, 5), sources=(clip, f"synthetic:96x64@{SYNTHETIC}"),
               frames=SYNTHETIC, model=detector, preprocess="host", stream_names=("cam", "pattern"),
               inference=InferenceOptions(nireq=NIREQ), pipeline_name="trace")


def test_slices_equal_the_report_per_stream_and_part(traced: tuple[Runner, RunReport, Trace]) -> None:
    runner, rep, trace = traced
    assert {s.label: r.completed for s, r in zip(runner.workers, runner.recorders, strict=True)} == \
        {"cam": CLIP_FRAMES, "pattern": SYNTHETIC}
    completed = [s for s in trace.slices if s.args.get("outcome") == "completed"]
    assert len(completed) == len(trace.slices)  # nothing failed or dropped in this run
    for worker, recorder in zip(runner.workers, runner.recorders, strict=True):
        label, samples = worker.label, recorder.samples
        for kind, names, figures, counts in (("stage", STAGES, samples.stages, rep.streams[worker.label].stages),
                                             ("wait", WAITS, samples.waits, rep.streams[worker.label].waits)):
            for name in names:
                mine = [s for s in completed if s.args["stream"] == label and s.part == (kind, name)]
                assert len(mine) == counts[name].count == recorder.completed, (label, kind, name)
                # The same integers subtracted the same way: equal floats, not close ones.
                assert sorted((s.end - s.start) / 1e9 for s in mine) == sorted(figures[name].values().tolist()), \
                    (label, kind, name)
    # End to end: from the first slice's start to the last one's end, as the recorder's e2e figure.
    frames = trace.frame_slices()
    for worker, recorder in zip(runner.workers, runner.recorders, strict=True):
        e2e = [(v[-1].end - v[0].start) / 1e9 for (label, _), v in frames.items() if label == worker.label]
        assert sorted(e2e) == sorted(recorder.samples.e2e.values().tolist())


def test_every_slice_names_its_frame_and_sits_on_its_streams_track(traced: tuple[Runner, RunReport, Trace]) -> None:
    _, _, trace = traced
    for s in trace.slices:
        assert set(s.args) >= {"stream", "frame", "outcome"}, s
        if s.group == REQUESTS_TRACK:
            assert s.args["request"] == int(s.track_name.split()[-1])
            assert s.name == f"{s.args['stream']}: frame {s.args['frame']}"
        else:
            assert s.group == stream_track_name(s.args["stream"])
            assert s.name == f"frame {s.args['frame']}"
    # Eight parts a frame, each once.
    frames = trace.frame_slices()
    assert len(frames) == CLIP_FRAMES + SYNTHETIC
    assert all(len(v) == 8 and len({x.part for x in v}) == 8 for v in frames.values())


def test_a_flow_links_each_frames_slices_in_order(traced: tuple[Runner, RunReport, Trace]) -> None:
    runner, _, trace = traced
    index = {w.label: w.index for w in runner.workers}
    carriers: dict[int, list[Any]] = {}
    for s in trace.slices:
        for fid in (*s.flows, *s.terminating):
            carriers.setdefault(fid, []).append(s)
    frames = trace.frame_slices()
    assert len(carriers) == len(frames)  # one flow per frame, none stray
    for (label, frame), slices in frames.items():
        fid = flow_id(index[label], frame)
        assert sorted(carriers[fid], key=lambda s: s.start) == slices  # every slice of the frame, no other
        # Each slice begins where the previous one ended (the marks leave no gap), the last ends the flow.
        assert all(a.end == b.start for a, b in itertools.pairwise(slices))
        assert [s for s in slices if fid in s.terminating] == [slices[-1]]
        assert slices[-1].part == ("stage", "postprocess")


def test_an_infer_request_runs_one_frame_at_a_time(traced: tuple[Runner, RunReport, Trace]) -> None:
    _, _, trace = traced
    by_track: dict[str, list[Any]] = {}
    for s in trace.slices:
        if s.group == REQUESTS_TRACK:
            by_track.setdefault(s.track_name, []).append(s)
    assert 1 <= len(by_track) <= NIREQ
    assert sum(len(v) for v in by_track.values()) == CLIP_FRAMES + SYNTHETIC
    for slices in by_track.values():
        slices.sort(key=lambda s: s.start)
        assert all(a.end <= b.start for a, b in itertools.pairwise(slices))
    # The busy counter is the overlap of those slices: within 0..nireq, back to 0 at the end.
    busy = [v for _, v in trace.counters[f"{REQUESTS_TRACK}/{BUSY_COUNTER}"]]
    assert max(busy) <= NIREQ and min(busy) >= 0 and busy[-1] == 0
    waiting = [v for _, v in trace.counters[f"{REQUESTS_TRACK}/{WAITING_COUNTER}"]]
    assert min(waiting) >= 0 and waiting[-1] == 0


def test_queue_counters_count_the_frames_between_stages(traced: tuple[Runner, RunReport, Trace]) -> None:
    _, _, trace = traced
    for label in ("cam", "pattern"):
        for wait, title in QUEUE_COUNTERS.items():
            samples = trace.counters[f"{stream_track_name(label)}/{title}"]
            # Replayed from the wait slices: the counter after each instant is arrivals minus departures.
            steps = sorted([(s.start, 1) for s in trace.slices if s.args["stream"] == label
                            and s.part == ("wait", wait)] + [(s.end, -1) for s in trace.slices
                                                            if s.args["stream"] == label and s.part == ("wait", wait)])
            value, expect = 0, {}
            for ts, d in steps:
                value += d
                expect[ts] = value
            assert dict(samples) == expect


def test_the_reports_slowest_frames_are_in_the_trace_to_the_nanosecond(
        traced: tuple[Runner, RunReport, Trace]) -> None:
    _, rep, trace = traced
    assert len(rep.slowest) == 10 and {f.stream for f in rep.slowest} == {"cam", "pattern"}
    frames = trace.frame_slices()
    for f in rep.slowest:
        slices = {s.part: s for s in frames[(f.stream, f.frame)]}
        assert {n: (s.end - s.start) / 1e9 for (k, n), s in slices.items() if k == "stage"} == f.stages
        assert {n: (s.end - s.start) / 1e9 for (k, n), s in slices.items() if k == "wait"} == f.waits
        first, last = min(s.start for s in slices.values()), max(s.end for s in slices.values())
        assert (last - first) / 1e9 == f.e2e
        assert slices[("stage", "inference")].args["request"] == f.request
    # Slowest first within each stream, and no completed frame of the stream slower than the last kept.
    for label in ("cam", "pattern"):
        mine = [f.e2e for f in rep.slowest if f.stream == label]
        assert mine == sorted(mine, reverse=True)
        e2e = [max(s.end for s in v) - min(s.start for s in v) for (lb, _), v in frames.items() if lb == label]
        assert [x / 1e9 for x in sorted(e2e, reverse=True)[:5]] == mine


def test_a_long_run_keeps_the_first_frames_and_the_slowest_with_their_neighbours(
        tmp_path: Path, clip: str, detector: str) -> None:
    n, k = 6, 2
    _runner, rep, trace = run(tmp_path, TraceRecorder(n, k), sources=(clip,), frames=60, loop=True, model=detector,
                             preprocess="host", pipeline_name="trace")
    assert rep.frames.completed == 60
    frames = trace.frame_slices()
    kept = {frame for _, frame in frames}
    slow = [f.frame for f in rep.slowest]
    assert len(slow) == k
    assert set(range(n)) | set(slow) <= kept
    # Every other frame is there because it overlapped a slow one.
    spans = {frame: (min(s.start for s in v), max(s.end for s in v)) for (_, frame), v in frames.items()}
    for frame in kept - set(range(n)) - set(slow):
        a, b = spans[frame]
        assert any(a < spans[s][1] and b > spans[s][0] for s in slow), frame
    assert len(kept) <= n + k * (1 + CONTEXT_LIMIT)
    assert len(kept) < 60  # bounded: not every frame


def test_cli_writes_a_trace_the_protos_parse(tmp_path: Path, clip: str, detector: str) -> None:
    out, report = tmp_path / "t.pftrace", tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "vidprof.pipeline", "run", "--source", clip, "--model", detector,
                        "--trace", str(out), "--trace-frames", "10", "--slowest", "3", "--report", str(report),
                        "--no-metrics", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    trace = parse(out)
    doc = json.loads(report.read_text())
    kept = {frame for _, frame in trace.frame_slices()}
    assert set(range(10)) <= kept
    assert doc["config"]["trace"]["file"] == str(out) and doc["config"]["trace"]["frames"] == len(kept)
    assert "frames 0 to 9 of each stream" in doc["config"]["trace"]["kept"]
    assert [f["frame"] for f in doc["slowest"]] and len(doc["slowest"]) == 3
    assert {f["frame"] for f in doc["slowest"]} <= kept
    assert "trace written to" in r.stderr and "slowest frames end to end" in r.stdout
    assert RunReport.from_json(doc).slowest[0].frame == doc["slowest"][0]["frame"]


@pytest.mark.parametrize("args, expected", [
    (["--trace-frames", "10"], "--trace-frames without --trace"),
    (["--trace", "X", "--trace-frames", "-1"], "--trace-frames -1: expected 0 or more"),
    (["--slowest", "-2"], "--slowest -2: expected 0 or more"),
])
def test_bad_trace_options_fail_before_the_run(tmp_path: Path, args: list[str], expected: str) -> None:
    args = [str(tmp_path / "t.pftrace") if a == "X" else a for a in args]
    r = subprocess.run([sys.executable, "-m", "vidprof.pipeline", "run", *args, "--no-metrics"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and expected in r.stderr, r.stderr
    assert not (tmp_path / "t.pftrace").exists()
