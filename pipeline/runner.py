"""The runner: builds the stages from a config and runs them on threads joined by bounded queues.

    decode ─q_pre─▶ preprocess ─q_inf─▶ submit ══ N infer requests ══▶ callback ─q_post─▶ postprocess ─▶ recorder

Every thread catches what goes wrong with one frame and passes the frame on marked as failed, so a
frame is always counted and the end-of-stream marker always reaches the last thread: no hang, nothing
lost. A fault that stops the run (the source breaks) is kept and reported after a clean drain.
"""

from __future__ import annotations

import os
import queue
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import openvino as ov
from prometheus_client import CollectorRegistry
from vidprof.pipeline.config import RunConfig
from vidprof.profiling.clock import Clock, MonotonicClock
from vidprof.profiling.errors import RunError, runtime_detail
from vidprof.profiling.marks import STAGES
from vidprof.profiling.metrics import PipelineMetrics
from vidprof.profiling.perf_counters import PerfCounterSampler
from vidprof.profiling.recorder import FrameSink, Recorder
from vidprof.profiling.stats import Stats
from vidprof.profiling.summary import RunInfo, Summary, busy_ratios
from vidprof.profiling.timeline import Timeline
from vidprof.samples import assets
from vidprof.stages import sources
from vidprof.stages.frame import Frame
from vidprof.stages.inference import InferenceStage, compile_model, resolved_nireq
from vidprof.stages.inject import Delay
from vidprof.stages.model_input import read_input_spec
from vidprof.stages.postprocess import Postprocess
from vidprof.stages.preprocess import FusedPreprocess, HostPreprocess, SeparatePreprocess, fuse_preprocessing

_END = object()  # end-of-stream marker, passed down every queue once
MAX_CONSECUTIVE_FAILURES = 50
SYNTHETIC_DEFAULT_SECONDS = 10.0


@dataclass
class Progress:
    """A snapshot for live display; the runner measures, the caller decides how to show it."""

    elapsed: float
    completed: int
    dropped: int
    failed: int
    fps: float
    stage_ms: dict[str, float]


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


def cache_state(cache_dir: str | None, before: set[str], after: set[str]) -> str:
    """miss: compiling wrote a new blob; hit: it wrote none and one was there; off: no cache in use
    (none asked for, or a device that does not export compiled models)."""
    if not cache_dir:
        return "off"
    if after - before:
        return "miss"
    return "hit" if before else "off"


def _cache_files(path: str | None) -> set[str]:
    if not path or not os.path.isdir(path):
        return set()
    return {f for f in os.listdir(path) if f.endswith(".blob")}


class Runner:
    """One pipeline run. ``prepare()`` opens and compiles; ``run()`` processes frames; ``summary()`` any time."""

    def __init__(self, config: RunConfig, registry: CollectorRegistry | None = None,
                 clock: Clock | None = None, sink: FrameSink | None = None) -> None:
        self.config = config
        self.clock = clock or MonotonicClock()
        self.pipeline_name = config.pipeline_name or default_pipeline_name(config.source)
        self.metrics = PipelineMetrics(registry, self.pipeline_name, config.stream) if registry is not None else None
        self.recorder = Recorder(self.metrics)
        self._sink: FrameSink = sink or self.recorder
        self.info = RunInfo(config=config.to_dict())
        self.info.config["pipeline_name"] = self.pipeline_name
        self.stop_event = threading.Event()
        self.hurry_event = threading.Event()  # drop queued frames instead of processing them
        self._done = threading.Event()  # set when the postprocess thread has seen the end of the stream
        self._prepared = False
        self._first_inference_done = False
        self.delays: dict[str, Delay] = {i.stage: Delay(i.seconds, i.busy) for i in config.inject if i.seconds > 0}
        self.timeline = Timeline(self.recorder)
        self.kept: dict[int, tuple[list[Any], Any]] = {}
        self._next_row = 1.0

    # ----------------------------------------------------------------- set-up
    def prepare(self) -> None:
        cfg = self.config
        info = self.info
        source_spec = cfg.source or assets.sample_clip_path()
        self.source = sources.open_source(source_spec, loop=cfg.loop, realtime=cfg.realtime)
        info.config["source"] = self.source.description
        info.config["source_kind"] = self.source.kind
        info.config["source_size"] = [self.source.width, self.source.height]
        info.config["live"] = self.source.live
        self.frame_limit = cfg.frames
        if self.frame_limit is None and cfg.duration is None and self.source.kind == "synthetic":
            self.frame_limit = int((self.source.fps or 30.0) * SYNTHETIC_DEFAULT_SECONDS)
        info.config["frame_limit"] = self.frame_limit

        model_path = cfg.model or assets.sample_model_path()
        info.config["model"] = model_path
        info.config["sample_model"] = cfg.model is None
        if not os.path.exists(model_path):
            raise RunError(f"model {model_path}: no such file; expected an OpenVINO IR (.xml), ONNX, TFLite, "
                           "TensorFlow or PaddlePaddle model")
        core = ov.Core()
        check_device(core, cfg.inference.device)
        t0 = time.perf_counter()
        try:
            model = core.read_model(model_path)
        except RuntimeError as e:
            raise RunError(f"cannot read model {model_path}: {runtime_detail(e)}; expected a valid OpenVINO IR "
                           "(.xml + .bin), ONNX, TFLite, TensorFlow or PaddlePaddle model") from e
        info.startup["read_model"] = time.perf_counter() - t0

        fw, fh = self.source.width, self.source.height
        spec = read_input_spec(model, (fw, fh))
        info.config["model_input"] = {"name": spec.name, "layout": spec.layout, "dtype": str(spec.dtype),
                                      "shape": list(spec.shape)}
        pre_opts = cfg.preprocess_options
        # Names of the model's own ops, to tell fused preprocessing nodes apart in perf counters.
        original_names = {op.get_friendly_name() for op in model.get_ops()} if cfg.preprocess == "fused" else None
        if cfg.preprocess == "fused":
            model = fuse_preprocessing(model, spec, pre_opts, fw, fh)
            self.preprocess: Any = FusedPreprocess(fw, fh)
        elif cfg.preprocess == "separate":
            self.preprocess = SeparatePreprocess(core, cfg.inference.device, spec, pre_opts, fw, fh)
        else:
            self.preprocess = HostPreprocess(spec, pre_opts)

        inf = cfg.inference
        before = _cache_files(inf.cache_dir)
        t0 = time.perf_counter()
        compiled = compile_model(core, model, inf)
        info.startup["compile"] = time.perf_counter() - t0
        after = _cache_files(inf.cache_dir)
        info.startup["cache"] = cache_state(inf.cache_dir, before, after)
        info.memory["after_compile_rss_bytes"] = rss_bytes()
        self.nireq = resolved_nireq(compiled, inf)
        info.nireq = self.nireq
        info.config["resolved"] = self._resolved(compiled)

        self.sampler = None
        if inf.perf_counters:
            self.sampler = PerfCounterSampler(
                compiled, original_names, self.metrics.registry if self.metrics else None,
                {"pipeline": self.pipeline_name, "stream": cfg.stream},
                skip_first=0 if cfg.warmup else 2 * self.nireq)
        self.postprocess = Postprocess(cfg.postprocess, [tuple(o.get_shape()) for o in compiled.outputs],
                                       [o.get_any_name() if o.get_names() else "" for o in compiled.outputs])
        info.config["postprocess_decoder"] = self.postprocess.kind
        # A live source keeps the queues short, so a frame never waits behind stale ones: one waiting
        # for preprocess, and no more waiting for inference than there are requests.
        live = self.source.live
        self.q_pre: queue.Queue = queue.Queue(maxsize=1 if live else cfg.queue_size)
        self.q_inf: queue.Queue = queue.Queue(maxsize=self.nireq if live else max(cfg.queue_size, self.nireq))
        self.q_post: queue.Queue = queue.Queue(maxsize=max(cfg.queue_size, self.nireq) * 2)
        self.inference = InferenceStage(
            compiled, self.nireq, inf, self.clock, self.q_post.put,
            on_busy=self.metrics.infer_requests_busy.set if self.metrics else None,
            inject=self.delays.get("inference"), sampler=self.sampler,
        )
        self.compiled = compiled
        # A blank frame of the source's size, preprocessed: the warm-up input, and the pre-made input
        # for model-only measurements.
        blank = Frame(-1, image=np.zeros((fh, fw, 3), np.uint8))
        self.preprocess.process(blank)
        self.premade_input = blank.tensor
        if cfg.warmup:
            info.startup["first_inference"] = self.inference.warm_up(self.premade_input, cfg.warmup)
            info.startup["warmup_rounds"] = cfg.warmup
            self._first_inference_done = True
        if self.metrics is not None:
            self._export_setup(model_path)
        self._prepared = True

    def _export_setup(self, model_path: str) -> None:
        """Publish what is known once prepared: requests, queue watchers, start-up, cache, memory, settings."""
        cfg, info, inf = self.config, self.info, self.config.inference
        m = self.metrics
        assert m is not None
        m.infer_requests.set(self.nireq)
        m.watch_queues({"preprocess": self.q_pre.qsize, "inference": self.q_inf.qsize,
                        "postprocess": self.q_post.qsize})
        for phase in ("read_model", "compile", "first_inference"):
            if phase in info.startup:
                m.startup[phase].set(info.startup[phase])
        m.set_cache_state(info.startup["cache"])
        m.memory["after_compile_rss"].set(info.memory["after_compile_rss_bytes"])
        r = info.config["resolved"]
        m.info.info({k: str(v) for k, v in {
            "model": os.path.basename(model_path), "device": inf.device, "hint": inf.hint,
            "streams": r.get("streams"), "nireq": self.nireq, "preprocess": cfg.preprocess,
            "precision": r.get("precision"), "source": self.source.kind,
        }.items()})

    def _resolved(self, compiled: ov.CompiledModel) -> dict[str, Any]:
        """What the device actually chose: users argue about defaults, so record them."""
        out: dict[str, Any] = {"nireq": self.nireq}
        for key, name in (("streams", "NUM_STREAMS"), ("precision", "INFERENCE_PRECISION_HINT"),
                          ("hint", "PERFORMANCE_HINT"), ("threads", "INFERENCE_NUM_THREADS")):
            try:
                value = compiled.get_property(name)
            except RuntimeError:
                out[key] = None
                continue
            # An element type prints as "<Type: 'float32'>"; its short name ("f32") is what users type.
            out[key] = value.get_type_name() if isinstance(value, ov.Type) else str(value)
        return out

    # ----------------------------------------------------------------- threads
    def _fault(self, where: str, e: BaseException) -> None:
        if self.info.fault is None:
            self.info.fault = f"{where}: {type(e).__name__}: {e}" if not isinstance(e, RunError) else str(e)
        self.stop_event.set()

    def _put_live(self, q: queue.Queue, frame: Frame) -> None:
        """Never block behind a live source: drop the oldest waiting frame instead.

        Only the thread that feeds ``q`` puts into it, so the end marker (put last, blocking) is
        never the one dropped."""
        while True:
            try:
                q.put_nowait(frame)
                return
            except queue.Full:
                try:
                    old = q.get_nowait()
                    self._sink.frame_dropped(old.marks)
                except queue.Empty:
                    pass

    def _decode_loop(self) -> None:
        clock, src, cfg = self.clock, self.source, self.config
        inject = self.delays.get("decode")
        put = (lambda f: self._put_live(self.q_pre, f)) if src.live else self.q_pre.put
        deadline = None if cfg.duration is None else clock.now_ns() + int(cfg.duration * 1e9)
        index = 0
        try:
            while not self.stop_event.is_set():
                if self.frame_limit is not None and index >= self.frame_limit:
                    break
                if deadline is not None and clock.now_ns() >= deadline:
                    break
                # A paced source waits for its next frame time here, outside the decode figure:
                # waiting for a frame is the source's pace, not decoding cost.
                src.wait()
                frame = Frame(index)
                frame.marks.start["decode"] = clock.now_ns()
                image = src.read()
                if image is None:
                    break
                if inject is not None:
                    inject()
                frame.marks.end["decode"] = clock.now_ns()
                frame.image = image
                index += 1
                self.info.frames_read = index
                put(frame)
        except Exception as e:
            self._fault("decode", e)
        finally:
            self.q_pre.put(_END)

    def _preprocess_loop(self) -> None:
        clock = self.clock
        inject = self.delays.get("preprocess")
        put = (lambda f: self._put_live(self.q_inf, f)) if self.source.live else self.q_inf.put
        while True:
            frame = self.q_pre.get()
            if frame is _END:
                break
            if self.hurry_event.is_set():
                self._sink.frame_dropped(frame.marks)
                continue
            frame.marks.start["preprocess"] = clock.now_ns()
            try:
                self.preprocess.process(frame)
                if inject is not None:
                    inject()
            except Exception as e:
                frame.error = f"preprocess: {e}"
            frame.marks.end["preprocess"] = clock.now_ns()
            put(frame)
        self.q_inf.put(_END)

    def _submit_loop(self) -> None:
        try:
            while True:
                frame = self.q_inf.get()
                if frame is _END:
                    break
                if self.hurry_event.is_set():
                    self._sink.frame_dropped(frame.marks)
                    continue
                if frame.error is not None:
                    self.q_post.put(frame)
                    continue
                try:
                    self.inference.submit(frame)
                except Exception as e:
                    frame.error = f"inference submit: {e}"
                    self.q_post.put(frame)
        finally:
            try:
                self.inference.drain()
            finally:
                self.q_post.put(_END)

    def _postprocess_loop(self) -> None:
        clock = self.clock
        inject = self.delays.get("postprocess")
        try:
            self._postprocess_frames(clock, inject)
        finally:
            self._done.set()

    def _postprocess_frames(self, clock: Clock, inject: Delay | None) -> None:
        consecutive_failures = 0
        while True:
            frame = self.q_post.get()
            if frame is _END:
                break
            marks = frame.marks
            marks.start["postprocess"] = clock.now_ns()
            if frame.error is None:
                try:
                    self.postprocess.process(frame)
                    if inject is not None:
                        inject()
                except Exception as e:
                    frame.error = f"postprocess: {e}"
            marks.end["postprocess"] = clock.now_ns()
            failed = frame.error is not None
            self._sink.frame_done(marks, frame.transfer, failed, frame.error)
            if self.config.keep_outputs and not failed:
                self.kept[frame.index] = (frame.outputs, frame.result)
            if not self._first_inference_done and "inference" in marks.end and "inference" in marks.start:
                self._first_inference_done = True
                sec = marks.stage_seconds("inference") or 0.0
                self.info.startup["first_inference"] = sec
                if self.metrics is not None:
                    self.metrics.startup["first_inference"].set(sec)
            consecutive_failures = consecutive_failures + 1 if failed else 0
            if consecutive_failures == MAX_CONSECUTIVE_FAILURES:
                self._fault("postprocess", RunError(
                    f"stopped after {MAX_CONSECUTIVE_FAILURES} failed frames in a row; first error: "
                    f"{self.recorder.first_error or frame.error}"))

    # ----------------------------------------------------------------- run
    def run(self, on_progress: Callable[[Progress], None] | None = None, tick_seconds: float = 0.5) -> None:
        """Process frames until the source ends, a limit is reached, a fault or stop(); blocks until drained.

        Ctrl-C (KeyboardInterrupt in the calling thread) stops the source and drains what is in flight.
        """
        if not self._prepared:
            self.prepare()
        threads = [threading.Thread(target=fn, name=f"vidprof-{name}", daemon=True) for name, fn in (
            ("decode", self._decode_loop), ("preprocess", self._preprocess_loop),
            ("submit", self._submit_loop), ("postprocess", self._postprocess_loop))]
        self._t_start = self.clock.now_ns()
        for t in threads:
            t.start()
        last_tick = (self._t_start, 0)
        interrupts = 0
        try:
            # Wait on an event, not Thread.join: a Ctrl-C that interrupts join() makes Python treat the
            # joined thread as finished, and the run would be summarised while frames are still queued.
            while not self._done.is_set():
                try:
                    if self._done.wait(tick_seconds):
                        break
                    last_tick = self._tick(last_tick, on_progress)
                except KeyboardInterrupt:
                    # First Ctrl-C: stop the source, finish what is queued. Second: drop what is queued
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
            self._update_gauges(final=True)
            # A last row for the tail of the run, unless it would cover a sliver (a noisy rate).
            if not self.timeline.rows or self.info.wall_seconds - self.timeline.rows[-1]["t"] >= 0.25:
                self._timeline_row()

    def stop(self) -> None:
        self.stop_event.set()

    def _tick(self, last: tuple[int, int], on_progress: Callable[[Progress], None] | None) -> tuple[int, int]:
        now, done = self.clock.now_ns(), self.recorder.completed
        window = (now - last[0]) / 1e9
        fps = (done - last[1]) / window if window > 0 else 0.0
        self.info.wall_seconds = (now - self._t_start) / 1e9
        if self.metrics is not None:
            self.metrics.fps.set(fps)
        self._update_gauges()
        if self.info.wall_seconds >= self._next_row:
            self._timeline_row()
            self._next_row = self.info.wall_seconds + 1.0
        if on_progress is not None:
            s = self.recorder.samples
            # The last 200 frames: a live view, cheap whatever the length of the run.
            recent = {st: s.stages[st][-200:] for st in STAGES}
            stage_ms = {st: sum(v) / len(v) * 1e3 if len(v) else 0.0 for st, v in recent.items()}
            r = self.recorder
            on_progress(Progress(self.info.wall_seconds, r.completed, r.dropped, r.failed, fps, stage_ms))
        return now, done

    def _timeline_row(self) -> None:
        depth = {"preprocess": self.q_pre.qsize(), "inference": self.q_inf.qsize(), "postprocess": self.q_post.qsize()}
        self.timeline.sample(self.info.wall_seconds, self.inference.busy, self.nireq, depth,
                             busy_ratios(self.recorder, self.info.wall_seconds, self.nireq), rss_bytes)

    def _update_gauges(self, final: bool = False) -> None:
        if self.metrics is None:
            return
        for stage, ratio in busy_ratios(self.recorder, self.info.wall_seconds, self.info.nireq).items():
            self.metrics.busy_ratio[stage].set(ratio)
        self.metrics.memory["peak_rss"].set(peak_rss_bytes())
        if final and self.info.wall_seconds > 0:
            self.metrics.fps.set(self.recorder.completed / self.info.wall_seconds)

    def close(self) -> None:
        for part in ("source", "preprocess", "postprocess"):
            obj = getattr(self, part, None)
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # closing must not hide the run's own result
                    pass

    def summary(self) -> Summary:
        """What was measured so far; valid after a fault or interrupt too."""
        self.info.memory["peak_rss_bytes"] = max(peak_rss_bytes(), self.info.memory.get("after_compile_rss_bytes", 0))
        if self.metrics is not None:
            self.metrics.memory["peak_rss"].set(self.info.memory["peak_rss_bytes"])
        perf = None
        if self.sampler is not None:
            perf = self.sampler.report()
            perf["error"] = getattr(self.inference, "sampler_error", None)
        summary = Summary.build(self.recorder, self.info, perf)
        summary.report["inject"] = {
            stage: {"nominal": d.seconds, "busy": d.busy, "actual": Stats.of(d.actual).to_dict()}
            for stage, d in self.delays.items()}
        summary.report["timeline"] = self.timeline.rows
        return summary


VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


def check_device(core: ov.Core, device: str) -> None:
    """Fail on a device that is not here before compiling anything (OpenVINO's own message is opaque)."""
    available = core.available_devices
    for part in device.replace(":", ",").split(","):
        name = part.strip()
        base = name.split(".")[0]
        if not name or base in VIRTUAL_DEVICES:
            continue
        if name not in available and base not in available:
            raise RunError(f"--device {device}: {name} is not available here (available: {', '.join(available)}); "
                           "choose one of those, or AUTO")


def default_pipeline_name(source: str | None) -> str:
    """A short, label-safe name from the source: 'sample', the file's stem, 'camera0', the URL's host."""
    import re

    if source is None:
        return "sample"
    kind = sources.source_kind(source)
    if kind == "synthetic":
        base = "synthetic"
    elif kind == "camera":
        base = "camera" + re.sub(r"\D", "", source)
    elif kind == "url":
        base = re.sub(r"^[a-z]+://(?:[^@/]*@)?", "", source.lower()).split("/")[0]
    else:
        base = os.path.splitext(os.path.basename(source.rstrip("/*")))[0] or "images"
    name = re.sub(r"[^A-Za-z0-9_.:-]", "_", base)[:64]
    return name or "vidprof"
