"""The CPU that vidprof adds per frame around the model, from per-thread CPU time in /proc.

    cd /work/main && python bench/cpu_per_frame.py [--pairs 5] [--frames 3000] [--placement fused|host]

Both sides run in this process on the same build (``vidprof.pipeline.build.build``: the same source, compiled
model and number of infer requests), in alternating order:

- **vidprof**: ``Runner`` with a real registry and a /metrics endpoint rendering every 0.5 s, as ``vidprof run``
  serves it, on ``synthetic:300x300`` (no decode cost), ``--preprocess fused`` (the resize and conversion run
  inside the model) and ``--postprocess passthrough`` (no decoding of outputs). Everything vidprof's own
  threads do per frame is then the cost of being a profiled pipeline: frames made and queued, marks, the
  submit, the completion callback, the recorder, the metrics, the ticks.
- **loop**: the least any program must do to run the same frames through the same model asynchronously:
  one thread reads the source and calls ``AsyncInferQueue.start_async`` with the frame shared (zero-copy);
  the callback does nothing.

What is counted, per completed frame: the CPU time of every Python thread of the run (read from
``/proc/self/task/*/schedstat`` while the run goes on: a stream's decode, submit and postprocess threads, the
main thread's ticks, the metrics writer), plus the CPU time inside the completion callback, which runs on
OpenVINO's threads (``time.thread_time`` around it). OpenVINO's own work (inference) is left out on both sides:
it is the model's cost, not vidprof's, and it varies with the machine's phase far more than the figure measured
here. ``added_ms`` = vidprof's own CPU per frame - the loop's. The process CPU per frame of each side is printed
beside it (``process_*``): it includes inference and the indirect costs of more threads (OpenVINO's threads
preempted by vidprof's), and is noisier.

RESULT ``cpu_added_per_frame median_ms=... pairs=[...]`` (goal <= 0.15 ms), then each side's per-frame CPU
and the busiest of vidprof's threads.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import openvino as ov
from prometheus_client import CollectorRegistry

from bench._common import base_parser, fmt, log, machine_note, median, run_interleaved
from bench._threads import ThreadCpu, group
from vidprof.pipeline.build import build
from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.runner import Runner
from vidprof.profiling import exporter
from vidprof.stages.postprocess import PostprocessOptions

SOURCE = "synthetic:300x300@30"


class CallbackCpu:
    """Wraps a completion callback and adds up the CPU time spent in it (on OpenVINO's threads)."""

    def __init__(self, fn: Callable[[Any, Any], None]) -> None:
        self.fn, self.ns = fn, 0
        self._lock = threading.Lock()

    def __call__(self, request: Any, userdata: Any) -> None:
        t0 = time.thread_time_ns()
        try:
            self.fn(request, userdata)
        finally:
            spent = time.thread_time_ns() - t0
            with self._lock:
                self.ns += spent


def config(frames: int, placement: str) -> RunConfig:
    return RunConfig(sources=(SOURCE,), frames=frames, preprocess=placement,
                     postprocess=PostprocessOptions(kind="passthrough"), pipeline_name="bench")


def python_threads(seconds: dict[str, float]) -> float:
    """CPU seconds of the Python threads (named); OpenVINO's and other native threads are named [comm]."""
    return sum(s for name, s in seconds.items() if not name.startswith("["))


def vidprof_side(frames: int, placement: str, threads_out: dict[str, float]) -> tuple[float, float]:
    """(own CPU ms per frame, process CPU ms per frame) of a Runner as the CLI runs it."""
    registry = CollectorRegistry()
    runner = Runner(config(frames, placement), registry=registry)
    runner.prepare()  # build and compile outside the measured window
    timed = CallbackCpu(runner.inference._completed)
    runner.inference._queue.set_callback(timed)
    server = exporter.serve(registry, "127.0.0.1", 0)
    try:
        cpu0 = time.process_time()
        with ThreadCpu() as threads:
            runner.run()
        process = time.process_time() - cpu0
    finally:
        server.close()
    done = sum(r.completed for r in runner.recorders)
    if runner.info.fault or done != frames:
        raise SystemExit(f"vidprof run failed: {runner.info.fault} (completed {done} of {frames})")
    seconds = threads.seconds()
    for name, s in group(seconds).items():
        threads_out[name] = threads_out.get(name, 0.0) + s / done * 1e3
    threads_out["callback"] = threads_out.get("callback", 0.0) + timed.ns / 1e6 / done
    own = python_threads(seconds) + timed.ns / 1e9
    return own / done * 1e3, process / done * 1e3


def loop_side(frames: int, placement: str) -> tuple[float, float]:
    """(own CPU ms per frame, process CPU ms per frame) of the least program that runs the same frames."""
    parts = build(config(frames, placement))
    stream = parts.streams[0]
    queue = ov.AsyncInferQueue(parts.compiled, parts.nireq)
    done = [0]

    def count(_request: ov.InferRequest, _userdata: object) -> None:
        done[0] += 1

    timed = CallbackCpu(count)
    queue.set_callback(timed)
    preprocess, source = stream.preprocess, stream.source
    from vidprof.stages.frame import Frame

    cpu0 = time.process_time()
    with ThreadCpu() as threads:
        for i in range(frames):
            frame = Frame(i)
            frame.image = source.read()
            preprocess.process(frame)  # fused: the frame wrapped as the model's input, no copy
            queue.start_async({0: frame.tensor}, None, share_inputs=True)
        queue.wait_all()
    process = time.process_time() - cpu0
    if done[0] != frames:
        raise SystemExit(f"loop completed {done[0]} of {frames} frames")
    own = python_threads(threads.seconds()) + timed.ns / 1e9
    return own / frames * 1e3, process / frames * 1e3


def main() -> None:
    p = base_parser("CPU that vidprof adds per frame around the model (per-thread CPU from /proc)")
    p.add_argument("--frames", type=int, default=3000, help="frames per run (default 3000, ~8 s a side)")
    p.add_argument("--placement", choices=("fused", "host"), default="fused",
                   help="preprocessing placement of both sides (default fused: no host work per frame)")
    a = p.parse_args()
    print(machine_note())
    print(f"source {SOURCE}, --preprocess {a.placement}, --postprocess passthrough, frames={a.frames}")
    log("warm-up")
    loop_side(min(a.frames, 300), a.placement)
    vidprof_side(min(a.frames, 300), a.placement, {})
    added, own_v, own_l, proc_v, proc_l = [], [], [], [], []
    threads: dict[str, float] = {}
    for i in range(a.pairs):
        log(f"pair {i + 1}/{a.pairs}")
        out = run_interleaved(i, {"vidprof": lambda: vidprof_side(a.frames, a.placement, threads),
                                  "loop": lambda: loop_side(a.frames, a.placement)})
        (v, pv), (lo, pl) = out["vidprof"], out["loop"]
        added.append(v - lo)
        own_v.append(v)
        own_l.append(lo)
        proc_v.append(pv)
        proc_l.append(pl)
        print(f"pair {i + 1}: vidprof own {v:.3f} ms/frame (process {pv:.2f}) | loop own {lo:.3f} ms/frame "
              f"(process {pl:.2f}) | added {v - lo:.3f} ms", flush=True)
    print(machine_note())
    busiest = sorted(((n, s / a.pairs) for n, s in threads.items() if not n.startswith("[")), key=lambda x: -x[1])
    print("vidprof's threads, CPU ms per frame (mean of the pairs): "
          + ", ".join(f"{n} {s:.3f}" for n, s in busiest if s >= 0.001))
    print(f"RESULT cpu_added_per_frame median_ms={median(added):.3f} pairs={fmt(added)} "
          f"vidprof_own_ms={median(own_v):.3f} loop_own_ms={median(own_l):.3f} "
          f"process_vidprof_ms={median(proc_v):.2f} process_loop_ms={median(proc_l):.2f} "
          f"process_added_ms={median([v - lo for v, lo in zip(proc_v, proc_l, strict=True)]):.3f} "
          f"placement={a.placement} goal_ms=0.15")


if __name__ == "__main__":
    main()
