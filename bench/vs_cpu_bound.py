"""Pipeline FPS vs the bound that each stage's CPU cost, measured alone, allows on this machine.

    cd /work/main && python bench/vs_cpu_bound.py [--pairs 5] [--frames 600] [--infer-frames 400]

Each round, for each placement (``separate``, ``host``, ``fused``), measures back to back on the sample
clip (720p mp4v, 300 frames):
- decode alone: open the clip as the build opens a stream's source (``build.open_sources``) and read
  every frame; CPU seconds per frame (the opening outside, as the pipeline opens in ``prepare()``);
- preprocess alone: the preprocess stage ``vidprof.pipeline.build.build`` makes for the placement, on
  decoded frames held in memory; CPU seconds per frame (``fused`` is only the zero-copy wrap here: its
  resize runs inside the infer request);
- inference alone: vidprof's own ``InferenceStage`` on the build's compiled model and nireq, fed
  pre-made input tensors (all held frames put through the build's preprocess), FPS = frames / wall seconds.
  ``separate`` and ``host`` feed the model the f32 1x3x300x300 tensor; ``fused`` runs the model with
  the preprocessing built in on the 720p u8 frame. Each placement gets its own run, next to its
  pipeline run. The build's ``Postprocess`` is then timed on the outputs;
- the full pipeline (``Runner`` with a real registry, as the CLI runs it, on the same config), FPS =
  completed / wall seconds; the clip loops so a run lasts several seconds.

Every measurement builds its own parts and closes them (the build, compiling included, is outside
the timed part), so no compiled model outlives the measurement it serves.

    bound_fps = 1 / (1 / inference_only_fps + (decode_cpu + preprocess_cpu) / cores)

The bound assumes inference alone keeps every core busy, so every CPU second spent elsewhere per
frame takes 1/cores of a second from it. pipeline_fps / bound_fps (goal >= 0.95) is what the threads,
queues and instrumentation cost on top. Postprocess is not in the bound (as specified); its CPU per
frame is printed, with the bound that includes it, so its share is visible.

CPU seconds come from ``time.process_time()`` (all threads of this process: FFmpeg's decode threads
and OpenVINO's too), taken while nothing else runs in the process. The four measurements of a
placement run back to back, twice, in mirrored order (A B C D D C B A), and each figure is the mean of
its two runs, so its bound and its pipeline run see the same phase of the machine's drift. Also
printed: the stages' CPU per frame measured alone, summed, over the pipeline's CPU per frame: CPU
accounting is much less disturbed by other jobs than wall time.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from prometheus_client import CollectorRegistry

from bench._common import base_parser, fmt, log, machine_note, median, ordered, result_line, run_mirrored
from bench._threads import ThreadCpu, group
from vidprof.pipeline.build import build, open_sources
from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.runner import Runner
from vidprof.profiling.clock import MonotonicClock
from vidprof.samples import assets
from vidprof.stages.frame import Frame
from vidprof.stages.inference import InferenceStage

PLACEMENTS = ("separate", "host", "fused")
HELD_FRAMES = 16  # decoded frames kept for the preprocess measurements (a 720p frame is 2.7 MB)
PRE_ITERS = 300  # preprocess calls per measurement
# Input tensors the inference-only run cycles through: every held frame. The pipeline never gives the model the
# same input twice, and with 4 the fused placement's 720p frames (2.7 MB each) were partly still in cache:
# inference alone read 7 % faster than with 16 (median of 6 alternating pairs; host and separate, whose inputs
# are 1.1 MB, unchanged), which flattered the bound's inference part.
INFER_INPUTS = HELD_FRAMES


def stage_config(placement: str, clip: str) -> RunConfig:
    """One stream of the sample clip, default settings: what the stages alone are built from, and (with a
    frame count and looping) the pipeline run's config, so both measure what ``build`` makes of it."""
    return RunConfig(sources=(clip,), preprocess=placement, pipeline_name="bench")


def decode_alone(clip: str) -> tuple[float, list[np.ndarray]]:
    """CPU seconds per frame to decode the whole clip, opened as the build opens a stream's source
    (``build.open_sources``, no model compiled); also returns a few frames to reuse."""
    # Opening (and probing the first frame) stays outside, as the pipeline's run opens its source in prepare().
    [(_, src)] = open_sources(RunConfig(sources=(clip,)))
    c0 = time.process_time()
    n, kept = 0, []
    try:
        while (img := src.read()) is not None:
            if n % 19 == 0 and len(kept) < HELD_FRAMES:
                kept.append(img)
            n += 1
        cpu = time.process_time() - c0
    finally:
        src.close()
    return cpu / n, kept


def preprocess_alone(placement: str, clip: str, images: list[np.ndarray]) -> float:
    """CPU seconds per frame of the preprocess stage the build makes for this placement (building, which also
    compiles the model, is outside the timed part)."""
    parts = build(stage_config(placement, clip))
    try:
        stage = parts.streams[0].preprocess
        stage.process(Frame(0, image=images[0]))  # the first call may allocate; keep it out
        c0 = time.process_time()
        for i in range(PRE_ITERS):
            stage.process(Frame(i, image=images[i % len(images)]))
        return (time.process_time() - c0) / PRE_ITERS
    finally:
        parts.close()


@dataclass
class InferAlone:
    fps: float
    cpu_per_frame: float
    post_cpu_per_frame: float

    @staticmethod
    def mean(runs: list[InferAlone]) -> InferAlone:
        """Runs of the same frame count: FPS as all frames over all their time, CPU per frame averaged."""
        return InferAlone(1.0 / statistics.fmean(1.0 / x.fps for x in runs),
                          statistics.fmean(x.cpu_per_frame for x in runs),
                          statistics.fmean(x.post_cpu_per_frame for x in runs))


def inference_alone(placement: str, clip: str, images: list[np.ndarray], frames: int) -> InferAlone:
    """vidprof's InferenceStage on pre-made inputs, on the compiled model and nireq the build makes.

    The inputs are held frames put through the build's own preprocess stage (outside the timed part), so
    the model gets the very tensors the pipeline feeds it: ``separate`` and ``host`` the f32 1x3x300x300
    input, ``fused`` the 720p u8 frame. Also times the build's Postprocess on the outputs afterwards
    (not overlapped), for the bound that includes it.
    """
    cfg = stage_config(placement, clip)
    parts = build(cfg)
    try:
        tensors = []
        for img in images[:INFER_INPUTS]:
            f = Frame(0, image=img)
            parts.streams[0].preprocess.process(f)
            assert f.tensor is not None
            tensors.append(f.tensor)
        nireq = parts.nireq
        done: list[Frame] = []
        stage = InferenceStage(parts.compiled, nireq, cfg.inference, MonotonicClock(), done.append)  # atomic append
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
        post = parts.postprocess
        sample = done[: min(len(done), 300)]
        c1 = time.process_time()
        for f in sample:
            post.process(f)
        post_cpu = (time.process_time() - c1) / len(sample)
        return InferAlone(frames / wall, cpu / frames, post_cpu)
    finally:
        parts.close()


@dataclass
class PipelineRun:
    fps: float
    cpu_per_frame: float
    threads: dict[str, float]  # CPU seconds per frame by kind of thread (``thread_kind``)

    @staticmethod
    def mean(runs: list[PipelineRun]) -> PipelineRun:
        kinds = {k for x in runs for k in x.threads}
        return PipelineRun(1.0 / statistics.fmean(1.0 / x.fps for x in runs),
                           statistics.fmean(x.cpu_per_frame for x in runs),
                           {k: statistics.fmean(x.threads.get(k, 0.0) for x in runs) for k in kinds})


def thread_kind(name: str) -> str:
    """Which stages a pipeline thread's CPU belongs to, to set beside those stages measured alone. OpenVINO's
    workers (which also run the completion callback) and OpenCV's (the decoder's colour conversion runs on
    them) are both unnamed ("[python]") and cannot be told apart, so decode and inference are one group. The
    preprocess threads also submit each frame, so the submit counts as preprocess."""
    if name.startswith("preprocess"):
        return "preprocess"
    if name.startswith("[") or name == "decode":
        return "decode+inference"
    return "vidprof"  # postprocess, the main thread's tick


def pipeline(placement: str, clip: str, frames: int) -> PipelineRun:
    cfg = dataclasses.replace(stage_config(placement, clip), frames=frames, loop=True)
    runner = Runner(cfg, registry=CollectorRegistry())
    runner.prepare()
    c0 = time.process_time()
    # Sampled every 50 ms: a thread's CPU after its last sample is lost when it ends (the stream's threads and
    # FFmpeg's end with the run); whatever is still missing is reported apart as "ended threads".
    with ThreadCpu(interval=0.05) as threads:
        runner.run()
    cpu = time.process_time() - c0
    s = runner.summary().report
    if s["fault"] or s["frames"]["failed"]:
        raise SystemExit(f"pipeline {placement} failed: {s['fault'] or s['first_error']}")
    done = max(1, s["frames"]["completed"])
    kinds: dict[str, float] = {}
    for name, sec in group(threads.seconds()).items():
        kinds[thread_kind(name)] = kinds.get(thread_kind(name), 0.0) + sec / done
    kinds["ended threads"] = max(0.0, cpu / done - sum(kinds.values()))
    return PipelineRun(s["fps"], cpu / done, kinds)


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
    pipeline(placements[0], clip, 60)
    print(machine_note())
    print(f"clip {clip} ({images[0].shape[1]}x{images[0].shape[0]}), cores={cores}, pipeline frames={a.frames}, "
          f"inference-only frames={a.infer_frames}")

    ratios: dict[str, list[float]] = {pl: [] for pl in placements}
    cpu_ratios: dict[str, list[float]] = {pl: [] for pl in placements}
    # Per placement and stage: CPU ms a frame in the pipeline minus the same stage measured alone.
    extra: dict[str, dict[str, list[float]]] = {pl: {} for pl in placements}
    for i in range(a.pairs):
        log(f"round {i + 1}/{a.pairs} ...")
        for k, pl in enumerate(ordered(i, placements)):
            # A placement's figures are taken back to back and mirrored (decode pre infer pipe pipe infer pre
            # decode, the order turning each round): over the eight runs every figure sees the same mean of a
            # steady drift, so its bound and its pipeline run no longer differ by where in the drift they fell
            # (inference alone moved 490 -> 700 FPS between rounds of one run of this script).
            r = run_mirrored(i + k, {
                "decode": lambda: decode_alone(clip)[0],
                "pre": lambda pl=pl: preprocess_alone(pl, clip, images),
                "infer": lambda pl=pl: inference_alone(pl, clip, images, a.infer_frames),
                "pipe": lambda pl=pl: pipeline(pl, clip, a.frames),
            })
            # Each figure is the mean of its two runs (seconds per frame, so FPS average as frames over time).
            dec, pre = statistics.fmean(r["decode"]), statistics.fmean(r["pre"])
            inf = InferAlone.mean(r["infer"])
            pipe = PipelineRun.mean(r["pipe"])
            bound = 1.0 / (1.0 / inf.fps + (dec + pre) / cores)
            bound_post = 1.0 / (1.0 / inf.fps + (dec + pre + inf.post_cpu_per_frame) / cores)
            ratios[pl].append(pipe.fps / bound)
            # CPU accounting is far less sensitive to other jobs than wall time: the stages' CPU per
            # frame measured alone, summed, over the pipeline's CPU per frame (1.0 = no extra CPU).
            summed = dec + pre + inf.cpu_per_frame + inf.post_cpu_per_frame
            cpu_ratios[pl].append(summed / pipe.cpu_per_frame)
            print(f"round {i + 1} {pl:8s} cpu-ms/frame: decode {dec * 1e3:.2f} preprocess {pre * 1e3:.2f} "
                  f"inference {inf.cpu_per_frame * 1e3:.2f} postprocess {inf.post_cpu_per_frame * 1e3:.2f} "
                  f"(sum {summed * 1e3:.2f}, pipeline {pipe.cpu_per_frame * 1e3:.2f}) | inference-only "
                  f"{inf.fps:6.1f} FPS | bound {bound:6.1f} FPS (with postprocess {bound_post:6.1f}) | "
                  f"pipeline {pipe.fps:6.1f} FPS | ratio {pipe.fps / bound:.3f}", flush=True)
            t = pipe.threads
            print(f"        in the pipeline, cpu-ms/frame: decode+inference (with OpenVINO's and OpenCV's worker "
                  f"threads) {t.get('decode+inference', 0) * 1e3:.2f} preprocess {t.get('preprocess', 0) * 1e3:.2f} "
                  f"vidprof (postprocess, tick) {t.get('vidprof', 0) * 1e3:.2f} ended threads (after their "
                  f"last sample) {t.get('ended threads', 0) * 1e3:.2f}", flush=True)
            for kind, alone in (("decode+inference", dec + inf.cpu_per_frame), ("preprocess", pre)):
                extra[pl].setdefault(kind, []).append(t.get(kind, 0.0) - alone)
            extra[pl].setdefault("vidprof", []).append(t.get("vidprof", 0.0) - inf.post_cpu_per_frame)

    print(machine_note())
    for pl in placements:
        print(f"{pl:8s} pipeline/bound ratios {fmt(ratios[pl])} median {median(ratios[pl]):.3f} (goal >= 0.95); "
              f"sum-of-stages-cpu/pipeline-cpu median {median(cpu_ratios[pl]):.3f}")
        print(f"{'':8s} CPU ms a frame in the pipeline beyond the stage alone (medians): " +
              ", ".join(f"{k} {median(v) * 1e3:+.2f}" for k, v in extra[pl].items()))
    for pl in placements:
        print(result_line(f"vs_cpu_bound_{pl}", ratios[pl], cores=cores, cpu_ratio=f"{median(cpu_ratios[pl]):.3f}"))


if __name__ == "__main__":
    main()
