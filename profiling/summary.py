"""The run summary: statistics, busy ratios and the bottleneck, computed from the recorder.

Measuring only: the report's types and its JSON file live in ``profiling.report``, rendering in
``profiling.console`` and ``profiling.html_report``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vidprof.profiling.marks import STAGES, WAITS
from vidprof.profiling.recorder import Recorder
from vidprof.profiling.report import (
    Bottleneck,
    FrameCounts,
    InjectedDelay,
    Outage,
    RunReport,
    SlowFrame,
    StageStats,
    StreamFpsSpread,
    StreamReport,
    Transfer,
    TransferDirection,
    plain,
)

ADVICE = {
    "decode": "the model is not the limit; try a lighter codec or resolution, or more decode threads",
    "preprocess": "try another --preprocess placement (separate, fused, host) or a smaller source resolution",
    "inference": "the model is the limit; try more --streams/--nireq, a lower --infer-precision "
                 "or a smaller model",
    "postprocess": "try a higher --threshold so NMS sees fewer boxes, or a cheaper decoder",
    # Not a stage: frames arrive no faster than the source delivers them (a camera, a paced file) and the
    # pipeline keeps up. The keys of ADVICE are every value ``bottleneck()["stage"]`` can take.
    "source": "to see how far the pipeline goes, feed it faster (a file without --realtime) or give it more "
              "streams (vidprof density)",
}
SATURATED = 0.5  # below this no stage is really limiting; the source's pace is


@dataclass
class RunInfo:
    """What the runner knows beyond the per-frame figures."""

    wall_seconds: float = 0.0
    frames_read: int = 0  # frames the source delivered: completed + dropped + failed once drained
    nireq: int = 1
    startup: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    fault: str | None = None
    interrupted: bool = False


def busy_ratios(recorder: Recorder, wall_seconds: float, nireq: int, workers: int = 1,
                preprocess_threads: int | None = None) -> dict[str, float]:
    """Busy time over wall time; inference counts busy requests over available ones.

    ``workers``: how many streams the recorder's figures add up (each has its own decode, preprocess and
    postprocess thread, so those are averaged over the streams; the infer requests are shared).
    ``preprocess_threads``: the threads that ran preprocessing over those streams (a file's ``separate``
    preprocessing runs on two a stream); default one a stream."""
    if wall_seconds <= 0:
        return {s: 0.0 for s in STAGES}
    threads = {"inference": nireq, "preprocess": preprocess_threads or workers}
    out = {}
    for s in STAGES:
        busy = recorder.busy_seconds[s] + recorder.dropped_busy_seconds[s]
        out[s] = busy / wall_seconds / threads.get(s, workers)
    return out


def bottleneck(busy: dict[str, float], live_capture: bool = False, hint: str | None = None,
               paced: bool | None = None) -> dict[str, Any]:
    """What limits throughput, with one sentence of advice.

    ``stage`` is one of ADVICE's keys: a pipeline stage, or ``source`` when frames arrive no faster than the
    source delivers them (no stage saturated, or a camera's decode, which waits for the device). Then
    ``busy_ratio`` is the busiest stage's, the pipeline's headroom.

    ``live_capture``: a camera or stream, whose decode figure includes waiting for the device to
    deliver the next frame; a busy decode there is the source's frame rate, not decoding cost.
    ``paced``: frames arrive at the source's own pace (a camera, a stream, ``--realtime``); only then is
    "nothing saturated" the source's doing. A file read as fast as it decodes names its busiest stage
    even when that stage is not saturated (a short run, or hand-offs between threads, limit it).
    None: as ``live_capture``.
    """
    if paced is None:
        paced = live_capture
    busiest = max(STAGES, key=lambda s: busy[s])
    ratio = busy[busiest]
    if live_capture and busiest == "decode":
        return {"stage": "source", "busy_ratio": ratio,
                "advice": f"decode is busy {ratio:.0%} of the time, which for a camera or stream includes waiting "
                          "for its next frame: the source's frame rate limits the run, not the pipeline"}
    if ratio < SATURATED and paced:
        # Naming the busiest stage here would send people tuning a stage that waits for frames.
        return {"stage": "source", "busy_ratio": ratio,
                "advice": f"no stage is saturated (the busiest, {busiest}, is busy {ratio:.0%} of the time): the "
                          "pipeline waits for frames, so the source's pace limits the run (or, for a file read as "
                          f"fast as it decodes, the run is too short to fill the pipeline); {ADVICE['source']}"}
    others = [s for s in STAGES if s != busiest]
    second = max(others, key=lambda s: busy[s])
    advice = f"{busiest} is busy {ratio:.0%} of the time while {second} is busy {busy[second]:.0%}: {ADVICE[busiest]}"
    if ratio < SATURATED:  # a file read as fast as it decodes, and still no stage saturated
        advice = ("no stage is saturated (a short run, or the hand-offs between threads, limit it); the busiest: "
                  + advice)
    if busiest == "inference" and hint not in (None, "throughput", "cumulative_throughput"):
        advice += ", or --hint throughput"  # only worth saying when it is not already the hint
    return {"stage": busiest, "busy_ratio": ratio, "advice": advice}


def attribution(recorder: Recorder, perf: dict[str, Any] | None) -> dict[str, float]:
    """Mean seconds per frame for preprocess and inference, with fused preprocessing nodes' device time
    moved from inference to preprocess, so fused and separate placements compare stage by stage."""
    s = recorder.samples
    pre = s.stages["preprocess"].stats().mean
    inf = s.stages["inference"].stats().mean
    moved = (perf or {}).get("preprocess_nodes_seconds") or 0.0
    return {"preprocess": pre + moved, "inference": inf - moved, "moved_from_inference": moved}


@dataclass(frozen=True)
class StreamInfo:
    """What the runner knows of one stream beyond its recorder."""

    label: str
    source: str
    kind: str
    frames_read: int
    fault: str | None
    recorder: Recorder
    seconds: float  # from the run's start to this stream's end: a stream that ends early is not diluted
    outages: tuple[Outage, ...] = ()
    outage_count: int = 0
    reconnects: int = 0
    paced: bool = False  # frames arrive at the source's pace (a camera, a stream, --realtime)
    preprocess_threads: int = 1  # threads that ran this stream's preprocessing


def _live(kind: str | None) -> bool:
    return kind in ("camera", "url")


def stream_report(st: StreamInfo, wall: float, nireq: int, hint: str | None) -> StreamReport:
    """One stream's figures: the same as the aggregate's, for one stream."""
    r, s = st.recorder, st.recorder.samples
    busy = busy_ratios(r, st.seconds or wall, nireq, preprocess_threads=st.preprocess_threads)
    return StreamReport(
        source=st.source,
        kind=st.kind,
        frames=FrameCounts(r.completed, r.dropped, r.failed, st.frames_read),
        seconds=st.seconds,
        fps=r.completed / st.seconds if st.seconds > 0 else 0.0,
        stages={stage: StageStats.of(s.stages[stage]) for stage in STAGES},
        waits={w: StageStats.of(s.waits[w]) for w in WAITS},
        e2e=StageStats.of(s.e2e),
        busy=busy,
        bottleneck=Bottleneck(**bottleneck(busy, _live(st.kind), hint, paced=st.paced or _live(st.kind))),
        fault=st.fault,
        first_error=r.first_error,
        failed_reasons={k: n for k, n in r.failed_reasons.items() if n},  # only reasons that happened
        outages=st.outages,
        outage_count=st.outage_count,
        reconnects=st.reconnects,
    )


@dataclass
class Summary:
    """A run's summary. ``run_report`` is the typed report; a later step (the CLI's model-only FPS)
    replaces it with ``dataclasses.replace``."""

    run_report: RunReport

    @property
    def report(self) -> dict[str, Any]:
        """The report as its JSON document (the keys ``to_json`` writes), a copy to read."""
        return self.run_report.to_json()

    @classmethod
    def build(cls, recorders: Sequence[Recorder], info: RunInfo, perf_counters: dict[str, Any] | None = None,
              streams: Sequence[StreamInfo] = (), inject: Mapping[str, InjectedDelay] | None = None,
              timeline: Sequence[dict[str, Any]] = (), slowest: Sequence[SlowFrame] = ()) -> Summary:
        """The aggregate of every stream at the top level, and each stream under ``streams``."""
        recorder = recorders[0] if len(recorders) == 1 else Recorder.merge(recorders)
        s = recorder.samples
        wall = info.wall_seconds
        n = max(1, len(recorders))
        hint = (info.config.get("inference") or {}).get("hint")
        threads = sum(st.preprocess_threads for st in streams) if streams else None
        busy = busy_ratios(recorder, wall, info.nireq, workers=n, preprocess_threads=threads)
        per_stream = {st.label: stream_report(st, wall, info.nireq, hint) for st in streams}
        live = all(_live(st.kind) for st in streams) if streams else _live(info.config.get("source_kind"))
        paced = all(st.paced or _live(st.kind) for st in streams) if streams else bool(info.config.get("live"))
        # The free-form parts as the file will hold them (tuples as lists...): a report built here then
        # equals the same report read back from its file.
        return cls(RunReport(
            frames=FrameCounts(recorder.completed, recorder.dropped, recorder.failed, info.frames_read),
            wall_seconds=wall,
            fps=recorder.completed / wall if wall > 0 else 0.0,
            stages={st: StageStats.of(s.stages[st]) for st in STAGES},
            waits={w: StageStats.of(s.waits[w]) for w in WAITS},
            e2e=StageStats.of(s.e2e),
            unaccounted=StageStats.of(s.unaccounted),
            transfer=Transfer(
                TransferDirection(recorder.h2d_bytes, s.h2d_seconds.flushed_sum(), StageStats.of(s.h2d_seconds)),
                TransferDirection(recorder.d2h_bytes, s.d2h_seconds.flushed_sum(), StageStats.of(s.d2h_seconds)),
            ),
            startup=plain(info.startup),
            memory=plain(info.memory),
            perf_counters=plain(perf_counters),
            stage_attribution=attribution(recorder, perf_counters),
            busy=busy,
            bottleneck=Bottleneck(**bottleneck(busy, live, hint, paced=paced)),
            config=plain(info.config),
            fault=info.fault,
            first_error=recorder.first_error,
            interrupted=info.interrupted,
            streams=per_stream,
            stream_fps=StreamFpsSpread.of([v.fps for v in per_stream.values()]),
            inject=dict(inject or {}),
            timeline=tuple(plain(list(timeline))),
            slowest=tuple(slowest),
        ))
