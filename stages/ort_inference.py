"""Inference through ONNX Runtime's CPU provider: the native framework beside OpenVINO, on the same pipeline.

``--runtime onnxruntime`` swaps only the inference stage: decode, preprocessing (to the same tensor) and
postprocessing are the run's own, so the difference in end-to-end FPS is what OpenVINO brings on this
video. ``OrtInferenceStage`` offers what the runner and the stream workers use of ``InferenceStage``
(``submit``, ``warm_up``, ``drain``, ``busy``, ``nireq``, ``close``) and hands each finished frame to
``on_done`` the same way.

ONNX Runtime has no infer requests: ``nireq`` here is how many ``run`` calls may be in flight at once,
each on a worker thread (``run`` releases the GIL, and one session may be run from several threads).
The default is 1: ONNX Runtime spreads one inference over every core itself (intra-op threads), and
calls run side by side share those threads, so a second one measured nothing but contention on 2 cores.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vidprof.profiling.clock import Clock
from vidprof.profiling.errors import RunError, UsageError
from vidprof.stages.frame import Frame
from vidprof.stages.inference import FairLock, InferenceOptions

EXTRA = "onnxruntime"  # the pip extra that installs it: vidprof[onnxruntime]


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as e:
        raise UsageError(f"--runtime onnxruntime needs ONNX Runtime, which is not installed ({e.name} is missing); "
                         f"install it with `pip install 'vidprof[{EXTRA}]'`, or use --runtime openvino") from e
    return onnxruntime


@dataclass(frozen=True)
class OrtModel:
    """An ONNX Runtime session for the run's model, with what the pipeline reads of a compiled model.

    ``outputs``: the output ports of the same file read by OpenVINO and reshaped to the run's input (their
    shapes and names pick the decoder), so both runtimes are decoded by the same decoder.
    """

    session: Any  # onnxruntime.InferenceSession
    input_name: str
    output_names: tuple[str, ...]
    outputs: Sequence[Any]
    threads: int  # intra-op threads (0: ONNX Runtime's choice, one per physical core)
    version: str
    providers: tuple[str, ...] = field(default_factory=tuple)

    def nireq(self, opts: InferenceOptions) -> int:
        if opts.sync:
            return 1
        return opts.nireq or 1

    def resolved(self, nireq: int) -> dict[str, Any]:
        """What ran, in the keys of OpenVINO's resolved settings (streams and hint do not apply)."""
        return {"nireq": nireq, "streams": None, "precision": "f32", "hint": None,
                "threads": self.threads or None, "runtime": f"onnxruntime {self.version}",
                "providers": list(self.providers)}

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: tensor})

    def model_only_fps(self, nireq: int, tensor: np.ndarray, seconds: float, sync: bool = False) -> float:
        """The model alone on a pre-made input, as ``stages.inference.model_only_fps`` measures OpenVINO:
        ``nireq`` calls kept in flight (one when ``sync``) for ``seconds``."""
        workers = 1 if sync else max(1, nireq)
        counts = [0] * workers
        stop = time.perf_counter() + seconds

        def loop(k: int) -> None:
            while time.perf_counter() < stop:
                self.run(tensor)
                counts[k] += 1

        t0 = time.perf_counter()
        if workers == 1:
            loop(0)
        else:
            threads = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return sum(counts) / (time.perf_counter() - t0)


def _session(path: str) -> tuple[Any, Any]:
    """(the onnxruntime module, a CPU session for ``path``)."""
    ort = import_onnxruntime()
    so = ort.SessionOptions()
    so.log_severity_level = 3  # errors only: ONNX Runtime's warnings would land over vidprof's output
    try:
        return ort, ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ONNX Runtime raises its own exception types, one line each
        lines = str(e).strip().splitlines() or [type(e).__name__]
        raise RunError(f"ONNX Runtime cannot load {path}: {lines[-1][:300]}; expected an ONNX model ONNX Runtime's "
                       "CPU provider runs; try --runtime openvino") from e


def check_model(path: str) -> None:
    """Fail now, with the reason, when ONNX Runtime is missing or cannot load ``path`` (before a sweep)."""
    _session(path)


def open_session(path: str, model: Any, opts: InferenceOptions) -> OrtModel:
    """An ONNX Runtime CPU session for ``path``; ``model``: the same file read by OpenVINO (its outputs)."""
    ort, session = _session(path)
    so = session.get_session_options()
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise RunError(f"model {path} has {len(inputs)} inputs for ONNX Runtime; expected exactly one image input")
    names = tuple(o.name for o in session.get_outputs())
    return OrtModel(session, inputs[0].name, names, list(model.outputs), so.intra_op_num_threads,
                    ort.__version__, tuple(session.get_providers()))


class OrtInferenceStage:
    """ONNX Runtime in place of the shared OpenVINO inference stage; see the module's docstring.

    ``submit`` takes a free slot (one of ``nireq``) under the same fair lock as ``InferenceStage``, so the
    wait for it is ``infer_wait`` and no stream starves; the frame then runs on that slot's worker thread
    (or the caller's with ``--sync``) and reaches ``on_done`` whatever happens, with its error if it failed.
    """

    name = "inference"

    def __init__(self, compiled: OrtModel, nireq: int, opts: InferenceOptions, clock: Clock,
                 on_done: Callable[[Frame], None], inject: Callable[[], None] | None = None,
                 sampler: Any = None) -> None:
        if sampler is not None:
            raise UsageError("--perf-counters reads OpenVINO's PERF_COUNT, which ONNX Runtime does not have; "
                             "drop --perf-counters or use --runtime openvino")
        self._model = compiled
        self._clock = clock
        self._on_done = on_done
        self._inject = inject
        self._sync = opts.sync
        self.nireq = nireq
        self.sampler_error: str | None = None
        self._busy = 0
        self._busy_cv = threading.Condition()
        self._submit_lock = FairLock()
        self._idle: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(nireq):
            self._idle.put(i)
        self._pool = None if self._sync else ThreadPoolExecutor(nireq, thread_name_prefix="vidprof-ort")

    @property
    def busy(self) -> int:
        """Calls in flight now."""
        return self._busy

    def _set_busy(self, delta: int) -> None:
        with self._busy_cv:
            self._busy += delta
            self._busy_cv.notify_all()

    def submit(self, frame: Frame) -> None:
        """Wait for a free slot, then start the frame on it; returns once it is in flight (finished, with --sync)."""
        frame.marks.infer_wait_start = self._clock.now_ns()
        with self._submit_lock:
            slot = self._idle.get()  # blocks, GIL released
            marks = frame.marks
            marks.request = slot
            marks.start["inference"] = self._clock.now_ns()
            t = frame.tensor
            if t is None:
                frame.error = "inference input: no tensor"
                marks.end["inference"] = self._clock.now_ns()
                self._idle.put(slot)
                self._on_done(frame)
                return
            # ONNX Runtime reads a contiguous numpy array where it lies: no host->device copy on a CPU.
            frame.transfer.h2d_ns = 0
            frame.transfer.h2d_bytes = t.nbytes
            self._set_busy(+1)
            if self._pool is None:
                self._complete(slot, frame)
                return
            try:
                self._pool.submit(self._complete, slot, frame)
            except Exception:
                self._set_busy(-1)
                self._idle.put(slot)
                raise

    def _complete(self, slot: int, frame: Frame) -> None:
        try:
            outs = self._model.run(frame.tensor)  # type: ignore[arg-type]
            # The outputs are new host arrays already: nothing to copy back.
            frame.transfer.d2h_ns = 0
            frame.transfer.d2h_bytes = sum(o.nbytes for o in outs)
            frame.outputs = list(outs)
            if self._inject is not None:
                self._inject()
        except Exception as e:
            frame.error = f"inference: {type(e).__name__}: {str(e).strip()[:300]}"
        finally:
            frame.marks.end["inference"] = self._clock.now_ns()
            try:
                self._on_done(frame)
            finally:
                # As an OpenVINO request: the slot is free again once the completion has been handed on.
                self._set_busy(-1)
                self._idle.put(slot)

    def warm_up(self, tensor: np.ndarray, rounds: int) -> float:
        """``rounds`` calls per slot on ``tensor`` before the clock starts; returns the first call's seconds."""
        first = 0.0
        for r in range(rounds * self.nireq):
            t0 = self._clock.now_ns()
            self._model.run(tensor)
            if r == 0:
                first = (self._clock.now_ns() - t0) / 1e9
        return first

    def drain(self) -> None:
        """Wait until every call in flight has completed."""
        with self._busy_cv:
            self._busy_cv.wait_for(lambda: self._busy == 0)

    def close(self) -> None:
        self.drain()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
