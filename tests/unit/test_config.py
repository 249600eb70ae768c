import pytest

from vidprof.pipeline.config import Injection, RunConfig, parse_duration
from vidprof.profiling.errors import UsageError
from vidprof.stages.inference import InferenceOptions
from vidprof.stages.postprocess import PostprocessOptions
from vidprof.stages.preprocess import PreprocessOptions


def test_defaults_are_valid_and_frozen() -> None:
    c = RunConfig()
    assert c.preprocess == "separate" and c.inference.hint == "throughput"
    with pytest.raises(AttributeError):
        c.frames = 3  # type: ignore[misc]


@pytest.mark.parametrize("build, fragment", [
    (lambda: RunConfig(frames=-1), "--frames -1"),
    (lambda: RunConfig(frames=0), "--frames 0"),
    (lambda: RunConfig(duration=0), "--duration"),
    (lambda: RunConfig(preprocess="gpu"), "--preprocess 'gpu'"),
    (lambda: RunConfig(metrics_port=70000), "--metrics-port 70000"),
    (lambda: RunConfig(pipeline_name="has space"), "--pipeline-name"),
    (lambda: InferenceOptions(nireq=0), "--nireq 0"),
    (lambda: InferenceOptions(streams=0), "--streams 0"),
    (lambda: InferenceOptions(hint="fast"), "--hint 'fast'"),
    (lambda: InferenceOptions(infer_precision="int4"), "--infer-precision"),
    (lambda: PreprocessOptions(model_color="yuv"), "--model-color"),
    (lambda: PreprocessOptions(mean=(1.0, 2.0)), "--mean"),
    (lambda: PreprocessOptions(scale=(0.0,)), "--scale"),
    (lambda: PostprocessOptions(kind="yolo"), "--postprocess 'yolo'"),
    (lambda: PostprocessOptions(threshold=2.0), "--threshold"),
    (lambda: Injection.parse("decode"), "STAGE=DURATION"),
    (lambda: Injection.parse("render=5ms"), "unknown stage"),
    (lambda: Injection.parse("decode=5"), "with a unit"),
    (lambda: RunConfig(inject=(Injection("decode", 0.001), Injection("decode", 0.002))), "twice"),
])
def test_bad_settings_say_what_was_expected(build, fragment: str) -> None:
    with pytest.raises(UsageError) as e:
        build()
    assert fragment in str(e.value)
    assert "expected" in str(e.value) or "give each" in str(e.value)


@pytest.mark.parametrize("text, seconds", [("8ms", 0.008), ("500us", 0.0005), ("0.2s", 0.2), ("1.5 ms", 0.0015)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "x") == pytest.approx(seconds)


def test_injection_forms() -> None:
    assert Injection.parse("postprocess=8ms") == Injection("postprocess", 0.008, False)
    assert Injection.parse("decode=busy:5ms") == Injection("decode", 0.005, True)
    assert Injection.parse("busy:decode=5ms") == Injection("decode", 0.005, True)
