"""The run summary: statistics, busy ratios and the bottleneck, computed from the recorder.

Measuring only: rendering (console table, JSON file) lives in ``profiling.console`` and
``profiling.report``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vidprof.profiling.marks import STAGES, WAITS
from vidprof.profiling.recorder import Recorder
from vidprof.profiling.stats import Stats

ADVICE = {
    "decode": "the model is not the limit; try a lighter codec or resolution, or more decode threads",
    "preprocess": "try another --preprocess placement (separate, fused, host) or a smaller source resolution",
    "inference": "the model is the limit; try more --streams/--nireq, a lower --infer-precision "
                 "or a smaller model",
    "postprocess": "try a higher --threshold so NMS sees fewer boxes, or a cheaper decoder",
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


def busy_ratios(recorder: Recorder, wall_seconds: float, nireq: int, workers: int = 1) -> dict[str, float]:
    """Busy time over wall time; inference counts busy requests over available ones.

    ``workers``: how many streams the recorder's figures add up (each has its own decode, preprocess and
    postprocess thread, so those are averaged over the streams; the infer requests are shared)."""
    if wall_seconds <= 0:
        return {s: 0.0 for s in STAGES}
    out = {}
    for s in STAGES:
        busy = recorder.busy_seconds[s] + recorder.dropped_busy_seconds[s]
        out[s] = busy / wall_seconds / (nireq if s == "inference" else workers)
    return out


def bottleneck(busy: dict[str, float], live_capture: bool = False, hint: str | None = None) -> dict[str, Any]:
    """The stage that limits throughput, with one sentence of advice.

    ``live_capture``: a camera or stream, whose decode figure includes waiting for the device to
    deliver the next frame; a busy decode there is the source's frame rate, not decoding cost.
    """
    stage = max(STAGES, key=lambda s: busy[s])
    ratio = busy[stage]
    if live_capture and stage == "decode":
        advice = (f"decode is busy {ratio:.0%} of the time, which for a camera or stream includes waiting for "
                  "its next frame: the source's frame rate limits the run, not the pipeline")
    elif ratio < SATURATED:
        advice = (f"no stage is saturated (the busiest, {stage}, is busy {ratio:.0%} of the time): "
                  "the source's pace limits the run")
    else:
        others = [s for s in STAGES if s != stage]
        second = max(others, key=lambda s: busy[s])
        advice = (f"{stage} is busy {ratio:.0%} of the time while {second} is busy {busy[second]:.0%}: "
                  f"{ADVICE[stage]}")
        if stage == "inference" and hint not in (None, "throughput", "cumulative_throughput"):
            advice += ", or --hint throughput"  # only worth saying when it is not already the hint
    return {"stage": stage, "busy_ratio": ratio, "advice": advice}


def attribution(recorder: Recorder, perf: dict[str, Any] | None) -> dict[str, float]:
    """Mean seconds per frame for preprocess and inference, with fused preprocessing nodes' device time
    moved from inference to preprocess, so fused and separate placements compare stage by stage."""
    s = recorder.samples
    pre = Stats.of(s.stages["preprocess"]).mean
    inf = Stats.of(s.stages["inference"]).mean
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


def _live(kind: str | None) -> bool:
    return kind in ("camera", "url")


def stream_report(st: StreamInfo, wall: float, nireq: int, hint: str | None) -> dict[str, Any]:
    """One stream's figures: the same keys as the aggregate's, for one stream."""
    r, s = st.recorder, st.recorder.samples
    busy = busy_ratios(r, st.seconds or wall, nireq)
    return {
        "source": st.source,
        "kind": st.kind,
        "frames": {"completed": r.completed, "dropped": r.dropped, "failed": r.failed, "read": st.frames_read},
        "seconds": st.seconds,
        "fps": r.completed / st.seconds if st.seconds > 0 else 0.0,
        "stages": {stage: Stats.of(s.stages[stage]).to_dict() for stage in STAGES},
        "waits": {w: Stats.of(s.waits[w]).to_dict() for w in WAITS},
        "e2e": Stats.of(s.e2e).to_dict(),
        "busy": busy,
        "bottleneck": bottleneck(busy, _live(st.kind), hint),
        "fault": st.fault,
        "first_error": r.first_error,
    }


@dataclass
class Summary:
    report: dict[str, Any]

    @classmethod
    def build(cls, recorders: Sequence[Recorder], info: RunInfo, perf_counters: dict[str, Any] | None = None,
              streams: Sequence[StreamInfo] = ()) -> Summary:
        """The aggregate of every stream at the top level (today's keys), and each stream under ``streams``."""
        recorder = recorders[0] if len(recorders) == 1 else Recorder.merge(recorders)
        s = recorder.samples
        wall = info.wall_seconds
        n = max(1, len(recorders))
        hint = (info.config.get("inference") or {}).get("hint")
        busy = busy_ratios(recorder, wall, info.nireq, workers=n)
        per_stream = {st.label: stream_report(st, wall, info.nireq, hint) for st in streams}
        fps = [v["fps"] for v in per_stream.values()]
        report: dict[str, Any] = {
            "frames": {"completed": recorder.completed, "dropped": recorder.dropped, "failed": recorder.failed,
                       "read": info.frames_read},
            "wall_seconds": wall,
            "fps": recorder.completed / wall if wall > 0 else 0.0,
            "stages": {st: Stats.of(s.stages[st]).to_dict() for st in STAGES},
            "waits": {w: Stats.of(s.waits[w]).to_dict() for w in WAITS},
            "e2e": Stats.of(s.e2e).to_dict(),
            "unaccounted": Stats.of(s.unaccounted).to_dict(),
            "transfer": {
                "host_to_device": {"bytes": recorder.h2d_bytes, "seconds": float(sum(s.h2d_seconds)),
                                   "per_frame": Stats.of(s.h2d_seconds).to_dict()},
                "device_to_host": {"bytes": recorder.d2h_bytes, "seconds": float(sum(s.d2h_seconds)),
                                   "per_frame": Stats.of(s.d2h_seconds).to_dict()},
            },
            "startup": dict(info.startup),
            "memory": dict(info.memory),
            "perf_counters": perf_counters,
            "stage_attribution": attribution(recorder, perf_counters),
            "busy": busy,
            "bottleneck": bottleneck(busy, all(_live(st.kind) for st in streams) if streams else
                                     _live(info.config.get("source_kind")), hint),
            "config": info.config,
            "fault": info.fault,
            "first_error": recorder.first_error,
            "interrupted": info.interrupted,
            "streams": per_stream,
            # The spread between streams: with equal sources, a low ratio means one stream starved.
            "stream_fps": {"min": min(fps), "max": max(fps), "ratio": min(fps) / max(fps) if max(fps) > 0 else 0.0}
            if fps else None,
        }
        return cls(report)
