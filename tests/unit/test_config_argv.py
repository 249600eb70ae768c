"""A config turns back into the `vidprof run` arguments that rebuild it, and `vidprof tune` reads the
options it shares with run through run's own definitions."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from vidprof.pipeline.cli import TUNE_SHARED_OPTIONS, build_parser, config_from_args, tune_base
from vidprof.pipeline.config import Injection, RunConfig
from vidprof.profiling.errors import UsageError
from vidprof.stages.inference import InferenceOptions
from vidprof.stages.postprocess import PostprocessOptions
from vidprof.stages.preprocess import PreprocessOptions


def rebuilt(cfg: RunConfig) -> RunConfig:
    return config_from_args(build_parser().parse_args(["run", *cfg.to_argv()]), cfg.metrics_port)


# (id, config): together they change every field a user can set from its default (checked below).
CASES: list[tuple[str, RunConfig]] = [
    ("defaults", RunConfig()),
    ("one-source", RunConfig(sources=("clip.mp4",))),
    ("sources-copies-names", RunConfig(sources=("a.mp4", "rtsp://cam/1", "synthetic:64x48@15"), copies=2,
                                       stream_names=("front", "back", "-dash", "x.y:z"))),
    ("names-for-some-streams", RunConfig(copies=3, stream_names=("first",))),
    ("a-source-that-looks-like-a-flag", RunConfig(sources=("-odd name.mp4",))),
    ("frames", RunConfig(frames=17)),
    ("duration", RunConfig(duration=2.5)),
    ("tiny-duration", RunConfig(duration=1e-7)),
    ("loop-realtime", RunConfig(loop=True, realtime=True)),
    ("realtime-fps", RunConfig(realtime=True, realtime_fps=29.97)),
    ("live-source-options", RunConfig(sources=("rtsp://cam/1",), open_timeout=12.5, read_timeout=0.75,
                                      reconnect=False, reconnect_delay=0.2)),
    ("model", RunConfig(model="/models/det.xml")),
    ("onnxruntime", RunConfig(model="/models/det.onnx", runtime="onnxruntime", preprocess="host",
                              inference=InferenceOptions(nireq=2, sync=False))),
    ("fused-rgb-mean-scale", RunConfig(preprocess="fused", preprocess_options=PreprocessOptions(
        "rgb", (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)))),
    ("negative-mean", RunConfig(preprocess="host", preprocess_options=PreprocessOptions(mean=(-0.5,), scale=(0.1,)))),
    ("inference", RunConfig(inference=InferenceOptions("GPU", "latency", 2, 3, "f16", "/tmp/cache", True, False,
                                                       True))),
    ("hint-none", RunConfig(inference=InferenceOptions(device="AUTO:GPU,CPU", hint="none"))),
    ("cumulative", RunConfig(inference=InferenceOptions(hint="cumulative_throughput", infer_precision="bf16"))),
    ("batch", RunConfig(inference=InferenceOptions(batch=8, batch_timeout=0.025))),
    ("postprocess", RunConfig(postprocess=PostprocessOptions("classification", 0.1 + 0.2, 0.45, 3))),
    ("postprocess-kinds", RunConfig(postprocess=PostprocessOptions("ssd", 0.0, 1.0))),
    ("inject", RunConfig(inject=(Injection("postprocess", 0.008), Injection("decode", 0.005, busy=True)))),
    ("inject-inexact", RunConfig(inject=(Injection("inference", 0.0012345678901),
                                         Injection("preprocess", 1e-8, busy=True)))),
    ("inject-zero", RunConfig(inject=(Injection("decode", 0.0),))),
    ("output", RunConfig(report="out/run.json", pipeline_name="lobby-cam", queue_size=9, warmup=3,
                         metrics_host="0.0.0.0")),
    ("metrics-port-passes-through", RunConfig(metrics_port=0)),
    ("no-metrics", RunConfig(metrics_port=None)),
    ("everything", RunConfig(
        sources=("a.mp4", "b.mp4"), model="m.onnx", frames=100, duration=30.0, loop=True, realtime=True,
        realtime_fps=12.5, copies=2, preprocess="host", preprocess_options=PreprocessOptions("rgb", (1.0,), (2.0,)),
        inference=InferenceOptions("CPU", "latency", 1, 1, "f32", "cache", True, False, True),
        postprocess=PostprocessOptions("detection", 0.25, 0.6, 7), inject=(Injection("inference", 0.02),),
        metrics_host="::1", metrics_port=9999, report="r.json", pipeline_name="p1",
        stream_names=("s0", "s1", "s2", "s3"), queue_size=1, warmup=10)),
]


@pytest.mark.parametrize("cfg", [c for _, c in CASES], ids=[name for name, _ in CASES])
def test_argv_rebuilds_an_equal_config(cfg: RunConfig) -> None:
    assert rebuilt(cfg) == cfg


@pytest.mark.parametrize("cfg", [c for _, c in CASES], ids=[name for name, _ in CASES])
def test_only_settings_that_differ_from_the_default_are_given(cfg: RunConfig) -> None:
    argv = cfg.to_argv()
    # Dropping any one option (with its value) loses a setting: nothing in argv is redundant.
    options = [i for i, a in enumerate(argv) if a.startswith("--")]
    for k, i in enumerate(options):
        end = options[k + 1] if k + 1 < len(options) else len(argv)
        shorter = argv[:i] + argv[end:]
        try:
            assert config_from_args(build_parser().parse_args(["run", *shorter]), cfg.metrics_port) != cfg, \
                argv[i:end]
        except UsageError:  # without it the rest is inconsistent (more stream names than streams): not redundant
            pass


def test_defaults_give_no_arguments() -> None:
    assert RunConfig().to_argv() == []
    assert RunConfig(inference=InferenceOptions(zero_copy=True), queue_size=4).to_argv() == []


def _changed(cfg: RunConfig) -> set[str]:
    """Dotted names of the fields (and the options' fields) that differ from a default RunConfig."""
    out = set()
    default = RunConfig()
    for f in dataclasses.fields(RunConfig):
        value, base = getattr(cfg, f.name), getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            out |= {f"{f.name}.{g.name}" for g in dataclasses.fields(value)
                    if getattr(value, g.name) != getattr(base, g.name)}
        elif value != base:
            out.add(f.name)
    return out


def _settable() -> set[str]:
    names = set()
    for f in dataclasses.fields(RunConfig):
        default: Any = RunConfig()
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            names |= {f"{f.name}.{g.name}" for g in dataclasses.fields(value)}
        else:
            names.add(f.name)
    return names


def test_the_cases_cover_every_field_a_user_can_set() -> None:
    """A field added to RunConfig (or to its options) without a case here, and so perhaps without its
    place in to_argv(), fails this test."""
    # Set by the CLI, not by one option of their own (see RunConfig.to_argv).
    not_argv = {"metrics_port", "keep_outputs"}
    covered = set().union(*(_changed(c) for _, c in CASES))
    assert _settable() - not_argv - covered == set()


def test_values_that_look_like_options_are_glued_to_their_flag() -> None:
    argv = RunConfig(stream_names=("-x",), preprocess_options=PreprocessOptions(mean=(-1.0, 0.5, 2.0))).to_argv()
    assert argv == ["--stream=-x", "--mean=-1.0,0.5,2.0"]


def test_inject_stays_readable_when_exact() -> None:
    assert RunConfig(inject=(Injection("postprocess", 0.008),)).to_argv() == ["--inject", "postprocess=8ms"]
    assert RunConfig(inject=(Injection("decode", 1e-8),)).to_argv() == ["--inject", "decode=0.00000001s"]


# --------------------------------------------------------------------------- tune reads run's definitions
def tune(*argv: str) -> RunConfig:
    return tune_base(build_parser().parse_args(["tune", "--grid", "nireq=1,2", *argv]))


@pytest.mark.parametrize("argv", [
    [],
    ["--source", "a.mp4", "--source", "b.mp4", "--copies", "2", "--stream", "left", "--loop", "--realtime-fps", "10"],
    ["--source", "rtsp://cam", "--open-timeout", "9", "--read-timeout", "2", "--no-reconnect",
     "--reconnect-delay", "3"],
    ["--model", "m.xml", "--device", "GPU", "--hint", "latency", "--streams", "2", "--nireq", "4",
     "--infer-precision", "f16", "--cache-dir", "c", "--sync", "--no-zero-copy", "--perf-counters"],
    ["--preprocess", "fused", "--model-color", "rgb", "--mean=-1,2,3", "--scale", "4,5,6"],
    ["--postprocess", "ssd", "--threshold", "0.3", "--iou", "0.4", "--top-k", "2"],
    ["--inject", "postprocess=8ms", "--inject", "decode=busy:1ms", "--queue-size", "2"],
])
def test_tune_reads_shared_options_as_run_does(argv: list[str]) -> None:
    as_run = config_from_args(build_parser().parse_args(["run", "--frames", "300", *argv]), None)
    assert tune(*argv) == as_run
    assert tune(*argv).to_argv() == as_run.to_argv()


def test_tunes_own_options_keep_their_meaning() -> None:
    a = build_parser().parse_args(["tune", "--grid", "nireq=1", "--frames", "20", "--warmup", "2", "--report",
                                   "sweep.json", "--pipeline-name", "lab"])
    base = tune_base(a)
    # --frames is per configuration; --warmup, --report and --pipeline-name belong to the sweep, not the runs.
    assert base.frames == 20 and base.warmup == 0 and base.report is None and base.pipeline_name is None
    assert (a.warmup, a.report, a.pipeline_name) == (2, "sweep.json", "lab")
    assert build_parser().parse_args(["tune"]).frames == 300


@pytest.mark.parametrize("argv", [["--duration", "5"], ["--metrics-port", "1"], ["--linger", "1"],
                                  ["--dump-outputs", "x.npz"], ["--mean", "1,x"]])
def test_tune_refuses_what_run_alone_takes(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["tune", "--grid", "nireq=1", *argv])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("vidprof: error: ")


def test_tune_help_shows_runs_help_for_shared_options(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("run", "tune"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
    run_help, tune_help = capsys.readouterr().out.split("usage: vidprof tune", 1)
    flat = " ".join(tune_help.split())
    for phrase in ("repeat for several streams through one model", "channel order the model expects",
                   "what-if delay in a stage", "share the input tensor with the frame's memory"):
        assert phrase in " ".join(run_help.split()) and phrase in flat
    for flag in TUNE_SHARED_OPTIONS:
        assert flag in tune_help
    assert "--metrics-port" not in tune_help and "--duration" not in tune_help
