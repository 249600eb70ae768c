"""Getting a short run's metrics out without a scrape: a real Pushgateway, and node_exporter's textfile format."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.servers import REPO, SYNTHETIC, Harness, find_binary, http_get, start_pushgateway

FRAMES = 40


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.stop_all()


@pytest.fixture
def pushgateway(procs: Harness) -> str:
    return start_pushgateway(procs, find_binary("prometheus-pushgateway"))


def samples(text: str, name: str, **labels: str) -> list[Any]:
    """Samples called ``name`` whose labels include ``labels``."""
    return [s for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name and labels.items() <= s.labels.items()]


def run_vidprof(procs: Harness, name: str, *args: str) -> dict[str, Any]:
    """A short synthetic run without /metrics; returns its JSON report."""
    report = procs.folder / f"{name}.json"
    proc = procs.vidprof(name, [*SYNTHETIC, "--frames", str(FRAMES), "--no-metrics", "--quiet",
                                "--report", str(report), *args])
    code = proc.wait_exit(90)
    assert code == 0, f"vidprof exited with {code}:\n{proc.tail()}"
    return json.loads(report.read_text())


def test_pushgateway_receives_the_final_counts(procs: Harness, pushgateway: str) -> None:
    pipeline = "it_push"
    # A short interval so pushes during the run happen too; the final push must still win.
    rep = run_vidprof(procs, "vidprof-push", "--pushgateway", pushgateway, "--push-interval", "0.2",
                      "--pipeline-name", pipeline)
    assert rep["frames"] == {"completed": FRAMES, "dropped": 0, "failed": 0, "read": FRAMES}

    text = http_get(f"{pushgateway}/metrics").decode()
    completed = samples(text, "vidprof_frames_total", outcome="completed", pipeline=pipeline)
    assert len(completed) == 1, completed
    sample = completed[0]
    assert sample.value == FRAMES
    assert sample.labels["job"] == "vidprof"
    assert sample.labels["stream"] == "0"
    # The rest of the registry went along: a histogram, the process collector, and the push bookkeeping.
    assert samples(text, "vidprof_frame_latency_seconds_count", job="vidprof", pipeline=pipeline)[0].value == FRAMES
    assert samples(text, "process_cpu_seconds_total", job="vidprof", pipeline=pipeline)
    assert samples(text, "push_time_seconds", job="vidprof", pipeline=pipeline)[0].value > 0
    assert not samples(text, "push_failure_time_seconds", job="vidprof", pipeline=pipeline)[0].value


def test_metrics_textfile_is_a_parseable_exposition(procs: Harness) -> None:
    path = procs.folder / "vidprof.prom"
    rep = run_vidprof(procs, "vidprof-textfile", "--metrics-textfile", str(path), "--pipeline-name", "it_textfile")
    assert rep["frames"]["completed"] == FRAMES

    text = path.read_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["vidprof_frames"].type == "counter"
    assert families["vidprof_stage_latency_seconds"].type == "histogram"
    completed = samples(text, "vidprof_frames_total", outcome="completed", pipeline="it_textfile")
    assert [s.value for s in completed] == [FRAMES]
    for stage in ("decode", "preprocess", "inference", "postprocess"):
        count = samples(text, "vidprof_stage_latency_seconds_count", stage=stage, pipeline="it_textfile")
        assert [s.value for s in count] == [FRAMES], stage
    # Written atomically: no temporary file left next to it.
    assert sorted(p.name for p in path.parent.glob("vidprof.prom*")) == ["vidprof.prom"]


def test_tune_pushes_each_configuration_with_a_config_label(procs: Harness, pushgateway: str) -> None:
    report = procs.folder / "tune.json"
    proc = procs.start("vidprof-tune", [
        sys.executable, "-m", "vidprof.pipeline", "tune", *SYNTHETIC, "--frames", "20", "--grid", "nireq=1,2",
        "--model-only-seconds", "0.2", "--warmup", "1", "--quiet", "--report", str(report),
        "--pushgateway", pushgateway, "--pipeline-name", "it_tune"], cwd=REPO)
    code = proc.wait_exit(300)
    assert code == 0, f"vidprof tune exited with {code}:\n{proc.tail()}"
    doc = json.loads(report.read_text())
    text = http_get(f"{pushgateway}/metrics").decode()
    fps = samples(text, "vidprof_tune_fps", job="vidprof_tune", pipeline="it_tune")
    by_config = {s.labels["config"]: s.value for s in fps}
    assert set(by_config) == {"nireq=1", "nireq=2", "reference:infer_precision=f32,preprocess=separate,sync=true"}
    for r in doc["results"]:
        key = ("reference:" if r["reference"] else "") + ",".join(f"{k}={v}" for k, v in r["config"].items())
        assert by_config[key] == pytest.approx(r["fps"])
    assert len(samples(text, "vidprof_tune_e2e_latency_seconds", pipeline="it_tune")) == 6
    # A nireq sweep cannot change results: where the device ran f32 (as the reference does), agreement is exact.
    for r in doc["results"]:
        if r["precision"] == "f32":
            assert r["accuracy"]["agreement"] == 1.0 and not r["accuracy"]["changes_results"]
