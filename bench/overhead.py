"""What vidprof's own instrumentation costs: pipeline FPS with and without it, and per-frame micro-costs.

    cd /work/main && python bench/overhead.py [--pairs 5] [--frames 1200] [--micro-frames 20000] [--no-bare]

Part 1, interleaved pipeline runs on ``synthetic:300x300`` with host preprocessing (decode free,
preprocess a cheap copy: the run is inference-bound, where a fixed per-frame cost shows most):
- instrumented: ``Runner(config, registry=CollectorRegistry())`` with the normal ``Recorder``;
- bare: ``Runner(config, registry=None, make_sink=NullRecorder)``: no Prometheus, no samples kept.
Both runs are built by ``vidprof.pipeline.build`` (inside the ``Runner``), so they differ only in the sink.
FPS = completed frames / wall seconds, the completed frames summed over the run's sinks, one per stream:
``runner.recorders`` when instrumented, the NullRecorders that ``make_sink`` made when bare (given
``make_sink``, the runner keeps no recorder of its own). Ratio = instrumented / bare, goal >= 0.99.
The clock marks (``perf_counter_ns`` per stage) stay in both: they are the runner's, not the sink's.

Tracing (``--trace``), interleaved in the same pairs:
- traced: the instrumented run plus ``TraceRecorder`` (``Runner(..., observe=trace.observe)``, what
  ``vidprof run --trace`` does), keeping every frame (``--frames`` is below the default ``--trace-frames``
  2000: the worst case per frame). FPS as above; writing the file happens after the run, as in the CLI,
  and is timed apart (``trace_write_s``). Ratio = traced / instrumented, goal >= 0.97. Beside it,
  ``cpu_ratio``: the process's CPU seconds per frame, untraced / traced, steadier than FPS when other jobs
  share the cores; ``sink_in_run_us``: the calling thread's CPU inside the trace's sink per frame in those
  runs (``sink_in_run_wall_us``: wall time, which also counts other threads holding the GIL meanwhile).

Part 2, micro-benchmarks in this thread (no pipeline running), median of several repeats:
- ``Recorder.frame_done`` with metrics (samples + histograms + counters), without metrics, and the
  ``NullRecorder``, over synthetic ``Marks`` shaped like a real frame's;
- one scrape of the registry (``prometheus_client.generate_latest``) after those frames, as an HTTP
  scrape or a push would do it.
- the trace's sink per frame (``TraceRecorder``, keeping every frame), and writing those frames' trace.
The micro figures, times the measured FPS, give the expected share of a core, to cross-check part 1.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from prometheus_client import CollectorRegistry, generate_latest

from bench._common import base_parser, fmt, log, machine_note, median, result_line, run_interleaved
from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.runner import Runner
from vidprof.profiling.marks import Marks
from vidprof.profiling.metrics import MetricFamilies, StreamMetrics
from vidprof.profiling.recorder import FrameSink, NullRecorder, Recorder, Transfer
from vidprof.profiling.trace import TraceRecorder

SOURCE = "synthetic:300x300@30"


# What the traced runs measured beyond their FPS: the trace file's write time and size, one per run.
TRACE_WRITE_S: list[float] = []
TRACE_BYTES: list[int] = []
# Process CPU seconds per completed frame of the latest run: other jobs on the machine swing the FPS of a
# run by +-30 % here, while the CPU this process spends per frame moves far less with them.
CPU_PER_FRAME: dict[str, float] = {}
TRACE_SINK_US: list[float] = []  # CPU us of the calling thread inside the trace's sink per frame, in the traced runs
TRACE_SINK_WALL_US: list[float] = []  # wall us inside it: also the time other threads held the GIL meanwhile


class TimedSink:
    """Wraps a sink and adds up the time spent in it: the trace's cost measured inside a real run (cold caches,
    the pipeline's other threads on the same cores), not inferred from a micro-benchmark. Two clocks: the
    calling thread's CPU time (what the sink costs) and wall time, which also counts the moments another
    thread took the GIL in the middle of the call (the interpreter hands it over every 5 ms)."""

    def __init__(self, inner: FrameSink) -> None:
        self.inner, self.seconds, self.cpu_ns, self.calls = inner, 0.0, 0, 0

    def frame_done(self, marks: Marks, transfer: Transfer, failed: bool, error: str | None = None,
                   reason: str | None = None) -> None:
        c0, t0 = time.thread_time_ns(), time.perf_counter()
        self.inner.frame_done(marks, transfer, failed, error, reason)
        self.seconds += time.perf_counter() - t0
        self.cpu_ns += time.thread_time_ns() - c0
        self.calls += 1

    def frame_dropped(self, marks: Marks | None = None) -> None:
        self.inner.frame_dropped(marks)


def pipeline(frames: int, instrumented: bool, traced: bool = False) -> float:
    cfg = RunConfig(sources=(SOURCE,), frames=frames, preprocess="host", pipeline_name="bench")
    sinks: list[NullRecorder] = []
    trace = TraceRecorder() if traced else None
    timed: list[TimedSink] = []

    def observe(index: int, label: str) -> TimedSink:
        assert trace is not None
        timed.append(TimedSink(trace.observe(index, label)))
        return timed[-1]

    if instrumented:
        runner = Runner(cfg, registry=CollectorRegistry(), observe=observe if trace is not None else None)
    else:
        def make_sink() -> NullRecorder:  # one per stream; kept here to count their frames
            sinks.append(NullRecorder())
            return sinks[-1]

        runner = Runner(cfg, registry=None, make_sink=make_sink)
    cpu0 = time.process_time()
    runner.run()
    cpu = time.process_time() - cpu0
    counters: list[Recorder] | list[NullRecorder] = runner.recorders if instrumented else sinks
    completed = sum(c.completed for c in counters)
    failed = sum(c.failed for c in counters)
    if runner.info.fault or failed or not counters or completed != frames:
        raise SystemExit(f"run failed: {runner.info.fault} (completed {completed}, failed {failed}, "
                         f"{len(counters)} sinks)")
    if trace is not None:  # after the run, as the CLI writes it: not in the FPS
        calls = sum(t.calls for t in timed)
        TRACE_SINK_US.append(sum(t.cpu_ns for t in timed) / calls / 1e3)
        TRACE_SINK_WALL_US.append(sum(t.seconds for t in timed) / calls * 1e6)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "run.pftrace")
            t0 = time.perf_counter()
            written = trace.write(path)
            TRACE_WRITE_S.append(time.perf_counter() - t0)
            TRACE_BYTES.append(os.path.getsize(path))
            if written["frames"] != frames:
                raise SystemExit(f"the trace holds {written['frames']} frames, expected {frames}")
    CPU_PER_FRAME["traced" if traced else "instrumented" if instrumented else "bare"] = cpu / completed
    return completed / runner.info.wall_seconds


def fake_marks(n: int) -> list[tuple[Marks, Transfer]]:
    """Marks with every stage and wait set, spread over the buckets like a real run's."""
    out = []
    t = 1_000_000_000
    for i in range(n):
        m = Marks()
        j = i % 7
        m.start["decode"], m.end["decode"] = t, t + 20_000 + j * 3_000
        m.start["preprocess"], m.end["preprocess"] = t + 60_000, t + 400_000 + j * 50_000
        m.infer_wait_start = t + 500_000
        m.start["inference"], m.end["inference"] = t + 2_000_000, t + 9_000_000 + j * 1_000_000
        m.start["postprocess"], m.end["postprocess"] = t + 17_000_000, t + 17_300_000 + j * 40_000
        out.append((m, Transfer(h2d_bytes=1_080_000, h2d_ns=40_000 + j, d2h_bytes=34_656, d2h_ns=30_000)))
        t += 8_000_000
    return out


def per_call_us(fn: Callable[[Marks, Transfer, bool], None], frames: list[tuple[Marks, Transfer]]) -> float:
    t0 = time.perf_counter()
    for marks, transfer in frames:
        fn(marks, transfer, False)
    return (time.perf_counter() - t0) / len(frames) * 1e6


def micro(n: int, repeats: int) -> dict[str, float]:
    """Median per-frame µs of each sink, and median ms per scrape of the registry they fed."""
    frames = fake_marks(n)
    results: dict[str, list[float]] = {"recorder_metrics": [], "recorder_no_metrics": [], "null": [], "scrape_ms": []}
    scrape_bytes = 0
    for r in range(repeats):
        registry = CollectorRegistry()
        sinks: dict[str, FrameSink] = {
            "recorder_metrics": Recorder(StreamMetrics(MetricFamilies(registry), "bench", "0")),
            "recorder_no_metrics": Recorder(None),
            "null": NullRecorder(),
        }
        # Alternate the order per repeat, as for the pipeline runs.
        names = list(sinks) if r % 2 == 0 else list(reversed(sinks))
        for name in names:
            results[name].append(per_call_us(sinks[name].frame_done, frames))
        scrapes = []
        for _ in range(20):
            t0 = time.perf_counter()
            scrape_bytes = len(generate_latest(registry))
            scrapes.append((time.perf_counter() - t0) * 1e3)
        results["scrape_ms"].append(median(scrapes))
    out = {k: median(v) for k, v in results.items()}
    out["scrape_bytes"] = scrape_bytes
    out.update(micro_trace(frames, repeats))
    return out


def micro_trace(frames: list[tuple[Marks, Transfer]], repeats: int) -> dict[str, float]:
    """The trace's sink per frame (keeping every frame: the first-frames path, the ring, the heap), and
    writing the file of those frames, per frame."""
    sink_us, write_us = [], []
    for i, (m, _) in enumerate(frames):
        m.frame, m.request = i, i % 4
    for _ in range(repeats):
        trace = TraceRecorder(len(frames))
        sink = trace.observe(0, "0")
        sink_us.append(per_call_us(sink.frame_done, frames))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            trace.write(os.path.join(tmp, "t.pftrace"))
            write_us.append((time.perf_counter() - t0) / len(frames) * 1e6)
    return {"trace_sink": median(sink_us), "trace_write_us": median(write_us)}


def main() -> None:
    p = base_parser("instrumentation overhead: pipeline FPS with vs without metrics and with a trace, and micro-costs")
    p.add_argument("--frames", type=int, default=1200, help="frames per pipeline run (default 1200, ~8-10 s)")
    p.add_argument("--micro-frames", type=int, default=20000, help="fake frames per micro-benchmark (default 20000)")
    p.add_argument("--micro-repeats", type=int, default=5, help="repeats of the micro-benchmark (default 5)")
    p.add_argument("--no-bare", action="store_true", help="skip the bare runs: only traced vs instrumented")
    a = p.parse_args()

    print(machine_note())
    log("micro-benchmarks ...")
    mic = micro(a.micro_frames, a.micro_repeats)
    print(f"Recorder.frame_done with metrics:    {mic['recorder_metrics']:6.2f} us/frame")
    print(f"Recorder.frame_done without metrics: {mic['recorder_no_metrics']:6.2f} us/frame")
    print(f"NullRecorder.frame_done:             {mic['null']:6.2f} us/frame")
    print(f"metrics alone (with - without):      {mic['recorder_metrics'] - mic['recorder_no_metrics']:6.2f} us/frame")
    print(f"scrape (generate_latest):            {mic['scrape_ms']:6.2f} ms per scrape "
          f"({int(mic['scrape_bytes'])} bytes)")
    print(f"trace sink frame_done:               {mic['trace_sink']:6.2f} us/frame (keeping every frame)")
    print(f"trace file, written after the run:   {mic['trace_write_us']:6.2f} us per kept frame")

    pipeline(60, True)  # warm-up (untimed): one-time initialisation of OpenVINO, numpy, cv2
    log("pipeline pairs ...")
    ratios: list[float] = []
    trace_ratios: list[float] = []
    cpu_ratios: list[float] = []  # untraced CPU per frame / traced: >= 0.97 means tracing adds <= ~3 % CPU
    fps_on: list[float] = []
    runs = {"instrumented": lambda: pipeline(a.frames, True), "traced": lambda: pipeline(a.frames, True, True)}
    if not a.no_bare:
        runs["bare"] = lambda: pipeline(a.frames, False)
    for i in range(a.pairs):
        log(f"pair {i + 1}/{a.pairs} ...")
        r = run_interleaved(i, runs)
        trace_ratios.append(r["traced"] / r["instrumented"])
        cpu_ratios.append(CPU_PER_FRAME["instrumented"] / CPU_PER_FRAME["traced"])
        fps_on.append(r["instrumented"])
        line = (f"pair {i + 1}: instrumented {r['instrumented']:6.1f} FPS | traced {r['traced']:6.1f} FPS "
                f"(ratio {trace_ratios[-1]:.3f}, CPU per frame {cpu_ratios[-1]:.3f})")
        if "bare" in r:
            ratios.append(r["instrumented"] / r["bare"])
            line += f" | bare {r['bare']:6.1f} FPS (instrumented/bare {ratios[-1]:.3f})"
        print(line, flush=True)

    fps = median(fps_on)
    sink_cost = (mic["recorder_metrics"] - mic["null"]) * 1e-6 * fps
    print(machine_note())
    if ratios:
        print(f"instrumented/bare ratios {fmt(ratios)} median {median(ratios):.3f} (goal >= 0.99)")
        print(f"expected from the micro-benchmark: {mic['recorder_metrics'] - mic['null']:.1f} us/frame x {fps:.0f} "
              f"FPS = {sink_cost * 100:.2f}% of one core (plus {mic['scrape_ms']:.1f} ms of GIL per scrape, e.g. "
              "every 15 s)")
    print(f"traced/instrumented FPS ratios {fmt(trace_ratios)} median {median(trace_ratios):.3f} (goal >= 0.97); "
          f"expected from the micro-benchmark: {mic['trace_sink']:.1f} us/frame x {fps:.0f} FPS = "
          f"{mic['trace_sink'] * 1e-6 * fps * 100:.2f}% of one core")
    print(f"CPU per frame, untraced/traced {fmt(cpu_ratios)} median {median(cpu_ratios):.3f}")
    in_run = median(TRACE_SINK_US)
    in_run_wall = median(TRACE_SINK_WALL_US)
    print(f"CPU inside the trace's sink during the traced runs: {in_run:.1f} us/frame x {fps:.0f} FPS = "
          f"{in_run * 1e-6 * fps * 100:.2f}% of one core (wall {in_run_wall:.1f} us/frame: with the GIL's hand-overs)")
    print(f"trace file of {a.frames} frames: written in {median(TRACE_WRITE_S):.2f} s after the run, "
          f"{median(TRACE_BYTES) / 1e6:.1f} MB")
    if ratios:
        print(result_line("overhead", ratios, frame_done_us=f"{mic['recorder_metrics']:.2f}",
                          scrape_ms=f"{mic['scrape_ms']:.2f}"))
    print(result_line("trace_overhead", trace_ratios, cpu_ratio=f"{median(cpu_ratios):.3f}",
                      sink_in_run_us=f"{in_run:.2f}",
                      sink_in_run_wall_us=f"{in_run_wall:.2f}", trace_sink_us=f"{mic['trace_sink']:.2f}",
                      trace_write_s=f"{median(TRACE_WRITE_S):.2f}", trace_mb=f"{median(TRACE_BYTES) / 1e6:.1f}",
                      frames=a.frames))


if __name__ == "__main__":
    main()
