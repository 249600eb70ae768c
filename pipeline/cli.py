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
    from vidprof.profiling.trace import TraceRecorder

from vidprof.pipeline import __version__, signals
from vidprof.pipeline.density import add_density_arguments  # argparse only: imports no OpenVINO
from vidprof.pipeline.optimize_args import DEFAULT_CALIBRATION_FRAMES, add_optimize_arguments  # argparse only
from vidprof.pipeline.top_args import add_top_arguments  # argparse only
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
    mod.add_argument("--runtime", default="openvino",
                     help="openvino (default) | onnxruntime: ONNX Runtime's CPU provider runs an .onnx model in the "
                          "same pipeline, for comparison (needs vidprof[onnxruntime])")
    mod.add_argument("--device", default="CPU", help="CPU (default), GPU, NPU, AUTO, ...")
    mod.add_argument("--hint", default="throughput",
                     help="latency | throughput (default) | cumulative_throughput | none")
    mod.add_argument("--streams", type=int, help="number of inference streams (default: the device's choice)")
    mod.add_argument("--nireq", type=int, help="number of infer requests (default: the device's optimal number)")
    mod.add_argument("--infer-precision", help="f32 | f16 | bf16 (default: the device's; bf16 on CPUs that have it)")
    mod.add_argument("--cache-dir", help="OpenVINO model cache folder (faster compile on later runs)")
    mod.add_argument("--sync", action="store_true", help="one synchronous request at a time, for comparison")
    mod.add_argument("--zero-copy", action=argparse.BooleanOptionalAction, default=True,
                     help="share the input tensor with the frame's memory, and let the request write the outputs into "
                          "the frame's own arrays, instead of copying each way (default: on)")
    mod.add_argument("--perf-counters", action="store_true", help="enable OpenVINO PERF_COUNT")
    mod.add_argument("--batch", type=int, default=1, metavar="N",
                     help="frames per infer request, from one stream or across streams (default 1); each "
                          "frame's wait for its batch counts as its wait for an infer request")
    mod.add_argument("--batch-timeout", type=_seconds, default=0.01, metavar="S",
                     help="seconds a partial batch waits for more frames before it runs as it is (default 0.01)")
    pre = p.add_argument_group("preprocessing")
    pre.add_argument("--preprocess", default="separate", help="separate (default) | fused | host")
    pre.add_argument("--model-color", default="bgr", help="channel order the model expects: bgr (default) | rgb")
    pre.add_argument("--mean", type=_floats("--mean"), help="per-channel mean to subtract, e.g. 123.7,116.3,103.5")
    pre.add_argument("--scale", type=_floats("--scale"), help="per-channel divisor, e.g. 58.4,57.1,57.4")
    post = p.add_argument_group("postprocessing")
    post.add_argument("--postprocess", default="auto",
                      help="auto (default) | detection | ssd | classification | probability_map | passthrough")
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
    prof.add_argument("--trace", metavar="FILE.pftrace",
                      help="write a Perfetto trace (open it at ui.perfetto.dev): each frame's stages, queue waits "
                           "and infer request, on one track per stage and per request; see docs/trace.md")
    prof.add_argument("--trace-frames", type=int, metavar="N",
                      help="the trace keeps frames 0 to N-1 of each stream (default 2000), plus the --slowest "
                           "frames of each stream and the frames that overlapped them")
    prof.add_argument("--slowest", type=int, default=5, metavar="K",
                      help="list each stream's K slowest frames end to end in the summary and report, with the "
                           "part that made each slow (default 5; 0: none)")
    prof.add_argument("--quiet", action="store_true",
                      help="no live table (on a terminal) or progress line (in a file or pipe)")
    prof.add_argument("--debug", action="store_true", help="show tracebacks")


# The `vidprof run` options `vidprof tune` takes too: what every configuration of a sweep shares (a --grid
# key overrides its own). add_run_arguments declares them for both commands, so their help, types and
# defaults cannot drift apart; the rest of run's options are run's alone or have a meaning of tune's own
# (--realtime: on by default with a latency budget, and then pacing only the runs that measure latency).
TUNE_SHARED_OPTIONS = frozenset({
    "--source", "--copies", "--stream", "--loop", "--realtime-fps",
    "--open-timeout", "--read-timeout", "--reconnect", "--reconnect-delay",
    "--model", "--runtime", "--device", "--hint", "--streams", "--nireq", "--infer-precision", "--cache-dir", "--sync",
    "--zero-copy", "--perf-counters", "--batch", "--batch-timeout",
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
                          "zero_copy, device, sync, batch, model (original, int8 or a PATH), runtime (openvino, "
                          "onnxruntime)")
    own.add_argument("--calibration-frames", type=int, default=DEFAULT_CALIBRATION_FRAMES, metavar="N",
                     help="with --grid model=...,int8: frames drawn evenly from the source to calibrate the INT8 "
                          "variant on, through the run's preprocessing (default %(default)s; needs vidprof[optimize])")
    own.add_argument("--frames", type=int, default=300, help="frames per stream of each configuration (default 300)")
    own.add_argument("--repeat", type=int, default=1, help="runs per configuration, interleaved (default 1)")
    own.add_argument("--max-latency-ms", type=float,
                     help="p99 end-to-end budget for the recommendation; latency is then measured with frames "
                          "paced like a camera's (see --realtime)")
    own.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                     help="measure latency with frames paced at the source's FPS (or --realtime-fps), like a "
                          "camera's: each configuration runs twice, as fast as the source decodes for its FPS and "
                          "paced for its latency. Default: on with --max-latency-ms or --realtime-fps; "
                          "--no-realtime measures latency as fast as the source decodes, backlog included")
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
    opt = sub.add_parser("optimize", help="quantise a model to INT8, calibrated on frames of your source",
                         description="Write an INT8 copy of --model (NNCF post-training quantisation, needs "
                                     "vidprof[optimize]), calibrated on --calibration-frames frames drawn evenly "
                                     "from --source through the run's preprocessing. `vidprof tune --grid "
                                     "model=original,int8` measures it beside the original.")
    add_optimize_arguments(opt)
    rep = sub.add_parser("report", help="print a saved run's summary again, or draw its panels (--html, --png)",
                         description="Without --html or --png: print the summary of a run saved with "
                                     "`vidprof run --report` again, as the run printed it. With them: draw the "
                                     "Grafana panels from it, offline.")
    rep.add_argument("report", help="a JSON file written by `vidprof run --report`")
    rep.add_argument("--html", metavar="OUT", help="write an HTML page with the panels drawn as pictures")
    rep.add_argument("--png", metavar="OUT", help="write the panels as one PNG image")
    rep.add_argument("--debug", action="store_true", help="show tracebacks")
    smp = sub.add_parser("samples", help="print the paths of the embedded sample clip and model",
                         description="Print the path of the embedded sample clip, then of the sample model (an "
                                     "OpenVINO IR .xml, its .bin beside it), one a line, making them first if this "
                                     "is their first use. `vidprof run` uses them when --source or --model is not "
                                     "given; they live in $XDG_CACHE_HOME/vidprof (~/.cache/vidprof).")
    smp.add_argument("--debug", action="store_true", help="show tracebacks")
    top = sub.add_parser("top", help="watch running vidprofs live from their /metrics: per stream and stage, "
                                     "p50, p99, busy, FPS, drops",
                         description="Read each URL's /metrics every --interval seconds and show, per stream and "
                                     "stage, what happened in between: p50 and p99 latency (from the histogram "
                                     "buckets), busy share, FPS and dropped frames. Ctrl-C ends it.")
    add_top_arguments(top)
    return parser


def config_from_args(a: argparse.Namespace, metrics_port: int | None) -> RunConfig:
    # Imported here: they pull in OpenVINO, which `vidprof report` does not need.
    from vidprof.pipeline.config import Injection, RunConfig
    from vidprof.stages.inference import InferenceOptions
    from vidprof.stages.postprocess import PostprocessOptions
    from vidprof.stages.preprocess import PreprocessOptions

    return RunConfig(
        sources=tuple(a.source), model=a.model, runtime=a.runtime, frames=a.frames, duration=a.duration, loop=a.loop,
        realtime=a.realtime or a.realtime_fps is not None, realtime_fps=a.realtime_fps, copies=a.copies,
        open_timeout=a.open_timeout, read_timeout=a.read_timeout, reconnect=a.reconnect,
        reconnect_delay=a.reconnect_delay,
        preprocess=a.preprocess,
        preprocess_options=PreprocessOptions(a.model_color, a.mean, a.scale),
        inference=InferenceOptions(a.device, a.hint, a.streams, a.nireq, a.infer_precision, a.cache_dir, a.sync,
                                   a.zero_copy, a.perf_counters, a.batch, a.batch_timeout),
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
    if args.command in ("run", "tune", "density", "optimize"):
        # FFmpeg's, OpenCV's and OpenVINO's own log lines go to a private file, not over vidprof's output.
        native_log.LOG.start()
        _no_created_series()
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
        if args.command == "optimize":
            from vidprof.pipeline.optimize import run_optimize

            return run_optimize(args)
        if args.command == "samples":
            return _samples()
        if args.command == "top":
            from vidprof.pipeline.top import run_top

            return run_top(args)
    except VidprofError as e:
        if debug:
            traceback.print_exc()
        _err(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        _err(signals.received() or "interrupted")
        return signals.exit_code()
    except BrokenPipeError as e:
        if not _stdout_gone():
            return _unexpected(e, debug)  # a socket, say: not the reader of our output going away
        # `vidprof ... | head -1`: the reader has what it wanted. Nothing to say, and nowhere to say it.
        from vidprof.profiling.console import stdout_closed

        stdout_closed()
        return 0
    except Exception as e:  # a bug, not a user mistake: say so, keep the traceback behind --debug
        return _unexpected(e, debug)
    return 2


def _unexpected(e: Exception, debug: bool) -> int:
    """A bug, not a user mistake: say so, keep the traceback behind --debug."""
    if debug:
        traceback.print_exc()
    _err(f"unexpected {type(e).__name__}: {e} (a vidprof bug; rerun with --debug and report it)")
    return 1


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (poll reports an error on its write end)."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _no_created_series() -> None:
    """prometheus_client adds a ``*_created`` series beside every counter and histogram, holding when it was
    made: for a run, its start, which ``process_start_time_seconds`` holds already. They only crowd every
    list of series: off, once, before any registry is made (prometheus_client >= 0.17 has the switch)."""
    import prometheus_client

    disable = getattr(prometheus_client, "disable_created_metrics", None)
    if disable is not None:
        disable()


def _samples() -> int:
    """The embedded samples' paths, clip first: made now if this is their first use (said on stderr)."""
    from vidprof.samples import assets

    print(assets.sample_clip_path())
    print(assets.sample_model_path())
    return 0


def _run(args: argparse.Namespace) -> int:
    import errno
    import math

    from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

    from vidprof.pipeline.outputs import OutputsWriter
    from vidprof.pipeline.runner import Runner
    from vidprof.profiling import exporter, report
    from vidprof.profiling.console import render_summary
    from vidprof.profiling.live import run_progress
    from vidprof.profiling.push import Pusher, write_textfile
    from vidprof.profiling.web_config import load_web_config
    from vidprof.samples.assets import RANDOM_WEIGHTS_NOTE
    from vidprof.stages.inference import model_only_fps

    # Written so that nan fails too: inf or nan here would fail only after the run (time.sleep, Event.wait).
    if not 0 <= args.linger < math.inf:
        raise UsageError(f"--linger {args.linger}: expected a finite number of seconds >= 0")
    if not 0 <= args.model_only_seconds < math.inf:
        raise UsageError(f"--model-only-seconds {args.model_only_seconds}: expected a finite number of seconds >= 0")
    if not 0 < args.push_interval < math.inf:
        raise UsageError(f"--push-interval {args.push_interval}: expected a positive, finite number of seconds")
    if args.sync and args.nireq is not None and args.nireq != 1:
        raise UsageError(f"--nireq {args.nireq} with --sync: --sync runs one request at a time, so --nireq cannot "
                         "apply; drop --nireq, or drop --sync to run that many requests")
    if args.no_metrics:
        # Settings of the /metrics server that --no-metrics would silently ignore.
        ignored = [flag for flag, given in (("--metrics-port", args.metrics_port is not None),
                                            ("--metrics-host", args.metrics_host != "127.0.0.1"),
                                            ("--linger", args.linger > 0)) if given]
        if ignored:
            raise UsageError(f"{', '.join(ignored)} with --no-metrics: there is no /metrics server to apply "
                             f"{'them' if len(ignored) > 1 else 'it'} to; drop one or the other")
    explicit_port = args.metrics_port is not None
    port = None if args.no_metrics else (args.metrics_port if explicit_port else DEFAULT_METRICS_PORT)
    config = config_from_args(args, port)
    trace = _trace_recorder(args)
    for flag, path in (("--report", config.report), ("--metrics-textfile", args.metrics_textfile),
                       ("--dump-outputs", args.dump_outputs), ("--trace", args.trace)):
        if path is not None:  # fail before the run, not after it ('' too: it would silently write nothing)
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
        except VidprofError as e:
            # Only a busy default port has a way out; a bad --metrics-host fails on any port.
            busy = isinstance(e.__cause__, OSError) and e.__cause__.errno == errno.EADDRINUSE
            if explicit_port or not busy:
                raise
            server = exporter.serve(registry, config.metrics_host, 0, web_config)
            busy_note = f"port {DEFAULT_METRICS_PORT} is busy; serving metrics on a free port instead"

    outputs = OutputsWriter(args.dump_outputs) if args.dump_outputs else None
    runner = Runner(config, registry, outputs=outputs, observe=trace.observe if trace else None, slowest=args.slowest)
    model_only: float | None = None
    pusher = None
    progress = run_progress(runner, args.quiet)  # the live table on a terminal, else the progress line
    error: VidprofError | None = None
    try:
        try:
            runner.prepare()
        except BaseException:
            if server is not None:
                server.close()
            if outputs is not None:
                outputs.discard()  # nothing measured: leave nothing behind
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
    if trace is not None:
        try:  # before the summary, so the report says what the trace holds (config.trace)
            runner.info.config["trace"] = _write_trace(trace, args.trace)
        except VidprofError as e:  # the report still follows; the error is the run's outcome
            error = error or e
    rep = dataclasses.replace(runner.summary().run_report, model_only_fps=model_only,
                              native_log=native_log.LOG.summary())
    render_summary(rep)
    if outputs is not None:
        outputs.close()
    if config.report:
        report.write_report(config.report, rep)
        print(f"vidprof: report written to {config.report}", file=sys.stderr)
    if args.metrics_textfile:
        write_textfile(args.metrics_textfile, registry)
    if server is not None:
        server.refresh()  # scrapes from now on see the final values, not those of up to half a second ago
    if pusher is not None:
        pusher.finish()  # raises a RunError if the final push fails: those figures would be lost
    if server is not None:
        signals.arm()  # SIGTERM ends the linger like Ctrl-C
        _linger(server, args.linger)
    if error is not None:
        raise error
    return _exit_status(rep, runner.info.interrupted)


def _trace_recorder(args: argparse.Namespace) -> TraceRecorder | None:
    """The --trace collector, its bounds checked before the run; None without --trace."""
    from vidprof.profiling.trace import DEFAULT_TRACE_FRAMES, TraceRecorder

    if args.slowest < 0:
        raise UsageError(f"--slowest {args.slowest}: expected 0 or more frames per stream")
    if args.trace is None:
        if args.trace_frames is not None:
            raise UsageError("--trace-frames without --trace: there is no trace to bound; add --trace FILE.pftrace")
        return None
    frames = DEFAULT_TRACE_FRAMES if args.trace_frames is None else args.trace_frames
    if frames < 0:
        raise UsageError(f"--trace-frames {frames}: expected 0 or more frames per stream")
    return TraceRecorder(frames, args.slowest)


def _write_trace(trace: TraceRecorder, path: str) -> dict[str, Any]:
    what = trace.write(path)
    print(f"vidprof: trace written to {path}: {what['frames']} of {what['frames_seen']} frames, the trace keeps "
          f"{what['kept']}", file=sys.stderr)
    return what


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
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vidprof.pipeline import optimize, tuner
    from vidprof.profiling import report
    from vidprof.profiling.console import render_tune
    from vidprof.samples.assets import RANDOM_WEIGHTS_NOTE

    if not args.grid:
        raise UsageError("vidprof tune needs at least one --grid KEY=V1,V2,..., e.g. --grid nireq=1,2,4")
    if args.realtime is False and args.realtime_fps is not None:
        raise UsageError("--no-realtime with --realtime-fps: --realtime-fps paces the latency runs; drop one")
    grid = tuner.parse_grid(args.grid)
    base = tune_base(args)  # the same checks as `vidprof run` with these options
    # A latency budget means something only for frames arriving at a real pace: a file fed as fast as it
    # decodes builds a backlog, and its latency is then mostly queueing behind earlier frames.
    paced = args.realtime if args.realtime is not None else (
        args.max_latency_ms is not None or args.realtime_fps is not None)
    if args.reference is not None:
        reference = tuner.parse_settings(args.reference)
    else:
        # Compare only what the grid varies: when it does not vary the placement, the reference uses the
        # sweep's own, or every configuration would differ from it by interpolation rounding alone.
        placement = "host" if "preprocess" in grid else base.preprocess
        reference = {"infer_precision": "f32", "preprocess": placement, "sync": "true"}
    max_latency = args.max_latency_ms / 1e3 if args.max_latency_ms is not None else None
    opts = tuner.TuneOptions(grid, base, reference, args.repeat, args.warmup, args.model_only_seconds, max_latency,
                             args.min_agreement, paced=paced)
    for flag, path in (("--report", args.report), ("--csv", args.csv)):
        if path is not None:
            report.check_writable(path, flag)
    # model=int8: quantised once, before the sweep (or found in the cache), so every configuration names a file.
    models = optimize.prepare_models(grid.get("model", []), base, optimize.QuantizeSettings(args.calibration_frames),
                                     None if args.quiet else lambda msg: print(f"vidprof: {msg}", file=sys.stderr),
                                     quiet=args.quiet)
    runnable, skipped = tuner.runnable(grid, base, models)
    for s, why in skipped:
        print(f"vidprof: skipping {tuner.label(s)}: {why}", file=sys.stderr)
    settings = [*runnable, reference]
    # Bad settings fail here, before anything runs: each configuration's RunConfig checks itself...
    configs = [(s, tuner.apply(base, s, models)) for s in settings]
    _check_sweep(configs)  # ...what `vidprof run` refuses beyond those checks...
    # ...and the device checks its own, one compile per distinct device setting.
    live = tuner.preflight(base, configs)
    opts = dataclasses.replace(opts, live_source=live, models=models)
    n = len(settings) - 1
    runs = 2 if opts.two_runs else 1
    how = (": each runs twice, as fast as the source decodes (FPS) and paced like a camera (latency)"
           if opts.two_runs else "")
    print(f"vidprof: tuning {n} configurations x {args.repeat} repeat(s) + the reference, "
          f"{args.frames} frames each{how}", file=sys.stderr)
    if base.model is None:
        print(f"vidprof: note: {RANDOM_WEIGHTS_NOTE}", file=sys.stderr)

    def on_step(what: str, finished: bool) -> None:
        # The label names the run starting now, as the table will name it; the bar moves when it ends.
        if finished:
            progress.update(task, advance=1)
        else:
            progress.update(task, description=f"running {what}")

    # The label last: on a narrow terminal it is what gets cut, not the count.
    columns = (BarColumn(bar_width=16), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"))
    # A bar redrawn in place means nothing in a file or pipe: there, the lines above and the table say it all.
    shown = not args.quiet and sys.stderr.isatty()
    with Progress(*columns, disable=not shown, transient=True, console=Console(stderr=True)) as progress:
        task = progress.add_task("starting", total=(1 + n * args.repeat) * runs)
        doc = tuner.sweep(opts, on_step=on_step)
    render_tune(doc)
    optimize.render_variants(models, doc["results"])
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


def _check_sweep(configs: Sequence[tuple[dict[str, str], RunConfig]]) -> None:
    """What `vidprof run` refuses beyond a RunConfig's own checks, for every configuration of a sweep (the
    reference last): each runs as its own `vidprof run`, which would otherwise fail it minutes in."""
    import openvino as ov

    from vidprof.pipeline.build import check_streams
    from vidprof.pipeline.tuner import label

    core = ov.Core()
    for i, (settings, cfg) in enumerate(configs):
        inf = cfg.inference
        if inf.sync and inf.nireq is not None and inf.nireq != 1:
            if i == len(configs) - 1:
                given = "--reference" if "nireq" in settings else "--nireq"
                raise UsageError(f"the reference ({label(settings)}) runs with sync, one request at a time, so "
                                 f"nireq {inf.nireq} from {given} cannot apply to it; give nireq through --grid, "
                                 "or a --reference with sync=false")
            nireq = f"--grid nireq={inf.nireq}" if "nireq" in settings else f"--nireq {inf.nireq}"
            sync = "--grid sync=true" if "sync" in settings else "--sync"
            fix = "sweep nireq without sync=true" if "sync" in settings else "drop --sync or nireq"
            raise UsageError(f"{nireq} with {sync}: --sync runs one request at a time, so nireq cannot apply; {fix}")
        try:
            check_streams(core, inf)
        except VidprofError as e:
            raise type(e)(f"--grid {label(settings)}: {e}" if "streams" in settings else str(e)) from e


def _report(args: argparse.Namespace) -> int:
    import os

    from vidprof.profiling.console import render_summary
    from vidprof.profiling.report import WRITTEN_BY, check_writable, read_report

    # read_report knows a missing file and a file that is not JSON; a folder or an unreadable file would
    # otherwise surface as an OSError from open().
    if os.path.isdir(args.report):
        raise RunError(f"report {args.report}: is a folder; expected a JSON file written by {WRITTEN_BY}")
    if os.path.exists(args.report) and not os.access(args.report, os.R_OK):
        raise RunError(f"report {args.report}: file is not readable; check its permissions")
    rep = read_report(args.report)  # a RunReport: its shape is checked here, once, for every renderer
    for flag, path in (("--html", args.html), ("--png", args.png)):
        if path is not None:  # before drawing: a bad second path must not follow a written first file
            check_writable(path, flag)
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
    code = main()
    try:
        sys.stdout.flush()  # now, not at exit, where a reader that went away would print a traceback
    except BrokenPipeError:
        from vidprof.profiling.console import stdout_closed

        stdout_closed()  # as Python's documentation advises for SIGPIPE; the run's own status stands
    sys.exit(code)


if __name__ == "__main__":
    entry()
