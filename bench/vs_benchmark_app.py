"""vidprof's inference throughput vs OpenVINO's own benchmark_app, same model and settings.

    cd /work/main && python bench/vs_benchmark_app.py [--pairs 5] [--frames 2000] [--seconds 5]

What runs:
- vidprof: the CLI (``python -m vidprof.pipeline run``) on ``synthetic:300x300`` with ``--preprocess host``,
  ``--postprocess passthrough``, ``--quiet --no-metrics --report``; FPS = completed frames / wall seconds,
  read from the report. Passthrough because this compares the inference stage: the sample detector's NMS
  costs ~1-2 CPU-ms a frame, which on 2 cores that inference already fills is taken from inference.
- benchmark_app: the sample model, ``-d CPU -hint throughput -nireq M -shape [1,3,300,300]`` and
  NUM_STREAMS=N through ``-load_config`` (benchmark_app refuses ``-nstreams`` with a hint), with N and M
  the streams and infer requests vidprof resolved (its report's ``config.resolved``); FPS from its
  ``Throughput:`` line.
- vidprof again with ``--no-zero-copy``, so the cost of copying each input into the request shows.

Default ``--placement fused``: vidprof builds its preprocessing into the model and the bench saves that very
graph as IR for benchmark_app, so both programs infer the same graph on the same u8 input and vidprof's own
preprocess stage is only a wrap of the frame: what is compared is the inference stage and vidprof's threads
around it. ``--placement host`` runs the plain f32 model in both, vidprof converting each frame on the host
(~0.3 CPU-ms a frame that, on 2 cores the model already fills, comes out of inference). Either way the IR is
the model ``vidprof.pipeline.build`` compiles for that placement (captured from the build, not rebuilt here),
the same build the vidprof CLI run goes through.

Why synthetic 300x300 with host preprocessing: the infer requests then run exactly the IR benchmark_app
runs, on the same f32 1x3x300x300 input. ``fused`` would add resize/convert/layout nodes to the model,
so the two programs would no longer infer the same graph; ``separate`` at 300x300 would run a second
(identity-sized) OpenVINO graph per frame for nothing. Decode of a synthetic frame is free, and host
preprocessing of a frame that is already 300x300 is only the u8->f32 HWC->CHW copy (~0.3 ms on
another thread). What remains between the two figures is what vidprof adds around inference: that
copy, the recorder and the threads, all competing for the same 2 cores.

Both programs run as fresh processes, so neither inherits the other's threads or memory.

Besides FPS, each run's CPU seconds (user + system of the child, from ``RUSAGE_CHILDREN``) give CPU ms
per frame, taken as the margin over a short baseline run of the same program so imports and compile
cancel out. Other jobs on the same cores move FPS a lot (CFS shares the CPU per thread, so a program
with more runnable threads, like vidprof, holds up better under load than benchmark_app); CPU per
frame moves much less, so it is printed as a second, steadier figure.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from bench._common import REPO_ROOT, base_parser, fmt, log, machine_note, median, result_line, run_mirrored

SIZE = 300  # the sample model's input side; the synthetic source matches it


@dataclass
class Run:
    """One child process: its throughput, frames done and CPU seconds (user + system, all threads)."""

    fps: float
    frames: int
    cpu: float
    report: dict[str, Any] = field(default_factory=dict)  # vidprof's JSON report
    props: dict[str, str] = field(default_factory=dict)  # benchmark_app's compiled-model properties


def run_child(cmd: list[str], cwd: str | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a command to completion; returns it and the CPU seconds it used (reaped, so RUSAGE_CHILDREN has it)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def built_model(folder: str, placement: str) -> tuple[str, dict[str, Any]]:
    """The very graph ``vidprof.pipeline.build`` compiles for ``--preprocess PLACEMENT`` on the synthetic
    SIZE x SIZE source (``Parts.model``), saved as IR so benchmark_app runs the same graph; also what the
    device resolved. A compiled model cannot go to benchmark_app (its ``.blob`` path refuses to start: it
    takes its unset precision options as set). ``fused``: the sample model with vidprof's preprocessing
    built in (u8 1x300x300x3 BGR input); ``host``: the plain sample model.
    """
    import openvino as ov

    from vidprof.pipeline.build import build
    from vidprof.pipeline.config import RunConfig

    parts = build(RunConfig(sources=(f"synthetic:{SIZE}x{SIZE}@30",), preprocess=placement, frames=1))
    try:
        path = os.path.join(folder, f"sample_{placement}.xml")
        ov.save_model(parts.model, path, compress_to_fp16=False)
        return path, dict(parts.resolved)
    finally:
        parts.close()


PLACEMENT = "fused"  # set from --placement in main()


def vidprof_run(frames: int, zero_copy: bool, nireq: int | None = None) -> Run:
    """One vidprof CLI run; FPS is its report's completed frames / wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        cmd = [sys.executable, "-m", "vidprof.pipeline", "run", "--source", f"synthetic:{SIZE}x{SIZE}@30",
               "--frames", str(frames), "--preprocess", PLACEMENT, "--postprocess", "passthrough",
               "--report", report, "--quiet", "--no-metrics",
               "--zero-copy" if zero_copy else "--no-zero-copy"]
        if nireq is not None:
            cmd += ["--nireq", str(nireq)]
        proc, cpu = run_child(cmd, cwd=REPO_ROOT)
        if proc.returncode != 0 or not os.path.exists(report):
            raise SystemExit(f"vidprof failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
        with open(report) as f:
            rep = json.load(f)
    return Run(float(rep["fps"]), int(rep["frames"]["completed"]), cpu, report=rep)


def benchmark_app_run(model: str, streams: int, nireq: int, seconds: int) -> Run:
    """One benchmark_app run; FPS from its ``Throughput:`` line, frames from ``Count:``.

    benchmark_app refuses ``-nstreams`` together with ``-hint throughput`` (a UI rule of the tool, not an
    OpenVINO limit), so the stream count goes in through ``-load_config``: the device then gets
    PERFORMANCE_HINT=THROUGHPUT plus NUM_STREAMS=N, the same properties ``vidprof --streams N`` sets.
    """
    exe = shutil.which("benchmark_app")
    if exe is None:
        raise SystemExit("benchmark_app is not on PATH; it ships in the openvino wheel (pip install openvino)")
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "config.json")
        with open(config, "w") as f:
            json.dump({"CPU": {"NUM_STREAMS": str(streams)}}, f)
        cmd = [exe, "-m", model, "-d", "CPU", "-hint", "throughput", "-load_config", config, "-nireq", str(nireq),
               "-t", str(seconds)]
        if PLACEMENT == "host":
            cmd += ["-shape", f"[1,3,{SIZE},{SIZE}]"]
        proc, cpu = run_child(cmd)
    out = proc.stdout + proc.stderr
    fps = re.search(r"Throughput:\s*([\d.]+)\s*FPS", out)
    count = re.search(r"Count:\s*(\d+)\s*iterations", out)
    if proc.returncode != 0 or fps is None or count is None:
        raise SystemExit(f"benchmark_app failed ({proc.returncode}): {' '.join(cmd)}\n{out[-3000:]}")
    props = dict(re.findall(r"^\[ INFO \]\s+(NUM_STREAMS|INFERENCE_PRECISION_HINT|INFERENCE_NUM_THREADS|"
                            r"PERFORMANCE_HINT):\s*(.+)$", out, re.MULTILINE))
    props["requests"] = m.group(1) if (m := re.search(r"(\d+) inference requests", out)) else "?"
    return Run(float(fps.group(1)), int(count.group(1)), cpu, props=props)


def mean_run(runs: list[Run]) -> Run:
    """The runs of one program in a pair as one: the mean FPS, frames and CPU seconds of a run (so the
    CPU-per-frame figure against one baseline run still holds), the first run's report and properties."""
    n = len(runs)
    return Run(sum(r.fps for r in runs) / n, round(sum(r.frames for r in runs) / n), sum(r.cpu for r in runs) / n,
               report=runs[0].report, props=runs[0].props)


def marginal_cpu_ms(run: Run, base: Run) -> float:
    """CPU ms per extra frame over a short baseline run: start-up (imports, compile) cancels out."""
    return (run.cpu - base.cpu) / max(1, run.frames - base.frames) * 1e3


def main() -> None:
    p = base_parser("vidprof inference FPS vs benchmark_app (same model, streams, nireq)")
    p.add_argument("--frames", type=int, default=2000, help="frames per vidprof run (default 2000, ~4-6 s)")
    p.add_argument("--seconds", type=int, default=5, help="benchmark_app -t (default 5)")
    p.add_argument("--nireq", type=int, help="infer requests for both programs (default: what vidprof resolves)")
    p.add_argument("--placement", choices=("fused", "host"), default="fused",
                   help="fused (default): both run the sample model with vidprof's preprocessing built in, on "
                        "u8 frames; host: both run the plain f32 model, vidprof converting each frame on the host")
    a = p.parse_args()
    global PLACEMENT
    PLACEMENT = a.placement

    work = tempfile.mkdtemp(prefix="vidprof-bench-")
    # DetectorSpec() default: 1x3x300x300 f32 NCHW; fused: the same with a u8 1x300x300x3 BGR input.
    model, built = built_model(work, PLACEMENT)
    # Short runs first: they resolve streams/nireq for benchmark_app, warm the page cache, and give the
    # start-up CPU baselines for the CPU-per-frame figures.
    base_v = vidprof_run(60, zero_copy=True, nireq=a.nireq)
    resolved = base_v.report["config"]["resolved"]
    streams, nireq = int(resolved["streams"]), int(resolved["nireq"])
    base_c = vidprof_run(60, zero_copy=False, nireq=a.nireq)
    base_b = benchmark_app_run(model, streams, nireq, 1)
    print(machine_note())
    print(f"model {model}")
    print(f"vidprof resolved: {resolved}")
    print(f"benchmark_app compiled: {base_b.props}")
    print(f"benchmark_app: -d CPU -hint throughput -load_config {{CPU: {{NUM_STREAMS: {streams}}}}} -nireq {nireq} "
          f"-t {a.seconds}" + (f" -shape [1,3,{SIZE},{SIZE}]" if PLACEMENT == "host" else ""))
    if base_b.props.get("NUM_STREAMS") != str(streams) or base_b.props.get("requests") != str(nireq):
        print(f"WARNING: benchmark_app did not take streams={streams} nireq={nireq}: {base_b.props}")
    if str(built.get("streams")) != str(streams):
        print(f"WARNING: the in-process build resolved streams={built.get('streams')}, the vidprof run {streams}")
    print(f"vidprof: --source synthetic:{SIZE}x{SIZE}@30 --frames {a.frames} --preprocess {PLACEMENT} "
          "--postprocess passthrough [--no-zero-copy]")

    ratios_zc: list[float] = []
    ratios_copy: list[float] = []
    cpu_zc: list[float] = []
    cpu_copy: list[float] = []
    for i in range(a.pairs):
        log(f"pair {i + 1}/{a.pairs} ...")
        # Each program twice, mirrored (A B C C B A): a pair's ratio compares means over the same stretch of time.
        r = run_mirrored(i, {
            "vidprof": lambda: vidprof_run(a.frames, zero_copy=True, nireq=a.nireq),
            "benchmark_app": lambda: benchmark_app_run(model, streams, nireq, a.seconds),
            "vidprof_copy": lambda: vidprof_run(a.frames, zero_copy=False, nireq=a.nireq),
        })
        v, b, c = mean_run(r["vidprof"]), mean_run(r["benchmark_app"]), mean_run(r["vidprof_copy"])
        ratios_zc.append(v.fps / b.fps)
        ratios_copy.append(c.fps / b.fps)
        b_ms, v_ms, c_ms = marginal_cpu_ms(b, base_b), marginal_cpu_ms(v, base_v), marginal_cpu_ms(c, base_c)
        cpu_zc.append(b_ms / v_ms)
        cpu_copy.append(b_ms / c_ms)
        h2d_zc = v.report["transfer"]["host_to_device"]["per_frame"]["mean"] * 1e6
        h2d_copy = c.report["transfer"]["host_to_device"]["per_frame"]["mean"] * 1e6
        print(f"pair {i + 1}: benchmark_app {b.fps:6.1f} FPS ({b_ms:.2f} cpu-ms/frame) | vidprof {v.fps:6.1f} FPS "
              f"({v_ms:.2f} cpu-ms/frame, h2d {h2d_zc:.0f} us/frame) ratio {ratios_zc[-1]:.3f} | no-zero-copy "
              f"{c.fps:6.1f} FPS ({c_ms:.2f} cpu-ms/frame, h2d {h2d_copy:.0f} us/frame) ratio {ratios_copy[-1]:.3f}",
              flush=True)

    print(machine_note())
    print(f"zero-copy    FPS ratios {fmt(ratios_zc)} median {median(ratios_zc):.3f} (goal >= 1.00, no pair below 0.95)")
    print(f"no-zero-copy FPS ratios {fmt(ratios_copy)} median {median(ratios_copy):.3f}")
    # CPU per frame is far less sensitive to other jobs on the cores than FPS; benchmark_app/vidprof < 1
    # means vidprof spends more CPU per frame (its preprocess copy, NMS, recorder, threads).
    print(f"cpu-per-frame benchmark_app/vidprof: zero-copy {fmt(cpu_zc)} median {median(cpu_zc):.3f}; "
          f"no-zero-copy {fmt(cpu_copy)} median {median(cpu_copy):.3f}")
    print(result_line("vs_benchmark_app", ratios_zc, streams=streams, nireq=nireq,
                      cpu_ratio=f"{median(cpu_zc):.3f}"))
    print(result_line("vs_benchmark_app_no_zero_copy", ratios_copy, streams=streams, nireq=nireq,
                      cpu_ratio=f"{median(cpu_copy):.3f}"))


if __name__ == "__main__":
    main()
