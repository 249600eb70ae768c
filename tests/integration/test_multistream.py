"""Many streams through one compiled model: exact per-stream counts, per-stream series, isolation of
a failing stream, fairness, and frame sizes that differ between streams."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import CLIP_FRAMES
from tests.integration.pipeline_helpers import run_pipeline
from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.runner import Runner
from vidprof.profiling import exporter
from vidprof.profiling.errors import UsageError
from vidprof.stages.inference import InferenceOptions

SYNTHETIC_FRAMES = 30  # synthetic:WxH@3 runs 10 s worth of frames by default
IMAGES = 5  # the images_dir fixture


def test_three_streams_of_known_lengths_are_counted_exactly(clip: str, images_dir: str, detector: str) -> None:
    registry = CollectorRegistry()
    runner = Runner(RunConfig(sources=(clip, images_dir, "synthetic:160x120@3"), model=detector, preprocess="host",
                              pipeline_name="multi", stream_names=("cam", "stills", "pattern")), registry)
    server = exporter.serve(registry, "127.0.0.1", 0)
    try:
        runner.run()
        rep = runner.summary().report
        server.refresh()  # the final values, as the CLI publishes them after a run
        with urllib.request.urlopen(server.url, timeout=10) as r:
            text = r.read().decode()
    finally:
        server.close()
    expected = {"cam": CLIP_FRAMES, "stills": IMAGES, "pattern": SYNTHETIC_FRAMES}
    assert {k: v["frames"]["completed"] for k, v in rep["streams"].items()} == expected
    assert all(v["frames"]["dropped"] == v["frames"]["failed"] == 0 for v in rep["streams"].values())
    assert rep["frames"]["completed"] == sum(expected.values()) == rep["e2e"]["count"]
    assert rep["frames"]["read"] == sum(expected.values())
    assert [s["label"] for s in rep["config"]["streams"]] == ["cam", "stills", "pattern"]
    for label, n in expected.items():
        st = rep["streams"][label]
        assert st["e2e"]["count"] == n and all(st["stages"][s]["count"] == n for s in st["stages"])
    # What a scraper sees over HTTP: one family, a child per stream, and the pipeline-wide series once.
    seen: dict[str, float] = {}
    requests = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "vidprof_frames_total" and s.labels["outcome"] == "completed":
                seen[s.labels["stream"]] = s.value
            if s.name == "vidprof_infer_requests":
                requests.append(s.labels)
    assert seen == {k: float(v) for k, v in expected.items()}
    assert requests == [{"pipeline": "multi"}]


def test_a_failing_stream_does_not_stop_the_others(clip: str, images_dir: str, detector: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(images_dir, broken)
    (broken / "img_02.png").write_bytes(b"not a png at all")  # the third image cannot be decoded
    _, rep, _ = run_pipeline(sources=(str(broken), clip), model=detector, preprocess="host", pipeline_name="test",
                             stream_names=("bad", "good"))
    assert rep["streams"]["good"]["frames"]["completed"] == CLIP_FRAMES
    assert rep["streams"]["good"]["fault"] is None
    bad = rep["streams"]["bad"]
    assert bad["frames"]["completed"] == 2 and "img_02.png" in bad["fault"]
    assert rep["fault"].startswith("stream bad: ") and "img_02.png" in rep["fault"]
    assert rep["frames"]["completed"] == CLIP_FRAMES + 2


def test_equal_streams_share_the_model_fairly(detector: str) -> None:
    """Non-paced equal streams compete for the same requests: none may starve."""
    _, rep, _ = run_pipeline(sources=("synthetic:320x240@30",), copies=4, frames=120, model=detector,
                             preprocess="host", pipeline_name="test")
    assert rep["frames"]["completed"] == 4 * 120
    assert set(rep["streams"]) == {"0", "1", "2", "3"}
    spread = rep["stream_fps"]
    assert spread["ratio"] >= 0.9, spread
    assert spread["min"] == min(s["fps"] for s in rep["streams"].values())


@pytest.mark.parametrize("placement", ["separate", "host"])
def test_streams_of_different_sizes(detector: str, placement: str) -> None:
    _, rep, _ = run_pipeline(sources=("synthetic:320x240@30", "synthetic:160x96@30"), frames=10, model=detector,
                             preprocess=placement)
    assert [s["size"] for s in rep["config"]["streams"]] == [[320, 240], [160, 96]]
    assert {k: v["frames"]["completed"] for k, v in rep["streams"].items()} == {"0": 10, "1": 10}


def test_fused_refuses_streams_of_different_sizes(detector: str) -> None:
    with pytest.raises(UsageError, match=r"--preprocess fused .* \(0: 320x240, 1: 160x96\); use --preprocess "
                                         r"separate or host"):
        run_pipeline(sources=("synthetic:320x240@30", "synthetic:160x96@30"), frames=2, model=detector,
                     preprocess="fused")


def test_sync_inference_serves_several_streams(detector: str) -> None:
    """One request at a time (--sync) still takes turns between streams and loses nothing."""
    _, rep, _ = run_pipeline(sources=("synthetic:160x120@30",), copies=3, frames=15, model=detector,
                             preprocess="host", inference=InferenceOptions(sync=True))
    assert [v["frames"]["completed"] for v in rep["streams"].values()] == [15, 15, 15]


def test_cli_copies_and_stream_names(run_cli, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    r = run_cli("run", "--source", "synthetic:160x120@30", "--copies", "2", "--stream", "door", "--stream", "dock",
                "--frames", "12", "--no-metrics", "--quiet", "--report", str(report))
    assert r.returncode == 0, r.stderr
    doc = json.loads(report.read_text())
    assert {k: v["frames"]["completed"] for k, v in doc["streams"].items()} == {"door": 12, "dock": 12}
    assert "2 streams through one model" in r.stdout


def test_cli_one_failing_stream_exits_1_with_the_others_reported(run_cli, clip: str, images_dir: str,
                                                                 tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(images_dir, broken)
    (broken / "img_01.png").write_bytes(b"junk")
    report = tmp_path / "r.json"
    r = run_cli("run", "--source", str(broken), "--source", clip, "--no-metrics", "--quiet", "--report", str(report))
    assert r.returncode == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("vidprof: error:")]
    assert len(errors) == 1 and "stream 0:" in errors[0] and "img_01.png" in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    doc = json.loads(report.read_text())
    assert doc["streams"]["1"]["frames"]["completed"] == CLIP_FRAMES
    assert os.path.basename(clip) in doc["streams"]["1"]["source"]
