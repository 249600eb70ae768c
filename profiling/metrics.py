"""Every Prometheus metric vidprof exports, defined in one place.

Conventions: base units in names, one ``stage`` label instead of a metric per
stage, histograms rather than summaries, and only labels whose values come from
small fixed sets (plus ``pipeline`` and ``stream``, one value each per run).
Label children are resolved once here because ``.labels()`` on the hot path costs
2-3x an ``observe()``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import CounterMetricFamily, Exemplar, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from vidprof.profiling.recorder import ExemplarFrame, Recorder

from vidprof.profiling.marks import STAGES

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


_FIGURE_FAMILIES: tuple[tuple[str, str, str, str], ...] = (
    # (recorder's key, family name, help, extra label)
    ("stage", "vidprof_stage_latency_seconds", "Time a frame spends in a stage.", "stage"),
    ("queue", "vidprof_stage_queue_seconds",
     "Time a frame waits before a stage (stage=infer_wait: waiting for a free infer request).", "stage"),
    ("e2e", "vidprof_frame_latency_seconds", "End-to-end latency: decode start to postprocess end.", ""),
    ("transfer", "vidprof_transfer_seconds", "Host time copying tensors to or from the device, per frame.",
     "direction"),
)
_LE = [*(floatToGoString(b) for b in LATENCY_BUCKETS), "+Inf"]
# OpenMetrics: an exemplar's label names and values add up to 128 characters at most.
EXEMPLAR_LABELS_MAX = 128


def _buckets(cumulative: list[int], exemplars: list[ExemplarFrame | None] | None,
             stream: str) -> list[tuple[str, float] | tuple[str, float, Exemplar]]:
    """``(le, count)`` per bucket, with ``Exemplar({stream, frame}, seconds, unix time)`` where the bucket has one
    (only the OpenMetrics format shows them). A stream label too long to fit leaves the exemplar its frame only:
    the series names the stream anyway."""
    if not exemplars:
        return list(zip(_LE, cumulative, strict=True))
    out: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
    for le, n, ex in zip(_LE, cumulative, exemplars, strict=True):
        if ex is None:
            out.append((le, n))
            continue
        frame, value, at = ex
        labels = {"stream": stream, "frame": str(frame)}
        if len("streamframe") + len(stream) + len(labels["frame"]) > EXEMPLAR_LABELS_MAX:
            del labels["stream"]
        out.append((le, n, Exemplar(labels, value, at)))
    return out


class StreamFigures:
    """A collector: every stream's histograms and frame and byte counters, read from its recorder at scrape
    time. Same names, types and labels as prometheus_client's Histogram and Counter would export."""

    def __init__(self) -> None:
        self._recorders: dict[tuple[str, str], Recorder] = {}
        self._lock = threading.Lock()

    def add(self, ids: tuple[str, str], recorder: Recorder) -> None:
        with self._lock:
            self._recorders[ids] = recorder

    def describe(self) -> list[Metric]:
        # Names only, so the registry checks for clashes without collecting.
        return [*(HistogramMetricFamily(name, doc) for _, name, doc, _ in _FIGURE_FAMILIES),
                CounterMetricFamily("vidprof_frames", "Frames by outcome."),
                CounterMetricFamily("vidprof_transfer_bytes", "Bytes of tensors handed to or read from the device.")]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            streams = list(self._recorders.items())
        snaps = [(ids, r.snapshot()) for ids, r in streams]
        for key, name, doc, label in _FIGURE_FAMILIES:
            fam = HistogramMetricFamily(name, doc, labels=["pipeline", "stream", *([label] if label else [])])
            for ids, snap in snaps:
                for (k, value), (counts, total) in snap.histograms.items():
                    if k == key:
                        cumulative = np.cumsum(counts).tolist()
                        fam.add_metric([*ids, *([value] if label else [])],
                                       _buckets(cumulative, snap.exemplars.get((k, value)), ids[1]), total)
            yield fam
        frames = CounterMetricFamily("vidprof_frames", "Frames by outcome.", labels=["pipeline", "stream", "outcome"])
        sent = CounterMetricFamily("vidprof_transfer_bytes", "Bytes of tensors handed to or read from the device.",
                                   labels=["pipeline", "stream", "direction"])
        for ids, snap in snaps:
            for outcome in OUTCOMES:
                frames.add_metric([*ids, outcome], snap.frames[outcome])
            for direction in DIRECTIONS:
                sent.add_metric([*ids, direction], snap.transfer_bytes[direction])
        yield frames
        yield sent


class MetricFamilies:
    """Every family, created once per registry; streams and the pipeline take label children from it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        stream = ["pipeline", "stream"]
        pipe = ["pipeline"]
        # Per stream: what each stream's frames go through. Histograms and frame counters are read from the
        # recorders at scrape time (StreamFigures), so nothing is observed per frame.
        self.figures = StreamFigures()
        registry.register(self.figures)
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
    """One stream's label children and its recorder's place in the scrape, resolved once."""

    def __init__(self, families: MetricFamilies, pipeline: str, stream: str) -> None:
        f = families
        ids = {"pipeline": pipeline, "stream": stream}
        self.fps = f.fps.labels(**ids)
        self.busy_ratio = {s: f.busy.labels(**ids, stage=s) for s in STAGES}
        self.source_up = f.source_up.labels(**ids)
        self.source_up.set(1)
        self.source_reconnects = f.source_reconnects.labels(**ids)
        self._families = f
        self._ids = ids

    def attach(self, recorder: Recorder) -> None:
        """The recorder whose figures this stream's histograms and frame counters show."""
        self._families.figures.add((self._ids["pipeline"], self._ids["stream"]), recorder)

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
