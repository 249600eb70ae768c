"""``vidprof density``: how many real-time streams of a source this machine sustains.

N streams of the source, each paced like a camera at the target FPS, run as one ``vidprof run --copies N``
subprocess per trial (the same reasons as ``vidprof tune``: what a user reruns is exactly what was
measured, and a trial that crashes cannot take the search with it). N grows 1, 2, 4, 8, ... until a trial
fails or ``--max-streams`` is reached, then bisects between the last pass and the first fail.

A trial passes when every criterion in :func:`judge` holds; see docs/density.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vidprof.profiling.errors import RunError, UsageError

DENSITY_VERSION = 1
DEFAULT_MAX_LATENCY_MS = 200.0
DEFAULT_MAX_DROP = 0.01
DEFAULT_TRIAL_SECONDS = 8.0
DEFAULT_WARMUP = 2
DEFAULT_MAX_STREAMS = 32
FPS_FLOOR = 0.95  # the slowest stream must reach this share of the target FPS
MODEL_ONLY_SECONDS = 2.0  # measured once, after the 1-stream trial, for the naive estimate
# Files and image folders are looped so a clip shorter than the trial does not end it early: a camera
# does not stop after ten seconds either.
LOOPED_KINDS = ("file", "images")


def add_density_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("streams and criteria")
    src.add_argument("--source", help="a video file, image folder or synthetic:WxH@FPS, repeated as N streams "
                                      "(default: the embedded 720p sample clip, 30 FPS)")
    src.add_argument("--target-fps", type=float,
                     help="each stream's frame rate, paced like a camera (default: the source's own FPS)")
    src.add_argument("--max-latency-ms", type=float, default=DEFAULT_MAX_LATENCY_MS,
                     help=f"end-to-end p99 budget over all streams (default {DEFAULT_MAX_LATENCY_MS:g})")
    src.add_argument("--max-drop", type=float, default=DEFAULT_MAX_DROP,
                     help=f"share of captured frames that may be dropped (default {DEFAULT_MAX_DROP:g}, i.e. 1%%)")
    src.add_argument("--trial-seconds", type=float, default=DEFAULT_TRIAL_SECONDS,
                     help=f"capture time of each trial, after warm-up (default {DEFAULT_TRIAL_SECONDS:g})")
    src.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                     help=f"warm-up inference rounds per request before each trial, not counted "
                          f"(default {DEFAULT_WARMUP})")
    src.add_argument("--max-streams", type=int, default=DEFAULT_MAX_STREAMS,
                     help=f"stop growing at this many streams (default {DEFAULT_MAX_STREAMS})")
    mod = p.add_argument_group("model and inference (as for run)")
    mod.add_argument("--model", help="as for run (default: the embedded sample detector)")
    mod.add_argument("--preprocess", help="separate (default) | fused | host")
    mod.add_argument("--hint", help="latency | throughput (default) | cumulative_throughput | none")
    mod.add_argument("--nireq", type=int, help="number of infer requests (default: the device's optimal number)")
    mod.add_argument("--device", help="CPU (default), GPU, NPU, AUTO, ...")
    out = p.add_argument_group("output")
    out.add_argument("--report", help="write every trial and the result as JSON")
    out.add_argument("--quiet", action="store_true", help="no line per trial while searching")
    out.add_argument("--debug", action="store_true", help="show tracebacks and failing trials' stderr")


# ----------------------------------------------------------------- settings
@dataclass(frozen=True)
class DensityOptions:
    source: str  # as given, or the sample clip's path
    source_given: bool  # False: the embedded sample clip, left out of the reproducing command
    model: str | None
    target_fps: float
    pace_given: bool  # True: --realtime-fps F; False: --realtime (the source's own FPS)
    max_latency: float  # seconds
    max_drop: float
    trial_seconds: float
    warmup: int
    max_streams: int
    loop: bool
    extra: tuple[str, ...] = ()  # --preprocess/--hint/--nireq/--device, passed through to every trial


def validate(args: argparse.Namespace) -> None:
    """Settings that cannot work whatever the machine: exit 2 before anything runs."""
    if args.target_fps is not None and not (math.isfinite(args.target_fps) and args.target_fps > 0):
        raise UsageError(f"--target-fps {args.target_fps:g}: expected a rate above 0 frames per second, e.g. 30")
    if not (math.isfinite(args.max_latency_ms) and args.max_latency_ms > 0):
        raise UsageError(f"--max-latency-ms {args.max_latency_ms:g}: expected a positive number of milliseconds, "
                         "e.g. 200")
    if not 0.0 <= args.max_drop < 1.0:
        raise UsageError(f"--max-drop {args.max_drop:g}: expected a share from 0 up to (not including) 1, "
                         "e.g. 0.01 for 1%")
    if not (math.isfinite(args.trial_seconds) and args.trial_seconds > 0):
        raise UsageError(f"--trial-seconds {args.trial_seconds:g}: expected a positive number of seconds, e.g. 8")
    if args.warmup < 0:
        raise UsageError(f"--warmup {args.warmup}: expected 0 or more warm-up rounds")
    from vidprof.pipeline.config import MAX_STREAMS

    if not 1 <= args.max_streams <= MAX_STREAMS:
        raise UsageError(f"--max-streams {args.max_streams}: expected 1 to {MAX_STREAMS}, the most streams one "
                         "`vidprof run` takes")
    if args.nireq is not None and args.nireq < 1:
        raise UsageError(f"--nireq {args.nireq}: expected at least 1 infer request")


def passthrough(args: argparse.Namespace) -> list[str]:
    """The run options density passes unchanged to every trial."""
    out: list[str] = []
    for flag in ("preprocess", "hint", "nireq", "device"):
        value = getattr(args, flag)
        if value is not None:
            out += [f"--{flag}", str(value)]
    return out


def resolve(args: argparse.Namespace) -> DensityOptions:
    """Open the source once: its kind (a camera cannot be copied) and its FPS (the default target)."""
    from vidprof.samples import assets
    from vidprof.stages.sources import find_kind, open_source

    spec = args.source or assets.sample_clip_path()
    kind = find_kind(spec)
    if kind.live:
        raise UsageError(f"--source {spec} is a {kind.name}: density repeats the source as N independent streams, "
                         "which needs a video file, image folder or synthetic:WxH@FPS; record a clip of it first")
    src = open_source(spec)
    try:
        own_fps = src.fps or 30.0  # what --realtime paces at when the file has no rate
    finally:
        src.close()
    return DensityOptions(
        source=spec, source_given=args.source is not None, model=args.model,
        target_fps=args.target_fps if args.target_fps is not None else float(own_fps),
        pace_given=args.target_fps is not None, max_latency=args.max_latency_ms / 1e3, max_drop=args.max_drop,
        trial_seconds=args.trial_seconds, warmup=args.warmup, max_streams=args.max_streams,
        loop=kind.name in LOOPED_KINDS, extra=tuple(passthrough(args)))


def run_args(opts: DensityOptions, streams: int, for_user: bool = False) -> list[str]:
    """The `vidprof run` arguments of one trial (without output flags)."""
    args: list[str] = []
    if opts.source_given or not for_user:  # the user's own command relies on the default sample clip
        args += ["--source", opts.source]
    if opts.model:
        args += ["--model", opts.model]
    args += ["--copies", str(streams)]
    args += ["--realtime-fps", f"{opts.target_fps:g}"] if opts.pace_given else ["--realtime"]
    args += ["--duration", f"{opts.trial_seconds:g}", "--warmup", str(opts.warmup)]
    if opts.loop:
        args.append("--loop")
    return [*args, *opts.extra]


def check_run_settings(args: argparse.Namespace) -> None:
    """Let run's own parser and checks judge the settings passed to every trial now, as `vidprof tune` does:
    a bad --hint or --preprocess is then a usage error before anything is opened or run."""
    from vidprof.pipeline.cli import build_parser, config_from_args

    argv = ["run", "--duration", f"{args.trial_seconds:g}", "--warmup", str(args.warmup), *passthrough(args)]
    config_from_args(build_parser().parse_args(argv), None)


def command_line(opts: DensityOptions, streams: int) -> str:
    return shlex.join(["vidprof", "run", *run_args(opts, streams, for_user=True)])


# ----------------------------------------------------------------- judging one trial
def capture_seconds(report: dict[str, Any]) -> float:
    """How long the trial captured frames: its --duration, which bounds capture (start-up is before the clock
    starts). Not the wall time, which also counts draining the queues after capture, so rates over it come out
    low; that is only the fallback for a report without a duration."""
    for value in ((report.get("config") or {}).get("duration"), report.get("wall_seconds")):
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    return 0.0


def stream_rates(report: dict[str, Any]) -> dict[str, float]:
    """Each stream's completed frames per second of capture time."""
    seconds = capture_seconds(report)
    streams = report.get("streams") or {"0": report}  # a report without streams is its own only stream
    return {str(name): s["frames"]["completed"] / seconds if seconds > 0 else 0.0 for name, s in streams.items()}


@dataclass(frozen=True)
class Measured:
    min_stream_fps: float
    slowest: str | None  # its label
    e2e_p99: float | None  # seconds; None when no frame completed
    dropped_ratio: float
    failed: int
    fault: str | None
    bottleneck: str | None


def measure(report: dict[str, Any]) -> Measured:
    rates = stream_rates(report)
    slowest = min(rates, key=lambda k: rates[k]) if rates else None
    frames = report.get("frames") or {}
    read = frames.get("read") or 0
    # Nothing read at all is as bad as everything dropped.
    dropped_ratio = (frames.get("dropped") or 0) / read if read else 1.0
    e2e = report.get("e2e") or {}
    p99 = e2e.get("p99") if e2e.get("count") else None
    return Measured(
        min_stream_fps=rates[slowest] if slowest is not None else 0.0, slowest=slowest, e2e_p99=p99,
        dropped_ratio=dropped_ratio, failed=frames.get("failed") or 0, fault=report.get("fault"),
        bottleneck=(report.get("bottleneck") or {}).get("stage"))


def judge(report: dict[str, Any], target_fps: float, max_latency_s: float, max_drop: float) -> tuple[bool, str | None]:
    """Does one trial's `vidprof run` report meet the criteria? Returns (passed, why it failed or None);
    ``why`` names every criterion that failed, most fundamental first."""
    m = measure(report)
    why: list[str] = []
    if m.fault:
        why.append(f"fault: {m.fault}")
    if m.failed:
        why.append(f"{m.failed} frames failed")
    floor = FPS_FLOOR * target_fps
    if m.min_stream_fps < floor:
        why.append(f"stream {m.slowest} {m.min_stream_fps:.1f} FPS < {floor:.1f} ({FPS_FLOOR:.0%} of target)")
    if m.dropped_ratio > max_drop:
        why.append(f"dropped {m.dropped_ratio:.1%} > {max_drop * 100:g}%")
    if m.e2e_p99 is None:
        why.append("no frame completed")
    elif m.e2e_p99 > max_latency_s:
        why.append(f"p99 {m.e2e_p99 * 1e3:.0f} ms > {max_latency_s * 1e3:g} ms")
    return (not why, "; ".join(why) or None)


# ----------------------------------------------------------------- the search
def _bounds(trials: Sequence[dict[str, Any]]) -> tuple[int, int | None]:
    """(highest passing N, or 0; lowest failing N above it, or None)."""
    lo = max((t["streams"] for t in trials if t["passed"]), default=0)
    hi = min((t["streams"] for t in trials if not t["passed"] and t["streams"] > lo), default=None)
    return lo, hi


def next_n(trials: Sequence[dict[str, Any]], cap: int = DEFAULT_MAX_STREAMS) -> int | None:
    """The next number of streams to try, or None when the search is over: double from 1 until a trial
    fails or ``cap`` is reached, then bisect between the highest pass and the lowest fail above it."""
    lo, hi = _bounds(trials)
    if hi is None:
        if lo >= cap:
            return None
        return min(cap, max(1, 2 * lo))
    if hi - lo <= 1:
        return None
    return (lo + hi) // 2


def result(trials: Sequence[dict[str, Any]]) -> tuple[int, dict[str, Any] | None]:
    """(max streams, the failing trial at max + 1 or None when the search reached the cap)."""
    lo, hi = _bounds(trials)
    gave_out = next((t for t in trials if t["streams"] == lo + 1 and not t["passed"]), None) if hi else None
    return lo, gave_out


# ----------------------------------------------------------------- one trial
@dataclass
class Trial:
    streams: int
    report: dict[str, Any] | None
    error: str | None = None  # the run did not produce a report
    stderr: str = ""


def run_trial(opts: DensityOptions, streams: int, workdir: str, model_only: bool) -> Trial:
    report = os.path.join(workdir, f"n{streams}.json")
    cmd = [sys.executable, "-m", "vidprof.pipeline", "run", *run_args(opts, streams),
           "--report", report, "--quiet", "--no-metrics"]
    if model_only:
        cmd += ["--model-only-seconds", f"{MODEL_ONLY_SECONDS:g}"]
    # Generous: start-up and drain grow with the number of streams, but a hung trial must not hang the search.
    timeout = 120 + 4 * opts.trial_seconds + 2 * streams
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Trial(streams, None, f"timed out after {timeout:g} s")
    errors = [ln.removeprefix("vidprof: error: ") for ln in proc.stderr.splitlines()
              if ln.startswith("vidprof: error:")]
    if proc.returncode == 2:  # a setting `run` refuses: the same for every N, so stop now
        raise UsageError(errors[-1] if errors else f"vidprof run refused the settings: {proc.stderr.strip()}")
    if proc.returncode == 130:
        raise KeyboardInterrupt
    if not os.path.exists(report):
        why = errors[-1] if errors else (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return Trial(streams, None, why, proc.stderr)
    with open(report) as f:
        # A non-zero exit with a report (a fault, failed frames) is a measured failure: judge() says which.
        return Trial(streams, json.load(f), None, proc.stderr if proc.returncode else "")


def trial_row(t: Trial, opts: DensityOptions) -> dict[str, Any]:
    if t.report is None:
        return {"streams": t.streams, "passed": False, "min_stream_fps": None, "e2e_p99": None,
                "dropped_ratio": None, "bottleneck": None, "why": f"run failed: {t.error}"}
    passed, why = judge(t.report, opts.target_fps, opts.max_latency, opts.max_drop)
    m = measure(t.report)
    return {"streams": t.streams, "passed": passed, "min_stream_fps": m.min_stream_fps, "e2e_p99": m.e2e_p99,
            "dropped_ratio": m.dropped_ratio, "bottleneck": m.bottleneck, "why": why}


@dataclass
class Search:
    """What a search has measured so far; kept by the caller so Ctrl-C does not lose it."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    model_only_fps: float | None = None
    model_path: str | None = None  # the model the trials loaded (the sample model's path when none was given)


def search(opts: DensityOptions, state: Search, on_trial: Callable[[dict[str, Any]], None] | None = None,
           on_start: Callable[[int], None] | None = None, debug: bool = False) -> Search:
    """Run trials until next_n() says stop, appending each trial's row to ``state``."""
    with tempfile.TemporaryDirectory(prefix="vidprof-density-") as work:
        while (n := next_n(state.rows, opts.max_streams)) is not None:
            if on_start:
                on_start(n)
            first = not state.rows
            t = run_trial(opts, n, work, model_only=first)
            if first:
                if t.report is None:
                    # One stream that cannot even start is a broken setup (a missing model, say), not a density.
                    raise RunError(f"the 1-stream trial did not run: {t.error}; check it with "
                                   f"`{command_line(opts, 1)}`")
                state.model_only_fps = t.report.get("model_only_fps")
                state.model_path = (t.report.get("config") or {}).get("model") or opts.model
            if debug and t.stderr:
                print(t.stderr.rstrip(), file=sys.stderr)
            state.rows.append(trial_row(t, opts))
            if on_trial:
                on_trial(state.rows[-1])
    return state


# ----------------------------------------------------------------- the document
def naive_vs_measured(naive: int | None, measured: int, gave_out: dict[str, Any] | None, opts: DensityOptions,
                      capped: bool) -> str:
    """One sentence on why the model-only estimate and the measured density differ, from what this search saw."""
    if naive is None:
        return "no model-only figure was measured, so there is no naive estimate; plan with the measured figure"
    if capped:
        return (f"the search stopped at --max-streams {measured} without a failure, so {measured} is a lower bound "
                f"(naive: {naive}); raise --max-streams to find the limit")
    if measured > naive:
        return (f"the pipeline sustains {measured} streams, more than the naive {naive}, because the model-only "
                "figure is one short run on a pre-made input while many streams keep more infer requests busy; "
                "plan with the measured figure")
    if measured == naive:
        return (f"the measured {measured} matches the naive estimate: the model is the limit here, and decode, "
                "preprocessing and postprocessing fit in the CPU time it leaves")
    stage = (gave_out or {}).get("stage")
    why = (gave_out or {}).get("why") or ""
    n = measured + 1
    if "p99" in why and "FPS" not in why and "dropped" not in why:
        tail = (f", and at {n} streams the p99 <= {opts.max_latency * 1e3:g} ms budget ran out (frames queueing "
                "behind each other) before throughput did")
    elif stage and stage != "inference":
        tail = f", and at {n} streams {stage}, not the model, gave out first"
    else:
        tail = ", so inference gets less CPU than it had alone"
    return (f"the model alone would feed {naive} streams but the pipeline sustains {measured}, because decode, "
            "preprocessing and postprocessing share the CPU cores with inference and every frame crosses Python "
            "thread hand-offs between stages" + tail)


def build_doc(opts: DensityOptions, state: Search, interrupted: bool = False) -> dict[str, Any]:
    rows, model_only = state.rows, state.model_only_fps
    best, gave = result(rows)
    capped = gave is None and best >= opts.max_streams
    naive = math.floor(model_only / opts.target_fps) if model_only else None
    gave_out = {"streams": gave["streams"], "stage": gave["bottleneck"], "why": gave["why"]} if gave else None
    doc: dict[str, Any] = {
        "vidprof_density": DENSITY_VERSION,
        "source": opts.source,
        "model": state.model_path or opts.model,
        "target_fps": opts.target_fps,
        "max_latency_seconds": opts.max_latency,
        "max_drop": opts.max_drop,
        "trial_seconds": opts.trial_seconds,
        "max_streams": best,
        "trials": rows,
        "gave_out_at": gave_out,
        "naive_estimate": {"model_only_fps": model_only, "streams": naive},
        "naive_vs_measured": naive_vs_measured(naive, best, gave_out, opts, capped),
        "command": command_line(opts, best) if best else None,
    }
    if interrupted:
        doc["interrupted"] = True
    return doc


# ----------------------------------------------------------------- output
def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.1%}"


def render(doc: dict[str, Any], console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    # 80 columns when writing to a file or pipe: the width a report pasted into an issue keeps.
    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 80)
    t = Table(title=f"vidprof density: streams at {doc['target_fps']:g} FPS each, in the order tried",
              title_justify="left")
    for col, justify in (("N", "right"), ("result", "left"), ("min FPS", "right"), ("p99 ms", "right"),
                         ("drop", "right"), ("bottleneck", "left"), ("why it failed", "left")):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in doc["trials"]:
        t.add_row(str(r["streams"]), "pass" if r["passed"] else "FAIL",
                  "" if r["min_stream_fps"] is None else f"{r['min_stream_fps']:.1f}",
                  "" if r["e2e_p99"] is None else f"{r['e2e_p99'] * 1e3:.0f}", _pct(r["dropped_ratio"]),
                  r["bottleneck"] or "", r["why"] or "", style=None if r["passed"] else "red")
    console.print(t)
    console.print(summary_line(doc), soft_wrap=True)
    naive = doc["naive_estimate"]
    if naive["model_only_fps"]:
        console.print(f"naive estimate: {naive['model_only_fps']:.0f} FPS model-only / {doc['target_fps']:g} FPS "
                      f"= {naive['streams']} streams; {doc['naive_vs_measured']}", soft_wrap=True)
    if doc["command"]:
        console.print(f"reproduce: {doc['command']}", soft_wrap=True)


def summary_line(doc: dict[str, Any]) -> str:
    n, fps = doc["max_streams"], doc["target_fps"]
    criteria = f"p99 <= {doc['max_latency_seconds'] * 1e3:g} ms, drops <= {doc['max_drop'] * 100:g}%"
    gave = doc["gave_out_at"]
    if n == 0:
        head = f"max streams: 0; even 1 stream at {fps:g} FPS fails ({criteria})"
    else:
        head = f"max streams: {n} at {fps:g} FPS each ({criteria})"
    if gave is None:
        return head + (f"; no failure up to --max-streams {n}" if n else "")
    stage = gave["stage"] or "the run"
    if n == 0:
        return f"{head}: {stage} gave out ({gave['why']})"
    return f"{head}; at {gave['streams']} streams {stage} gave out ({gave['why']})"


def run_density(args: argparse.Namespace) -> int:
    from vidprof.profiling import report

    validate(args)
    if args.report:
        report.check_writable(args.report, "--report")  # fail before minutes of trials, not after
    check_run_settings(args)
    opts = resolve(args)
    if opts.model is None:
        from vidprof.samples.assets import RANDOM_WEIGHTS_NOTE
        print(f"vidprof: note: {RANDOM_WEIGHTS_NOTE}", file=sys.stderr)

    def started(n: int) -> None:
        if not args.quiet:
            print(f"vidprof: trying {n} stream{'s' if n > 1 else ''} at {opts.target_fps:g} FPS for "
                  f"{opts.trial_seconds:g} s ...", file=sys.stderr, flush=True)

    def finished(row: dict[str, Any]) -> None:
        if not args.quiet:
            verdict = "pass" if row["passed"] else f"fail: {row['why']}"
            plural = "s" if row["streams"] > 1 else ""
            print(f"vidprof: {row['streams']} stream{plural}: {verdict}", file=sys.stderr, flush=True)

    state = Search()
    try:
        search(opts, state, on_trial=finished, on_start=started, debug=args.debug)
    except KeyboardInterrupt:
        # Keep what was measured: the trials so far are still true, the result only a lower bound.
        if args.report and state.rows:
            report.write_json(args.report, build_doc(opts, state, interrupted=True))
        raise
    doc = build_doc(opts, state)
    render(doc)
    if args.report:
        report.write_json(args.report, doc)
        print(f"vidprof: report written to {args.report}", file=sys.stderr)
    return 0
