"""/metrics over real HTTP, during and after a run."""

from __future__ import annotations

import threading
import time
import urllib.request

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.runner import Runner
from vidprof.profiling import exporter

FAMILIES = {
    "vidprof_stage_latency_seconds", "vidprof_stage_queue_seconds", "vidprof_frame_latency_seconds",
    "vidprof_frames", "vidprof_fps", "vidprof_transfer_seconds", "vidprof_transfer_bytes",
    "vidprof_infer_requests_busy", "vidprof_infer_requests", "vidprof_queue_depth", "vidprof_startup_seconds",
    "vidprof_stage_busy_ratio", "vidprof_pipeline_info",  # the text parser reads an info as a gauge *_info
}


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out.setdefault(fam.name, {})[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def completed(families: dict, pipeline: str) -> float:
    key = ("vidprof_frames_total", (("outcome", "completed"), ("pipeline", pipeline), ("stream", "0")))
    return families["vidprof_frames"][key]


def test_metrics_are_served_during_and_after_a_run(detector: str) -> None:
    registry = CollectorRegistry()
    server = exporter.serve(registry, "127.0.0.1", 0)
    try:
        # Paced at 40 FPS for 80 frames: about two seconds, long enough to scrape mid-run.
        runner = Runner(RunConfig(sources=("synthetic:160x120@40",), realtime=True, frames=80, model=detector,
                                  preprocess="host", pipeline_name="http"), registry)
        runner.prepare()
        t = threading.Thread(target=runner.run)
        t.start()
        during = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and t.is_alive():
            fams = scrape(server.url)
            if completed(fams, "http") > 0:
                during = fams
                break
            time.sleep(0.1)
        t.join(60)
        assert not t.is_alive()
        assert during is not None, "no completed frame was visible on /metrics while the run was going"
        assert FAMILIES <= set(during)
        assert 0 < completed(during, "http") < 80

        after = scrape(server.url)
        rep = runner.summary().report
        # Paced like a camera, a busy machine may drop a frame: what /metrics says must match the report.
        assert completed(after, "http") == rep["frames"]["completed"]
        assert rep["frames"]["completed"] + rep["frames"]["dropped"] == 80
        busy = after["vidprof_infer_requests"][("vidprof_infer_requests", (("pipeline", "http"),))]
        assert busy == rep["config"]["resolved"]["nireq"]
        (labels, value), = ((k[1], v) for k, v in after["vidprof_pipeline_info"].items())
        assert value == 1.0 and ("preprocess", "host") in labels and ("model", "det.xml") in labels
    finally:
        server.close()
