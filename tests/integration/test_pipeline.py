"""The whole pipeline with real OpenCV decode and real OpenVINO inference on a small clip and model."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.conftest import CLIP_FRAMES, CLIP_H, CLIP_W
from tests.integration.pipeline_helpers import run_pipeline, sample
from vidprof.profiling.errors import RunError
from vidprof.profiling.marks import STAGES
from vidprof.stages.inference import InferenceOptions
from vidprof.stages.preprocess import PreprocessOptions

MODEL_INPUT_BYTES = 1 * 3 * 64 * 64 * 4  # the small detector's f32 NCHW input
FRAME_BYTES = CLIP_H * CLIP_W * 3  # a u8 BGR frame, what the fused model takes
OUTPUT_BYTES = (48 * 4 + 48 * 4) * 4  # boxes [1,48,4] + scores [1,48,4], f32


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("placement", ["separate", "fused", "host"])
def test_every_frame_is_counted_and_timed(clip: str, detector: str, placement: str, sync: bool) -> None:
    runner, rep, reg = run_pipeline(sources=(clip,), model=detector, preprocess=placement, pipeline_name="test",
                                    inference=InferenceOptions(sync=sync, nireq=None if sync else 3))
    assert rep["frames"] == {"completed": CLIP_FRAMES, "dropped": 0, "failed": 0, "read": CLIP_FRAMES}
    for stage in STAGES:
        assert rep["stages"][stage]["count"] == CLIP_FRAMES
        assert sample(reg, "vidprof_stage_latency_seconds_count", stage=stage) == CLIP_FRAMES
    assert sample(reg, "vidprof_frames_total", outcome="completed") == CLIP_FRAMES
    assert sample(reg, "vidprof_frame_latency_seconds_count") == CLIP_FRAMES

    s = runner.recorders[0].samples
    stage_sum = np.sum([np.asarray(s.stages[st]) for st in STAGES], axis=0)
    e2e = np.asarray(s.e2e)
    # Each frame's end-to-end latency covers its stages; what is left is queueing, accounted exactly.
    assert np.all(e2e >= stage_sum)
    wait_sum = np.sum([np.asarray(v) for v in s.waits.values()], axis=0)
    assert np.allclose(e2e, stage_sum + wait_sum, rtol=0, atol=1e-9)

    h2d = FRAME_BYTES if placement == "fused" else MODEL_INPUT_BYTES
    assert rep["transfer"]["host_to_device"]["bytes"] == CLIP_FRAMES * h2d
    assert rep["transfer"]["device_to_host"]["bytes"] == CLIP_FRAMES * OUTPUT_BYTES
    assert sample(reg, "vidprof_transfer_bytes_total", direction="host_to_device") == CLIP_FRAMES * h2d
    assert rep["config"]["resolved"]["nireq"] == (1 if sync else 3)
    assert rep["fps"] == pytest.approx(CLIP_FRAMES / rep["wall_seconds"])
    assert {"read_model", "compile", "first_inference"} <= set(rep["startup"])
    assert all(rep["startup"][k] > 0 for k in ("read_model", "compile", "first_inference"))
    assert rep["bottleneck"]["stage"] in STAGES


@pytest.mark.parametrize("kw, nbytes", [
    ({"layout": "NHWC"}, MODEL_INPUT_BYTES),
    ({"element_type": "u8"}, 1 * 3 * 64 * 64),
    ({"element_type": "u8", "layout": "NHWC"}, 1 * 3 * 64 * 64),
    ({"dynamic_batch": True}, MODEL_INPUT_BYTES),
])
@pytest.mark.parametrize("placement", ["separate", "host"])
def test_input_layouts_and_types_are_read_from_the_model(clip: str, make_model, kw, nbytes: int,
                                                         placement: str) -> None:
    _, rep, _ = run_pipeline(sources=(clip,), model=make_model(**kw), preprocess=placement, frames=8)
    assert rep["frames"]["completed"] == 8
    assert rep["transfer"]["host_to_device"]["bytes"] == 8 * nbytes
    layout = kw.get("layout", "NCHW")
    assert rep["config"]["model_input"]["layout"] == layout
    assert rep["config"]["model_input"]["shape"][0] == 1


@pytest.mark.parametrize("opts", [
    PreprocessOptions(),
    PreprocessOptions(model_color="rgb", mean=(10.0, 20.0, 30.0), scale=(2.0, 4.0, 8.0)),
], ids=["bgr", "rgb-mean-scale"])
def test_placements_produce_the_same_numbers(clip: str, detector: str, opts: PreprocessOptions) -> None:
    """host computes exactly resize -> colour -> (x - mean) / scale -> NCHW; separate matches it up to
    interpolation rounding; fused (the same steps inside the model) gives the model's same outputs."""
    import cv2

    from vidprof.stages.frame import Frame
    from vidprof.stages.sources import open_source

    img = open_source(clip).read()
    runners = {p: run_pipeline(sources=(clip,), model=detector, preprocess=p, frames=1, preprocess_options=opts,
                               inference=InferenceOptions(sync=True, infer_precision="f32"))[0]
               for p in ("separate", "fused", "host")}
    tensors = {}
    for p in ("separate", "host"):
        f = Frame(0, image=img)
        runners[p].workers[0].preprocess.process(f)
        tensors[p] = f.tensor
    x = cv2.resize(img, (64, 64), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    if opts.model_color == "rgb":
        x = x[..., ::-1]
    if opts.mean:
        x = (x - np.float32(opts.mean)) / np.float32(opts.scale)
    assert np.allclose(tensors["host"], x.transpose(2, 0, 1)[None], atol=1e-5)
    unit = 1.0 / min(opts.scale or (1.0,))
    assert tensors["separate"].shape == (1, 3, 64, 64)
    assert np.mean(np.abs(tensors["separate"] - tensors["host"])) < 3.0 * unit  # a few grey levels at most

    # The model's outputs from the fused model and from the separate graph's tensor agree closely.
    outputs = {}
    for p in ("separate", "fused"):
        f = Frame(0, image=img)
        runners[p].workers[0].preprocess.process(f)
        request = runners[p].compiled.create_infer_request()
        request.infer({0: f.tensor})
        outputs[p] = request.get_output_tensor(1).data.copy()  # scores
    assert np.max(np.abs(outputs["separate"] - outputs["fused"])) < 0.05


def test_a_model_with_two_inputs_is_refused(clip: str, two_input_model: str) -> None:
    with pytest.raises(RunError, match="2 inputs"):
        run_pipeline(sources=(clip,), model=two_input_model)


def test_callback_exceptions_are_failed_frames_not_hangs(clip: str, detector: str) -> None:
    """An exception raised inside the completion callback is counted and reported; the run ends."""
    from prometheus_client import CollectorRegistry

    from vidprof.pipeline.config import RunConfig
    from vidprof.pipeline.runner import Runner

    runner = Runner(RunConfig(sources=(clip,), model=detector, preprocess="host", pipeline_name="test"),
                    CollectorRegistry())
    runner.prepare()
    calls = {"n": 0}

    def explode_every_third() -> None:  # runs inside OpenVINO's callback, after outputs are read
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise ValueError("injected callback fault")

    runner.inference._inject = explode_every_third
    runner.run()
    rep = runner.summary().report
    assert rep["frames"]["failed"] == CLIP_FRAMES // 3
    assert rep["frames"]["completed"] == CLIP_FRAMES - CLIP_FRAMES // 3
    assert "injected callback fault" in rep["first_error"]


def test_the_queue_before_inference_is_the_frames_the_preprocess_threads_hold(clip: str, detector: str) -> None:
    """One infer request held 30 ms a frame: each preprocess thread (two for a file with ``separate`` on two
    cores or more) soon holds a preprocessed frame it cannot submit, so /metrics reads as many frames waiting
    before inference as there are preprocess threads, never more, and none once the run is over."""
    import threading

    from prometheus_client import CollectorRegistry

    from vidprof.pipeline.config import Injection, RunConfig
    from vidprof.pipeline.runner import Runner

    registry = CollectorRegistry()
    runner = Runner(RunConfig(sources=(clip,), model=detector, frames=30, loop=True, preprocess="separate",
                              inference=InferenceOptions(nireq=1), inject=(Injection("inference", 0.03),),
                              pipeline_name="test"), registry)
    seen: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            v = sample(registry, "vidprof_queue_depth", queue="inference")
            if v is not None:
                seen.append(v)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        runner.run()
    finally:
        done.set()
        watcher.join()
    threads = runner.workers[0].preprocess_threads
    assert runner.summary().report["frames"]["completed"] == 30
    assert seen and max(seen) == threads and min(seen) >= 0
    assert sorted(seen)[len(seen) // 2] == threads  # most of the run: every thread holds a frame
    assert sample(registry, "vidprof_queue_depth", queue="inference") == 0
