"""The profiler's figures against ground truth: injected delays, wall time, bottlenecks, perf counters,
the model cache and memory. Real OpenVINO and OpenCV throughout."""

from __future__ import annotations

import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.integration.pipeline_helpers import run_pipeline, sample
from vidprof.pipeline.config import Injection, RunConfig
from vidprof.pipeline.runner import Runner
from vidprof.profiling.marks import STAGES
from vidprof.stages.inference import InferenceOptions
from vidprof.stages.postprocess import PostprocessOptions

DELAY = 0.008


def _run(stage: str, model: str, inject: tuple[Injection, ...] = ()) -> dict:
    # One request: a delay inside inference then cannot make another request queue behind it, so
    # the stage grows by exactly the delay (with more requests than streams it also grows by the wait).
    # Synthetic decode, fused preprocessing and passthrough postprocessing leave those stages no work of
    # their own whose cost could drift between runs: OpenCV's and OpenVINO's thread pools cool down
    # during a delay and the next call pays ~0.4 ms to wake them, a real effect but not the one under test.
    _, rep, _ = run_pipeline(sources=("synthetic:160x120@30",), model=model, frames=40, preprocess="fused",
                             inject=inject,
                             inference=InferenceOptions(nireq=1 if stage == "inference" else 2),
                             postprocess=PostprocessOptions(kind="passthrough"))
    assert rep["frames"]["completed"] == 40
    return rep


@pytest.mark.parametrize("busy", [False, True], ids=["sleep", "busy"])
@pytest.mark.parametrize("stage", STAGES)
def test_injected_delay_is_measured(detector: str, stage: str, busy: bool) -> None:
    """The stage's p50 grows by the injected delay: within 3 % or 0.3 ms of the truth.

    The truth is the stage's own cost plus what the delay really took, timed by the delay itself (a
    sleeping thread wakes late on two busy cores). The stage's own cost is measured in a run with the
    same delay in another stage: the pipeline then has the same rhythm, and thread pools (OpenVINO's,
    OpenCV's) that cool down between frames cost the same to wake (~0.4 ms seen here)."""
    # The model's own time jitters by ~1 ms on a loaded machine when its thread pool idles between
    # requests, so inference gets a delay for which the 3 % tolerance is wider than that jitter.
    delay = 0.03 if stage == "inference" else DELAY
    elsewhere = "postprocess" if stage == "decode" else "decode"
    base = _run(stage, detector, (Injection(elsewhere, delay, busy),))["stages"][stage]["p50"]
    rep = _run(stage, detector, (Injection(stage, delay, busy),))
    actual = rep["inject"][stage]["actual"]
    assert actual["count"] == 40 and rep["inject"][stage]["nominal"] == delay
    assert delay <= actual["p50"] < delay + 0.003  # the delay itself works
    truth = base + actual["p50"]
    measured = rep["stages"][stage]["p50"]
    assert abs(measured - truth) <= max(0.03 * truth, 0.0003), (stage, base, actual["p50"], measured)


def test_fps_and_e2e_match_an_outside_clock(detector: str) -> None:
    # The outside clock also holds starting and joining the threads (a few ms on a loaded machine): 1.5 s of
    # frames keep that fixed part well inside the 1 % (with 0.6 s it reached 1.4 % under load).
    n = 150
    registry = CollectorRegistry()
    runner = Runner(RunConfig(sources=("synthetic:160x120@30",), model=detector, frames=n, preprocess="host",
                              inject=(Injection("decode", 0.01),), pipeline_name="test"), registry)
    runner.prepare()
    t0 = time.perf_counter()
    runner.run()
    outside = time.perf_counter() - t0
    rep = runner.summary().report
    assert rep["frames"]["completed"] == n
    assert rep["fps"] == pytest.approx(n / outside, rel=0.01)
    s = runner.recorders[0].samples
    parts = np.sum([np.asarray(s.stages[st]) for st in STAGES] + [np.asarray(v) for v in s.waits.values()], axis=0)
    assert np.allclose(np.asarray(s.e2e), parts, rtol=0.01)
    assert rep["unaccounted"]["max"] < 1e-6
    # Decoding alone takes n x 10 ms, so the wall time is at least that.
    assert outside >= n * 0.01


@pytest.mark.parametrize("stage", STAGES)
def test_bottleneck_follows_the_injected_stage(detector: str, stage: str) -> None:
    # 20 ms in one stage on a model that needs well under 1 ms: that stage must limit the run.
    nireq = 1 if stage == "inference" else 2
    _, rep, reg = run_pipeline(sources=("synthetic:160x120@30",), model=detector, frames=40, preprocess="host",
                               inject=(Injection(stage, 0.02),), pipeline_name="test",
                               inference=InferenceOptions(nireq=nireq))
    assert rep["bottleneck"]["stage"] == stage, rep["busy"]
    assert rep["busy"][stage] > 0.8
    assert rep["fps"] <= 50.5
    assert f"{stage} is busy" in rep["bottleneck"]["advice"]
    assert sample(reg, "vidprof_stage_busy_ratio", stage=stage) == pytest.approx(rep["busy"][stage])


def test_decode_bottleneck_advice(detector: str) -> None:
    _, rep, _ = run_pipeline(sources=("synthetic:160x120@30",), model=detector, frames=30, preprocess="host",
                             inject=(Injection("decode", 0.02),))
    assert rep["bottleneck"]["stage"] == "decode" and rep["fps"] <= 50
    assert "the model is not the limit" in rep["bottleneck"]["advice"]


def test_perf_counters_only_when_asked(clip: str, detector: str) -> None:
    _, rep, reg = run_pipeline(sources=(clip,), model=detector, preprocess="host", pipeline_name="test")
    assert rep["perf_counters"] is None
    assert not [m for m in reg.collect() if m.name.startswith(("vidprof_device", "vidprof_infer_device"))]

    _, rep, reg = run_pipeline(sources=(clip,), model=detector, preprocess="separate", pipeline_name="test",
                               inference=InferenceOptions(perf_counters=True))
    pc = rep["perf_counters"]
    assert pc["sampled_requests"] >= 1
    assert "Convolution" in pc["node_types"] and pc["node_types"]["Convolution"] > 0
    assert pc["device_seconds"]["mean"] > 0 and pc["request_wall_seconds"]["count"] == pc["sampled_requests"]
    assert pc["preprocess_nodes_seconds"] is None  # nothing fused
    assert sample(reg, "vidprof_perf_samples_total") == pc["sampled_requests"]
    assert sample(reg, "vidprof_device_node_seconds_total", node_type="Convolution") > 0
    assert rep["stage_attribution"]["moved_from_inference"] == 0


def test_fused_preprocessing_time_is_attributed_to_preprocess(clip: str, detector: str) -> None:
    _, rep, reg = run_pipeline(sources=(clip,), model=detector, preprocess="fused", pipeline_name="test",
                               inference=InferenceOptions(perf_counters=True))
    pc = rep["perf_counters"]
    moved = pc["preprocess_nodes_seconds"]
    assert moved > 0
    assert "Interpolate" in pc["node_types"]  # the fused resize runs on the device
    att = rep["stage_attribution"]
    assert att["moved_from_inference"] == moved
    assert att["preprocess"] == pytest.approx(rep["stages"]["preprocess"]["mean"] + moved)
    assert att["inference"] == pytest.approx(rep["stages"]["inference"]["mean"] - moved)
    assert sample(reg, "vidprof_device_boundary_seconds_total", part="preprocessing") > 0


def test_model_cache_miss_then_hit(clip: str, detector: str, tmp_path) -> None:
    cache = str(tmp_path / "ov-cache")
    states, compiles = [], []
    for _ in range(2):
        _, rep, reg = run_pipeline(sources=(clip,), model=detector, frames=4, preprocess="host", pipeline_name="test",
                                   inference=InferenceOptions(cache_dir=cache))
        states.append(rep["startup"]["cache"])
        compiles.append(rep["startup"]["compile"])
        assert sample(reg, "vidprof_model_cache_state", state=rep["startup"]["cache"]) == 1
    assert states == ["miss", "hit"]
    _, rep, _ = run_pipeline(sources=(clip,), model=detector, frames=4, preprocess="host")
    assert rep["startup"]["cache"] == "off"


def test_memory_figures(clip: str, detector: str) -> None:
    _, rep, reg = run_pipeline(sources=(clip,), model=detector, frames=4, pipeline_name="test")
    mem = rep["memory"]
    assert 0 < mem["after_compile_rss_bytes"] <= mem["peak_rss_bytes"]
    assert sample(reg, "vidprof_memory_bytes", kind="peak_rss") == mem["peak_rss_bytes"]


def test_zero_copy_and_copy_count_the_same_bytes(clip: str, detector: str) -> None:
    reps = {}
    for zc in (True, False):
        _, rep, _ = run_pipeline(sources=(clip,), model=detector, preprocess="host",
                                 inference=InferenceOptions(zero_copy=zc))
        reps[zc] = rep
        assert rep["config"]["inference"]["zero_copy"] is zc
    assert reps[True]["transfer"]["host_to_device"]["bytes"] == reps[False]["transfer"]["host_to_device"]["bytes"]
    assert reps[False]["transfer"]["host_to_device"]["seconds"] > 0
