"""Decoders picked from real models' output shapes, and their arithmetic on known arrays."""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.pipeline_helpers import run_pipeline
from vidprof.profiling.errors import RunError
from vidprof.stages.frame import Frame
from vidprof.stages.postprocess import Postprocess, PostprocessOptions, pick_decoder


@pytest.mark.parametrize("fixture, kind", [("detector", "detection"), ("classifier", "classification"),
                                           ("ssd", "ssd")])
def test_decoder_is_picked_from_the_model(request, clip: str, fixture: str, kind: str) -> None:
    runner, rep, _ = run_pipeline(sources=(clip,), model=request.getfixturevalue(fixture), frames=4, preprocess="host")
    assert runner.parts.postprocess.kind == kind
    assert rep["config"]["postprocess_decoder"] == kind
    assert rep["frames"]["completed"] == 4


def test_forcing_a_decoder_that_does_not_fit_is_an_error(clip: str, classifier: str) -> None:
    with pytest.raises(RunError, match="do not fit"):
        run_pipeline(sources=(clip,), model=classifier, postprocess=PostprocessOptions(kind="ssd"))


def test_unknown_outputs_pass_through() -> None:
    assert pick_decoder([(1, 17, 3, 3)]) == "passthrough"
    post = Postprocess(PostprocessOptions(), [(1, 17, 3, 3)])
    f = Frame(0, outputs=[np.zeros((1, 17, 3, 3), np.float32)])
    post.process(f)
    assert f.result is f.outputs


def test_detection_threshold_and_nms() -> None:
    boxes = np.array([[[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.5, 0.52], [0.6, 0.6, 0.9, 0.9], [0.0, 0.0, 0.2, 0.2]]],
                     np.float32)
    scores = np.array([[[0.9, 0.1], [0.8, 0.1], [0.1, 0.7], [0.3, 0.2]]], np.float32)
    post = Postprocess(PostprocessOptions(threshold=0.5, iou=0.5), [(1, 4, 4), (1, 4, 2)], ["boxes", "scores"])
    f = Frame(0, outputs=[boxes, scores])
    post.process(f)
    r = f.result
    # Box 1 overlaps box 0 (same class) and is suppressed; box 3 is under the threshold.
    assert r.shape == (2, 6)
    assert sorted(r[:, 4].tolist()) == pytest.approx([0.7, 0.9])
    assert sorted(r[:, 5].tolist()) == [0.0, 1.0]


def test_classification_top_k() -> None:
    p = np.array([[0.05, 0.5, 0.1, 0.3, 0.05]], np.float32)
    post = Postprocess(PostprocessOptions(top_k=2), [(1, 5)])
    f = Frame(0, outputs=[p])
    post.process(f)
    assert f.result[:, 0].tolist() == [1.0, 3.0]


def test_ssd_threshold() -> None:
    rows = np.zeros((1, 1, 3, 7), np.float32)
    rows[0, 0, :, 2] = [0.9, 0.2, 0.6]
    post = Postprocess(PostprocessOptions(threshold=0.5), [(1, 1, 3, 7)])
    f = Frame(0, outputs=[rows])
    post.process(f)
    assert f.result.shape == (2, 6)
