"""The run configuration: one frozen dataclass that validates itself on construction."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from vidprof.profiling.errors import UsageError
from vidprof.profiling.marks import STAGES
from vidprof.stages.inference import InferenceOptions
from vidprof.stages.postprocess import PostprocessOptions
from vidprof.stages.preprocess import PLACEMENTS, PreprocessOptions
from vidprof.stages.sources import SourceOptions

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

    def to_arg(self) -> str:
        """The ``--inject`` value that parses back to exactly this delay: in ms as ``describe`` shows it
        when that is exact, else in seconds with every digit (``describe`` rounds to six)."""
        from decimal import Decimal

        short = self.describe()
        try:
            if Injection.parse(short) == self:
                return short
        except UsageError:  # a delay so small that describe() writes it with an exponent
            pass
        # Plain decimals: repr may use an exponent (1e-05), which a duration does not accept.
        return f"{self.stage}={'busy:' if self.busy else ''}{format(Decimal(repr(self.seconds)), 'f')}s"


RUNTIMES = ("openvino", "onnxruntime")


def onnxruntime_conflict(config: RunConfig) -> str | None:
    """Why ``config`` cannot run on ONNX Runtime's CPU provider, as a one-line error; None when it can.

    Settings that only configure OpenVINO and change nothing measured (--hint, --cache-dir, --zero-copy)
    are not conflicts: ONNX Runtime has no such thing, and a sweep sharing them must still run it."""
    inf = config.inference
    what = "--runtime onnxruntime"
    if config.model is None:
        return (f"{what}: the embedded sample model is an OpenVINO IR; expected an ONNX model (.onnx); give "
                "--model PATH.onnx, or use --runtime openvino")
    if not config.model.lower().endswith(".onnx"):
        return (f"{what} runs ONNX models; --model {config.model} is not an .onnx file; give an ONNX model, or use "
                "--runtime openvino")
    if config.preprocess == "fused":
        return (f"{what} with --preprocess fused: fused builds the preprocessing into an OpenVINO model; use "
                "--preprocess separate or host")
    if inf.device.upper() != "CPU":
        return f"{what} with --device {inf.device}: vidprof runs ONNX Runtime's CPU provider only; use --device CPU"
    for flag, given in (("--streams", inf.streams is not None),
                        ("--infer-precision", inf.infer_precision not in (None, "f32")),
                        ("--perf-counters", inf.perf_counters), ("--batch", inf.batch != 1)):
        if given:
            return (f"{what} with {flag}: an OpenVINO setting ONNX Runtime has no equivalent for; drop {flag} or "
                    "use --runtime openvino")
    return None


@dataclass(frozen=True)
class StreamSpec:
    """One stream of a run: its label and the source it reads (None: the embedded sample clip)."""

    index: int
    label: str
    source: str | None


MAX_STREAMS = 256  # the stream label's cardinality bound: each stream is a label value on every series


@dataclass(frozen=True)
class RunConfig:
    sources: tuple[str, ...] = ()  # empty: the embedded sample clip
    model: str | None = None  # None: the embedded sample model
    runtime: str = "openvino"  # what runs inference: OpenVINO, or ONNX Runtime's CPU provider for comparison
    frames: int | None = None  # per stream
    duration: float | None = None
    loop: bool = False
    realtime: bool = False
    realtime_fps: float | None = None  # pace non-live sources at this FPS instead of their own (implies realtime)
    copies: int = 1  # the sources repeated as this many independent streams each
    open_timeout: float = 5.0  # seconds a network stream may take to open
    read_timeout: float = 5.0  # seconds a live stream may go without a frame before it counts as lost
    reconnect: bool = True  # a lost live stream is reconnected (with a doubling backoff); files never are
    reconnect_delay: float = 1.0  # the first wait before reconnecting
    preprocess: str = "separate"
    preprocess_options: PreprocessOptions = field(default_factory=PreprocessOptions)
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    postprocess: PostprocessOptions = field(default_factory=PostprocessOptions)
    inject: tuple[Injection, ...] = ()
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None  # None: no HTTP server; 0: any free port
    report: str | None = None
    pipeline_name: str | None = None  # None: derived from the first source
    stream_names: tuple[str, ...] = ()  # labels in stream order; the rest are numbered 0, 1, ...
    queue_size: int = 4
    warmup: int = 0  # inference rounds per request on a blank frame before the clock starts
    keep_outputs: bool = False  # keep every frame's raw outputs and results (accuracy comparison)

    def __post_init__(self) -> None:
        if self.frames is not None and self.frames < 1:
            raise UsageError(f"--frames {self.frames}: expected a positive number of frames")
        if self.duration is not None and not (self.duration > 0 and math.isfinite(self.duration)):
            raise UsageError(f"--duration {self.duration}: expected a positive, finite number of seconds; "
                             "leave --duration out to run until the sources end")
        if not (math.isfinite(self.reconnect_delay) and 0 < self.reconnect_delay <= 600):
            raise UsageError(f"--reconnect-delay {self.reconnect_delay}: expected seconds between 0 and 600, e.g. 1")
        SourceOptions(self.loop, self.open_timeout, self.read_timeout)  # validates the timeouts
        if self.preprocess not in PLACEMENTS:
            raise UsageError(f"--preprocess {self.preprocess!r}: expected one of {', '.join(PLACEMENTS)}")
        for flag, values in (("--mean", self.preprocess_options.mean), ("--scale", self.preprocess_options.scale)):
            # nan or inf would turn every input tensor into nan, and the run would measure garbage in silence.
            if values is not None and not all(math.isfinite(v) for v in values):
                raise UsageError(f"{flag} {','.join(map(str, values))}: expected finite numbers, "
                                 "e.g. 123.7,116.3,103.5")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise UsageError(f"--metrics-port {self.metrics_port}: expected 0..65535 (0 picks a free port)")
        if self.warmup < 0:
            raise UsageError(f"--warmup {self.warmup}: expected 0 or more rounds")
        if self.runtime not in RUNTIMES:
            raise UsageError(f"--runtime {self.runtime!r}: expected one of {', '.join(RUNTIMES)}")
        conflict = onnxruntime_conflict(self) if self.runtime == "onnxruntime" else None
        if conflict:
            raise UsageError(conflict)
        if self.queue_size < 1:
            raise UsageError(f"--queue-size {self.queue_size}: expected at least 1")
        if self.realtime_fps is not None and not self.realtime_fps > 0:
            raise UsageError(f"--realtime-fps {self.realtime_fps}: expected a positive frame rate, e.g. 30")
        if self.copies < 1:
            raise UsageError(f"--copies {self.copies}: expected at least 1 copy of each source")
        if any(not s for s in self.sources):
            raise UsageError("--source '': expected a video file, camera, URL, image folder or synthetic:WxH@FPS; "
                             "leave --source out for the embedded sample clip")
        n = max(1, len(self.sources)) * self.copies
        if n > MAX_STREAMS:
            raise UsageError(f"{n} streams ({max(1, len(self.sources))} sources x --copies {self.copies}): expected "
                             f"at most {MAX_STREAMS}; run several vidprof processes for more")
        if len(self.stream_names) > n:
            raise UsageError(f"--stream given {len(self.stream_names)} times for {n} streams; give at most one "
                             "name per stream, in the order of the streams")
        for what, value in (("--pipeline-name", self.pipeline_name), *(("--stream", v) for v in self.stream_names)):
            if value is not None and not _LABEL.match(value):
                raise UsageError(f"{what} {value!r}: expected 1-64 characters of letters, digits, _ . : -")
        labels = [s.label for s in self.streams()]
        if len(set(labels)) != len(labels):
            dup = next(x for x in labels if labels.count(x) > 1)
            raise UsageError(f"--stream: two streams are named {dup!r}; expected a distinct name per stream")
        stages = [i.stage for i in self.inject]
        if len(set(stages)) != len(stages):
            raise UsageError(f"--inject names a stage twice ({', '.join(stages)}); give each stage one delay")

    def source_options(self) -> SourceOptions:
        return SourceOptions(self.loop, self.open_timeout, self.read_timeout)

    def streams(self) -> list[StreamSpec]:
        """The run's streams in order: the sources as given, the whole list repeated ``copies`` times."""
        specs: tuple[str | None, ...] = self.sources or (None,)
        out = []
        for i, src in enumerate(specs * self.copies):
            label = self.stream_names[i] if i < len(self.stream_names) else str(i)
            out.append(StreamSpec(i, label, src))
        return out

    def injection(self, stage: str) -> Injection | None:
        return next((i for i in self.inject if i.stage == stage), None)

    def to_argv(self) -> list[str]:
        """The ``vidprof run`` arguments that rebuild this config: only settings that differ from run's
        defaults, in the order ``vidprof run --help`` lists them, so a command line stays short and readable.

        Not here: the metrics port, which the CLI chooses (``--metrics-port``/``--no-metrics``, a free port
        when the default one is busy) and hands to ``config_from_args`` itself, and ``keep_outputs``, which
        only ``--dump-outputs PATH`` turns on; the caller adds those flags when it wants them.
        """
        d = RunConfig()
        inf, dinf = self.inference, d.inference
        pre, dpre = self.preprocess_options, d.preprocess_options
        post, dpost = self.postprocess, d.postprocess
        out: list[str] = []

        def text(value: object) -> str:
            # Floats in full precision (repr), so they parse back equal; tuples as run's comma lists.
            if isinstance(value, tuple):
                return ",".join(text(v) for v in value)
            return repr(value) if isinstance(value, float) else str(value)

        def opt(flag: str, value: object, default: object = None) -> None:
            if value == default:
                return
            arg = text(value)
            # "--stream -x" would read -x as an option: glue a value that starts with "-" to its flag.
            out.extend([f"{flag}={arg}"] if arg.startswith("-") else [flag, arg])

        def flag(name: str, on: bool) -> None:
            if on:
                out.append(name)

        for src in self.sources:
            opt("--source", src)
        opt("--copies", self.copies, d.copies)
        for name in self.stream_names:
            opt("--stream", name)
        opt("--frames", self.frames)
        opt("--duration", self.duration)
        flag("--loop", self.loop)
        # --realtime-fps implies --realtime, which is then not repeated.
        flag("--realtime", self.realtime and self.realtime_fps is None)
        opt("--realtime-fps", self.realtime_fps)
        opt("--open-timeout", self.open_timeout, d.open_timeout)
        opt("--read-timeout", self.read_timeout, d.read_timeout)
        flag("--no-reconnect", not self.reconnect)
        opt("--reconnect-delay", self.reconnect_delay, d.reconnect_delay)
        opt("--model", self.model)
        opt("--runtime", self.runtime, d.runtime)
        opt("--device", inf.device, dinf.device)
        opt("--hint", inf.hint, dinf.hint)
        opt("--streams", inf.streams)
        opt("--nireq", inf.nireq)
        opt("--infer-precision", inf.infer_precision)
        opt("--cache-dir", inf.cache_dir)
        flag("--sync", inf.sync)
        flag("--no-zero-copy", not inf.zero_copy)
        flag("--perf-counters", inf.perf_counters)
        opt("--batch", inf.batch, dinf.batch)
        opt("--batch-timeout", inf.batch_timeout, dinf.batch_timeout)
        opt("--preprocess", self.preprocess, d.preprocess)
        opt("--model-color", pre.model_color, dpre.model_color)
        opt("--mean", pre.mean)
        opt("--scale", pre.scale)
        opt("--postprocess", post.kind, dpost.kind)
        opt("--threshold", post.threshold, dpost.threshold)
        opt("--iou", post.iou, dpost.iou)
        opt("--top-k", post.top_k, dpost.top_k)
        for inj in self.inject:
            opt("--inject", inj.to_arg())
        opt("--report", self.report)
        opt("--metrics-host", self.metrics_host, d.metrics_host)
        opt("--pipeline-name", self.pipeline_name)
        opt("--queue-size", self.queue_size, d.queue_size)
        opt("--warmup", self.warmup, d.warmup)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inject"] = [i.describe() for i in self.inject]
        d["sources"] = list(self.sources)
        d["stream_names"] = list(self.stream_names)
        return d
