"""The run summary: statistics, busy ratios and the bottleneck, computed from the recorder.

Measuring only: rendering (console table, JSON file) lives in ``profiling.console`` and
``profiling.report``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from profiling.marks import STAGES, WAITS
from profiling.recorder import Recorder
from profiling.stats import Stats

ADVICE = {
    "decode": "the model is not the limit; try a lighter codec or resolution, or more decode threads",
    "preprocess": "try another --preprocess placement (separate, fused, host) or a smaller source resolution",
    "inference": "the model is the limit; try --hint throughput, more --streams/--nireq, "
                 "a lower --infer-precision or a smaller model",
    "postprocess": "try a higher --threshold so NMS sees fewer boxes, or a cheaper decoder",
}
SATURATED = 0.5  # below this no stage is really limiting; the source's pace is


@dataclass
class RunInfo:
    """What the runner knows beyond the per-frame figures."""

    wall_seconds: float = 0.0
    nireq: int = 1
    startup: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    fault: str | None = None
    interrupted: bool = False


def busy_ratios(recorder: Recorder, wall_seconds: float, nireq: int) -> dict[str, float]:
    """Busy time over wall time; inference counts busy requests over available ones."""
    if wall_seconds <= 0:
        return {s: 0.0 for s in STAGES}
    out = {}
    for s in STAGES:
        busy = recorder.busy_seconds[s] + (recorder.dropped_decode_seconds if s == "decode" else 0.0)
        out[s] = busy / wall_seconds / (nireq if s == "inference" else 1)
    return out


def bottleneck(busy: dict[str, float]) -> dict[str, Any]:
    stage = max(STAGES, key=lambda s: busy[s])
    ratio = busy[stage]
    if ratio < SATURATED:
        advice = (f"no stage is saturated (the busiest, {stage}, is busy {ratio:.0%} of the time): "
                  "the source's pace limits the run")
    else:
        others = [s for s in STAGES if s != stage]
        second = max(others, key=lambda s: busy[s])
        advice = (f"{stage} is busy {ratio:.0%} of the time while {second} is busy {busy[second]:.0%}: "
                  f"{ADVICE[stage]}")
    return {"stage": stage, "busy_ratio": ratio, "advice": advice}


@dataclass
class Summary:
    report: dict[str, Any]

    @classmethod
    def build(cls, recorder: Recorder, info: RunInfo) -> Summary:
        s = recorder.samples
        wall = info.wall_seconds
        busy = busy_ratios(recorder, wall, info.nireq)
        report: dict[str, Any] = {
            "frames": {"completed": recorder.completed, "dropped": recorder.dropped, "failed": recorder.failed},
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
            "busy": busy,
            "bottleneck": bottleneck(busy),
            "config": info.config,
            "fault": info.fault,
            "first_error": recorder.first_error,
            "interrupted": info.interrupted,
        }
        return cls(report)
