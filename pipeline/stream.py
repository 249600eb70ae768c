"""A stream worker: one source's decode -> preprocess -> submit, and its postprocess, on its own threads.

    decode ─q_pre─▶ preprocess ─q_inf─▶ submit ══▶ shared inference ══▶ route ─q_post─▶ postprocess ─▶ recorder

Each stream has its own queues, pacing, drops, end of stream and recorder; only the infer requests
are shared (``stages.inference.InferenceStage``). Every thread catches what goes wrong with one frame
and passes the frame on marked as failed, so a frame is always counted and the end-of-stream marker
always reaches the last thread: no hang, nothing lost. A fault that stops the stream (its source
breaks) is kept on the stream and stops only this stream; the others run on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from vidprof.pipeline.build import StreamParts
from vidprof.profiling.clock import Clock
from vidprof.profiling.errors import RunError
from vidprof.profiling.recorder import FrameSink
from vidprof.stages.frame import Frame
from vidprof.stages.inference import InferenceStage
from vidprof.stages.inject import Delay
from vidprof.stages.postprocess import Postprocess

_END = object()  # end-of-stream marker, passed down every queue once
MAX_CONSECUTIVE_FAILURES = 50


class StreamWorker:
    """Runs one stream through its stages; ``threads()`` makes its four threads, the runner starts them."""

    def __init__(self, parts: StreamParts, inference: InferenceStage, postprocess: Postprocess, sink: FrameSink,
                 clock: Clock, *, nireq: int, queue_size: int, delays: dict[str, Delay],
                 deadline_ns: Callable[[], int | None], stop_all: threading.Event, hurry: threading.Event,
                 keep_outputs: bool = False, on_completed: Callable[[Frame], None] | None = None) -> None:
        self.parts = parts
        self.index = parts.spec.index
        self.label = parts.spec.label
        self.source = parts.source
        self.preprocess = parts.preprocess
        self.sink = sink
        self._inference = inference
        self._postprocess = postprocess
        self._clock = clock
        self._delays = delays
        self._deadline_ns = deadline_ns
        self._stop_all = stop_all
        self._hurry = hurry
        self._on_completed = on_completed
        self.stop_event = threading.Event()  # this stream only: its fault, or its failed-frame limit
        self.done = threading.Event()  # set when the postprocess thread has seen the end of the stream
        self.fault: str | None = None
        self.frames_read = 0
        self.ended_ns: int | None = None  # when the last frame left postprocess: this stream's own wall time
        self.keep_outputs = keep_outputs
        self.kept: dict[int, tuple[list[Any], Any]] = {}
        # A live source keeps the queues short, so a frame never waits behind stale ones: one waiting
        # for preprocess, and no more waiting for inference than there are requests.
        live = self.source.live
        self.q_pre: queue.Queue = queue.Queue(maxsize=1 if live else queue_size)
        self.q_inf: queue.Queue = queue.Queue(maxsize=nireq if live else max(queue_size, nireq))
        self.q_post: queue.Queue = queue.Queue(maxsize=max(queue_size, nireq) * 2)
        # Frames of this stream inside the shared inference: the submit thread waits for them to come
        # back before it sends the end marker, so the marker never overtakes a frame.
        self._in_flight = 0
        self._in_flight_cv = threading.Condition()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set() or self._stop_all.is_set()

    def queue_depths(self) -> dict[str, Callable[[], int]]:
        return {"preprocess": self.q_pre.qsize, "inference": self.q_inf.qsize, "postprocess": self.q_post.qsize}

    def threads(self) -> list[threading.Thread]:
        return [threading.Thread(target=fn, name=f"vidprof-{self.label}-{name}", daemon=True) for name, fn in (
            ("decode", self._decode_loop), ("preprocess", self._preprocess_loop),
            ("submit", self._submit_loop), ("postprocess", self._postprocess_loop))]

    # ----------------------------------------------------------------- shared inference hands frames back here
    def completed(self, frame: Frame) -> None:
        """Called by the shared inference (a callback thread) when one of this stream's frames is done."""
        self.q_post.put(frame)
        with self._in_flight_cv:
            self._in_flight -= 1
            self._in_flight_cv.notify_all()

    # ----------------------------------------------------------------- threads
    def _fault(self, where: str, e: BaseException) -> None:
        if self.fault is None:
            self.fault = str(e) if isinstance(e, RunError) else f"{where}: {type(e).__name__}: {e}"
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
                    self.sink.frame_dropped(old.marks)
                except queue.Empty:
                    pass

    def _decode_loop(self) -> None:
        clock, src = self._clock, self.source
        inject = self._delays.get("decode")
        limit = self.parts.frame_limit
        put = (lambda f: self._put_live(self.q_pre, f)) if src.live else self.q_pre.put
        index = 0
        try:
            deadline = self._deadline_ns()
            while not self.stopping:
                if limit is not None and index >= limit:
                    break
                if deadline is not None and clock.now_ns() >= deadline:
                    break
                # A paced source waits for its next frame time here, outside the decode figure:
                # waiting for a frame is the source's pace, not decoding cost.
                src.wait()
                frame = Frame(index, self.index)
                frame.marks.start["decode"] = clock.now_ns()
                image = src.read()
                if image is None:
                    break
                if inject is not None:
                    inject()
                frame.marks.end["decode"] = clock.now_ns()
                frame.image = image
                index += 1
                self.frames_read = index
                put(frame)
        except Exception as e:
            self._fault("decode", e)
        finally:
            self.q_pre.put(_END)

    def _preprocess_loop(self) -> None:
        clock = self._clock
        inject = self._delays.get("preprocess")
        put = (lambda f: self._put_live(self.q_inf, f)) if self.source.live else self.q_inf.put
        while True:
            frame = self.q_pre.get()
            if frame is _END:
                break
            if self._hurry.is_set():
                self.sink.frame_dropped(frame.marks)
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
                if self._hurry.is_set():
                    self.sink.frame_dropped(frame.marks)
                    continue
                if frame.error is not None:
                    self.q_post.put(frame)
                    continue
                with self._in_flight_cv:
                    self._in_flight += 1
                try:
                    self._inference.submit(frame)
                except Exception as e:
                    with self._in_flight_cv:
                        self._in_flight -= 1
                    frame.error = f"inference submit: {e}"
                    self.q_post.put(frame)
        finally:
            with self._in_flight_cv:
                self._in_flight_cv.wait_for(lambda: self._in_flight <= 0)
            self.q_post.put(_END)

    def _postprocess_loop(self) -> None:
        try:
            self._postprocess_frames()
        finally:
            self.ended_ns = self._clock.now_ns()
            self.done.set()

    def _postprocess_frames(self) -> None:
        clock = self._clock
        inject = self._delays.get("postprocess")
        consecutive_failures = 0
        first_error: str | None = None
        while True:
            frame = self.q_post.get()
            if frame is _END:
                break
            marks = frame.marks
            marks.start["postprocess"] = clock.now_ns()
            if frame.error is None:
                try:
                    self._postprocess.process(frame)
                    if inject is not None:
                        inject()
                except Exception as e:
                    frame.error = f"postprocess: {e}"
            marks.end["postprocess"] = clock.now_ns()
            failed = frame.error is not None
            self.sink.frame_done(marks, frame.transfer, failed, frame.error)
            if self.keep_outputs and not failed:
                self.kept[frame.index] = (frame.outputs, frame.result)
            if self._on_completed is not None:
                self._on_completed(frame)
            first_error = first_error or frame.error
            consecutive_failures = consecutive_failures + 1 if failed else 0
            if consecutive_failures == MAX_CONSECUTIVE_FAILURES:
                self._fault("postprocess", RunError(
                    f"stopped after {MAX_CONSECUTIVE_FAILURES} failed frames in a row; first error: {first_error}"))
