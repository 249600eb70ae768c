"""What vidprof's own instrumentation costs: pipeline FPS with and without it, and per-frame micro-costs.

    cd /work/main && python bench/overhead.py [--pairs 5] [--frames 1200] [--micro-frames 20000]

Part 1, interleaved pipeline runs on ``synthetic:300x300`` with host preprocessing (decode free,
preprocess a cheap copy: the run is inference-bound, where a fixed per-frame cost shows most):
- instrumented: ``Runner(config, registry=CollectorRegistry())`` with the normal ``Recorder``;
- bare: ``Runner(config, registry=None, make_sink=NullRecorder)``: no Prometheus, no samples kept.
Both runs are built by ``vidprof.pipeline.build`` (inside the ``Runner``), so they differ only in the sink.
FPS = completed frames / wall seconds, the completed frames summed over the run's sinks, one per stream:
``runner.recorders`` when instrumented, the NullRecorders that ``make_sink`` made when bare (given
``make_sink``, the runner keeps no recorder of its own). Ratio = instrumented / bare, goal >= 0.98.
The clock marks (``perf_counter_ns`` per stage) stay in both: they are the runner's, not the sink's.

Part 2, micro-benchmarks in this thread (no pipeline running), median of several repeats:
- ``Recorder.frame_done`` with metrics (samples + histograms + counters), without metrics, and the
  ``NullRecorder``, over synthetic ``Marks`` shaped like a real frame's;
- one scrape of the registry (``prometheus_client.generate_latest``) after those frames, as an HTTP
  scrape or a push would do it.
The micro figures, times the measured FPS, give the expected share of a core, to cross-check part 1.
"""

from __future__ import annotations

import os
import sys
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

SOURCE = "synthetic:300x300@30"


def pipeline(frames: int, instrumented: bool) -> float:
    cfg = RunConfig(sources=(SOURCE,), frames=frames, preprocess="host", pipeline_name="bench")
    sinks: list[NullRecorder] = []
    if instrumented:
        runner = Runner(cfg, registry=CollectorRegistry())
    else:
        def make_sink() -> NullRecorder:  # one per stream; kept here to count their frames
            sinks.append(NullRecorder())
            return sinks[-1]

        runner = Runner(cfg, registry=None, make_sink=make_sink)
    runner.run()
    counters: list[Recorder] | list[NullRecorder] = runner.recorders if instrumented else sinks
    completed = sum(c.completed for c in counters)
    failed = sum(c.failed for c in counters)
    if runner.info.fault or failed or not counters or completed != frames:
        raise SystemExit(f"run failed: {runner.info.fault} (completed {completed}, failed {failed}, "
                         f"{len(counters)} sinks)")
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
    return out


def main() -> None:
    p = base_parser("instrumentation overhead: pipeline FPS with vs without metrics, and micro-costs")
    p.add_argument("--frames", type=int, default=1200, help="frames per pipeline run (default 1200, ~8-10 s)")
    p.add_argument("--micro-frames", type=int, default=20000, help="fake frames per micro-benchmark (default 20000)")
    p.add_argument("--micro-repeats", type=int, default=5, help="repeats of the micro-benchmark (default 5)")
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

    pipeline(60, True)  # warm-up (untimed): one-time initialisation of OpenVINO, numpy, cv2
    log("pipeline pairs ...")
    ratios: list[float] = []
    fps_on: list[float] = []
    for i in range(a.pairs):
        log(f"pair {i + 1}/{a.pairs} ...")
        r = run_interleaved(i, {"instrumented": lambda: pipeline(a.frames, True),
                                "bare": lambda: pipeline(a.frames, False)})
        ratios.append(r["instrumented"] / r["bare"])
        fps_on.append(r["instrumented"])
        print(f"pair {i + 1}: instrumented {r['instrumented']:6.1f} FPS | bare {r['bare']:6.1f} FPS | "
              f"ratio {ratios[-1]:.3f}", flush=True)

    fps = median(fps_on)
    sink_cost = (mic["recorder_metrics"] - mic["null"]) * 1e-6 * fps
    print(machine_note())
    print(f"instrumented/bare ratios {fmt(ratios)} median {median(ratios):.3f} (goal >= 0.98)")
    print(f"expected from the micro-benchmark: {mic['recorder_metrics'] - mic['null']:.1f} us/frame x {fps:.0f} FPS "
          f"= {sink_cost * 100:.2f}% of one core (plus {mic['scrape_ms']:.1f} ms of GIL per scrape, e.g. every 15 s)")
    print(result_line("overhead", ratios, frame_done_us=f"{mic['recorder_metrics']:.2f}",
                      scrape_ms=f"{mic['scrape_ms']:.2f}"))


if __name__ == "__main__":
    main()
