"""Per-frame timing marks: when each stage started and ended, in clock nanoseconds.

A frame's end-to-end latency is split without gaps: the stages, the queue waits
between them and the wait for a free infer request. The accounting lives here so
the recorder, the tests and the report agree on what adds up to what.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STAGES: tuple[str, ...] = ("decode", "preprocess", "inference", "postprocess")
# Waits a frame spends between stages; "infer_wait" is the wait for a free infer request.
WAITS: tuple[str, ...] = ("preprocess", "inference", "infer_wait", "postprocess")


@dataclass
class Marks:
    """Start and end times of each stage of one frame (clock nanoseconds)."""

    start: dict[str, int] = field(default_factory=dict)
    end: dict[str, int] = field(default_factory=dict)
    # When the frame began waiting for an infer request (after leaving the queue).
    infer_wait_start: int | None = None
    # Which infer request ran the frame (0..nireq-1): a trace draws one track per request.
    request: int | None = None
    frame: int = -1  # the frame's index in its stream, for whoever sees only the marks (a trace)

    def stage_seconds(self, stage: str) -> float | None:
        s, e = self.start.get(stage), self.end.get(stage)
        if s is None or e is None:
            return None
        return (e - s) / 1e9

    def waits_seconds(self) -> dict[str, float]:
        """Queue waits before each stage, and the wait for a free infer request."""
        out: dict[str, float] = {}
        if "decode" in self.end and "preprocess" in self.start:
            out["preprocess"] = (self.start["preprocess"] - self.end["decode"]) / 1e9
        if "preprocess" in self.end and self.infer_wait_start is not None:
            out["inference"] = (self.infer_wait_start - self.end["preprocess"]) / 1e9
            if "inference" in self.start:
                out["infer_wait"] = (self.start["inference"] - self.infer_wait_start) / 1e9
        if "inference" in self.end and "postprocess" in self.start:
            out["postprocess"] = (self.start["postprocess"] - self.end["inference"]) / 1e9
        return out

    def e2e_seconds(self) -> float | None:
        """From decode start (capture) to postprocess end."""
        s, e = self.start.get("decode"), self.end.get("postprocess")
        if s is None or e is None:
            return None
        return (e - s) / 1e9
