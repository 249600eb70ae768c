"""--batch N: N frames per infer request, from one stream or across streams; per-frame figures stay per frame,
results equal an unbatched run's, and a partial batch does not wait longer than --batch-timeout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.integration.pipeline_helpers import run_pipeline
from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.outputs import OutputsWriter
from vidprof.pipeline.runner import Runner
from vidprof.profiling.marks import STAGES
from vidprof.stages.inference import InferenceOptions
from vidprof.stages.postprocess import PostprocessOptions


def outputs_of(tmp_path: Path, name: str, **kw: object) -> dict[str, np.ndarray]:
    path = tmp_path / f"{name}.npz"
    writer = OutputsWriter(str(path))
    runner = Runner(RunConfig(**kw), None, outputs=writer)  # type: ignore[arg-type]
    runner.run()
    writer.close()
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("placement", ["host", "fused"])
def test_batched_results_equal_unbatched(tmp_path: Path, detector: str, placement: str) -> None:
    """22 frames in batches of 4 (the last one partial): every frame's raw outputs as without batching."""
    common = dict(sources=("synthetic:160x120@30",), frames=22, model=detector, preprocess=placement,
                  postprocess=PostprocessOptions(kind="passthrough"), keep_outputs=True)
    one = outputs_of(tmp_path, "one", inference=InferenceOptions(infer_precision="f32"), **common)
    four = outputs_of(tmp_path, "four", inference=InferenceOptions(infer_precision="f32", batch=4), **common)
    assert sorted(one) == sorted(four) and len(one) == 22 * 2  # two outputs a frame
    for k in one:
        assert four[k].shape == one[k].shape and four[k].shape[0] == 1
        assert np.allclose(four[k], one[k], rtol=1e-4, atol=1e-5), k


def test_per_frame_figures_stay_per_frame(detector: str) -> None:
    runner, rep, _ = run_pipeline(sources=("synthetic:160x120@30",), copies=3, frames=10, model=detector,
                                  preprocess="host", inference=InferenceOptions(batch=4, nireq=2))
    assert rep["frames"]["completed"] == 30
    assert all(rep["stages"][st]["count"] == 30 for st in STAGES)
    for rec in runner.recorders:
        s = rec.samples
        stages = np.sum([np.asarray(s.stages[st]) for st in STAGES], axis=0)
        waits = np.sum([np.asarray(v) for v in s.waits.values()], axis=0)
        assert np.allclose(np.asarray(s.e2e), stages + waits, rtol=0, atol=1e-9)  # nothing unaccounted
    # Each frame's bytes are its own slice of the batch.
    assert rep["transfer"]["host_to_device"]["bytes"] == 30 * 1 * 3 * 64 * 64 * 4


def test_a_slow_stream_does_not_hold_a_batch(detector: str) -> None:
    """One camera-paced stream at 5 FPS with batch 8: each frame waits about the timeout, not 8 frames' time."""
    _, rep, _ = run_pipeline(sources=("synthetic:160x120@5",), realtime=True, frames=6, model=detector,
                             preprocess="host", inference=InferenceOptions(batch=8, batch_timeout=0.05))
    assert rep["frames"]["completed"] == 6
    wait = rep["waits"]["infer_wait"]
    assert 0.04 <= wait["p50"] < 0.5  # about the timeout; 8 frames at 5 FPS would be 1.4 s
