"""The runner: builds the parts from a config, runs a worker per stream around one shared inference
stage, and summarises.

    stream 0: decode ─q─▶ preprocess ─q─▶ submit ─┐                                 ┌─▶ q ─▶ postprocess ─▶ recorder 0
    stream 1: decode ─q─▶ preprocess ─q─▶ submit ─┼─▶ shared inference (N requests) ─┼─▶ q ─▶ postprocess ─▶ recorder 1
    ...                                            ┘                                 └─▶ ...

Building lives in ``pipeline.build``, a stream's threads in ``pipeline.stream``; this module starts and
watches them, handles Ctrl-C, and turns the recorders into the summary.
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from vidprof.pipeline.build import Parts, build, default_pipeline_name
from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.outputs import OutputsWriter
from vidprof.pipeline.stream import Reconnect, StreamWorker
from vidprof.profiling.clock import Clock, MonotonicClock
from vidprof.profiling.marks import STAGES
from vidprof.profiling.metrics import MetricFamilies, PipelineMetrics, StreamMetrics
from vidprof.profiling.perf_counters import PerfCounterSampler
from vidprof.profiling.recorder import FrameSink, Recorder, Tee
from vidprof.profiling.report import InjectedDelay, Outage, StageStats
from vidprof.profiling.slowest import DEFAULT_SLOWEST, SlowestFrames
from vidprof.profiling.summary import RunInfo, StreamInfo, Summary, busy_ratios
from vidprof.profiling.timeline import Timeline
from vidprof.stages.frame import Frame
from vidprof.stages.inference import InferenceStage
from vidprof.stages.inject import Delay
from vidprof.stages.ort_inference import OrtInferenceStage, OrtModel


@dataclass
class Progress:
    """A snapshot for live display; the runner measures, the caller decides how to show it."""

    elapsed: float
    completed: int
    dropped: int
    failed: int
    fps: float
    stage_ms: dict[str, float]
    streams: int = 1


def rss_bytes() -> int:
    """Resident memory now, from /proc (Linux); 0 where unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_rss_bytes() -> int:
    # ru_maxrss (KiB on Linux) is the kernel's high-water mark, which it updates lazily: it can read
    # a little below the resident size just sampled, so never report a peak under the current size.
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, rss_bytes())


class Runner:
    """One pipeline run. ``prepare()`` builds; ``run()`` processes frames; ``summary()`` any time."""

    def __init__(self, config: RunConfig, registry: CollectorRegistry | None = None,
                 clock: Clock | None = None, make_sink: Callable[[], FrameSink] | None = None,
                 outputs: OutputsWriter | None = None,
                 observe: Callable[[int, str], FrameSink] | None = None, slowest: int = DEFAULT_SLOWEST) -> None:
        """``make_sink``: what each stream reports its frames to instead of a Recorder (a no-op sink
        for overhead baselines); the summary then has no per-frame figures. ``outputs``: where every
        completed frame's raw outputs are written (``--dump-outputs``). ``observe(stream index, label)``: a
        second sink per stream that sees every frame too (a trace writer), after the recorder. ``slowest``:
        how many of each stream's slowest frames the report lists (``--slowest``)."""
        self.config = config
        self.clock = clock or MonotonicClock()
        self.pipeline_name = config.pipeline_name or default_pipeline_name(config.sources[0] if config.sources
                                                                           else None)
        self.families = MetricFamilies(registry) if registry is not None else None
        self.metrics = PipelineMetrics(self.families, self.pipeline_name) if self.families is not None else None
        self._make_sink = make_sink
        self._outputs = outputs
        self._observe = observe
        # The report's slowest frames (``slowest`` per stream), fed beside each recorder.
        self.slowest = SlowestFrames(slowest, run_start_ns=lambda: self._t_start)
        self.info = RunInfo(config=config.to_dict())
        self.info.config["pipeline_name"] = self.pipeline_name
        self.stop_event = threading.Event()
        self.hurry_event = threading.Event()  # drop queued frames instead of processing them
        self.delays: dict[str, Delay] = {i.stage: Delay(i.seconds, i.busy) for i in config.inject if i.seconds > 0}
        self.workers: list[StreamWorker] = []
        self.recorders: list[Recorder] = []
        self.parts: Parts | None = None
        self.sampler: PerfCounterSampler | None = None
        self.timeline: Timeline | None = None
        self._prepared = False
        self._first_inference_done = False
        self._deadline: int | None = None
        self._t_start = 0
        self._last_counts: list[int] = []  # each stream's completed frames at the last tick

    @property
    def prepared(self) -> bool:
        return self._prepared

    # ----------------------------------------------------------------- set-up
    def prepare(self) -> None:
        cfg, info = self.config, self.info
        parts = self.parts = build(cfg)
        first = parts.streams[0].source
        info.config["streams"] = [s.describe() for s in parts.streams]
        descriptions = [s.source.description for s in parts.streams]
        info.config["source"] = descriptions[0] if len(descriptions) == 1 else \
            f"{len(descriptions)} streams: " + ", ".join(dict.fromkeys(descriptions))
        info.config["source_kind"] = first.kind
        info.config["source_size"] = [first.width, first.height]
        info.config["live"] = all(s.source.live for s in parts.streams)
        info.config["frame_limit"] = parts.streams[0].frame_limit
        info.config["model"] = parts.model_path
        info.config["sample_model"] = cfg.model is None
        spec = parts.input_spec
        info.config["model_input"] = {"name": spec.name, "layout": spec.layout, "dtype": str(spec.dtype),
                                      "shape": list(spec.shape)}
        info.startup.update(parts.startup)
        info.memory["after_compile_rss_bytes"] = rss_bytes()
        self.nireq = info.nireq = parts.nireq
        info.config["resolved"] = parts.resolved
        info.config["postprocess_decoder"] = parts.postprocess.kind
        inf = cfg.inference
        if inf.perf_counters:
            self.sampler = PerfCounterSampler(
                parts.compiled, set(parts.original_names) if parts.original_names is not None else None,
                self.metrics.registry if self.metrics else None, {"pipeline": self.pipeline_name},
                skip_first=0 if cfg.warmup else 2 * self.nireq)
        # --runtime onnxruntime: ONNX Runtime's stage, with the same interface and the same routing.
        stage: Any = OrtInferenceStage if isinstance(parts.compiled, OrtModel) else InferenceStage
        self.inference = stage(
            parts.compiled, self.nireq, inf, self.clock, self._route,
            inject=self.delays.get("inference"), sampler=self.sampler,
        )
        info.config["outputs_zero_copy"] = bool(getattr(self.inference, "outputs_zero_copy", False))
        if self.metrics is not None:
            # Read when /metrics is rendered: a gauge set twice a frame cost the callback and the submit thread
            # ~2 us each, for a value nobody sees between two renderings.
            inference = self.inference
            self.metrics.infer_requests_busy.set_function(lambda: inference.busy)
        # A second preprocess thread for a stream pays where one stream's thread would leave a core idle; with as
        # many streams as cores their own threads fill the cores, and more threads only cost switching (8 streams
        # with two each: their CPU a frame 9 % above one stream's, against 2.5 % with one each).
        preprocess_threads = max(1, -(-(os.cpu_count() or 1) // len(parts.streams)))
        for sp in parts.streams:
            sm = StreamMetrics(self.families, self.pipeline_name, sp.spec.label) if self.families else None
            sink: FrameSink
            if self._make_sink is not None:
                sink = self._make_sink()
            else:
                recorder = Recorder(sm)
                self.recorders.append(recorder)
                sink = Tee(recorder, self.slowest.sink(sp.spec.index, sp.spec.label))
            if self._observe is not None:
                sink = Tee(sink, self._observe(sp.spec.index, sp.spec.label))
            worker = StreamWorker(sp, self.inference, parts.postprocess, sink, self.clock, nireq=self.nireq,
                                  queue_size=cfg.queue_size, delays=self.delays, deadline_ns=lambda: self._deadline,
                                  stop_all=self.stop_event, hurry=self.hurry_event, outputs=self._outputs,
                                  on_completed=self._first_inference, metrics=sm,
                                  reconnect=Reconnect(cfg.reconnect, cfg.reconnect_delay),
                                  run_start_ns=lambda: self._t_start, preprocess_threads=preprocess_threads)
            if sm is not None:
                sm.watch_queues(worker.queue_depths())
                sm.describe(sp.source.kind, sp.source.width, sp.source.height)
            self.workers.append(worker)
        if self._make_sink is None:
            self.timeline = Timeline(self.recorders)
        self.premade_input = parts.premade_input
        self.compiled = parts.compiled
        if cfg.warmup:
            info.startup["first_inference"] = self.inference.warm_up(self.premade_input, cfg.warmup)
            info.startup["warmup_rounds"] = cfg.warmup
            self._first_inference_done = True
        if self.metrics is not None:
            self._export_setup()
        self._prepared = True

    def _route(self, frame: Frame) -> None:
        """The shared inference's completion: back to the frame's own stream."""
        self.workers[frame.stream].completed(frame)

    def _export_setup(self) -> None:
        """Publish what is known once prepared: requests, start-up, cache, memory, settings."""
        cfg, info, inf = self.config, self.info, self.config.inference
        m = self.metrics
        assert m is not None and self.parts is not None
        m.infer_requests.set(self.nireq)
        for phase in ("read_model", "compile", "first_inference"):
            if phase in info.startup:
                m.startup[phase].set(info.startup[phase])
        m.set_cache_state(info.startup["cache"])
        m.memory["after_compile_rss"].set(info.memory["after_compile_rss_bytes"])
        r = info.config["resolved"]
        kinds = ",".join(sorted({s.source.kind for s in self.parts.streams}))
        m.info.info({k: str(v) for k, v in {
            "model": os.path.basename(self.parts.model_path), "device": inf.device, "hint": inf.hint,
            "streams": r.get("streams"), "nireq": self.nireq, "preprocess": cfg.preprocess,
            "precision": r.get("precision"), "source": kinds, "stream_count": len(self.workers),
        }.items()})

    def _first_inference(self, frame: Frame) -> None:
        """The first frame through inference pays the first-inference cost (unless warmed up): record it."""
        if self._first_inference_done:
            return
        marks = frame.marks
        if "inference" in marks.end and "inference" in marks.start:
            self._first_inference_done = True  # a race here only records one of two first frames
            sec = marks.stage_seconds("inference") or 0.0
            self.info.startup["first_inference"] = sec
            if self.metrics is not None:
                self.metrics.startup["first_inference"].set(sec)

    # ----------------------------------------------------------------- run
    @property
    def _all_done(self) -> bool:
        return all(w.done.is_set() for w in self.workers)

    def _wait_done(self, seconds: float) -> bool:
        for w in self.workers:
            if not w.done.wait(seconds):
                return False
        return True

    def run(self, on_progress: Callable[[Progress], None] | None = None, tick_seconds: float = 0.5) -> None:
        """Process frames until every stream has ended (its source ends, a limit, a fault) or stop();
        blocks until drained.

        Ctrl-C (KeyboardInterrupt in the calling thread) stops the sources and drains what is in flight.
        """
        if not self._prepared:
            self.prepare()
        threads = [t for w in self.workers for t in w.threads()]
        self._t_start = self.clock.now_ns()
        if self.config.duration is not None:
            self._deadline = self._t_start + int(self.config.duration * 1e9)
        for t in threads:
            t.start()
        last_tick = (self._t_start, 0)
        interrupts = 0
        try:
            # Wait on events, not Thread.join: a Ctrl-C that interrupts join() makes Python treat the
            # joined thread as finished, and the run would be summarised while frames are still queued.
            while not self._all_done:
                try:
                    if self._wait_done(tick_seconds):
                        break
                    last_tick = self._tick(last_tick, on_progress)
                except KeyboardInterrupt:
                    # First Ctrl-C: stop the sources, finish what is queued. Second: drop what is queued
                    # (counted as dropped), finish only requests in flight. Either way the report follows.
                    interrupts += 1
                    self.info.interrupted = True
                    self.stop_event.set()
                    if interrupts >= 2:
                        self.hurry_event.set()
        finally:
            for t in threads:
                while t.is_alive():
                    try:
                        t.join(timeout=30)
                        break
                    except KeyboardInterrupt:
                        self.hurry_event.set()
            self.close()
            self.info.wall_seconds = (self.clock.now_ns() - self._t_start) / 1e9
            self.info.frames_read = sum(w.frames_read for w in self.workers)
            self._update_gauges(final=True)
            # A last row for the tail of the run, unless it would cover a sliver (a noisy rate).
            tl = self.timeline
            if tl is not None and (not tl.rows or self.info.wall_seconds - tl.rows[-1]["t"] >= 0.25):
                self._timeline_row()

    def stop(self) -> None:
        self.stop_event.set()

    def _completed(self) -> int:
        return sum(r.completed for r in self.recorders)

    def _tick(self, last: tuple[int, int], on_progress: Callable[[Progress], None] | None) -> tuple[int, int]:
        now, done = self.clock.now_ns(), self._completed()
        window = (now - last[0]) / 1e9
        fps = (done - last[1]) / window if window > 0 else 0.0
        self.info.wall_seconds = (now - self._t_start) / 1e9
        self.info.frames_read = sum(w.frames_read for w in self.workers)
        self._update_gauges(window=window)
        if self.timeline is not None and self.timeline.due(self.info.wall_seconds):
            self._timeline_row()
        if on_progress is not None and self.recorders:
            # The last 200 frames of each stream: a live view, cheap whatever the length of the run.
            stage_ms = {}
            latest = [r.recent(200) for r in self.recorders]  # under each recorder's lock
            for st in STAGES:
                recent = [v for got in latest for v in got[st]]
                stage_ms[st] = sum(recent) / len(recent) * 1e3 if recent else 0.0
            rs = self.recorders
            on_progress(Progress(self.info.wall_seconds, done, sum(r.dropped for r in rs), sum(r.failed for r in rs),
                                 fps, stage_ms, len(self.workers)))
        return now, done

    def _queue_depths(self) -> dict[str, int]:
        depth: dict[str, int] = {}
        for w in self.workers:
            for name, fn in w.queue_depths().items():
                depth[name] = depth.get(name, 0) + fn()
        return depth

    def _timeline_row(self) -> None:
        assert self.timeline is not None
        busy = busy_ratios(Recorder.merge(self.recorders, samples=False), self.info.wall_seconds, self.nireq,
                           workers=len(self.workers),
                           preprocess_threads=sum(w.preprocess_threads for w in self.workers))
        self.timeline.sample(self.info.wall_seconds, self.inference.busy, self.nireq, self._queue_depths(), busy,
                             rss_bytes)

    def _update_gauges(self, final: bool = False, window: float = 0.0) -> None:
        if self.metrics is None:
            return
        wall = self.info.wall_seconds
        counts = [r.completed for r in self.recorders]
        last = self._last_counts or [0] * len(counts)
        for r, w, done, before in zip(self.recorders, self.workers, counts, last, strict=False):
            m = r.metrics
            if m is None:
                continue
            for stage, ratio in busy_ratios(r, wall, self.nireq, preprocess_threads=w.preprocess_threads).items():
                m.busy_ratio[stage].set(ratio)
            if final:
                m.fps.set(done / wall if wall > 0 else 0.0)  # the run's mean, as the report's aggregate
            elif window > 0:
                m.fps.set((done - before) / window)
        self._last_counts = counts
        self.metrics.memory["peak_rss"].set(peak_rss_bytes())

    def close(self) -> None:
        inference = getattr(self, "inference", None)
        if inference is not None:
            inference.close()
        if self.parts is not None:
            self.parts.close()

    def summary(self) -> Summary:
        """What was measured so far; valid after a fault or interrupt too."""
        self.info.memory["peak_rss_bytes"] = max(peak_rss_bytes(), self.info.memory.get("after_compile_rss_bytes", 0))
        if self.metrics is not None:
            self.metrics.memory["peak_rss"].set(self.info.memory["peak_rss_bytes"])
        perf = None
        if self.sampler is not None:
            perf = self.sampler.report()
            perf["error"] = getattr(self.inference, "sampler_error", None)
        faults = [(w.label, w.fault) for w in self.workers if w.fault]
        if faults and self.info.fault is None:
            label, fault = faults[0]
            self.info.fault = fault if len(self.workers) == 1 else f"stream {label}: {fault}"
        now = self.clock.now_ns()
        streams = [StreamInfo(w.label, w.source.description, w.source.kind, w.frames_read, w.fault, r,
                              ((w.ended_ns or now) - self._t_start) / 1e9 if self._t_start else 0.0,
                              tuple(Outage(o.start, o.seconds, o.reason, o.attempts) for o in w.outages),
                              w.outage_count, w.reconnects, w.source.live, w.preprocess_threads)
                   for w, r in zip(self.workers, self.recorders, strict=False)]
        inject = {stage: InjectedDelay(d.seconds, d.busy, StageStats.of(d.actual))
                  for stage, d in self.delays.items()}
        summary = Summary.build(self.recorders, self.info, perf, streams, inject,
                                self.timeline.rows if self.timeline is not None else (), self.slowest.frames())
        return summary


