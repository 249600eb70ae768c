"""Inference: compile the model and run it with asynchronous infer requests (or one at a time with --sync).

Timing (see docs/metrics.md): ``infer_wait`` is the wait for a free request; the ``inference`` stage runs
from handing the input to the request until the completion callback has the outputs. Inside it,
host->device is the time spent giving the input to the request (a tensor wrap when zero-copy, a memcpy
otherwise) and device->host the time spent on the outputs: with zero-copy (and static output shapes, batch 1)
giving the request the frame's own output arrays to write into, else copying the outputs out in the
callback; bytes are counted exactly either way.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import openvino as ov

from vidprof.profiling.clock import Clock
from vidprof.profiling.errors import RunError, UsageError, runtime_detail
from vidprof.profiling.perf_counters import PerfCounterSampler
from vidprof.stages.frame import Frame

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT", "cumulative_throughput": "CUMULATIVE_THROUGHPUT",
         "none": None}
PRECISIONS = ("f32", "f16", "bf16")


@dataclass(frozen=True)
class InferenceOptions:
    device: str = "CPU"
    hint: str = "throughput"
    streams: int | None = None  # None: the device's choice for the hint
    nireq: int | None = None  # None: OPTIMAL_NUMBER_OF_INFER_REQUESTS
    infer_precision: str | None = None  # None: the device default (bf16 on CPUs that have it)
    cache_dir: str | None = None
    sync: bool = False
    zero_copy: bool = True
    perf_counters: bool = False
    batch: int = 1  # frames per infer request (from one stream or across streams)
    batch_timeout: float = 0.01  # seconds a partial batch waits for more frames before it runs as it is

    def __post_init__(self) -> None:
        if not 1 <= self.batch <= 64:
            raise UsageError(f"--batch {self.batch}: expected 1 to 64 frames per infer request")
        if not (math.isfinite(self.batch_timeout) and 0 < self.batch_timeout <= 10):
            raise UsageError(f"--batch-timeout {self.batch_timeout}: expected seconds between 0 and 10, e.g. 0.01")
        if self.hint not in HINTS:
            raise UsageError(f"--hint {self.hint!r}: expected one of {', '.join(HINTS)}")
        if self.streams is not None and self.streams < 1:
            raise UsageError(f"--streams {self.streams}: expected a positive number of streams")
        if self.nireq is not None and self.nireq < 1:
            raise UsageError(f"--nireq {self.nireq}: expected at least 1 infer request")
        if self.infer_precision is not None and self.infer_precision not in PRECISIONS:
            raise UsageError(f"--infer-precision {self.infer_precision!r}: expected one of {', '.join(PRECISIONS)}")
        if not self.device:
            raise UsageError("--device '': expected a device name such as CPU, GPU or AUTO")

    def compile_config(self) -> dict[str, str]:
        cfg: dict[str, str] = {}
        if HINTS[self.hint] is not None:
            cfg["PERFORMANCE_HINT"] = HINTS[self.hint]  # type: ignore[assignment]
        if self.streams is not None:
            cfg["NUM_STREAMS"] = str(self.streams)
        if self.infer_precision is not None:
            cfg["INFERENCE_PRECISION_HINT"] = self.infer_precision
        if self.perf_counters:
            cfg["PERF_COUNT"] = "YES"
        return cfg


def compile_model(core: ov.Core, model: ov.Model, opts: InferenceOptions) -> ov.CompiledModel:
    if opts.cache_dir:
        try:
            core.set_property({"CACHE_DIR": opts.cache_dir})
        except RuntimeError as e:  # OpenVINO creates the folder here: one it cannot create fails now
            raise RunError(f"--cache-dir {opts.cache_dir}: OpenVINO cannot use it ({runtime_detail(e)}); "
                           "expected a writable folder; choose another path") from e
    try:
        return core.compile_model(model, opts.device, opts.compile_config())
    except RuntimeError as e:
        raise RunError(f"could not compile the model on {opts.device} with {opts.compile_config() or 'defaults'}: "
                       f"{runtime_detail(e)}; check --device and the settings it supports") from e


def model_only_fps(compiled: ov.CompiledModel, nireq: int, tensor, seconds: float, sync: bool = False) -> float:
    """Inference alone on a pre-made input, the way benchmark_app measures: every request keeps the
    same input tensor and is restarted as soon as it completes, for ``seconds``. Frames per second: a
    batched model counts each of its frames."""
    import time

    if not isinstance(compiled, ov.CompiledModel):  # --runtime onnxruntime: its session measures itself
        return compiled.model_only_fps(nireq, tensor, seconds, sync)
    batch = int(compiled.inputs[0].get_shape()[0]) if compiled.inputs[0].get_partial_shape().is_static else 1
    if batch > 1 and tensor.shape[0] == 1:
        tensor = np.repeat(tensor, batch, axis=0)
    if sync:
        req = compiled.create_infer_request()
        req.set_input_tensor(ov.Tensor(tensor))
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            req.infer()
            n += 1
        return n * batch / (time.perf_counter() - t0)
    queue = ov.AsyncInferQueue(compiled, nireq)
    for i in range(nireq):
        queue[i].set_input_tensor(ov.Tensor(tensor))
    done = [0]

    def count(_request: ov.InferRequest, _userdata: object) -> None:
        done[0] += 1

    queue.set_callback(count)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        queue.start_async(None, None)  # inputs already set on every request
    queue.wait_all()
    return done[0] * batch / (time.perf_counter() - t0)


def resolved_nireq(compiled: ov.CompiledModel, opts: InferenceOptions) -> int:
    if opts.sync:
        return 1
    if opts.nireq is not None:
        return opts.nireq
    try:
        optimal = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    except RuntimeError:
        optimal = 2
    if opts.hint in ("latency", "none"):
        return optimal
    # For throughput, one more request per stream: with exactly one per stream, each stream idles while
    # Python hands the finished request back and the next frame in (~1 ms of a 12 ms inference), and the
    # pipeline reached 0.85-0.93 of benchmark_app; with a request queued behind each, 0.99-1.03.
    return 2 * optimal


def _output_specs(compiled: ov.CompiledModel) -> list[tuple[tuple[int, ...], np.dtype]] | None:
    """Each output's shape and numpy type when all are static (an array can be made for them up front); None
    otherwise, and outputs are then copied out after each inference."""
    specs = []
    for out in compiled.outputs:
        if not out.get_partial_shape().is_static:
            return None
        try:
            dtype = np.dtype(out.get_element_type().to_dtype())
        except (RuntimeError, TypeError, ValueError):
            return None
        specs.append((tuple(int(d) for d in out.get_shape()), dtype))
    return specs


def _bound_start_async(queue: ov.AsyncInferQueue) -> Callable[[object], None]:
    """``start(userdata)``: start the next idle request of ``queue`` on the inputs already set on it.

    Calls the binding's ``start_async(inputs, userdata)`` (the class the Python wrapper derives from) with no
    inputs, so nothing is dispatched again; where that class is not found (another OpenVINO layout) it falls
    back to the public method."""
    base = next((c for c in type(queue).__mro__[1:] if "start_async" in vars(c)), None)
    if base is None:
        return lambda userdata: queue.start_async(None, userdata)
    start, empty = base.start_async, {}
    return lambda userdata: start(queue, empty, userdata)


class FairLock:
    """A lock handed over in arrival order.

    Several streams submit to one set of infer requests; a plain Lock wakes an arbitrary waiter, so
    one stream's thread could take request after request while another starves. Here each waiter
    queues, and ``release`` hands the lock straight to the oldest one.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._held = False

    def __enter__(self) -> None:
        with self._guard:
            if not self._held:
                self._held = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        turn.acquire()  # released by the holder's __exit__: the lock is now ours, still marked held

    def __exit__(self, *exc: object) -> None:
        with self._guard:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False


class InferenceStage:
    """One compiled model's infer requests, shared by every stream: feeds frames to them and hands each
    finished frame to ``on_done`` (which routes it to its stream).

    ``submit`` may be called from several threads (one per stream): picking an idle request, giving it
    the input and starting it happen under one fair lock, so two submitters never take the same
    request and none is starved. ``on_done`` runs on OpenVINO's callback thread (async) or the
    caller's (sync). Whatever goes wrong for one frame, including an exception while reading its
    outputs, is put on the frame as an error and the frame still reaches ``on_done``: it is counted,
    never lost, and nothing hangs.
    """

    name = "inference"

    def __init__(self, compiled: ov.CompiledModel, nireq: int, opts: InferenceOptions, clock: Clock,
                 on_done: Callable[[Frame], None], inject: Callable[[], None] | None = None,
                 sampler: PerfCounterSampler | None = None) -> None:
        self._clock = clock
        self._on_done = on_done
        self._inject = inject
        self._sampler = sampler
        self.sampler_error: str | None = None
        self._zero_copy = opts.zero_copy
        self._sync = opts.sync
        self._n_out = len(compiled.outputs)
        self._out_specs = _output_specs(compiled) if opts.zero_copy and opts.batch == 1 else None
        self.nireq = nireq
        # Which requests are running, one slot each: a request's start and its completion callback each write
        # only its own slot, so no lock is taken per frame (a shared count needed one, twice a frame).
        self._running = [False] * (1 if opts.sync else nireq)
        self._submit_lock = FairLock()
        self.batch = opts.batch
        self._batch_timeout = opts.batch_timeout
        if self.batch > 1:
            self._pending: list[Frame] = []
            self._pending_since = 0
            self._pending_cv = threading.Condition()
            self._closing = False
            self._timer = threading.Thread(target=self._flush_late_batches, name="vidprof-batch-timer", daemon=True)
            self._timer.start()
        if self._sync:
            self._request = compiled.create_infer_request()
        else:
            self._queue = ov.AsyncInferQueue(compiled, nireq)
            self._queue.set_callback(self._completed)
            # Per frame, the queue's Python wrapper builds a request object twice (``queue[i]`` and again in its
            # ``start_async``) and re-dispatches inputs already set: ~7 us of the submit thread's CPU a frame.
            # The requests are made once here, and frames start through the binding's own start_async.
            self._requests = [self._queue[i] for i in range(nireq)]
            self._start_async = _bound_start_async(self._queue)

    def _feed(self, request: ov.InferRequest, frame: Frame) -> None:
        t = frame.tensor
        assert t is not None
        t0 = self._clock.now_ns()
        if self._zero_copy:
            request.set_input_tensor(ov.Tensor(t, shared_memory=True))
        else:
            request.get_input_tensor().data[...] = t
        t1 = self._clock.now_ns()
        frame.transfer.h2d_ns = t1 - t0
        frame.transfer.h2d_bytes = t.nbytes
        if self._out_specs is not None:
            # Zero-copy outputs too: the request writes this frame's results into arrays the frame keeps, so the
            # completion callback reads nothing back. Copying the outputs out there cost ~50 us of CPU a frame on
            # OpenVINO's thread (fetching the tensors, then copying lines another core had just written).
            outs = [np.empty(shape, dtype) for shape, dtype in self._out_specs]
            for i, o in enumerate(outs):
                request.set_output_tensor(i, ov.Tensor(o, shared_memory=True))
            frame.outputs = outs
            frame.transfer.d2h_ns = self._clock.now_ns() - t1
            frame.transfer.d2h_bytes = sum(o.nbytes for o in outs)

    @property
    def outputs_zero_copy(self) -> bool:
        """True when the request writes each frame's outputs into the frame's own arrays (nothing copied out)."""
        return self._out_specs is not None

    @property
    def busy(self) -> int:
        """Requests in flight now."""
        return sum(self._running)  # read when /metrics is rendered, not per frame

    def submit(self, frame: Frame) -> None:
        """Wait for a free request, then start it; returns once the frame is in flight (or finished, with --sync).

        The wait for a free request includes waiting for other streams' turns: either way the frame
        waits for the device, and ``infer_wait`` says so. With ``batch`` > 1 the frame joins the batch
        being filled (frames of any stream) and returns at once; the frame that fills it starts it, and a
        batch still partial after ``batch_timeout`` is started by a timer as it is. A frame's wait for its
        batch to fill is part of its ``infer_wait``."""
        frame.marks.infer_wait_start = self._clock.now_ns()
        if self.batch == 1:
            with self._submit_lock:
                self._submit_locked(frame)
            return
        with self._pending_cv:
            if not self._pending:
                self._pending_since = frame.marks.infer_wait_start
                self._pending_cv.notify()  # the timer now has a deadline to watch
            self._pending.append(frame)
            full = self._take_batch() if len(self._pending) >= self.batch else None
        if full:
            with self._submit_lock:
                self._start_batch(full)

    def _take_batch(self) -> list[Frame]:
        frames, self._pending = self._pending[:self.batch], self._pending[self.batch:]
        return frames

    def _flush_late_batches(self) -> None:
        """Start a partial batch that has waited ``batch_timeout``: a slow stream must not hold the others."""
        timeout_ns = int(self._batch_timeout * 1e9)
        while True:
            with self._pending_cv:
                while not self._pending and not self._closing:
                    self._pending_cv.wait()
                if self._closing and not self._pending:
                    return
                late = self._pending_since + timeout_ns - self._clock.now_ns()
                if late > 0 and not self._closing:
                    self._pending_cv.wait(late / 1e9)
                    continue
                frames = self._take_batch()
                if self._pending:
                    self._pending_since = self._clock.now_ns()
            with self._submit_lock:
                self._start_batch(frames)

    def _start_batch(self, frames: list[Frame]) -> None:
        """Take a free request, copy each frame's tensor into its slot of the batch, start it."""
        if self._sync:
            request = self._request
            rid = 0
        else:
            rid = self._queue.get_idle_request_id()  # blocks, GIL released
            request = self._requests[rid]
        now = self._clock.now_ns()
        fed: list[Frame] = []
        for frame in frames:
            frame.marks.request = rid
            frame.marks.start["inference"] = now
        try:
            data = request.get_input_tensor().data
            for i, frame in enumerate(frames):
                t = frame.tensor
                assert t is not None
                t0 = self._clock.now_ns()
                data[i] = t[0]  # a batch cannot share each frame's memory: one copy per frame
                frame.transfer.h2d_ns = self._clock.now_ns() - t0
                frame.transfer.h2d_bytes = t.nbytes
                fed.append(frame)
        except Exception as e:  # a tensor the request cannot take: these frames fail, the run goes on
            for frame in frames:
                frame.error = f"inference input: {e}"
                frame.marks.end["inference"] = self._clock.now_ns()
                self._on_done(frame)
            return
        self._running[rid] = True
        if self._sync:
            try:
                request.infer()
            except Exception as e:
                for frame in fed:
                    frame.error = f"inference: {e}"
            self._completed(request, fed)
        else:
            try:
                self._start_async(fed)
            except Exception as e:
                self._running[rid] = False
                for frame in fed:
                    frame.error = f"inference submit: {e}"
                    frame.marks.end["inference"] = self._clock.now_ns()
                    self._on_done(frame)

    def _submit_locked(self, frame: Frame) -> None:
        marks = frame.marks
        if self._sync:
            request = self._request
            marks.request = 0
        else:
            marks.request = self._queue.get_idle_request_id()  # blocks, GIL released
            request = self._requests[marks.request]
        marks.start["inference"] = self._clock.now_ns()
        try:
            self._feed(request, frame)
        except Exception as e:  # a tensor the request cannot take: this frame fails, the run goes on
            frame.error = f"inference input: {e}"
            marks.end["inference"] = self._clock.now_ns()
            self._on_done(frame)
            return
        self._running[marks.request] = True
        if self._sync:
            try:
                request.infer()
            except Exception as e:
                frame.error = f"inference: {e}"
            self._completed(request, frame)
        else:
            # Inputs are already on the request (set above). start_async picks the same idle request:
            # only the holder of the submit lock takes requests, so the idle one found above is still
            # first in line.
            try:
                self._start_async(frame)
            except Exception:
                self._running[marks.request] = False
                raise

    def _completed(self, request: ov.InferRequest, frame: Frame | list[Frame]) -> None:
        if isinstance(frame, list):
            self._completed_batch(request, frame)
            return
        try:
            if frame.error is None:
                if self._out_specs is None:  # else the outputs are already in the frame's own arrays
                    t0 = self._clock.now_ns()
                    outs = [request.get_output_tensor(i).data.copy() for i in range(self._n_out)]
                    frame.transfer.d2h_ns = self._clock.now_ns() - t0
                    frame.transfer.d2h_bytes = sum(o.nbytes for o in outs)
                    frame.outputs = outs
                if self._inject is not None:
                    self._inject()
        except Exception as e:
            frame.error = f"inference callback: {type(e).__name__}: {e}"
        finally:
            end = frame.marks.end["inference"] = self._clock.now_ns()
            self._running[frame.marks.request or 0] = False
            # Read profiling info after the end mark: its ~40 µs is not the inference's cost.
            if self._sampler is not None and frame.error is None and self._sampler.due(end):
                try:
                    self._sampler.sample(request, (end - frame.marks.start["inference"]) / 1e9, end)
                except Exception as e:  # profiling must never fail a frame; keep the first reason
                    self.sampler_error = self.sampler_error or f"{type(e).__name__}: {e}"
            self._on_done(frame)

    def _completed_batch(self, request: ov.InferRequest, frames: list[Frame]) -> None:
        """A batch is done: each frame gets its own slice of every output (shape [1, ...], as unbatched)."""
        try:
            outs = [request.get_output_tensor(i).data for i in range(self._n_out)]
            for i, frame in enumerate(frames):
                if frame.error is not None:
                    continue
                t0 = self._clock.now_ns()
                frame.outputs = [o[i:i + 1].copy() for o in outs]
                frame.transfer.d2h_ns = self._clock.now_ns() - t0
                frame.transfer.d2h_bytes = sum(o.nbytes for o in frame.outputs)
            if self._inject is not None:
                self._inject()
        except Exception as e:
            for frame in frames:
                frame.error = frame.error or f"inference callback: {type(e).__name__}: {e}"
        finally:
            end = self._clock.now_ns()
            for frame in frames:
                frame.marks.end["inference"] = end
            self._running[frames[0].marks.request or 0] = False
            for frame in frames:
                self._on_done(frame)

    def warm_up(self, tensor, rounds: int) -> float:
        """Run every request ``rounds`` times on ``tensor`` before the clock starts; returns the first
        inference's seconds (the real first-inference latency, paid here instead of by frame 0)."""
        requests = [self._request] if self._sync else self._requests
        if self.batch > 1:
            tensor = np.repeat(tensor, self.batch, axis=0)
        first = 0.0
        for r in range(rounds):
            for i, req in enumerate(requests):
                t0 = self._clock.now_ns()
                req.infer({0: tensor})
                if r == 0 and i == 0:
                    first = (self._clock.now_ns() - t0) / 1e9
        return first

    def drain(self) -> None:
        """Wait until every request in flight has completed."""
        if not self._sync:
            self._queue.wait_all()

    def close(self) -> None:
        if self.batch > 1:
            with self._pending_cv:
                self._closing = True  # the timer starts what is pending, then ends
                self._pending_cv.notify()
            self._timer.join(timeout=10)
        self.drain()

