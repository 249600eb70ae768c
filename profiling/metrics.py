"""Every Prometheus metric vidprof exports, defined in one place.

Conventions: base units in names, one ``stage`` label instead of a metric per
stage, histograms rather than summaries, and only labels whose values come from
small fixed sets (plus ``pipeline`` and ``stream``, one value each per run).
Label children are resolved once here because ``.labels()`` on the hot path costs
2-3x an ``observe()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from vidprof.profiling.marks import STAGES, WAITS

# Video stages live between ~50 µs (a passthrough postprocess) and seconds (a
# first inference, a stalled camera): a 1-2-5 ladder over that range.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005, 0.0001, 0.0002, 0.0005,
    0.001, 0.002, 0.005,
    0.01, 0.02, 0.05,
    0.1, 0.2, 0.5,
    1.0, 2.0, 5.0, 10.0,
)
OUTCOMES: tuple[str, ...] = ("completed", "dropped", "failed")
DIRECTIONS: tuple[str, ...] = ("host_to_device", "device_to_host")
PHASES: tuple[str, ...] = ("read_model", "compile", "first_inference")
QUEUES: tuple[str, ...] = ("preprocess", "inference", "postprocess")
CACHE_STATES: tuple[str, ...] = ("off", "miss", "hit")


class MetricFamilies:
    """Every family, created once per registry; streams and the pipeline take label children from it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        stream = ["pipeline", "stream"]
        pipe = ["pipeline"]
        # Per stream: what each stream's frames go through.
        self.stage_latency = Histogram(
            "vidprof_stage_latency_seconds", "Time a frame spends in a stage.",
            [*stream, "stage"], registry=registry, buckets=LATENCY_BUCKETS,
        )
        self.stage_queue = Histogram(
            "vidprof_stage_queue_seconds",
            "Time a frame waits before a stage (stage=infer_wait: waiting for a free infer request).",
            [*stream, "stage"], registry=registry, buckets=LATENCY_BUCKETS,
        )
        self.frame_latency = Histogram(
            "vidprof_frame_latency_seconds", "End-to-end latency: decode start to postprocess end.",
            stream, registry=registry, buckets=LATENCY_BUCKETS,
        )
        self.frames = Counter("vidprof_frames", "Frames by outcome.", [*stream, "outcome"], registry=registry)
        self.transfer_seconds = Histogram(
            "vidprof_transfer_seconds", "Host time copying tensors to or from the device, per frame.",
            [*stream, "direction"], registry=registry, buckets=LATENCY_BUCKETS,
        )
        self.transfer_bytes = Counter(
            "vidprof_transfer_bytes", "Bytes of tensors handed to or read from the device.",
            [*stream, "direction"], registry=registry,
        )
        self.fps = Gauge("vidprof_fps", "Completed frames per second over the last window.", stream,
                         registry=registry)
        self.queue_depth = Gauge("vidprof_queue_depth", "Frames waiting in the queue before a stage.",
                                 [*stream, "queue"], registry=registry)
        self.busy = Gauge(
            "vidprof_stage_busy_ratio",
            "Share of wall time a stage was busy (inference: this stream's busy requests / requests).",
            [*stream, "stage"], registry=registry,
        )
        self.stream_info = Info("vidprof_stream", "What each stream reads.", stream, registry=registry)
        self.source_up = Gauge("vidprof_source_up", "1 while the stream's source delivers, 0 during an outage.",
                               stream, registry=registry)
        self.source_reconnects = Counter("vidprof_source_reconnects",
                                         "Times a lost live source was connected again.", stream, registry=registry)
        # Pipeline-wide: one compiled model and one set of infer requests serve every stream.
        self.infer_requests_busy = Gauge("vidprof_infer_requests_busy", "Infer requests running now.", pipe,
                                         registry=registry)
        self.infer_requests = Gauge("vidprof_infer_requests", "Infer requests available.", pipe, registry=registry)
        self.startup = Gauge("vidprof_startup_seconds", "Start-up cost by phase.", [*pipe, "phase"],
                             registry=registry)
        self.cache = Gauge("vidprof_model_cache_state",
                           "1 for the model cache outcome of this run: off, miss (compiled and cached) or hit.",
                           [*pipe, "state"], registry=registry)
        self.memory = Gauge("vidprof_memory_bytes", "Resident memory after compile and at its peak.",
                            [*pipe, "kind"], registry=registry)
        self.info = Info("vidprof_pipeline", "The settings that shaped this run.", pipe, registry=registry)


class StreamMetrics:
    """One stream's label children, resolved once: the recorder's hot path only observes."""

    def __init__(self, families: MetricFamilies, pipeline: str, stream: str) -> None:
        f = families
        ids = {"pipeline": pipeline, "stream": stream}
        self.stage_latency = {s: f.stage_latency.labels(**ids, stage=s) for s in STAGES}
        self.stage_queue = {w: f.stage_queue.labels(**ids, stage=w) for w in WAITS}
        self.frame_latency = f.frame_latency.labels(**ids)
        self.frames = {o: f.frames.labels(**ids, outcome=o) for o in OUTCOMES}
        self.transfer_seconds = {d: f.transfer_seconds.labels(**ids, direction=d) for d in DIRECTIONS}
        self.transfer_bytes = {d: f.transfer_bytes.labels(**ids, direction=d) for d in DIRECTIONS}
        self.fps = f.fps.labels(**ids)
        self.busy_ratio = {s: f.busy.labels(**ids, stage=s) for s in STAGES}
        self.source_up = f.source_up.labels(**ids)
        self.source_up.set(1)
        self.source_reconnects = f.source_reconnects.labels(**ids)
        self._families = f
        self._ids = ids
        # Touch every child so each family is exported with zeros from the first scrape.
        for o in OUTCOMES:
            self.frames[o].inc(0)

    def describe(self, kind: str, width: int, height: int) -> None:
        self._families.stream_info.labels(**self._ids).info({"kind": kind, "width": str(width),
                                                               "height": str(height)})

    def watch_queues(self, depths: Mapping[str, Callable[[], int]]) -> None:
        """Read queue depths at scrape time: nothing to update on the hot path."""
        for name, fn in depths.items():
            if name not in QUEUES:
                raise ValueError(f"unknown queue {name!r}; expected one of {QUEUES}")
            self._families.queue_depth.labels(**self._ids, queue=name).set_function(fn)


class PipelineMetrics:
    """The pipeline-wide children: requests, start-up, cache, memory and settings."""

    def __init__(self, families: MetricFamilies, pipeline: str) -> None:
        f = families
        ids = {"pipeline": pipeline}
        self.registry = f.registry
        self.labels = ids
        self.infer_requests_busy = f.infer_requests_busy.labels(**ids)
        self.infer_requests = f.infer_requests.labels(**ids)
        self.startup = {p: f.startup.labels(**ids, phase=p) for p in PHASES}
        self.memory = {k: f.memory.labels(**ids, kind=k) for k in ("after_compile_rss", "peak_rss")}
        self.info = f.info.labels(**ids)
        self._cache = f.cache
        self._ids = ids

    def set_cache_state(self, state: str) -> None:
        if state not in CACHE_STATES:
            raise ValueError(f"unknown cache state {state!r}; expected one of {CACHE_STATES}")
        for s in CACHE_STATES:
            self._cache.labels(**self._ids, state=s).set(1.0 if s == state else 0.0)
