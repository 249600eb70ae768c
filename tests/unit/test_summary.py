import pytest

from tests.unit.test_marks_and_clock import make_marks
from vidprof.profiling.recorder import Recorder, Transfer
from vidprof.profiling.summary import RunInfo, Summary, bottleneck, busy_ratios


def test_busy_ratios_and_bottleneck_from_known_frames() -> None:
    rec = Recorder(None)
    for _ in range(10):
        rec.frame_done(make_marks(), Transfer(), failed=False)
    busy = busy_ratios(rec, wall_seconds=0.1, nireq=2)
    # 10 frames x 2 ms decode over 0.1 s; inference 10 x 6 ms over 2 requests x 0.1 s.
    assert busy["decode"] == pytest.approx(0.2)
    assert busy["inference"] == pytest.approx(0.3)
    assert busy["postprocess"] == pytest.approx(0.8)
    b = bottleneck(busy)
    assert b["stage"] == "postprocess"
    # The runner-up is named too (preprocess and inference tie at 30 %).
    assert b["advice"].startswith("postprocess is busy 80% of the time while ") and "is busy 30%" in b["advice"]


def test_no_saturated_stage_blames_the_source_only_when_paced() -> None:
    busy = {"decode": 0.1, "preprocess": 0.05, "inference": 0.3, "postprocess": 0.01}
    paced = bottleneck(busy, paced=True)
    assert paced["stage"] == "source" and "no stage is saturated" in paced["advice"]
    # A file read as fast as it decodes: frames do not wait for the source, so the busiest stage is named.
    unpaced = bottleneck(busy, paced=False)
    assert unpaced["stage"] == "inference" and "no stage is saturated" in unpaced["advice"]


def test_report_fields_and_fps() -> None:
    rec = Recorder(None)
    for _ in range(4):
        rec.frame_done(make_marks(), Transfer(h2d_bytes=7, d2h_bytes=3), failed=False)
    r = Summary.build([rec], RunInfo(wall_seconds=2.0, nireq=1)).report
    assert r["frames"] == {"completed": 4, "dropped": 0, "failed": 0, "read": 0}
    assert r["fps"] == 2.0
    assert set(r["stages"]) == {"decode", "preprocess", "inference", "postprocess"}
    assert set(r["stages"]["decode"]) == {"count", "mean", "p50", "p95", "p99", "max"}
    assert r["transfer"]["host_to_device"]["bytes"] == 28 and r["transfer"]["device_to_host"]["bytes"] == 12
    assert r["e2e"]["p50"] == pytest.approx(0.036)


def test_inference_advice_suggests_the_throughput_hint_only_when_it_is_not_in_use() -> None:
    busy = {"decode": 0.1, "preprocess": 0.2, "inference": 0.95, "postprocess": 0.1}
    assert "--hint throughput" in bottleneck(busy, hint="latency")["advice"]
    assert "--hint throughput" not in bottleneck(busy, hint="throughput")["advice"]
