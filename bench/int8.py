"""INT8 against the original model: model-only and end to end, on the same frames.

    cd /work/main && python bench/int8.py [--pairs 5] [--frames 300] [--model M --source S --mean .. --scale ..]

What runs, in this process: the model is quantised once with ``vidprof.pipeline.optimize.quantize`` (NNCF,
calibrated on ``--calibration-frames`` frames drawn evenly from the source through the run's preprocessing;
cached, so a second bench run reuses it), then, in interleaved pairs (order alternating):
- end to end: a ``Runner`` on ``RunConfig(sources=(clip,), model=M, frames=F, ...)``, built by
  ``vidprof.pipeline.build`` like every run, default settings (``--preprocess separate``, ``--hint
  throughput``, the device's streams and nireq); FPS = completed frames / wall seconds (compile excluded);
- model-only: right after, the same compiled model driven alone on the pre-made input for
  ``--model-only-seconds`` (``stages.inference.model_only_fps``, as ``benchmark_app`` measures).
The INT8 side is the same config with ``model`` = the quantised IR. Ratios are INT8 / original (higher:
INT8 faster); ``cpu_ratio`` is the same comparison on CPU seconds per frame (every thread of the process,
``time.process_time()``; original / INT8, higher: INT8 cheaper), which moves much less than FPS when other
jobs share the cores. Also printed: the agreement of INT8 with the original on the frames calibration did not
see (IoU of the thresholded maps for a probability map, else ``accuracy.compare``'s figure), and the CPU's
ISA flags, which decide how much INT8 gains (AVX2 alone: little; AVX-512 VNNI: more; AMX: most).

Default model and clip: PP-OCRv4's text detector from the ``rapidocr-onnxruntime`` wheel (fetched with
pip once and cached, as the tests do) on a rendered clip of moving text, 640x352, 300 frames.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from prometheus_client import CollectorRegistry

from bench._common import base_parser, fmt, log, machine_note, median, result_line, run_interleaved
from vidprof.pipeline.accuracy import compare, load_outputs
from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.optimize import QuantizeSettings, quantize
from vidprof.pipeline.outputs import OutputsWriter
from vidprof.pipeline.runner import Runner
from vidprof.samples import assets
from vidprof.stages.inference import InferenceOptions, model_only_fps
from vidprof.stages.postprocess import PostprocessOptions
from vidprof.stages.preprocess import PreprocessOptions

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16")


def isa_flags() -> str:
    """The CPU flags that decide INT8's gain, as `grep -o -wE "avx2|avx512f|..." /proc/cpuinfo | sort -u` lists."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return "n/a"
    found = sorted(set(re.findall(r"\b(" + "|".join(ISA_FLAGS) + r")\b", text)))
    model = re.search(r"model name\s*:\s*(.*)", text)
    return f"{model.group(1).strip() if model else 'cpu'}: {' '.join(found) or 'none of ' + ','.join(ISA_FLAGS)}"


@dataclass
class Side:
    fps: float
    model_only_fps: float
    cpu_per_frame: float  # CPU seconds of every thread of the process per frame, end to end
    cpu_per_inference: float  # the same, model-only
    precision: str | None


def run(cfg: RunConfig, seconds: float) -> Side:
    runner = Runner(cfg, registry=CollectorRegistry())
    runner.prepare()  # compile outside the CPU figure, as outside the report's wall time
    c0 = time.process_time()
    runner.run()
    cpu = time.process_time() - c0
    s = runner.summary().report
    if s["fault"] or s["frames"]["failed"] or s["frames"]["completed"] != cfg.frames:
        raise SystemExit(f"run of {cfg.model} failed: {s['fault'] or s['first_error']} ({s['frames']})")
    c0, t0 = time.process_time(), time.perf_counter()
    alone = model_only_fps(runner.compiled, runner.nireq, runner.premade_input, seconds)
    cpu_alone = (time.process_time() - c0) / max(1.0, alone * (time.perf_counter() - t0))
    resolved = s["config"].get("resolved") or {}
    return Side(float(s["fps"]), alone, cpu / cfg.frames, cpu_alone,
                resolved.get("precision_used") or resolved.get("precision"))


def outputs_of(cfg: RunConfig, path: str) -> None:
    """One untimed run that keeps every frame's outputs, for the agreement."""
    writer = OutputsWriter(path)
    runner = Runner(replace(cfg, keep_outputs=True), registry=CollectorRegistry(), outputs=writer)
    runner.run()
    writer.close()


def default_inputs(width: int, height: int, frames: int) -> tuple[str, str]:
    from tests.integration.real_model import fetch_model, write_text_clip

    folder = os.path.join(os.path.dirname(assets.cache_dir()), "test-models")
    model = fetch_model(folder)
    clip = os.path.join(folder, f"text_{width}x{height}_{frames}.mp4")
    if not os.path.exists(clip):
        write_text_clip(clip, width, height, frames)
    return model, clip


def main() -> None:
    p = base_parser("INT8 / original: model-only and end-to-end FPS on the same frames")
    p.add_argument("--frames", type=int, default=300, help="frames each run completes (default 300)")
    p.add_argument("--calibration-frames", type=int, default=100, help="INT8 calibration frames (default 100)")
    p.add_argument("--model-only-seconds", type=float, default=5.0, help="model-only seconds per side (default 5)")
    p.add_argument("--model", help="a float model (default: PP-OCRv4's text detector, fetched once)")
    p.add_argument("--source", help="a clip (default: rendered moving text, 640x352)")
    p.add_argument("--mean", type=float, default=127.5, help="preprocessing mean (default 127.5, PP-OCR's)")
    p.add_argument("--scale", type=float, default=127.5, help="preprocessing scale (default 127.5, PP-OCR's)")
    p.add_argument("--threshold", type=float, default=0.3, help="decoder threshold (default 0.3, PP-OCR's)")
    p.add_argument("--infer-precision", help="f32 | bf16 | f16 for both sides (default: the device's; bf16 on "
                                             "CPUs with AMX-BF16, where the original is then bf16, not f32)")
    a = p.parse_args()
    model, clip = a.model, a.source
    if model is None or clip is None:
        dm, dc = default_inputs(640, 352, max(a.frames, 300))
        model, clip = model or dm, clip or dc
    base = RunConfig(sources=(clip,), model=model, frames=a.frames, pipeline_name="bench",
                     preprocess_options=PreprocessOptions(mean=(a.mean,), scale=(a.scale,)),
                     postprocess=PostprocessOptions(threshold=a.threshold),
                     inference=InferenceOptions(infer_precision=a.infer_precision))
    print(machine_note())
    print(f"cpu {isa_flags()}")
    variant = quantize(base, QuantizeSettings(a.calibration_frames), log=log)
    print(f"model {model} ({variant.source_size_bytes / 2**20:.2f} MiB) -> INT8 {variant.path} "
          f"({variant.size_bytes / 2**20:.2f} MiB), quantised in {variant.quantize_seconds:.1f} s"
          f"{' (cached)' if variant.cached else ''} on {a.calibration_frames} frames; clip {clip}, {a.frames} "
          f"frames per run (preprocess separate, hint throughput, infer precision {a.infer_precision or 'default'})")
    int8 = replace(base, model=variant.path)

    # Warm-up (untimed): clip in the page cache, OpenVINO initialised, both models compiled once.
    warm = replace(base, frames=min(30, a.frames))
    run(warm, 0.5)
    run(replace(warm, model=variant.path), 0.5)

    e2e: list[float] = []
    alone: list[float] = []
    cpu_e2e: list[float] = []
    cpu_alone: list[float] = []
    fps_o: list[float] = []
    fps_q: list[float] = []
    mo_o: list[float] = []
    mo_q: list[float] = []
    precisions = ("", "")
    for i in range(a.pairs):
        log(f"pair {i + 1}/{a.pairs} ...")
        r = run_interleaved(i, {"original": lambda: run(base, a.model_only_seconds),
                                "int8": lambda: run(int8, a.model_only_seconds)})
        o, q = r["original"], r["int8"]
        precisions = (o.precision or "", q.precision or "")
        e2e.append(q.fps / o.fps)
        alone.append(q.model_only_fps / o.model_only_fps)
        cpu_e2e.append(o.cpu_per_frame / q.cpu_per_frame)
        cpu_alone.append(o.cpu_per_inference / q.cpu_per_inference)
        fps_o.append(o.fps)
        fps_q.append(q.fps)
        mo_o.append(o.model_only_fps)
        mo_q.append(q.model_only_fps)
        print(f"pair {i + 1}: original {o.fps:6.1f} FPS e2e, {o.model_only_fps:6.1f} model-only ({o.precision}) | "
              f"int8 {q.fps:6.1f} FPS e2e, {q.model_only_fps:6.1f} model-only ({q.precision}) | ratios e2e "
              f"{e2e[-1]:.3f} model-only {alone[-1]:.3f}; cpu-per-frame original/int8 e2e {cpu_e2e[-1]:.3f} "
              f"model-only {cpu_alone[-1]:.3f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="vidprof-bench-int8-") as tmp:
        outputs_of(base, os.path.join(tmp, "o.npz"))
        outputs_of(int8, os.path.join(tmp, "q.npz"))
        ref = load_outputs(os.path.join(tmp, "o.npz"))
        decoder = "probability_map" if all(len(o) == 1 and o[0].ndim == 4 for o, _ in ref.values()) else "detection"
        seen = variant.calibration[0].seen(a.frames, loop=False)
        acc = compare(ref, load_outputs(os.path.join(tmp, "q.npz")), decoder, exclude=seen, threshold=a.threshold)

    print(machine_note())
    print(f"original: e2e FPS {fmt(fps_o, 1)} median {median(fps_o):.1f}; model-only {fmt(mo_o, 1)} median "
          f"{median(mo_o):.1f} ({precisions[0]})")
    print(f"int8:     e2e FPS {fmt(fps_q, 1)} median {median(fps_q):.1f}; model-only {fmt(mo_q, 1)} median "
          f"{median(mo_q):.1f} ({precisions[1]})")
    print(f"agreement of int8 with the original on {acc['frames']} frames calibration did not see: "
          f"{acc['agreement']:.3f} ({acc['method']})" + (f"; boxes F1 {acc['box_f1']:.3f}" if "box_f1" in acc else ""))
    extra = {"isa": "/".join(f for f in ISA_FLAGS if f in isa_flags().split()) or "none",
             "agreement": f"{acc['agreement']:.3f}", "frames": a.frames}
    print(result_line("int8_model_only", alone, fps_original=f"{median(mo_o):.1f}", fps_int8=f"{median(mo_q):.1f}",
                      cpu_ratio=f"{median(cpu_alone):.3f}", **extra))
    print(result_line("int8_end_to_end", e2e, fps_original=f"{median(fps_o):.1f}", fps_int8=f"{median(fps_q):.1f}",
                      cpu_ratio=f"{median(cpu_e2e):.3f}", **extra))


if __name__ == "__main__":
    main()
