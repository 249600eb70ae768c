"""Pipeline FPS vs the bound that each stage's CPU cost, measured alone, allows on this machine.

    cd /work/main && python bench/vs_cpu_bound.py [--pairs 5] [--frames 600] [--infer-frames 400]

Each round, for each placement (``separate``, ``host``, ``fused``), measures back to back on the sample
clip (720p mp4v, 300 frames):
- decode alone: open the clip with vidprof's source and read every frame; CPU seconds per frame;
- preprocess alone on decoded frames held in memory; CPU seconds per frame (``fused`` is only the
  zero-copy wrap here: its resize runs inside the infer request);
- inference alone: vidprof's own ``InferenceStage`` (same compile options and nireq as the runner)
  fed pre-made input tensors, FPS = frames / wall seconds. ``separate`` and ``host`` feed the same
  model the same f32 1x3x300x300 tensor; ``fused`` runs the model with the preprocessing built in on
  the 720p u8 frame. Each placement gets its own run, next to its pipeline run;
- the full pipeline (``Runner`` with a real registry, as the CLI runs it), FPS = completed / wall
  seconds; the clip loops so a run lasts several seconds.

    bound_fps = 1 / (1 / inference_only_fps + (decode_cpu + preprocess_cpu) / cores)

The bound assumes inference alone keeps every core busy, so every CPU second spent elsewhere per
frame takes 1/cores of a second from it. pipeline_fps / bound_fps (goal >= 0.9) is what the threads,
queues and instrumentation cost on top. Postprocess is not in the bound (as specified); its CPU per
frame is printed, with the bound that includes it, so its share is visible.

CPU seconds come from ``time.process_time()`` (all threads of this process: FFmpeg's decode threads
and OpenVINO's too), taken while nothing else runs in the process. The four measurements of a
placement run back to back in alternating order, so its bound and its pipeline run see the same
phase of the machine's drift. Also printed: the stages' CPU per frame measured alone, summed, over the
pipeline's CPU per frame: CPU accounting is much less disturbed by other jobs than wall time.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import openvino as ov
from prometheus_client import CollectorRegistry

from bench._common import base_parser, fmt, log, machine_note, median, ordered, result_line, run_interleaved
from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.runner import Runner
from vidprof.profiling.clock import MonotonicClock
from vidprof.samples import assets
from vidprof.stages import sources
from vidprof.stages.frame import Frame
from vidprof.stages.inference import InferenceOptions, InferenceStage, compile_model, resolved_nireq
from vidprof.stages.model_input import InputSpec, read_input_spec
from vidprof.stages.postprocess import Postprocess, PostprocessOptions
from vidprof.stages.preprocess import (
    FusedPreprocess,
    HostPreprocess,
    PreprocessOptions,
    SeparatePreprocess,
    fuse_preprocessing,
)

PLACEMENTS = ("separate", "host", "fused")
HELD_FRAMES = 16  # decoded frames kept for the preprocess measurements (a 720p frame is 2.7 MB)
PRE_ITERS = 300  # preprocess calls per measurement


@dataclass
class Held:
    """What the stage-alone measurements work on: a few decoded frames and the model's input spec."""

    images: list[np.ndarray]
    width: int
    height: int
    spec: InputSpec


def decode_alone(clip: str) -> tuple[float, list[np.ndarray]]:
    """CPU seconds per frame to open and decode the whole clip; also returns a few frames to reuse."""
    c0 = time.process_time()
    src = sources.open_source(clip)
    n, kept = 0, []
    try:
        while (img := src.read()) is not None:
            if n % 19 == 0 and len(kept) < HELD_FRAMES:
                kept.append(img)
            n += 1
    finally:
        src.close()
    return (time.process_time() - c0) / n, kept


def make_preprocess(placement: str, core: ov.Core, held: Held) -> SeparatePreprocess | HostPreprocess | FusedPreprocess:
    opts = PreprocessOptions()
    if placement == "separate":
        return SeparatePreprocess(core, "CPU", held.spec, opts, held.width, held.height)
    if placement == "host":
        return HostPreprocess(held.spec, opts)
    return FusedPreprocess(held.width, held.height)


def preprocess_alone(placement: str, held: Held) -> float:
    """CPU seconds per frame of one placement's preprocess stage (built outside the timed part)."""
    stage = make_preprocess(placement, ov.Core(), held)
    stage.process(Frame(0, image=held.images[0]))  # the first call may allocate; keep it out
    c0 = time.process_time()
    for i in range(PRE_ITERS):
        stage.process(Frame(i, image=held.images[i % len(held.images)]))
    cpu = (time.process_time() - c0) / PRE_ITERS
    stage.close()
    return cpu


@dataclass
class InferAlone:
    fps: float
    cpu_per_frame: float
    post_cpu_per_frame: float


def inference_alone(fused: bool, held: Held, frames: int) -> InferAlone:
    """vidprof's InferenceStage on pre-made inputs, compiled as the runner compiles it.

    Also times Postprocess on the outputs afterwards (not overlapped), for the bound that includes it.
    """
    core = ov.Core()
    model = core.read_model(assets.sample_model_path())
    spec = read_input_spec(model, (held.width, held.height))
    if fused:
        model = fuse_preprocessing(model, spec, PreprocessOptions(), held.width, held.height)
        tensors = [np.ascontiguousarray(img)[None] for img in held.images[:4]]
    else:
        host = HostPreprocess(spec, PreprocessOptions())
        tensors = []
        for img in held.images[:4]:
            f = Frame(0, image=img)
            host.process(f)
            assert f.tensor is not None
            tensors.append(f.tensor)
    opts = InferenceOptions()
    compiled = compile_model(core, model, opts)
    nireq = resolved_nireq(compiled, opts)
    done: list[Frame] = []
    stage = InferenceStage(compiled, nireq, opts, MonotonicClock(), done.append)  # list.append is atomic
    # A few frames first: the first inference is slow (allocations) and is start-up, not throughput.
    for i in range(nireq * 2):
        stage.submit(Frame(i, tensor=tensors[i % len(tensors)]))
    stage.drain()
    done.clear()
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(frames):
        stage.submit(Frame(i, tensor=tensors[i % len(tensors)]))
    stage.drain()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if len(done) != frames or any(f.error is not None for f in done):
        raise SystemExit(f"inference-only run: {len(done)}/{frames} frames back, errors: "
                         f"{[f.error for f in done if f.error][:3]}")
    post = Postprocess(PostprocessOptions(), [tuple(o.get_shape()) for o in compiled.outputs],
                       [o.get_any_name() if o.get_names() else "" for o in compiled.outputs])
    sample = done[: min(len(done), 300)]
    c1 = time.process_time()
    for f in sample:
        post.process(f)
    post_cpu = (time.process_time() - c1) / len(sample)
    return InferAlone(frames / wall, cpu / frames, post_cpu)


@dataclass
class PipelineRun:
    fps: float
    cpu_per_frame: float


def pipeline(placement: str, clip: str, frames: int) -> PipelineRun:
    cfg = RunConfig(sources=(clip,), frames=frames, loop=True, preprocess=placement, pipeline_name="bench")
    runner = Runner(cfg, registry=CollectorRegistry())
    runner.prepare()
    c0 = time.process_time()
    runner.run()
    cpu = time.process_time() - c0
    s = runner.summary().report
    if s["fault"] or s["frames"]["failed"]:
        raise SystemExit(f"pipeline {placement} failed: {s['fault'] or s['first_error']}")
    return PipelineRun(s["fps"], cpu / max(1, s["frames"]["completed"]))


def main() -> None:
    p = base_parser("pipeline FPS vs the CPU-bound estimate from vidprof.stages measured alone")
    p.add_argument("--frames", type=int, default=600, help="frames per pipeline run; the clip loops (default 600)")
    p.add_argument("--infer-frames", type=int, default=400, help="frames per inference-only run (default 400)")
    p.add_argument("--placements", default=",".join(PLACEMENTS), help="comma-separated (default: all three)")
    a = p.parse_args()
    placements = [x.strip() for x in a.placements.split(",") if x.strip()]
    if not placements or any(x not in PLACEMENTS for x in placements):
        p.error(f"--placements: expected a comma-separated subset of {','.join(PLACEMENTS)}")
    cores = os.cpu_count() or 1
    clip = assets.sample_clip_path()

    # Warm-up (untimed): builds the sample assets if missing, pulls the clip into the page cache,
    # and gets OpenCV's and OpenVINO's one-time initialisation out of the first round.
    _, images = decode_alone(clip)
    spec = read_input_spec(ov.Core().read_model(assets.sample_model_path()), (images[0].shape[1], images[0].shape[0]))
    held = Held(images, images[0].shape[1], images[0].shape[0], spec)
    pipeline(placements[0], clip, 60)
    print(machine_note())
    print(f"clip {clip} ({held.width}x{held.height}), cores={cores}, pipeline frames={a.frames}, "
          f"inference-only frames={a.infer_frames}")

    ratios: dict[str, list[float]] = {pl: [] for pl in placements}
    cpu_ratios: dict[str, list[float]] = {pl: [] for pl in placements}
    for i in range(a.pairs):
        log(f"round {i + 1}/{a.pairs} ...")
        for k, pl in enumerate(ordered(i, placements)):
            # A placement's figures are taken back to back (order alternating), so its bound and its
            # pipeline run see the same phase of the machine's drift.
            r = run_interleaved(i + k, {
                "decode": lambda: decode_alone(clip)[0],
                "pre": lambda pl=pl: preprocess_alone(pl, held),
                "infer": lambda pl=pl: inference_alone(pl == "fused", held, a.infer_frames),
                "pipe": lambda pl=pl: pipeline(pl, clip, a.frames),
            })
            dec, pre = r["decode"], r["pre"]
            inf: InferAlone = r["infer"]
            pipe: PipelineRun = r["pipe"]
            bound = 1.0 / (1.0 / inf.fps + (dec + pre) / cores)
            bound_post = 1.0 / (1.0 / inf.fps + (dec + pre + inf.post_cpu_per_frame) / cores)
            ratios[pl].append(pipe.fps / bound)
            # CPU accounting is far less sensitive to other jobs than wall time: the stages' CPU per
            # frame measured alone, summed, over the pipeline's CPU per frame (1.0 = no extra CPU).
            parts = dec + pre + inf.cpu_per_frame + inf.post_cpu_per_frame
            cpu_ratios[pl].append(parts / pipe.cpu_per_frame)
            print(f"round {i + 1} {pl:8s} cpu-ms/frame: decode {dec * 1e3:.2f} preprocess {pre * 1e3:.2f} "
                  f"inference {inf.cpu_per_frame * 1e3:.2f} postprocess {inf.post_cpu_per_frame * 1e3:.2f} "
                  f"(sum {parts * 1e3:.2f}, pipeline {pipe.cpu_per_frame * 1e3:.2f}) | inference-only "
                  f"{inf.fps:6.1f} FPS | bound {bound:6.1f} FPS (with postprocess {bound_post:6.1f}) | "
                  f"pipeline {pipe.fps:6.1f} FPS | ratio {pipe.fps / bound:.3f}", flush=True)

    print(machine_note())
    for pl in placements:
        print(f"{pl:8s} pipeline/bound ratios {fmt(ratios[pl])} median {median(ratios[pl]):.3f} (goal >= 0.9); "
              f"sum-of-stages-cpu/pipeline-cpu median {median(cpu_ratios[pl]):.3f}")
    for pl in placements:
        print(result_line(f"vs_cpu_bound_{pl}", ratios[pl], cores=cores, cpu_ratio=f"{median(cpu_ratios[pl]):.3f}"))


if __name__ == "__main__":
    main()
