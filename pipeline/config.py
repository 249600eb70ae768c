"""The run configuration: one frozen dataclass that validates itself on construction."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from vidprof.profiling.errors import UsageError
from vidprof.profiling.marks import STAGES
from vidprof.stages.inference import InferenceOptions
from vidprof.stages.postprocess import PostprocessOptions
from vidprof.stages.preprocess import PLACEMENTS, PreprocessOptions

_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(us|µs|ms|s)$")
_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
_LABEL = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def parse_duration(text: str, what: str) -> float:
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(f"{what} {text!r}: expected a duration with a unit, e.g. 8ms, 500us or 0.2s")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class Injection:
    """A what-if delay added inside a stage: sleep, or burn CPU when ``busy``."""

    stage: str
    seconds: float
    busy: bool = False

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise UsageError(f"--inject {self.stage}=...: unknown stage; expected one of {', '.join(STAGES)}")
        if not 0.0 <= self.seconds <= 10.0:
            raise UsageError(f"--inject {self.stage}={self.seconds}s: expected a delay between 0 and 10 s")

    @classmethod
    def parse(cls, text: str) -> Injection:
        """``STAGE=DURATION``; ``busy:`` before the stage or the duration burns CPU instead of sleeping."""
        if "=" not in text:
            raise UsageError(f"--inject {text!r}: expected STAGE=DURATION, e.g. postprocess=8ms or decode=busy:5ms")
        stage, value = (p.strip() for p in text.split("=", 1))
        busy = False
        if stage.startswith("busy:"):
            stage, busy = stage[5:], True
        if value.startswith("busy:"):
            value, busy = value[5:], True
        return cls(stage, parse_duration(value, f"--inject {stage}="), busy)

    def describe(self) -> str:
        return f"{self.stage}={'busy:' if self.busy else ''}{self.seconds * 1e3:g}ms"


@dataclass(frozen=True)
class RunConfig:
    source: str | None = None  # None: the embedded sample clip
    model: str | None = None  # None: the embedded sample model
    frames: int | None = None
    duration: float | None = None
    loop: bool = False
    realtime: bool = False
    preprocess: str = "separate"
    preprocess_options: PreprocessOptions = field(default_factory=PreprocessOptions)
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    postprocess: PostprocessOptions = field(default_factory=PostprocessOptions)
    inject: tuple[Injection, ...] = ()
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None  # None: no HTTP server; 0: any free port
    report: str | None = None
    pipeline_name: str | None = None  # None: derived from the source
    stream: str = "0"
    queue_size: int = 4
    warmup: int = 0  # inference rounds per request on a blank frame before the clock starts
    keep_outputs: bool = False  # keep every frame's raw outputs and results (accuracy comparison)

    def __post_init__(self) -> None:
        if self.frames is not None and self.frames < 1:
            raise UsageError(f"--frames {self.frames}: expected a positive number of frames")
        if self.duration is not None and not self.duration > 0:
            raise UsageError(f"--duration {self.duration}: expected a positive number of seconds")
        if self.preprocess not in PLACEMENTS:
            raise UsageError(f"--preprocess {self.preprocess!r}: expected one of {', '.join(PLACEMENTS)}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise UsageError(f"--metrics-port {self.metrics_port}: expected 0..65535 (0 picks a free port)")
        if self.warmup < 0:
            raise UsageError(f"--warmup {self.warmup}: expected 0 or more rounds")
        if self.queue_size < 1:
            raise UsageError(f"--queue-size {self.queue_size}: expected at least 1")
        for what, value in (("--pipeline-name", self.pipeline_name), ("--stream", self.stream)):
            if value is not None and not _LABEL.match(value):
                raise UsageError(f"{what} {value!r}: expected 1-64 characters of letters, digits, _ . : -")
        stages = [i.stage for i in self.inject]
        if len(set(stages)) != len(stages):
            raise UsageError(f"--inject names a stage twice ({', '.join(stages)}); give each stage one delay")

    def injection(self, stage: str) -> Injection | None:
        return next((i for i in self.inject if i.stage == stage), None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inject"] = [i.describe() for i in self.inject]
        return d
