"""Metric names, labels and values, read back from a fresh registry."""

import itertools

from prometheus_client import CollectorRegistry

from tests.unit.test_marks_and_clock import make_marks
from vidprof.profiling.marks import Marks
from vidprof.profiling.metrics import LATENCY_BUCKETS, MetricFamilies, PipelineMetrics, StreamMetrics
from vidprof.profiling.recorder import Recorder, Transfer

LABELS = {"pipeline": "p", "stream": "0"}


def test_buckets_cover_50us_to_10s() -> None:
    assert LATENCY_BUCKETS[0] == 0.00005 and LATENCY_BUCKETS[-1] == 10.0
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)
    assert all(b / a <= 2.5 for a, b in itertools.pairwise(LATENCY_BUCKETS))


def test_family_names_follow_conventions() -> None:
    reg = CollectorRegistry()
    families = MetricFamilies(reg)
    PipelineMetrics(families, "p")
    Recorder(StreamMetrics(families, "p", "0"))
    names = {m.name: m.type for m in reg.collect()}
    assert names == {
        "vidprof_stage_latency_seconds": "histogram",
        "vidprof_stage_queue_seconds": "histogram",
        "vidprof_frame_latency_seconds": "histogram",
        "vidprof_frames": "counter",
        "vidprof_transfer_seconds": "histogram",
        "vidprof_transfer_bytes": "counter",
        "vidprof_fps": "gauge",
        "vidprof_infer_requests_busy": "gauge",
        "vidprof_infer_requests": "gauge",
        "vidprof_queue_depth": "gauge",
        "vidprof_startup_seconds": "gauge",
        "vidprof_stage_busy_ratio": "gauge",
        "vidprof_model_cache_state": "gauge",
        "vidprof_memory_bytes": "gauge",
        "vidprof_pipeline": "info",
        "vidprof_stream": "info",
        "vidprof_source_up": "gauge",
        "vidprof_source_reconnects": "counter",
    }


def test_recorder_observes_exact_values() -> None:
    reg = CollectorRegistry()
    rec = Recorder(StreamMetrics(MetricFamilies(reg), "p", "0"))
    for _ in range(3):
        rec.frame_done(make_marks(), Transfer(h2d_bytes=100, h2d_ns=1000, d2h_bytes=10, d2h_ns=500), failed=False)
    rec.frame_done(Marks(), Transfer(), failed=True, error="boom")
    rec.frame_dropped()

    def v(name: str, **labels: str) -> float | None:
        return reg.get_sample_value(name, {**LABELS, **labels})

    assert v("vidprof_frames_total", outcome="completed") == 3
    assert v("vidprof_frames_total", outcome="failed") == 1
    assert v("vidprof_frames_total", outcome="dropped") == 1
    assert v("vidprof_stage_latency_seconds_count", stage="inference") == 3
    assert abs(v("vidprof_stage_latency_seconds_sum", stage="inference") - 0.018) < 1e-12
    assert v("vidprof_stage_latency_seconds_bucket", stage="inference", le="0.005") == 0
    assert v("vidprof_stage_latency_seconds_bucket", stage="inference", le="0.01") == 3
    assert abs(v("vidprof_stage_queue_seconds_sum", stage="infer_wait") - 0.015) < 1e-12
    assert abs(v("vidprof_frame_latency_seconds_sum") - 3 * 0.036) < 1e-12
    assert v("vidprof_transfer_bytes_total", direction="host_to_device") == 300
    assert v("vidprof_transfer_bytes_total", direction="device_to_host") == 30
    assert abs(v("vidprof_transfer_seconds_sum", direction="host_to_device") - 3e-6) < 1e-15
    assert rec.completed == 3 and rec.failed == 1 and rec.dropped == 1 and rec.first_error == "boom"
    assert max(abs(u) for u in rec.samples.unaccounted) < 1e-12


def test_label_cardinality_is_fixed() -> None:
    """However many frames go through, the number of series does not grow."""
    reg = CollectorRegistry()
    rec = Recorder(StreamMetrics(MetricFamilies(reg), "p", "0"))
    rec.frame_done(make_marks(), Transfer(), failed=False)
    before = sum(len(m.samples) for m in reg.collect())
    for _ in range(200):
        rec.frame_done(make_marks(), Transfer(), failed=False)
        rec.frame_dropped()
    assert sum(len(m.samples) for m in reg.collect()) == before


def test_families_are_created_once_and_streams_are_label_children() -> None:
    """Many streams share one registry: one family per metric, one child per stream, and pipeline-wide
    series carry no stream label."""
    reg = CollectorRegistry()
    families = MetricFamilies(reg)
    recs = [Recorder(StreamMetrics(families, "p", label)) for label in ("a", "b", "c")]
    PipelineMetrics(families, "p").infer_requests.set(4)
    for i, rec in enumerate(recs):
        for _ in range(i + 1):
            rec.frame_done(make_marks(), Transfer(), failed=False)
    for i, label in enumerate(("a", "b", "c")):
        assert reg.get_sample_value("vidprof_frames_total", {"pipeline": "p", "stream": label,
                                                             "outcome": "completed"}) == i + 1
    assert reg.get_sample_value("vidprof_infer_requests", {"pipeline": "p"}) == 4
    assert len([m for m in reg.collect() if m.name == "vidprof_frames"]) == 1
