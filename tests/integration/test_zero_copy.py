"""Zero-copy both ways: the request reads the frame's memory and writes the outputs into the frame's own
arrays. Every frame's outputs must equal those copied out after inference (--no-zero-copy), frame by frame:
were two frames given the same arrays, the later would overwrite the earlier and this would fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.integration.pipeline_helpers import run_pipeline
from tests.integration.test_batching import outputs_of
from vidprof.stages.inference import InferenceOptions
from vidprof.stages.postprocess import PostprocessOptions

FRAMES = 24


def test_outputs_written_in_place_equal_copied_outputs(tmp_path: Path, detector: str) -> None:
    common = dict(sources=("synthetic:160x120@30",), frames=FRAMES, model=detector, preprocess="host",
                  postprocess=PostprocessOptions(kind="passthrough"), keep_outputs=True)
    shared = outputs_of(tmp_path, "shared", inference=InferenceOptions(infer_precision="f32", nireq=4), **common)
    copied = outputs_of(tmp_path, "copied", inference=InferenceOptions(infer_precision="f32", nireq=4,
                                                                        zero_copy=False), **common)
    assert sorted(shared) == sorted(copied) and len(shared) == FRAMES * 2  # two outputs a frame
    for k in shared:
        assert np.array_equal(shared[k], copied[k]), k
    # The synthetic source cycles through 8 different frames: their outputs differ, so equality above is
    # not the same array seen 24 times.
    firsts = [shared[f"f{i}_o0"] for i in range(8)]
    assert len({a.tobytes() for a in firsts}) > 1


def test_output_bytes_counted_and_said(detector: str) -> None:
    for zero_copy in (True, False):
        runner, rep, _ = run_pipeline(sources=("synthetic:160x120@30",), frames=FRAMES, model=detector,
                                      preprocess="host", inference=InferenceOptions(zero_copy=zero_copy))
        per_frame = sum(int(np.prod(o.get_shape())) * o.get_element_type().size for o in runner.compiled.outputs)
        assert rep["transfer"]["device_to_host"]["bytes"] == FRAMES * per_frame
        assert rep["config"]["outputs_zero_copy"] is zero_copy
