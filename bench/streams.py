"""Aggregate FPS of N streams sharing one model vs one stream, on the same total frames.

    cd /work/main && python bench/streams.py [--pairs 5] [--streams 4] [--total-frames 1200]

What runs, in this process, one after the other (order alternating per pair):
- one stream: ``Runner`` on ``RunConfig(sources=(clip,), frames=F, loop=True)``;
- N streams: the same with ``copies=N, frames=F/N`` (vidprof's ``frames`` is per stream), i.e.
  ``vidprof run --copies N --frames F/N``: N sources decoding the clip on their own threads, each with
  its own preprocess, all feeding ONE compiled model and its infer requests.
Both are built by ``vidprof.pipeline.build`` inside a ``Runner`` with a real ``CollectorRegistry`` (what
the CLI runs), default settings: ``--preprocess separate``, ``--hint throughput``, the device's streams
and nireq. The clip is the embedded sample (720p, 30 FPS, 300 frames), looped, and not paced (no
``--realtime``): both sides go as fast as they can, so the comparison is of throughput.

FPS = completed frames / wall seconds of the run (compile excluded), the report's aggregate ``fps``;
the N-stream run's wall time lasts until its last stream ends. Ratio = N-stream FPS / 1-stream FPS,
goal >= 0.95: sharing one model between streams must not cost throughput. Also printed: each stream's
FPS in the N-stream run (the report's ``streams.*.fps``, over that stream's own time) as its min/max
spread (equal sources: a low min/max means a stream starved), and the CPU per frame of each side
(``time.process_time()``, every thread of the process), whose ratio moves much less with other jobs on
the cores than FPS does.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from prometheus_client import CollectorRegistry

from bench._common import base_parser, fmt, log, machine_note, median, result_line, run_interleaved
from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.runner import Runner
from vidprof.samples import assets


@dataclass
class Side:
    """One run: aggregate FPS, CPU seconds per frame, each stream's FPS and what the device resolved."""

    fps: float
    cpu_per_frame: float
    stream_fps: list[float]
    nireq: int
    device_streams: str | None


def run(clip: str, streams: int, frames_each: int) -> Side:
    cfg = RunConfig(sources=(clip,), copies=streams, frames=frames_each, loop=True, pipeline_name="bench")
    runner = Runner(cfg, registry=CollectorRegistry())
    runner.prepare()  # build (open, compile) outside the CPU figure, as outside the report's wall time
    c0 = time.process_time()
    runner.run()
    cpu = time.process_time() - c0
    s = runner.summary().report
    expected = streams * frames_each
    if s["fault"] or s["frames"]["failed"] or s["frames"]["completed"] != expected:
        raise SystemExit(f"{streams}-stream run failed: {s['fault'] or s['first_error']} "
                         f"({s['frames']}, expected {expected} completed)")
    per_stream = [float(v["fps"]) for v in s["streams"].values()]
    if len(per_stream) != streams:
        raise SystemExit(f"expected {streams} streams in the report, found {len(per_stream)}")
    resolved = s["config"].get("resolved") or {}
    return Side(float(s["fps"]), cpu / expected, per_stream, int(resolved.get("nireq") or 0),
                resolved.get("streams"))


def main() -> None:
    p = base_parser("aggregate FPS of N streams sharing one model vs one stream, same total frames")
    p.add_argument("--streams", type=int, default=4, help="streams of the multi-stream side (default 4)")
    p.add_argument("--total-frames", type=int, default=1200,
                   help="frames each side completes: one stream runs them all, each of the N streams 1/N "
                        "(rounded down to a multiple of N; default 1200)")
    a = p.parse_args()
    n = a.streams
    if n < 2:
        p.error("--streams: expected at least 2 (the comparison is N streams vs 1)")
    each = a.total_frames // n
    if each < 1:
        p.error(f"--total-frames {a.total_frames}: expected at least one frame per stream ({n} streams)")
    total = each * n
    clip = assets.sample_clip_path()

    # Warm-up (untimed): sample assets built, clip in the page cache, OpenCV/OpenVINO initialised.
    run(clip, 1, 60)
    run(clip, n, max(1, 60 // n))
    print(machine_note())
    print(f"clip {clip}, total frames per side {total}: 1 stream x {total} vs {n} streams x {each} "
          "(loop, not paced; preprocess separate, hint throughput)")

    name = f"{n}_streams"
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    fps_one: list[float] = []
    fps_many: list[float] = []
    spread_min: list[float] = []
    spread_max: list[float] = []
    resolved = ""
    for i in range(a.pairs):
        log(f"pair {i + 1}/{a.pairs} ...")
        r = run_interleaved(i, {"1_stream": lambda: run(clip, 1, total), name: lambda: run(clip, n, each)})
        one, many = r["1_stream"], r[name]
        resolved = f"nireq={many.nireq} device_streams={many.device_streams}"
        ratios.append(many.fps / one.fps)
        cpu_ratios.append(one.cpu_per_frame / many.cpu_per_frame)
        fps_one.append(one.fps)
        fps_many.append(many.fps)
        spread_min.append(min(many.stream_fps))
        spread_max.append(max(many.stream_fps))
        print(f"pair {i + 1}: 1 stream {one.fps:6.1f} FPS ({one.cpu_per_frame * 1e3:.2f} cpu-ms/frame) | {n} streams "
              f"{many.fps:6.1f} FPS ({many.cpu_per_frame * 1e3:.2f} cpu-ms/frame; per stream min "
              f"{spread_min[-1]:.1f} max {spread_max[-1]:.1f} FPS, {fmt(many.stream_fps, 1)}) | "
              f"ratio {ratios[-1]:.3f}", flush=True)

    print(machine_note())
    print(f"1 stream:  FPS {fmt(fps_one, 1)} median {median(fps_one):.1f}")
    print(f"{n} streams: FPS {fmt(fps_many, 1)} median {median(fps_many):.1f} ({resolved}); per-stream FPS min "
          f"{fmt(spread_min, 1)} max {fmt(spread_max, 1)}, median min/max {median(spread_min):.1f}/"
          f"{median(spread_max):.1f}")
    print(f"{n}-streams/1-stream FPS ratios {fmt(ratios)} median {median(ratios):.3f} (goal >= 0.95); "
          f"cpu-per-frame 1-stream/{n}-streams median {median(cpu_ratios):.3f}")
    print(result_line(f"streams_{n}_vs_1", ratios, total_frames=total, fps_1=f"{median(fps_one):.1f}",
                      fps_n=f"{median(fps_many):.1f}", stream_fps_min=f"{median(spread_min):.1f}",
                      stream_fps_max=f"{median(spread_max):.1f}", cpu_ratio=f"{median(cpu_ratios):.3f}"))


if __name__ == "__main__":
    main()
