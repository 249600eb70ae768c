"""Models in other formats go through read_model: an ONNX classifier made with onnx.helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CLIP_FRAMES
from tests.integration.pipeline_helpers import run_pipeline

onnx = pytest.importorskip("onnx", reason="onnx is a test extra: pip install '.[test]'")


def make_onnx_classifier(path: Path, classes: int = 8) -> str:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.normal(0, 0.1, (classes, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["conv"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Softmax", ["flat"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "vidprof_onnx_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", classes])],
        initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


@pytest.mark.parametrize("placement", ["separate", "fused", "host"])
def test_onnx_model_with_dynamic_batch(clip: str, tmp_path: Path, placement: str) -> None:
    model = make_onnx_classifier(tmp_path / "cls.onnx")
    runner, rep, _ = run_pipeline(sources=(clip,), model=model, preprocess=placement)
    assert rep["frames"] == {"completed": CLIP_FRAMES, "dropped": 0, "failed": 0, "read": CLIP_FRAMES}
    assert rep["config"]["model_input"]["shape"] == [1, 3, 32, 32]  # the dynamic batch was set to 1
    assert runner.parts.postprocess.kind == "classification"
    assert rep["transfer"]["device_to_host"]["bytes"] == CLIP_FRAMES * 8 * 4
