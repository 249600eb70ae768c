"""The live table's figures and layout, and `vidprof top`'s reading of an exposition, without a run."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from rich.console import Console

from vidprof.pipeline.top import Scrape, Target, parse_metrics, view
from vidprof.profiling.errors import RunError, UsageError
from vidprof.profiling.live import E2E, Row, StreamView, View, bucket_quantile, full_height, render
from vidprof.profiling.marks import STAGES, Marks
from vidprof.profiling.metrics import LATENCY_BUCKETS, MetricFamilies, StreamMetrics
from vidprof.profiling.recorder import Recorder, Transfer

INF = math.inf


@pytest.mark.parametrize(("q", "buckets", "expected"), [
    (0.5, [(1.0, 0), (2.0, 10), (INF, 10)], 1.5),  # linear inside (1, 2]
    (0.5, [(1.0, 10), (2.0, 10), (INF, 10)], 0.5),  # the first bucket starts at 0
    (0.99, [(1.0, 0), (2.0, 5), (INF, 10)], 2.0),  # in +Inf: the highest finite bound
    (0.5, [(1.0, 0), (INF, 0)], None),  # nothing observed
    (0.25, [(0.001, 2), (0.002, 6), (INF, 8)], 0.001),  # the rank at a bucket's top
])
def test_bucket_quantile_is_prometheus_histogram_quantile(q: float, buckets: list[tuple[float, float]],
                                                          expected: float | None) -> None:
    assert bucket_quantile(q, buckets) == (pytest.approx(expected) if expected is not None else None)


def _stream(name: str, busy: float = 0.5) -> StreamView:
    rows = (Row(E2E, 0.0123, 0.0456), *(Row(st, 0.001, 0.002, busy) for st in STAGES))
    return StreamView(name, rows, 29.97, 3)


def _lines(renderable: object, width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, highlight=False).print(renderable)
    return out.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 60, 56])
def test_the_table_fits_the_width_and_cuts_only_labels(width: int) -> None:
    views = [View("http://127.0.0.1:9464/metrics · a-pipeline-with-a-long-name · over 2.0 s",
                  (_stream("cam-" + "x" * 60), _stream("b")))]
    lines = _lines(render(views, width=width), width)
    assert all(len(ln) <= width for ln in lines), lines
    rows = [ln for ln in lines[3:] if ln.strip()]
    assert len(rows) == 10 and all("…" not in ln for ln in rows if not ln.startswith("cam-")), lines
    assert rows[0].startswith("cam-xx") and rows[0].split()[0].endswith("…")  # the long label, cut
    assert rows[0].split()[1:] == ["e2e", "12.3", "45.6", "30.0", "3"], rows[0]  # figures whole
    assert rows[1].split() == ["decode", "1.00", "2.00", "50%"], rows[1]


def test_narrower_than_the_figures_lines_are_cut_not_wrapped() -> None:
    lines = _lines(render([View("t", (_stream("cam"),))], width=40), 40)
    assert len(lines) == 8 and all(len(ln) <= 40 for ln in lines), lines


def test_a_row_per_stage_while_it_fits_the_height_then_a_row_per_stream() -> None:
    views = [View("t", tuple(_stream(f"s{i}", busy=0.1 * i) for i in range(8)))]
    tall = _lines(render(views, height=full_height(views)), 80)
    assert sum("preprocess" in ln for ln in tall) == 8
    short = _lines(render(views, height=20), 80)
    assert len(short) <= 20 and not any("preprocess" in ln for ln in short)
    assert "e2e p99 ms" in short[1] and sum(ln.startswith("s") and not ln.startswith("stream") for ln in short) == 8
    assert "decode 70%" in "\n".join(short)  # the busiest stage of stream 7 (all alike: the first)


def test_a_note_is_shown_for_a_vidprof_that_did_not_answer() -> None:
    lines = _lines(render([View("http://h:1/metrics", (), note="http://h:1/metrics: cannot connect")]), 80)
    assert lines == ["http://h:1/metrics", "http://h:1/metrics: cannot connect"]


@pytest.mark.parametrize(("text", "url", "auth"), [
    ("127.0.0.1:9464", "http://127.0.0.1:9464/metrics", None),
    ("http://host:1/", "http://host:1/metrics", None),
    ("https://u:p%40ss@host:2/metrics", "https://host:2/metrics", "Basic dTpwQHNz"),
    ("http://[::1]:3/other", "http://[::1]:3/other", None),
])
def test_urls(text: str, url: str, auth: str | None) -> None:
    t = Target.parse(text)
    assert (t.url, t.auth) == (url, auth)


@pytest.mark.parametrize("text", ["ftp://h/metrics", "http://:80", "http://h:port/metrics"])
def test_bad_urls_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="expected http://HOST:PORT/metrics"):
        Target.parse(text)


def _exposition(frames: int, ms: float, dropped: int = 0) -> tuple[bytes, Recorder]:
    registry = CollectorRegistry()
    recorder = Recorder(StreamMetrics(MetricFamilies(registry), "pipe", "cam"))
    for i in range(frames):
        m = Marks(frame=i)
        t = 0
        for st in STAGES:
            m.start[st] = t
            t += int(ms * 1e6)
            m.end[st] = t
        m.infer_wait_start = m.end["preprocess"]
        recorder.frame_done(m, Transfer(), False)
    for _ in range(dropped):
        recorder.frame_dropped()
    return generate_latest(registry), recorder


def test_top_reads_an_interval_from_two_expositions() -> None:
    before_text, _ = _exposition(100, 1.5)
    # The same stream later: 60 more frames, each stage 7 ms (e2e 28 ms), 2 dropped.
    registry = CollectorRegistry()
    recorder = Recorder(StreamMetrics(MetricFamilies(registry), "pipe", "cam"))
    for ms, n in ((1.5, 100), (7.0, 60)):
        for i in range(n):
            m = Marks(frame=i)
            t = 0
            for st in STAGES:
                m.start[st], m.end[st] = t, t + int(ms * 1e6)
                t = m.end[st]
            m.infer_wait_start = m.end["preprocess"]
            recorder.frame_done(m, Transfer(), False)
    recorder.frame_dropped()
    recorder.frame_dropped()
    before = parse_metrics("u", before_text, at=10.0)
    now = parse_metrics("u", generate_latest(registry), at=12.0)
    [s] = view(Target.parse("h:1"), now, before).streams
    assert s.stream == "cam" and s.fps == pytest.approx(30.0) and s.dropped == 2
    e2e = s.rows[0]
    assert e2e.part == E2E
    # Only the 60 new frames (28 ms end to end, in the (20, 50] ms bucket), not the 100 before them.
    assert 0.02 < e2e.p50 <= e2e.p99 <= 0.05
    inference = next(r for r in s.rows if r.part == "inference")
    assert 0.005 < inference.p50 <= 0.01
    # Without a read before: the totals since the start, and no FPS.
    [first] = view(Target.parse("h:1"), now, None).streams
    assert first.fps is None
    all_e2e = np.array([0.006] * 100 + [0.028] * 60)
    assert first.rows[0].p50 == bucket_quantile(0.5, [(b, float((all_e2e <= b).sum())) for b in
                                                      (*LATENCY_BUCKETS, INF)])


def test_an_exposition_that_is_not_a_vidprofs_is_a_run_error() -> None:
    with pytest.raises(RunError, match="not a vidprof's /metrics"):
        parse_metrics("http://h:1/metrics", b"# TYPE up gauge\nup 1\n", at=0.0)
    with pytest.raises(RunError, match="not Prometheus metrics"):
        parse_metrics("http://h:1/metrics", b"<html><body>hello</body></html>\n", at=0.0)


def test_a_restarted_vidprof_shows_its_new_totals() -> None:
    later, _ = _exposition(100, 1.5)
    earlier, _ = _exposition(500, 1.5)  # the counters went down: a new run on the same port
    [s] = view(Target.parse("h:1"), parse_metrics("u", later, 5.0), parse_metrics("u", earlier, 3.0)).streams
    assert s.fps == pytest.approx(50.0)  # 100 frames since the restart, over 2 s
    assert s.rows[0].p50 is not None


def test_scrape_lists_streams() -> None:
    assert Scrape(0.0).streams == []
