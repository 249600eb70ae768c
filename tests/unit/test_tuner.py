"""The tuner's logic on known inputs: grids, Pareto front, recommendation, accuracy agreement."""

from __future__ import annotations

import numpy as np
import pytest

from vidprof.pipeline.accuracy import compare, matched_boxes
from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.tuner import (
    GRID_FIELDS,
    GRID_KEYS,
    apply,
    configurations,
    pareto,
    parse_grid,
    parse_settings,
    recommend,
)
from vidprof.profiling.errors import UsageError
from vidprof.stages.inference import InferenceOptions


def test_grid_is_the_cartesian_product() -> None:
    grid = parse_grid(["hint=latency,throughput", "nireq=1,2,4", "zero-copy=true,no"])
    assert grid == {"hint": ["latency", "throughput"], "nireq": ["1", "2", "4"], "zero_copy": ["true", "false"]}
    configs = configurations(grid)
    assert len(configs) == 12
    assert {"hint": "latency", "nireq": "4", "zero_copy": "false"} in configs


@pytest.mark.parametrize("items, fragment", [
    (["colour=red"], "unknown key"),
    (["nireq="], "no values"),
    (["nireq"], "KEY=V1,V2"),
    (["nireq=0"], "positive whole number"),
    (["batch=0"], "positive whole number"),
    (["sync=maybe"], "true or false"),
    (["nireq=1", "nireq=2"], "given twice"),
])
def test_bad_grids(items: list[str], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        parse_grid(items)


def test_settings_apply_to_the_config_and_its_argv() -> None:
    base = RunConfig(sources=("clip.mp4",), frames=300, preprocess="host")
    cfg = apply(base, {"hint": "latency", "infer_precision": "f32", "zero_copy": "false", "sync": "true",
                       "nireq": "2", "streams": "3", "device": "AUTO", "preprocess": "fused", "batch": "1"})
    inf = cfg.inference
    assert (inf.hint, inf.infer_precision, inf.zero_copy, inf.sync, inf.nireq, inf.streams, inf.device) == (
        "latency", "f32", False, True, 2, 3, "AUTO")
    assert cfg.preprocess == "fused" and cfg.sources == ("clip.mp4",) and cfg.frames == 300
    assert cfg.to_argv() == ["--source", "clip.mp4", "--frames", "300", "--device", "AUTO", "--hint", "latency",
                             "--streams", "3", "--nireq", "2", "--infer-precision", "f32", "--sync", "--no-zero-copy",
                             "--preprocess", "fused"]
    # A setting equal to run's default adds nothing to the command line.
    assert apply(RunConfig(), {"zero_copy": "true", "hint": "throughput"}).to_argv() == []
    assert set(GRID_FIELDS) == set(GRID_KEYS)  # every grid key sets a field
    assert apply(RunConfig(), {"batch": "4"}).inference.batch == 4
    assert parse_settings("infer_precision=f32,preprocess=host,sync=true") == {
        "infer_precision": "f32", "preprocess": "host", "sync": "true"}


@pytest.mark.parametrize("settings, fragment", [
    ({"hint": "fastest"}, "--hint 'fastest'"),
    ({"preprocess": "gpu"}, "--preprocess 'gpu'"),
    ({"infer_precision": "f8"}, "--infer-precision 'f8'"),
])
def test_a_bad_setting_fails_with_runs_own_message(settings: dict[str, str], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        apply(RunConfig(), settings)


def test_pareto_is_exactly_the_non_dominated_points() -> None:
    pts = [(100, 0.05), (120, 0.08), (90, 0.04), (95, 0.06), (120, 0.09), None, (130, 0.20)]
    # (95, .06) is beaten by (100, .05); (120, .09) by (120, .08); None failed.
    assert pareto(pts) == [0, 1, 2, 6]


def _row(fps: float, p99: float, changes: bool = False, ok: bool = True) -> dict:
    return {"status": "ok" if ok else "failed", "fps": fps, "e2e": {"p50": p99 / 2, "p99": p99},
            "accuracy": {"changes_results": changes}}


def test_recommendation_meets_the_budget_and_never_picks_changed_results() -> None:
    rows = [_row(100, 0.05), _row(150, 0.09, changes=True), _row(120, 0.07), _row(200, 0.2), _row(300, 0.01, ok=False)]
    assert recommend(rows, 0.08)[0] == 2
    idx, why = recommend(rows, 0.01)
    assert idx == 0 and "lowest p99" in why
    assert recommend(rows, None)[0] == 3


def test_accuracy_agreement_is_computed() -> None:
    a = np.array([[0.1, 0.1, 0.3, 0.3, 0.9, 1], [0.5, 0.5, 0.8, 0.8, 0.8, 2]], np.float32)
    shifted = a.copy()
    shifted[1, :4] += 0.25  # IoU with the original < 0.5
    assert matched_boxes(a, a) == 2 and matched_boxes(a, shifted) == 1
    relabelled = a.copy()
    relabelled[0, 5] = 3
    assert matched_boxes(a, relabelled) == 1
    ref = {0: ([np.zeros(4, np.float32)], a), 1: ([np.zeros(4, np.float32)], a)}
    same = compare(ref, ref, "detection")
    assert same["agreement"] == 1.0 and same["max_abs_diff"] == 0.0 and not same["changes_results"]
    cand = {0: ([np.full(4, 0.5, np.float32)], a), 1: ([np.zeros(4, np.float32)], shifted)}
    diff = compare(ref, cand, "detection")
    assert diff["agreement"] == pytest.approx(3 / 4) and diff["max_abs_diff"] == pytest.approx(0.5)
    assert diff["changes_results"]
    missing = compare(ref, {0: ref[0]}, "detection")
    assert missing["agreement"] == pytest.approx(2 / 4) and missing["max_abs_diff"] == float("inf")


def test_a_shared_nireq_is_dropped_for_sync_configurations() -> None:
    base = RunConfig(inference=InferenceOptions(nireq=4))
    assert apply(base, {"sync": "true", "infer_precision": "f32"}).inference.nireq is None
    assert apply(base, {"hint": "latency"}).inference.nireq == 4
