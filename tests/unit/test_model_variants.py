"""INT8 variants and the native runtime in a sweep, on known inputs: calibration frames, held-out frames,
dense-output agreement, the three-figure Pareto front, the model= and runtime= grid keys, the map decoder."""

from __future__ import annotations

import numpy as np
import pytest

from vidprof.pipeline.accuracy import compare
from vidprof.pipeline.config import RunConfig, onnxruntime_conflict
from vidprof.pipeline.optimize import (
    CalibrationPick,
    ModelChoices,
    QuantizeSettings,
    evenly,
    model_size_bytes,
    shares,
)
from vidprof.pipeline.tuner import apply, pareto, parse_grid, runnable
from vidprof.profiling.errors import UsageError
from vidprof.stages.frame import Frame
from vidprof.stages.inference import InferenceOptions
from vidprof.stages.postprocess import Postprocess, PostprocessOptions
from vidprof.stages.precision import precision_used


def test_calibration_frames_are_spread_over_the_whole_source() -> None:
    assert evenly(10, 5) == (1, 3, 5, 7, 9)
    assert evenly(7, 7) == tuple(range(7))
    picked = evenly(3000, 300)
    assert len(set(picked)) == 300 and picked[0] < 10 and picked[-1] > 2990
    assert shares(10, 3) == [4, 3, 3] and sum(shares(300, 7)) == 300


def test_frames_seen_by_calibration_among_a_runs_frames() -> None:
    pick = CalibrationPick("clip.mp4", evenly(100, 10), 100, replayable=True)  # 5, 15, ..., 95
    assert pick.seen(30, loop=False) == {5, 15, 25}
    assert pick.run_frames(300, loop=False) == 100  # the run ends with the file
    # Looped, the same frames come round again every 100 frames.
    assert pick.seen(230, loop=True) == {5, 15, 25, 35, 45, 55, 65, 75, 85, 95, 105, 115, 125, 135, 145,
                                         155, 165, 175, 185, 195, 205, 215, 225}
    live = CalibrationPick("rtsp://cam/1", tuple(range(10)), None, replayable=False)
    assert live.seen(30, loop=False) == frozenset()  # a camera's run captures frames calibration never had


def test_quantize_settings_check_themselves() -> None:
    with pytest.raises(UsageError, match="--calibration-frames 0"):
        QuantizeSettings(0)
    with pytest.raises(UsageError, match="--preset 'fast'"):
        QuantizeSettings(10, "fast")


def test_dense_outputs_agree_by_iou_of_thresholded_maps() -> None:
    a = np.zeros((1, 1, 8, 8), np.float32)
    a[0, 0, 2:6, 2:6] = 0.9  # 16 pixels
    b = np.zeros_like(a)
    b[0, 0, 2:6, 3:7] = 0.8  # 16 pixels, 12 shared: IoU 12 / 20
    box = np.array([[0.2, 0.2, 0.8, 0.8, 0.9, 0.0]], np.float32)
    ref = {0: ([a], box), 1: ([a], box)}
    cand = {0: ([a], box), 1: ([b], box)}
    out = compare(ref, cand, "probability_map", floor=0.9, threshold=0.3)
    assert out["agreement"] == pytest.approx((16 + 12) / (16 + 20))
    assert out["map_iou"] == out["agreement"] and out["box_f1"] == 1.0 and out["changes_results"]
    # The frames calibration saw are left out: only frame 1 is compared.
    held_out = compare(ref, cand, "probability_map", threshold=0.3, exclude=frozenset({0}))
    assert held_out["frames"] == 1 and held_out["excluded_frames"] == 1
    assert held_out["agreement"] == pytest.approx(12 / 20)
    # Below the threshold nothing is text: maps that differ only there agree.
    faint = a * 0.2
    assert compare({0: ([faint], None)}, {0: ([faint * 0.5], None)}, "probability_map", threshold=0.3)[
        "agreement"] == 1.0


def test_detections_report_precision_recall_and_f1() -> None:
    r = np.array([[0, 0, 1, 1, 0.9, 1], [2, 2, 3, 3, 0.8, 1], [4, 4, 5, 5, 0.7, 2]], np.float32)
    c = np.array([[0, 0, 1, 1, 0.9, 1], [4, 4, 5, 5, 0.7, 2], [6, 6, 7, 7, 0.6, 2], [8, 8, 9, 9, 0.6, 2]],
                 np.float32)
    out = compare({0: ([], r)}, {0: ([], c)}, "detection")
    assert out["precision"] == pytest.approx(2 / 4) and out["recall"] == pytest.approx(2 / 3)
    assert out["agreement"] == pytest.approx(2 * 2 / (3 + 4))  # F1 = 2PR / (P + R)


def test_pareto_over_fps_p99_and_agreement() -> None:
    # An INT8 variant: faster and quicker than the original, less accurate. Neither beats the other.
    original, int8, worse = (100.0, 0.05, 1.0), (160.0, 0.03, 0.95), (150.0, 0.04, 0.94)
    assert pareto([original, int8, worse, None]) == [0, 1]
    assert pareto([(100.0, 0.05), (90.0, 0.06)]) == [0]  # two figures still work


def test_model_and_runtime_grid_keys() -> None:
    grid = parse_grid(["model=original,int8,/models/mine.xml", "runtime=openvino,onnxruntime"])
    base = RunConfig(model="det.onnx", preprocess="host")
    models = ModelChoices({"original": "det.onnx", "int8": "/cache/int8/k/model.xml"})
    assert apply(base, {"model": "int8"}, models).model == "/cache/int8/k/model.xml"
    assert apply(base, {"model": "original"}, models).model == "det.onnx"
    assert apply(base, {"model": "/models/mine.xml"}, models).model == "/models/mine.xml"
    assert apply(base, {"runtime": "onnxruntime"}, models).runtime == "onnxruntime"
    ok, skipped = runnable(grid, base, models)
    # An IR cannot run on ONNX Runtime: those combinations are skipped, with why, not failed.
    assert {(s["model"], s["runtime"]) for s, _ in skipped} == {("int8", "onnxruntime"),
                                                                 ("/models/mine.xml", "onnxruntime")}
    assert all(".onnx" in why for _, why in skipped)
    assert len(ok) == 4
    with pytest.raises(UsageError, match="int8 variant was not prepared"):
        apply(base, {"model": "int8"})


@pytest.mark.parametrize("config, fragment", [
    (RunConfig(), "sample model is an OpenVINO IR"),
    (RunConfig(model="m.xml"), "is not an .onnx file"),
    (RunConfig(model="m.onnx", preprocess="fused"), "--preprocess fused"),
    (RunConfig(model="m.onnx", inference=InferenceOptions(device="GPU")), "--device GPU"),
    (RunConfig(model="m.onnx", inference=InferenceOptions(streams=2)), "--streams"),
    (RunConfig(model="m.onnx", inference=InferenceOptions(infer_precision="bf16")), "--infer-precision"),
])
def test_what_onnxruntime_cannot_run_is_refused(config: RunConfig, fragment: str) -> None:
    why = onnxruntime_conflict(config)
    assert why is not None and fragment in why
    with pytest.raises(UsageError, match="--runtime onnxruntime"):
        RunConfig(model=config.model, runtime="onnxruntime", preprocess=config.preprocess, inference=config.inference)
    # f32 is what ONNX Runtime's CPU provider computes in: asking for it is no conflict.
    assert onnxruntime_conflict(RunConfig(model="m.onnx", inference=InferenceOptions(infer_precision="f32"))) is None


def test_model_size_counts_an_irs_weights(tmp_path) -> None:
    (tmp_path / "m.xml").write_bytes(b"x" * 10)
    (tmp_path / "m.bin").write_bytes(b"x" * 100)
    (tmp_path / "o.onnx").write_bytes(b"x" * 7)
    assert model_size_bytes(str(tmp_path / "m.xml")) == 110
    assert model_size_bytes(str(tmp_path / "o.onnx")) == 7


def test_precision_used_names_quantised_compute() -> None:
    assert precision_used({"i8": 38, "u8": 10, "bf16": 14}, "bf16") == "int8+bf16"
    assert precision_used({"i8": 5}, "f32") == "int8"
    assert precision_used({"bf16": 62}, "bf16") == "bf16"
    assert precision_used({}, "f32") == "f32"


def test_probability_map_decoder_finds_regions_and_grows_them_back() -> None:
    prob = np.zeros((1, 1, 40, 80), np.float32)
    prob[0, 0, 10:14, 8:40] = 0.95  # a text line's shrunk kernel
    prob[0, 0, 25:31, 50:70] = 0.7
    prob[0, 0, 35, 5] = 0.99  # a speck: too small to be a region
    post = Postprocess(PostprocessOptions(kind="auto", threshold=0.3), [prob.shape])
    assert post.kind == "probability_map"
    frame = Frame(0, outputs=[prob])
    post.process(frame)
    rows = frame.result[np.argsort(frame.result[:, 0])]
    assert rows.shape == (2, 6)
    # Shares of the map's size, grown by area * 1.5 / perimeter (DB's unclip) around the kernel.
    grow = (4 * 32) * 1.5 / (2 * (31 + 3))  # the contour runs through pixel centres: 31 x 3
    x1, y1, x2, y2, score, label = rows[0]
    assert x1 == pytest.approx((8 - grow) / 80, abs=0.02) and x2 == pytest.approx((40 + grow) / 80, abs=0.02)
    assert y1 == pytest.approx((10 - grow) / 40, abs=0.03) and y2 == pytest.approx((14 + grow) / 40, abs=0.03)
    assert score == pytest.approx(0.95, abs=1e-3) and label == 0
    assert rows[1][4] == pytest.approx(0.7, abs=1e-3)
    # A higher threshold drops the fainter region.
    strict = Postprocess(PostprocessOptions(threshold=0.8), [prob.shape])
    frame = Frame(0, outputs=[prob])
    strict.process(frame)
    assert len(frame.result) == 1
