"""vidprof's pipeline FPS vs a naive sequential loop doing the same work, on the sample clip.

    cd /work/main && python bench/vs_naive_loop.py [--pairs 5] [--frames 600] [--preprocess separate]

- vidprof: ``Runner`` with a real ``CollectorRegistry`` (what the CLI runs), default settings
  (throughput hint, the device's streams and nireq), FPS = completed / wall seconds.
- naive: one thread, ``read`` on the source -> preprocess -> sync ``InferRequest.infer()`` ->
  postprocess, on the parts ``vidprof.pipeline.build.build`` makes from the same config (the clip's
  ``cv2.VideoCapture``, the placement's preprocess stage, the compiled model, the output decoder), so
  both sides run the same objects; no timing marks, no metrics, no threads.
  The naive loop compiles with the LATENCY hint: with a sync loop only one request is ever in flight,
  and the latency hint gives that one request every core (the throughput hint would split the CPU
  into streams of which a sync loop uses one, a straw man). ``--naive-hint throughput`` shows that.

Both run in this process, one after the other (order alternating per pair), on ``--frames`` frames;
the clip loops when more frames are asked than it has (300).

``--io-ms MS`` makes the source bound by I/O like a network camera: every read also waits MS milliseconds
(a sleep, which releases the CPU as a socket read does) on both sides; for vidprof it is a what-if delay
in decode (``--inject decode=MSms``). A pipeline overlaps that wait with the other stages; a sequential
loop adds it to every frame. The RESULT line is then ``vs_naive_loop_io``.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from prometheus_client import CollectorRegistry

from bench._common import base_parser, fmt, log, machine_note, median, result_line, run_interleaved
from vidprof.pipeline.build import build
from vidprof.pipeline.config import Injection, RunConfig
from vidprof.pipeline.runner import Runner
from vidprof.samples import assets
from vidprof.stages.frame import Frame
from vidprof.stages.inference import InferenceOptions
from vidprof.stages.preprocess import PLACEMENTS

IO_SECONDS = 0.0  # set from --io-ms in main()


def config(clip: str, frames: int, placement: str, hint: str = "throughput", io: float = 0.0) -> RunConfig:
    """The config both sides build from; only the naive loop's compile hint differs (and the I/O wait,
    which the naive loop does itself)."""
    return RunConfig(sources=(clip,), frames=frames, loop=True, preprocess=placement, pipeline_name="bench",
                     inference=InferenceOptions(hint=hint), inject=(Injection("decode", io),) if io else ())


DECODE_SECONDS: list[float] = []  # vidprof's decode stage per frame in each run (the I/O wait included)


def vidprof(clip: str, frames: int, placement: str) -> float:
    runner = Runner(config(clip, frames, placement, io=IO_SECONDS), registry=CollectorRegistry())
    runner.run()
    s = runner.summary().report
    if s["fault"] or s["frames"]["failed"] or s["frames"]["completed"] != frames:
        raise SystemExit(f"vidprof run failed: {s['fault'] or s['first_error']} ({s['frames']})")
    DECODE_SECONDS.append(float(s["stages"]["decode"]["mean"]))
    return float(s["fps"])


def naive(clip: str, frames: int, placement: str, hint: str) -> float:
    """The loop a user writes first, on what ``build`` makes: the source it opened (OpenCV's VideoCapture,
    rewound at the end as --loop does), the preprocess stage, the compiled model and the output decoder.
    Set-up (build, compile) is outside the timed part, as in the runner."""
    parts = build(config(clip, frames, placement, hint))
    try:
        src, pre = parts.streams[0].source, parts.streams[0].preprocess
        compiled, post = parts.compiled, parts.postprocess
        request = compiled.create_infer_request()
        n_out = len(compiled.outputs)
        done = 0
        t0 = time.perf_counter()
        while done < frames:
            if IO_SECONDS:
                time.sleep(IO_SECONDS)  # the camera's socket read
            img = src.read()
            if img is None:
                raise SystemExit(f"{clip}: the source ended after {done} of {frames} frames, even looping")
            frame = Frame(done, image=img)
            pre.process(frame)
            request.infer({0: frame.tensor}, share_inputs=True)  # no input copy, as vidprof (zero-copy)
            frame.outputs = [request.get_output_tensor(i).data.copy() for i in range(n_out)]
            post.process(frame)
            done += 1
        wall = time.perf_counter() - t0
    finally:
        parts.close()
    return frames / wall


def main() -> None:
    p = base_parser("vidprof pipeline FPS vs a naive sequential loop")
    p.add_argument("--frames", type=int, default=600, help="frames per run; the 300-frame clip loops (default 600)")
    p.add_argument("--preprocess", default="separate", choices=PLACEMENTS, help="placement for both (default separate)")
    p.add_argument("--naive-hint", default="latency", choices=("latency", "throughput", "none"),
                   help="compile hint of the naive loop (default latency: best for one request at a time)")
    p.add_argument("--io-ms", type=float, default=0.0,
                   help="milliseconds each read waits for I/O, like a network camera (default 0: a local file)")
    a = p.parse_args()
    global IO_SECONDS
    IO_SECONDS = a.io_ms / 1e3
    clip = assets.sample_clip_path()
    # Warm-up (untimed): page cache, OpenCV/OpenVINO one-time initialisation.
    vidprof(clip, 60, a.preprocess)
    naive(clip, 30, a.preprocess, a.naive_hint)
    print(machine_note())
    print(f"clip {clip}, frames={a.frames}, preprocess={a.preprocess}, naive hint={a.naive_hint}")

    ratios: list[float] = []
    ceilings: list[float] = []
    for i in range(a.pairs):
        log(f"pair {i + 1}/{a.pairs} ...")
        r = run_interleaved(i, {"vidprof": lambda: vidprof(clip, a.frames, a.preprocess),
                                "naive": lambda: naive(clip, a.frames, a.preprocess, a.naive_hint)})
        ratios.append(r["vidprof"] / r["naive"])
        # The ceiling: one thread reads (the I/O wait) and decodes each frame in turn, so no pipeline can go
        # faster than 1 / (its decode stage, I/O included); the naive loop's frame time over that is the most
        # any pipeline can gain over the loop with this source.
        ceilings.append((1 / r["naive"]) / DECODE_SECONDS[-1])
        print(f"pair {i + 1}: vidprof {r['vidprof']:6.1f} FPS | naive {r['naive']:6.1f} FPS | ratio {ratios[-1]:.3f} "
              f"| source limit {1 / DECODE_SECONDS[-1]:6.1f} FPS (decode {DECODE_SECONDS[-1] * 1e3:.2f} ms a frame, "
              f"I/O included), ceiling {ceilings[-1]:.3f}", flush=True)
    print(machine_note())
    print(f"vidprof/naive ratios {fmt(ratios)} median {median(ratios):.3f} (goal >= 1.35 on the clip, 1.6 bound by "
          f"I/O); ceiling {fmt(ceilings)} median {median(ceilings):.3f}")
    name = "vs_naive_loop_io" if a.io_ms else "vs_naive_loop"
    of_ceiling = [r / c for r, c in zip(ratios, ceilings, strict=True)]
    print(result_line(name, ratios, preprocess=a.preprocess, naive_hint=a.naive_hint, io_ms=a.io_ms,
                      ceiling=f"{median(ceilings):.3f}", of_ceiling=f"{median(of_ceiling):.3f}"))


if __name__ == "__main__":
    main()
