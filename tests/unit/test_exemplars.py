"""Exemplars on the latency histograms: the slowest frame of each interval between two scrapes, kept per bucket,
exported in OpenMetrics only, by the fast renderer exactly as prometheus_client writes them."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, Exemplar, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from vidprof.profiling.exporter import _Renderer
from vidprof.profiling.figures import Figure
from vidprof.profiling.marks import STAGES, Marks
from vidprof.profiling.metrics import LATENCY_BUCKETS, MetricFamilies, StreamMetrics
from vidprof.profiling.recorder import Recorder, Transfer


def marks(frame: int, stage_ns: int, end_ns: int | None = None) -> Marks:
    """A frame whose every stage takes ``stage_ns``, ending (postprocess end) at ``end_ns`` on perf_counter_ns."""
    m = Marks(frame=frame)
    t = (end_ns if end_ns is not None else time.perf_counter_ns()) - 4 * stage_ns
    for st in STAGES:
        m.start[st] = t
        t += stage_ns
        m.end[st] = t
    m.infer_wait_start = m.end["preprocess"]
    return m


def recorder(stream: str = "cam") -> tuple[Recorder, CollectorRegistry]:
    registry = CollectorRegistry()
    return Recorder(StreamMetrics(MetricFamilies(registry), "p", stream)), registry


def bucket(seconds: float) -> int:
    return sum(1 for b in LATENCY_BUCKETS if b < seconds)


def test_figure_keeps_the_largest_tagged_value_until_taken() -> None:
    f = Figure(LATENCY_BUCKETS)
    assert f.take_top() is None
    for v, tag in ((0.002, "a"), (0.009, "b"), (0.004, "c")):
        f.add_tagged(v, tag)
    f.add(0.5)  # untagged values are not candidates
    assert f.take_top() == (0.009, "b")
    assert f.take_top() is None
    assert f.count + len(f._pending) == 4  # tagged or not, every value counts


def test_the_slowest_frame_of_each_interval_is_its_buckets_exemplar() -> None:
    r, _ = recorder()
    before = time.time()
    for i, ms in enumerate((3, 40, 7)):  # interval 1: frame 1 (4 x 40 ms e2e) is the slowest
        r.frame_done(marks(i, ms * 1_000_000), Transfer(), False)
    snap = r.snapshot()
    e2e = snap.exemplars[("e2e", "")]
    assert len(e2e) == len(LATENCY_BUCKETS) + 1
    [(i, (frame, value, at))] = [(i, ex) for i, ex in enumerate(e2e) if ex is not None]
    assert (frame, value) == (1, 0.16) and i == bucket(0.16)
    assert before <= at <= time.time()
    stage = snap.exemplars[("stage", "inference")]
    assert [ex[:2] for ex in stage if ex is not None] == [(1, 0.04)]
    # Interval 2: a slow frame in another bucket adds an exemplar; the first bucket keeps its own.
    r.frame_done(marks(3, 1_000_000), Transfer(), False)
    r.frame_done(marks(4, 2_000_000), Transfer(), False)
    e2e2 = r.snapshot().exemplars[("e2e", "")]
    assert e2e2[bucket(0.16)] == e2e[bucket(0.16)]
    assert e2e2[bucket(0.008)][:2] == (4, 0.008)
    # Interval 3: a new slowest frame in an occupied bucket replaces its exemplar, later in time.
    r.frame_done(marks(5, 45_000_000), Transfer(), False)
    e2e3 = r.snapshot().exemplars[("e2e", "")]
    assert e2e3[bucket(0.18)][:2] == (5, 0.18) and e2e3[bucket(0.18)][2] > e2e[bucket(0.16)][2]
    # No frame since: the same exemplars, timestamps unchanged (Prometheus drops the repeats).
    assert r.snapshot().exemplars[("e2e", "")] == e2e3


def test_exemplar_timestamps_stay_between_two_snapshots_whatever_the_clock() -> None:
    """Marks from another clock (a fake one in tests) cannot put an exemplar before the previous snapshot."""
    r, _ = recorder()
    r.snapshot()
    after_first = time.time()
    r.frame_done(marks(0, 1_000_000, end_ns=5), Transfer(), False)  # "ended" decades ago on perf_counter
    [(_, _, at)] = [ex for ex in r.snapshot().exemplars[("e2e", "")] if ex is not None]
    assert after_first - 0.01 <= at <= time.time()


def test_failed_frames_and_transfers_carry_no_exemplar() -> None:
    r, _ = recorder()
    r.frame_done(marks(0, 1_000_000), Transfer(h2d_ns=10_000), True, "boom", "inference")
    snap = r.snapshot()
    assert not any(ex for slots in snap.exemplars.values() for ex in slots)
    r.frame_done(marks(1, 1_000_000), Transfer(h2d_ns=10_000), False)
    assert {k for k, slots in r.snapshot().exemplars.items() if any(slots)} == \
        {("stage", s) for s in STAGES} | {("queue", w) for w in ("preprocess", "inference", "infer_wait",
                                                                 "postprocess")} | {("e2e", "")}


def test_openmetrics_carries_them_and_the_text_format_does_not() -> None:
    r, registry = recorder()
    for i in range(300):
        r.frame_done(marks(i, (1 + i % 13) * 300_000), Transfer(), False)
        if i % 50 == 0:
            list(registry.collect())  # a scrape: an interval ends
    families = list(registry.collect())
    renderer = _Renderer()
    om = renderer.openmetrics(families)
    assert om == openmetrics.generate_latest(registry)  # the fast renderer writes them as the library does
    assert renderer.text(families) == generate_latest(registry)
    assert b" # {" not in renderer.text(families)
    lines = [ln for ln in om.decode().splitlines() if " # {" in ln]
    assert lines and all("_bucket{" in ln for ln in lines)
    assert any(ln.startswith("vidprof_frame_latency_seconds_bucket") for ln in lines)
    # prometheus_client's own parser reads them back: frame and stream labels, the value within its bucket.
    seen = 0
    for fam in parse_openmetrics(om.decode()):
        for s in fam.samples:
            if s.exemplar is None:
                continue
            seen += 1
            assert s.exemplar.labels["stream"] == "cam" and 0 <= int(s.exemplar.labels["frame"]) < 300
            le = float(s.labels["le"])
            assert s.exemplar.value <= le
            assert s.exemplar.timestamp is not None
    assert seen == len(lines)
    assert list(text_string_to_metric_families(renderer.text(families).decode()))  # still plain text


def test_a_long_stream_label_leaves_the_exemplar_its_frame() -> None:
    """OpenMetrics caps an exemplar's labels at 128 characters; the series names the stream anyway."""
    long = "s" * 120
    r, registry = recorder(long)
    r.frame_done(marks(7, 1_000_000), Transfer(), False)
    om = openmetrics.generate_latest(registry).decode()
    labels = [s.exemplar.labels for fam in parse_openmetrics(om) for s in fam.samples if s.exemplar is not None]
    assert labels and all(x == {"frame": "7"} for x in labels)


class _Families:
    def __init__(self, *families: Metric) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return list(self.families)


def test_odd_exemplar_labels_are_escaped_as_the_library_does() -> None:
    h = HistogramMetricFamily("odd_seconds", "odd", labels=["a"])
    h.add_metric(["x\"y"], [("1.0", 2, Exemplar({"why": 'q"\n\\', "a": ""}, 0.5, 12.5)),
                             ("+Inf", 3, Exemplar({}, 7.0))], 1.5)
    c = CounterMetricFamily("odd_events", "odd", labels=["a"])
    c.add_metric(["b"], 4)
    c.samples[0] = c.samples[0]._replace(exemplar=Exemplar({"trace": "t1"}, 1.0, 3))
    registry = CollectorRegistry()
    registry.register(_Families(h, c))
    renderer = _Renderer()
    assert renderer.openmetrics(list(registry.collect())) == openmetrics.generate_latest(registry)
    assert renderer.text(list(registry.collect())) == generate_latest(registry)


def test_where_the_library_refuses_an_exemplar_the_renderer_refuses_it_too() -> None:
    g = GaugeMetricFamily("odd_level", "odd", labels=["a"])
    g.add_metric(["b"], 4)
    g.samples[0] = g.samples[0]._replace(exemplar=Exemplar({"trace": "t1"}, 1.0))
    registry = CollectorRegistry()
    registry.register(_Families(g))
    with pytest.raises(ValueError, match="exemplars"):
        openmetrics.generate_latest(registry)
    with pytest.raises(ValueError, match="exemplars"):
        _Renderer().openmetrics(list(registry.collect()))
