"""A stream worker: one source's decode -> preprocess -> submit, and its postprocess, on its own threads.

    decode ─q_pre─▶ preprocess + submit ══▶ shared inference ══▶ route ─q_post─▶ postprocess ─▶ recorder

Each stream has its own queues, pacing, drops, end of stream and recorder; only the infer requests
are shared (``stages.inference.InferenceStage``). Every thread catches what goes wrong with one frame
and passes the frame on marked as failed, so a frame is always counted and the end-of-stream marker
always reaches the last thread: no hang, nothing lost. A fault that stops the stream (its source
breaks) is kept on the stream and stops only this stream; the others run on.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from vidprof.pipeline.build import StreamParts
from vidprof.pipeline.outputs import OutputsWriter
from vidprof.profiling.clock import Clock
from vidprof.profiling.errors import RunError
from vidprof.profiling.metrics import StreamMetrics
from vidprof.profiling.recorder import FrameSink
from vidprof.stages.frame import Frame
from vidprof.stages.inference import InferenceStage
from vidprof.stages.inject import Delay
from vidprof.stages.postprocess import Postprocess
from vidprof.stages.sources import SourceLost

_END = object()  # end-of-stream marker, passed down every queue once
MAX_CONSECUTIVE_FAILURES = 50
MAX_RECONNECT_DELAY = 30.0  # the backoff doubles up to this
KEPT_OUTAGES = 100  # a stream that flaps for days keeps its last outages and counts the rest


@dataclass(frozen=True)
class _EndAfter:
    """The end marker on the postprocess queue: it may overtake frames still inside the shared inference, so it
    says how many frames the preprocess threads sent, and the postprocess thread ends once it has seen them all."""

    sent: int


@dataclass(frozen=True)
class Reconnect:
    """What a live stream does when it stops delivering."""

    enabled: bool = True
    delay: float = 1.0  # first wait before reconnecting; doubles after each failed attempt


@dataclass
class Outage:
    start: float  # seconds since the run started
    seconds: float | None  # None while it lasts
    reason: str
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "seconds": self.seconds, "reason": self.reason, "attempts": self.attempts}


class HandOff(queue.Queue):
    """A bounded queue whose producer, once it has filled it, sleeps until it is half empty.

    With a plain bounded queue a producer that runs ahead (a file decodes faster than the model infers) is
    woken by every ``get`` to add one frame and sleeps again: a wake-up and a GIL hand-off per frame, each
    ~15-20 us of CPU on these machines. Woken at half empty, it refills several frames per wake-up, and the
    consumer never finds the queue empty on its account. One producer per queue (the thread before it)."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize=maxsize)
        self._low = maxsize // 2

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if not block or timeout is not None:
            return super().get(block, timeout)
        with self.not_empty:
            while not self._qsize():
                self.not_empty.wait()
            item = self._get()
            if self._qsize() <= self._low:
                self.not_full.notify()
            return item


class StreamWorker:
    """Runs one stream through its stages; ``threads()`` makes its threads, the runner starts them."""

    def __init__(self, parts: StreamParts, inference: InferenceStage, postprocess: Postprocess, sink: FrameSink,
                 clock: Clock, *, nireq: int, queue_size: int, delays: dict[str, Delay],
                 deadline_ns: Callable[[], int | None], stop_all: threading.Event, hurry: threading.Event,
                 outputs: OutputsWriter | None = None, on_completed: Callable[[Frame], None] | None = None,
                 reconnect: Reconnect | None = None, metrics: StreamMetrics | None = None,
                 run_start_ns: Callable[[], int] | None = None, preprocess_threads: int = 1) -> None:
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
        self._reconnect = reconnect or Reconnect()
        self._metrics = metrics
        self._run_start_ns = run_start_ns or clock.now_ns
        self.outages: deque[Outage] = deque(maxlen=KEPT_OUTAGES)
        self.outage_count = 0
        self.reconnects = 0
        self.stop_event = threading.Event()  # this stream only: its fault, or its failed-frame limit
        self.done = threading.Event()  # set when the postprocess thread has seen the end of the stream
        self.fault: str | None = None
        self.frames_read = 0
        self.ended_ns: int | None = None  # when the last frame left postprocess: this stream's own wall time
        self._outputs = outputs
        # A live source keeps its queue short, so a frame never waits behind stale ones: one waiting for
        # preprocess (and one held by the preprocess thread while it waits for an infer request).
        live = self.source.live
        self.q_pre: queue.Queue = queue.Queue(maxsize=1) if live else HandOff(queue_size)
        # Completed frames reach postprocess through a SimpleQueue: OpenVINO's callback thread puts each one, and a
        # queue.Queue's put (a Python Condition and its notify) cost ~10 us of that thread's CPU a frame, and its
        # bound blocked inference when postprocess fell behind. The bound is kept on the submit side instead:
        # the submitting threads send at most ``_post_cap`` frames that postprocess has not yet taken (in flight
        # plus queued), and wait before the frame's inference when they have (``_wait_for_room``).
        self.q_post: queue.SimpleQueue = queue.SimpleQueue()
        self._post_cap = max(queue_size, nireq) * 2
        self._taken = 0  # frames the postprocess thread took from q_post: its own count
        self._room = threading.Condition()
        self._wants_room = 0  # submitting threads waiting in ``_wait_for_room``
        # A stage that may run on several threads (``workers``) does so for a file, up to ``preprocess_threads``
        # (the runner's share of the cores for this stream); a live source keeps one, so its drop-the-oldest
        # hand-off keeps a single producer.
        n = 1 if live or self.stage_inline else max(1, min(int(getattr(self.preprocess, "workers", 1)),
                                                             preprocess_threads))
        self._preprocessors = [self.preprocess] + [self.preprocess.fork() for _ in range(n - 1)]
        # Frames preprocessed and not yet in inference (the queue before inference): each preprocess thread holds
        # at most one, while it waits for an infer request or for postprocess to catch up; one slot per thread,
        # written by that thread only, so no lock per frame.
        self._submitting = [0] * n
        # Frames each preprocess thread sent on (into inference, or straight to q_post): a count per thread, each
        # written by its own thread, so two submitting threads need no lock per frame.
        self._sent_by = [0] * n
        self._preprocess_left = n  # threads still running: the last one to end passes the end marker on
        self._preprocess_lock = threading.Lock()

    @property
    def stage_inline(self) -> bool:
        """Preprocessing cheap enough for one thread that also submits (``host``, ``fused``): never forked."""
        return bool(getattr(self.preprocess, "inline", False))

    @property
    def preprocess_threads(self) -> int:
        return len(self._preprocessors)

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set() or self._stop_all.is_set()

    def queue_depths(self) -> dict[str, Callable[[], int]]:
        return {"preprocess": self.q_pre.qsize, "inference": lambda: sum(self._submitting),
                "postprocess": self.q_post.qsize}

    def threads(self) -> list[threading.Thread]:
        """Decode, then each preprocess thread preprocesses a frame and submits it itself (a frame makes no
        hand-off between the two), then postprocess. The ``separate`` placement runs two preprocess threads
        for a file (see ``SeparatePreprocess.workers``): one's graph runs while the other waits for a free
        request."""
        pre = [(f"preprocess{'' if i == 0 else i}+submit", partial(self._preprocess_submit_loop, stage, i))
               for i, stage in enumerate(self._preprocessors)]
        loops = [("decode", self._decode_loop), *pre, ("postprocess", self._postprocess_loop)]
        return [threading.Thread(target=fn, name=f"vidprof-{self.label}-{name}", daemon=True) for name, fn in loops]

    # ----------------------------------------------------------------- shared inference hands frames back here
    def completed(self, frame: Frame) -> None:
        """Called by the shared inference (a callback thread) when one of this stream's frames is done."""
        self.q_post.put(frame)

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
                missed = src.wait()
                if missed:  # frames the source delivered while this thread was late: dropped, and counted
                    for _ in range(missed if limit is None else min(missed, max(0, limit - index - 1))):
                        index += 1
                        self.frames_read = index
                        self.sink.frame_dropped(None)
                frame = Frame(index, self.index)
                frame.marks.start["decode"] = clock.now_ns()
                try:
                    image = src.read()
                except SourceLost as lost:
                    # The wait for a frame that never came is an outage, not decoding: it is reported as one.
                    if not self._reconnect.enabled:
                        raise RunError(f"source {src.description} stopped delivering ({lost}); "
                                       "without --no-reconnect vidprof reconnects and goes on") from lost
                    if not self._recover(str(lost), deadline):
                        break
                    continue
                # Frames a damaged file could not give before this one (or before its end): failed, in order.
                index = self._put_damaged(src.take_damaged(), index, limit, frame.marks.start["decode"], put)
                if image is None:
                    break
                if inject is not None:
                    inject()
                frame.marks.end["decode"] = clock.now_ns()
                frame.image = image
                if limit is not None and index >= limit:
                    break
                frame.index = frame.marks.frame = index
                index += 1
                self.frames_read = index
                put(frame)
        except Exception as e:
            self._fault("decode", e)
        finally:
            self.frames_read = index
            self.q_pre.put(_END)

    def _put_damaged(self, n: int, index: int, limit: int | None, at_ns: int, put: Callable[[Frame], None]) -> int:
        for _ in range(n):
            if limit is not None and index >= limit:
                break
            bad = Frame(index, self.index, error="decode: a damaged frame FFmpeg could not decode", reason="damaged")
            bad.marks.start["decode"] = bad.marks.end["decode"] = at_ns
            bad.marks.frame = index
            index += 1
            self.frames_read = index
            put(bad)
        return index

    def _recover(self, reason: str, deadline: int | None) -> bool:
        """Reconnect a lost live source with a doubling backoff until it delivers again, the run's
        deadline passes, or a stop; True when it is back. Every step is interruptible within ~0.1 s."""
        clock, src = self._clock, self.source
        now = clock.now_ns()
        outage = Outage((now - self._run_start_ns()) / 1e9, None, reason)
        self.outages.append(outage)
        self.outage_count += 1
        if self._metrics is not None:
            self._metrics.source_up.set(0)
        delay = self._reconnect.delay
        while True:
            wake = clock.now_ns() + int(delay * 1e9)
            while clock.now_ns() < wake:
                if self.stopping or (deadline is not None and clock.now_ns() >= deadline):
                    outage.seconds = (clock.now_ns() - now) / 1e9
                    return False
                self.stop_event.wait(0.1)
            outage.attempts += 1
            try:
                src.reopen()
            except RunError:
                delay = min(delay * 2, MAX_RECONNECT_DELAY)
                continue
            outage.seconds = (clock.now_ns() - now) / 1e9
            self.reconnects += 1
            if self._metrics is not None:
                self._metrics.source_up.set(1)
                self._metrics.source_reconnects.inc()
            return True

    def _preprocess_one(self, frame: Frame, inject: Delay | None, stage: Any = None) -> None:
        if frame.error is not None:  # a damaged frame: nothing to preprocess, counted at the end
            return
        self._timed("preprocess", stage or self.preprocess, frame, inject)

    def _timed(self, name: str, stage: Any, frame: Frame, inject: Delay | None) -> None:
        """Run one stage on the frame between its marks; a failure marks the frame with the stage's reason."""
        frame.marks.start[name] = self._clock.now_ns()
        try:
            stage.process(frame)
            if inject is not None:
                inject()
        except Exception as e:
            frame.error, frame.reason = f"{name}: {e}", name
        frame.marks.end[name] = self._clock.now_ns()

    def _submit_one(self, frame: Frame, slot: int) -> None:
        """Send the frame into inference (a failed one straight to postprocess); ``slot``: the calling thread's."""
        self._submitting[slot] = 1
        try:
            if sum(self._sent_by) - self._taken >= self._post_cap and not self._wait_for_room():
                # Hurrying: a frame not yet in inference is dropped, like the queued ones.
                self.sink.frame_dropped(frame.marks)
                return
            self._sent_by[slot] += 1
            if frame.error is not None:
                self.q_post.put(frame)
                return
            try:
                self._inference.submit(frame)
            except Exception as e:
                frame.error, frame.reason = f"inference submit: {e}", "inference"
                self.q_post.put(frame)
        finally:
            self._submitting[slot] = 0

    def _wait_for_room(self) -> bool:
        """Postprocess is ``_post_cap`` frames behind: wait until it takes one; False when the run hurries (a second
        Ctrl-C or signal) first. The frame waits before its inference, and its "queue before inference" says so.
        Postprocess takes every frame sent until the end, so room always comes."""
        with self._room:
            self._wants_room += 1
            try:
                while sum(self._sent_by) - self._taken >= self._post_cap:
                    if self._hurry.is_set():
                        return False
                    self._room.wait(0.1)
                return True
            finally:
                self._wants_room -= 1

    def _took(self) -> None:
        """The postprocess thread took a frame: one more may be sent."""
        self._taken += 1
        if self._wants_room:
            with self._room:
                self._room.notify_all()

    def _finish_submitting(self) -> None:
        """The end marker follows the last frame sent; the frames still in flight may reach postprocess after it,
        and the marker says how many to wait for."""
        self.q_post.put(_EndAfter(sum(self._sent_by)))

    def _take(self, q: queue.Queue) -> Iterator[Frame]:
        """Frames from ``q`` until its end marker; once hurrying (a second Ctrl-C or signal), each is dropped
        (counted) instead of handed on."""
        while True:
            frame = q.get()
            if frame is _END:
                return
            if self._hurry.is_set():
                self.sink.frame_dropped(frame.marks)
                continue
            yield frame

    def _preprocess_submit_loop(self, stage: Any, slot: int) -> None:
        """One of the stream's preprocess threads (``stage``: its own copy of the stage; ``slot``: its index):
        preprocess a frame, then submit it. With two threads, frames may reach inference out of order; each
        carries its own index and marks. The last thread to end passes the end marker on to postprocess."""
        inject = self._delays.get("preprocess")
        try:
            for frame in self._take(self.q_pre):
                self._preprocess_one(frame, inject, stage)
                self._submit_one(frame, slot)
        finally:
            with self._preprocess_lock:
                self._preprocess_left -= 1
                last = self._preprocess_left == 0
            if last:
                self._finish_submitting()
            else:
                self.q_pre.put(_END)  # the end marker came once: the next thread must see it too

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
        end: _EndAfter | None = None
        while end is None or self._taken < end.sent:
            frame = self.q_post.get()
            if isinstance(frame, _EndAfter):
                end = frame
                continue
            self._took()
            marks = frame.marks
            if frame.error is None:
                self._timed("postprocess", self._postprocess, frame, inject)
            else:  # a failed frame still passes postprocess, so its end-to-end span is closed
                marks.start["postprocess"] = marks.end["postprocess"] = clock.now_ns()
            failed = frame.error is not None
            if failed and frame.reason is None:
                frame.reason = "inference"  # the shared inference stage marks its failures with an error only
            self.sink.frame_done(marks, frame.transfer, failed, frame.error, frame.reason)
            if self._outputs is not None and not failed:
                self._outputs.add(self.index, frame.index, frame.outputs, frame.result)
            if self._on_completed is not None:
                self._on_completed(frame)
            first_error = first_error or frame.error
            # Damaged frames of a file are its content, not a broken pipeline: they never stop the stream.
            if frame.reason != "damaged":
                consecutive_failures = consecutive_failures + 1 if failed else 0
            if consecutive_failures == MAX_CONSECUTIVE_FAILURES:
                self._fault("postprocess", RunError(
                    f"stopped after {MAX_CONSECUTIVE_FAILURES} failed frames in a row; first error: {first_error}"))
