"""The ``vidprof`` command line. ``main(argv) -> int`` never raises for a user's mistake.

Exit codes: 0 ok; 1 runtime failure (missing file, broken model, busy port, failed frames, a fault);
2 usage error (an impossible setting); 130 interrupted with Ctrl-C (the report is still written).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, cast

if TYPE_CHECKING:
    from vidprof.pipeline.config import RunConfig
    from vidprof.profiling.report import RunReport

from vidprof.pipeline import __version__, signals
from vidprof.pipeline.density import add_density_arguments  # argparse only: imports no OpenVINO
from vidprof.profiling import native_log
from vidprof.profiling.errors import RunError, UsageError, VidprofError

DEFAULT_METRICS_PORT = 9464


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"vidprof: error: {message}; see `{self.prog} --help`\n")


def _floats(what: str):
    def parse(text: str) -> tuple[float, ...]:
        try:
            return tuple(float(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers for {what}, got {text!r}") from None
    return parse


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("source")
    src.add_argument("--source", action="append", default=[],
                     help="video file, camera index or /dev/videoN, rtsp:// udp:// http:// URL, image folder or glob, "
                     "or synthetic:WxH@FPS (default: the embedded 720p sample clip); repeat for several streams "
                     "through one model")
    src.add_argument("--copies", type=int, default=1,
                     help="repeat the source(s) as N independent streams, each with its own decoder (default 1)")
    src.add_argument("--stream", action="append", default=[], metavar="NAME",
                     help="the stream label of each stream, in order (repeatable; default 0, 1, ...)")
    src.add_argument("--frames", type=int, help="stop each stream after N frames")
    src.add_argument("--duration", type=_seconds, help="stop capturing after this many seconds")
    src.add_argument("--loop", action="store_true", help="restart a file or image folder at its end")
    src.add_argument("--realtime", action="store_true",
                     help="pace a file or synthetic source at its FPS, like a camera (drops frames when behind)")
    src.add_argument("--realtime-fps", type=float, metavar="FPS",
                     help="pace files and synthetic sources at this FPS instead of their own (implies --realtime)")
    src.add_argument("--open-timeout", type=_seconds, default=5.0, metavar="S",
                     help="seconds a network stream may take to open (default 5; FFmpeg's own is 30)")
    src.add_argument("--read-timeout", type=_seconds, default=5.0, metavar="S",
                     help="seconds a live stream may go without a frame before it counts as lost (default 5)")
    src.add_argument("--reconnect", action=argparse.BooleanOptionalAction, default=True,
                     help="reconnect a lost camera or stream with a doubling backoff and go on (default: on); "
                          "--no-reconnect ends that stream as a fault")
    src.add_argument("--reconnect-delay", type=_seconds, default=1.0, metavar="S",
                     help="first wait before reconnecting, doubled after each failed attempt up to 30 s (default 1)")
    mod = p.add_argument_group("model and inference")
    mod.add_argument("--model", help="OpenVINO IR .xml, ONNX, TFLite, ... (default: the embedded sample detector)")
    mod.add_argument("--device", default="CPU", help="CPU (default), GPU, NPU, AUTO, ...")
    mod.add_argument("--hint", default="throughput",
                     help="latency | throughput (default) | cumulative_throughput | none")
    mod.add_argument("--streams", type=int, help="number of inference streams (default: the device's choice)")
    mod.add_argument("--nireq", type=int, help="number of infer requests (default: the device's optimal number)")
    mod.add_argument("--infer-precision", help="f32 | f16 | bf16 (default: the device's; bf16 on CPUs that have it)")
    mod.add_argument("--cache-dir", help="OpenVINO model cache folder (faster compile on later runs)")
    mod.add_argument("--sync", action="store_true", help="one synchronous request at a time, for comparison")
    mod.add_argument("--zero-copy", action=argparse.BooleanOptionalAction, default=True,
                     help="share the input tensor with the frame's memory instead of copying it (default: on)")
    mod.add_argument("--perf-counters", action="store_true", help="enable OpenVINO PERF_COUNT")
    pre = p.add_argument_group("preprocessing")
    pre.add_argument("--preprocess", default="separate", help="separate (default) | fused | host")
    pre.add_argument("--model-color", default="bgr", help="channel order the model expects: bgr (default) | rgb")
    pre.add_argument("--mean", type=_floats("--mean"), help="per-channel mean to subtract, e.g. 123.7,116.3,103.5")
    pre.add_argument("--scale", type=_floats("--scale"), help="per-channel divisor, e.g. 58.4,57.1,57.4")
    post = p.add_argument_group("postprocessing")
    post.add_argument("--postprocess", default="auto",
                      help="auto (default) | detection | ssd | classification | passthrough")
    post.add_argument("--threshold", type=float, default=0.5, help="score threshold (default 0.5)")
    post.add_argument("--iou", type=float, default=0.5, help="NMS IoU threshold (default 0.5)")
    post.add_argument("--top-k", type=int, default=5, help="classes kept by classification (default 5)")
    prof = p.add_argument_group("profiling and output")
    prof.add_argument("--inject", action="append", default=[], metavar="STAGE=DURATION",
                      help="what-if delay in a stage, e.g. postprocess=8ms; decode=busy:5ms burns CPU (repeatable)")
    prof.add_argument("--report", help="write the summary as JSON to this file (also on Ctrl-C or a fault)")
    prof.add_argument("--metrics-host", default="127.0.0.1", help="address for /metrics (default 127.0.0.1)")
    prof.add_argument("--web-config", metavar="FILE",
                      help="serve /metrics over TLS and/or with basic auth, from a web config file as node_exporter "
                           "takes it (tls_server_config, basic_auth_users); see docs/security.md")
    prof.add_argument("--metrics-port", type=int,
                      help=f"port for /metrics (default {DEFAULT_METRICS_PORT}, or a free one if it is busy; "
                           "0 picks a free port)")
    prof.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    prof.add_argument("--linger", type=_seconds, default=0.0,
                      help="keep serving /metrics this many seconds after the run, for a last scrape")
    prof.add_argument("--pushgateway", metavar="URL",
                      help="push metrics to this Prometheus Pushgateway during and at the end of the run")
    prof.add_argument("--push-interval", type=_seconds, default=10.0,
                      help="seconds between pushes while running (default 10)")
    prof.add_argument("--metrics-textfile", metavar="PATH",
                      help="write the final metrics here for node_exporter's textfile collector (*.prom)")
    prof.add_argument("--pipeline-name", help="the pipeline label on every series (default: from the source)")
    prof.add_argument("--queue-size", type=int, default=4, help="frames each queue between stages holds (default 4)")
    prof.add_argument("--warmup", type=int, default=0,
                      help="inference rounds per request on a blank frame before measuring (default 0: the "
                           "first frame pays the first-inference cost, as in a real start)")
    prof.add_argument("--model-only-seconds", type=_seconds, default=0.0,
                      help="after the run, measure the model alone on a pre-made input for this long "
                           "(benchmark_app's way) and report model_only_fps beside the end-to-end FPS")
    prof.add_argument("--dump-outputs", metavar="PATH.npz",
                      help="save every frame's raw outputs (for accuracy comparisons, e.g. by vidprof tune)")
    prof.add_argument("--quiet", action="store_true", help="no progress line")
    prof.add_argument("--debug", action="store_true", help="show tracebacks")


# The `vidprof run` options `vidprof tune` takes too: what every configuration of a sweep shares (a --grid
# key overrides its own). add_run_arguments declares them for both commands, so their help, types and
# defaults cannot drift apart; the rest of run's options are run's alone or have a meaning of tune's own.
TUNE_SHARED_OPTIONS = frozenset({
    "--source", "--copies", "--stream", "--loop", "--realtime", "--realtime-fps",
    "--open-timeout", "--read-timeout", "--reconnect", "--reconnect-delay",
    "--model", "--device", "--hint", "--streams", "--nireq", "--infer-precision", "--cache-dir", "--sync",
    "--zero-copy", "--perf-counters",
    "--preprocess", "--model-color", "--mean", "--scale",
    "--postprocess", "--threshold", "--iou", "--top-k",
    "--inject", "--queue-size",
})


class _Only:
    """Stands in for a parser, or one of its groups, in ``add_run_arguments``: declares only ``flags``
    and drops the rest (an argument group left empty is not shown in the help)."""

    def __init__(self, target: Any, flags: frozenset[str]) -> None:
        self._target, self._flags = target, flags

    def add_argument_group(self, *args: Any, **kwargs: Any) -> _Only:
        return _Only(self._target.add_argument_group(*args, **kwargs), self._flags)

    def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action | None:
        return self._target.add_argument(*names, **kwargs) if names[0] in self._flags else None


def add_tune_arguments(p: argparse.ArgumentParser) -> None:
    own = p.add_argument_group("sweep")
    own.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                     help="a setting to vary (repeatable): hint, streams, nireq, preprocess, infer_precision, "
                          "zero_copy, device, sync, batch")
    own.add_argument("--frames", type=int, default=300, help="frames per stream of each configuration (default 300)")
    own.add_argument("--repeat", type=int, default=1, help="runs per configuration, interleaved (default 1)")
    own.add_argument("--max-latency-ms", type=float, help="p99 end-to-end budget for the recommendation")
    own.add_argument("--reference",
                     help="the configuration results are compared with (default: f32, sync, and host "
                          "preprocessing when the grid varies preprocess, else the sweep's own placement)")
    own.add_argument("--min-agreement", type=float, default=0.99,
                     help="share of results that must match the reference; below it a configuration is flagged "
                          "as changing results and never recommended (default 0.99)")
    own.add_argument("--warmup", type=int, default=5, help="warm-up rounds per request, not counted (default 5)")
    own.add_argument("--model-only-seconds", type=_seconds, default=2.0,
                     help="seconds of model-only measurement per configuration (default 2)")
    out = p.add_argument_group("output")
    out.add_argument("--report", help="write the sweep as JSON")
    out.add_argument("--csv", help="write the table as CSV")
    out.add_argument("--pushgateway", metavar="URL", help="push each configuration's figures with a config label")
    out.add_argument("--pipeline-name", default="tune", help="the pipeline label for --pushgateway (default tune)")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    out.add_argument("--debug", action="store_true", help="show tracebacks")
    # Then run's own definitions of the shared settings, in run's groups; add_run_arguments only needs
    # add_argument_group and add_argument, which _Only provides.
    add_run_arguments(cast(argparse.ArgumentParser, _Only(p, TUNE_SHARED_OPTIONS)))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vidprof", description="End-to-end video pipeline profiler for OpenVINO.")
    parser.add_argument("--version", action="version", version=f"vidprof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = sub.add_parser("run", help="profile decode -> preprocess -> inference -> postprocess")
    add_run_arguments(run)
    tune = sub.add_parser("tune", help="sweep run settings, measure each end to end, and recommend one",
                          description="Sweep `vidprof run` settings: each configuration of the --grid runs as its "
                                      "own `vidprof run` on the same frames. The source, model and processing "
                                      "options are run's, shared by every configuration; a --grid key overrides "
                                      "the option of the same name.")
    add_tune_arguments(tune)
    dens = sub.add_parser("density", help="find how many real-time streams of a source one model sustains")
    add_density_arguments(dens)
    rep = sub.add_parser("report", help="render a saved JSON report (the Grafana panels, offline)")
    rep.add_argument("report", help="a JSON file written by `vidprof run --report`")
    rep.add_argument("--html", metavar="OUT", help="write an HTML page with the panels drawn as pictures")
    rep.add_argument("--png", metavar="OUT", help="write the panels as one PNG image")
    rep.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def config_from_args(a: argparse.Namespace, metrics_port: int | None) -> RunConfig:
    # Imported here: they pull in OpenVINO, which `vidprof report` does not need.
    from vidprof.pipeline.config import Injection, RunConfig
    from vidprof.stages.inference import InferenceOptions
    from vidprof.stages.postprocess import PostprocessOptions
    from vidprof.stages.preprocess import PreprocessOptions

    return RunConfig(
        sources=tuple(a.source), model=a.model, frames=a.frames, duration=a.duration, loop=a.loop,
        realtime=a.realtime or a.realtime_fps is not None, realtime_fps=a.realtime_fps, copies=a.copies,
        open_timeout=a.open_timeout, read_timeout=a.read_timeout, reconnect=a.reconnect,
        reconnect_delay=a.reconnect_delay,
        preprocess=a.preprocess,
        preprocess_options=PreprocessOptions(a.model_color, a.mean, a.scale),
        inference=InferenceOptions(a.device, a.hint, a.streams, a.nireq, a.infer_precision, a.cache_dir, a.sync,
                                   a.zero_copy, a.perf_counters),
        postprocess=PostprocessOptions(a.postprocess, a.threshold, a.iou, a.top_k),
        inject=tuple(Injection.parse(x) for x in a.inject),
        metrics_host=a.metrics_host, metrics_port=metrics_port, report=a.report,
        pipeline_name=a.pipeline_name, stream_names=tuple(a.stream), queue_size=a.queue_size,
        warmup=a.warmup, keep_outputs=bool(a.dump_outputs),
    )


def _err(message: str) -> None:
    print(f"vidprof: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    debug = getattr(args, "debug", False)
    if args.command in ("run", "tune", "density"):
        # FFmpeg's, OpenCV's and OpenVINO's own log lines go to a private file, not over vidprof's output.
        native_log.LOG.start()
    signals.install()
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "report":
            return _report(args)
        if args.command == "tune":
            return _tune(args)
        if args.command == "density":
            from vidprof.pipeline.density import run_density

            return run_density(args)
    except VidprofError as e:
        if debug:
            traceback.print_exc()
        _err(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        _err(signals.received() or "interrupted")
        return signals.exit_code()
    except Exception as e:  # a bug, not a user mistake: say so, keep the traceback behind --debug
        if debug:
            traceback.print_exc()
        _err(f"unexpected {type(e).__name__}: {e} (a vidprof bug; rerun with --debug and report it)")
        return 1
    return 2


def _run(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

    from vidprof.pipeline.runner import Runner
    from vidprof.profiling import exporter, report
    from vidprof.profiling.console import ProgressLine, render_summary
    from vidprof.profiling.push import Pusher, write_textfile
    from vidprof.profiling.web_config import load_web_config
    from vidprof.samples.assets import RANDOM_WEIGHTS_NOTE
    from vidprof.stages.inference import model_only_fps

    if args.linger < 0:
        raise UsageError(f"--linger {args.linger}: expected a number of seconds >= 0")
    if args.model_only_seconds < 0:
        raise UsageError(f"--model-only-seconds {args.model_only_seconds}: expected a number of seconds >= 0")
    if args.push_interval <= 0:
        raise UsageError(f"--push-interval {args.push_interval}: expected a positive number of seconds")
    explicit_port = args.metrics_port is not None
    port = None if args.no_metrics else (args.metrics_port if explicit_port else DEFAULT_METRICS_PORT)
    config = config_from_args(args, port)
    for flag, path in (("--report", config.report), ("--metrics-textfile", args.metrics_textfile),
                       ("--dump-outputs", args.dump_outputs)):
        if path:  # fail before the run, not after it
            report.check_writable(path, flag)

    if args.web_config and args.no_metrics:
        raise UsageError("--web-config with --no-metrics: there is no /metrics to secure; drop one of them")
    web_config = load_web_config(args.web_config) if args.web_config else None  # a bad file fails before the run

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    server = None
    busy_note = None
    if config.metrics_port is not None:
        # Bound now, so a busy port fails before a long compile; announced once the run can start.
        try:
            server = exporter.serve(registry, config.metrics_host, config.metrics_port, web_config)
        except VidprofError:
            if explicit_port:
                raise
            server = exporter.serve(registry, config.metrics_host, 0, web_config)
            busy_note = f"port {DEFAULT_METRICS_PORT} is busy; serving metrics on a free port instead"

    runner = Runner(config, registry)
    model_only: float | None = None
    pusher = None
    progress = ProgressLine() if not args.quiet else None
    error: VidprofError | None = None
    try:
        try:
            runner.prepare()
        except BaseException:
            if server is not None:
                server.close()
            raise
        # Only now that sources and model are checked: nothing of a successful start before an error.
        if busy_note:
            print(f"vidprof: {busy_note}", file=sys.stderr)
        if server is not None:
            print(f"vidprof: metrics at {server.url}", file=sys.stderr)
        if config.model is None:
            print(f"vidprof: note: {RANDOM_WEIGHTS_NOTE}", file=sys.stderr)
        if args.pushgateway:
            pusher = Pusher(args.pushgateway, registry, runner.pipeline_name, interval=args.push_interval)
            pusher.start()
        signals.arm()
        try:
            runner.run(on_progress=progress)
        finally:
            signals.disarm()  # the report, textfile and final push are written whatever comes next
        if args.model_only_seconds > 0 and not runner.info.interrupted and runner.info.fault is None:
            try:
                model_only = model_only_fps(runner.compiled, runner.nireq, runner.premade_input,
                                            args.model_only_seconds, config.inference.sync)
            except KeyboardInterrupt:  # the run itself is measured: keep it, skip the extra figure
                runner.info.interrupted = True
    except VidprofError as e:
        error = e
    finally:
        if progress is not None:
            progress.finish()
        if server is not None and (error is not None or not runner.prepared):
            server.close()
            server = None
    if error is not None and not runner.prepared:
        raise error  # nothing was measured yet: just the error
    rep = dataclasses.replace(runner.summary().run_report, model_only_fps=model_only,
                              native_log=native_log.LOG.summary())
    render_summary(rep)
    if args.dump_outputs:
        dump_outputs(args.dump_outputs, runner.kept)
    if config.report:
        report.write_report(config.report, rep)
        print(f"vidprof: report written to {config.report}", file=sys.stderr)
    if args.metrics_textfile:
        write_textfile(args.metrics_textfile, registry)
    if pusher is not None:
        pusher.finish()  # raises a RunError if the final push fails: those figures would be lost
    if server is not None:
        signals.arm()  # SIGTERM ends the linger like Ctrl-C
        _linger(server, args.linger)
    if error is not None:
        raise error
    return _exit_status(rep, runner.info.interrupted)


def _exit_status(rep: RunReport, interrupted: bool) -> int:
    """The run's exit code, with one line on stderr for anything but success."""
    outages = {label: st.outage_count for label, st in rep.streams.items() if st.outage_count}
    if outages:
        print("vidprof: warning: source outage(s): " + ", ".join(
            f"stream {label}: {n} ({rep.streams[label].reconnects} reconnected)" for label, n in outages.items()),
            file=sys.stderr)
    if rep.fault:
        _err(rep.fault)
        return 1
    if interrupted:
        how = signals.received() or "interrupted"
        _err(f"{how}; the figures above cover what ran until then")
        return signals.exit_code()
    # Damaged frames are the input's, not a failure of the pipeline: said, but not an error.
    damaged = sum(st.failed_reasons.get("damaged", 0) for st in rep.streams.values())
    if rep.frames.failed > damaged:
        _err(f"{rep.frames.failed - damaged} frames failed; first error: {rep.first_error}")
        return 1
    if damaged:
        print(f"vidprof: warning: {damaged} damaged frames could not be decoded and were counted as failed "
              "(the input is damaged; the figures cover the frames FFmpeg could decode)", file=sys.stderr)
    if rep.frames.completed == 0:
        _err("no frame completed; check the source")
        return 1
    return 0


def tune_base(args: argparse.Namespace) -> RunConfig:
    """What every configuration of a sweep shares, from tune's options, by run's own code: the options
    tune shares with run are copied onto a `vidprof run` with nothing else given, and tune's --frames."""
    run = build_parser().parse_args(["run"])
    for flag in TUNE_SHARED_OPTIONS:
        dest = flag.removeprefix("--").replace("-", "_")
        setattr(run, dest, getattr(args, dest))
    run.frames = args.frames
    return config_from_args(run, None)


def _tune(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from vidprof.pipeline import tuner
    from vidprof.profiling import report
    from vidprof.profiling.console import render_tune

    if not args.grid:
        raise UsageError("vidprof tune needs at least one --grid KEY=V1,V2,..., e.g. --grid nireq=1,2,4")
    grid = tuner.parse_grid(args.grid)
    base = tune_base(args)  # the same checks as `vidprof run` with these options
    if args.reference is not None:
        reference = tuner.parse_settings(args.reference)
    else:
        # Compare only what the grid varies: when it does not vary the placement, the reference uses the
        # sweep's own, or every configuration would differ from it by interpolation rounding alone.
        placement = "host" if "preprocess" in grid else base.preprocess
        reference = {"infer_precision": "f32", "preprocess": placement, "sync": "true"}
    opts = tuner.TuneOptions(grid, base, reference, args.repeat, args.warmup, args.model_only_seconds,
                             args.max_latency_ms / 1e3 if args.max_latency_ms is not None else None,
                             args.min_agreement)
    for flag, path in (("--report", args.report), ("--csv", args.csv)):
        if path:
            report.check_writable(path, flag)
    settings = [*tuner.configurations(grid), reference]
    # Bad settings fail here, before anything runs: each configuration's RunConfig checks itself...
    configs = [(s, tuner.apply(base, s)) for s in settings]
    # ...and the device checks its own, one compile per distinct device setting.
    tuner.preflight(base, configs)
    n = len(settings) - 1
    print(f"vidprof: tuning {n} configurations x {args.repeat} repeat(s) + the reference, "
          f"{args.frames} frames each", file=sys.stderr)
    with Progress(disable=args.quiet, transient=True) as progress:
        task = progress.add_task("tuning", total=1 + n * args.repeat)
        doc = tuner.sweep(opts, on_step=lambda what: progress.update(task, advance=1, description=what[:60]))
    render_tune(doc)
    if args.report:
        report.write_json(args.report, doc)
        print(f"vidprof: report written to {args.report}", file=sys.stderr)
    if args.csv:
        tuner.write_csv(args.csv, doc)
        print(f"vidprof: table written to {args.csv}", file=sys.stderr)
    if args.pushgateway:
        from vidprof.profiling.push import push_tune_results
        push_tune_results(args.pushgateway, doc, args.pipeline_name)
    return 0


def _report(args: argparse.Namespace) -> int:
    from vidprof.profiling.console import render_summary
    from vidprof.profiling.report import read_report

    rep = read_report(args.report)  # a RunReport: its shape is checked here, once, for every renderer
    if not args.html and not args.png:
        render_summary(rep)
        return 0
    try:
        from vidprof.profiling import html_report
    except ImportError as e:  # matplotlib is an optional extra
        raise UsageError(f"drawing a report needs matplotlib ({e.name} is missing); "
                         "install it with `pip install 'vidprof[report]'`") from e
    if args.html:
        html_report.write_html(rep, args.html)
        print(f"vidprof: wrote {args.html}", file=sys.stderr)
    if args.png:
        html_report.write_png(rep, args.png)
        print(f"vidprof: wrote {args.png}", file=sys.stderr)
    return 0


def dump_outputs(path: str, kept: dict) -> None:
    """One npz: f{index}_o{k} for each raw output, f{index}_r for the decoded result when it is an array;
    streams after the first are prefixed s{stream}. (``vidprof tune`` compares stream 0.)"""
    import numpy as np

    arrays = {}
    for stream, frames in kept.items():
        prefix = f"s{stream}" if stream else ""
        for index, (outputs, result) in frames.items():
            for k, out in enumerate(outputs):
                arrays[f"{prefix}f{index}_o{k}"] = out
            if isinstance(result, np.ndarray):
                arrays[f"{prefix}f{index}_r"] = result
    try:
        np.savez_compressed(path, **arrays)
    except OSError as e:
        raise RunError(f"--dump-outputs {path}: cannot write ({e.strerror or e}); choose a writable path") from e


def _linger(server: object, seconds: float) -> None:
    """Keep /metrics up so a scraper sees the final values of a short run; Ctrl-C ends it early."""
    import time

    try:
        if seconds > 0:
            print(f"vidprof: serving final metrics for {seconds:g} s", file=sys.stderr)
            time.sleep(seconds)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()  # type: ignore[attr-defined]


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
