"""Exemplars: a real Prometheus, its exemplar storage on, scrapes a real `vidprof run --trace` of two streams,
negotiating OpenMetrics by itself; every exemplar /api/v1/query_exemplars returns names a frame of the run.

One run for the module (~25 s): two copies of a synthetic source paced at 30 FPS for 300 frames (~10 s), on a
free port, lingering a few seconds so the final exemplars are scraped; Prometheus scrapes every second from about
5 s after it starts (its service-discovery tick), so it sees the run while frames flow. Each exemplar's frame is
then looked up in the run's Perfetto trace: it is there, it completed, and its end-to-end latency (or the stage,
or the wait, of the series the exemplar is on) is the exemplar's value to the last bit: the same integers
subtracted the same way.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.servers import (
    SYNTHETIC,
    Harness,
    Prometheus,
    find_binary,
    grafana_intervals,
    grafana_values,
    metrics_url,
    panels,
    start_prometheus_with,
    substitute,
    wait_until,
)
from tests.integration.trace_helpers import Slice, Trace, parse
from vidprof.profiling.metrics import LATENCY_BUCKETS

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "samples" / "grafana" / "vidprof-dashboard.json"
PIPELINE = "it_exemplars"
STREAMS = ("left", "right")
FRAMES = 300  # per stream, at 30 FPS: ~10 s of run
LINGER = 4.0
SCRAPE = 1.0
# The histograms with exemplars, and what of a frame's trace each one's value is.
FAMILIES = ("vidprof_frame_latency_seconds", "vidprof_stage_latency_seconds", "vidprof_stage_queue_seconds")
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


@dataclass
class Run:
    prom: Prometheus
    start: float
    end: float
    report: dict[str, Any]
    trace: Trace
    frames: dict[tuple[str, int], list[Slice]]
    text: bytes  # /metrics as the text format, read during the linger
    openmetrics: bytes  # and as OpenMetrics

    def exemplars(self, query: str) -> list[dict[str, Any]]:
        return self.prom.api("query_exemplars", query=query, start=f"{self.start:.3f}", end=f"{self.end:.3f}")


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("exemplars"))
    try:
        yield h
    finally:
        h.stop_all()


def _get(url: str, accept: str | None = None) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=5) as r:  # a loopback URL vidprof printed
        return r.read()


@pytest.fixture(scope="module")
def run(procs: Harness) -> Run:
    binary = find_binary("prometheus")  # skips, or fails under VIDPROF_REQUIRE_SERVERS=1
    h = procs
    report, trace = h.folder / "report.json", h.folder / "run.pftrace"
    start = time.time() - 5
    vidprof = h.vidprof("vidprof", [
        *SYNTHETIC, "--copies", str(len(STREAMS)), *(a for s in STREAMS for a in ("--stream", s)),
        "--realtime", "--frames", str(FRAMES), "--metrics-port", "0", "--pipeline-name", PIPELINE,
        "--linger", f"{LINGER:g}", "--report", str(report), "--trace", str(trace), "--quiet",
    ])
    url = metrics_url(vidprof)
    target = url.removeprefix("http://").removesuffix("/metrics")
    prom = start_prometheus_with(h, binary, (
        "global:\n"
        f"  scrape_interval: {SCRAPE:g}s\n"
        f"  scrape_timeout: {int(SCRAPE * 800)}ms\n"
        "scrape_configs:\n"
        "  - job_name: vidprof\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    ), ["--enable-feature=exemplar-storage"])
    wait_until(f"Prometheus to scrape vidprof at {target}", lambda: prom.targets_up([target]), 30,
               [prom.proc, vidprof])
    wait_until("vidprof to linger", lambda: "vidprof: serving final metrics" in vidprof.log(), FRAMES / 30 + 90,
               [vidprof])
    text, om = _get(url), _get(url, OPENMETRICS)
    code = vidprof.wait_exit(LINGER + 30)
    assert code == 0, f"vidprof exited with {code}:\n{vidprof.tail()}"
    assert prom.proc.alive(), f"Prometheus died:\n{prom.proc.tail()}"
    parsed = parse(trace)
    return Run(prom, start, time.time(), json.loads(report.read_text()), parsed, parsed.frame_slices(), text, om)


def _bucket(seconds: float) -> int:
    return sum(1 for b in LATENCY_BUCKETS if b < seconds)


def _traced_value(family: str, series: dict[str, str], slices: list[Slice]) -> float:
    """What the exemplar's value must be: the frame's figure of the series it is on, from the trace."""
    if family == "vidprof_frame_latency_seconds":
        return (max(s.end for s in slices) - min(s.start for s in slices)) / 1e9
    kind = "stage" if family == "vidprof_stage_latency_seconds" else "wait"
    [part] = [s for s in slices if s.part == (kind, series["stage"])]
    return (part.end - part.start) / 1e9


def test_only_openmetrics_carries_exemplars(run: Run) -> None:
    assert b" # {" not in run.text
    lines = [ln for ln in run.openmetrics.decode().splitlines() if " # {" in ln]
    assert lines, "no exemplar in the OpenMetrics exposition"
    assert {ln.split("{", 1)[0] for ln in lines} == {f"{f}_bucket" for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_exemplars_name_frames_of_the_trace(run: Run, family: str) -> None:
    result = run.exemplars(f'{family}_bucket{{pipeline="{PIPELINE}"}}')
    assert result, f"Prometheus holds no exemplar of {family}"
    streams = {label: run.report["streams"][label]["frames"] for label in STREAMS}
    seen_streams = set()
    count = 0
    for series in result:
        labels = series["seriesLabels"]
        le = float(labels["le"])
        for ex in series["exemplars"]:
            count += 1
            stream, frame, value = ex["labels"]["stream"], int(ex["labels"]["frame"]), float(ex["value"])
            assert stream == labels["stream"], ex
            seen_streams.add(stream)
            read = streams[stream]["completed"] + streams[stream]["dropped"] + streams[stream]["failed"]
            assert 0 <= frame < read, (ex, streams[stream])
            slices = run.frames.get((stream, frame))
            assert slices, f"{stream} frame {frame} is not in the trace"
            assert {s.args["outcome"] for s in slices} == {"completed"}, (stream, frame)
            assert value == _traced_value(family, labels, slices), (labels, ex)
            assert _bucket(value) == _bucket(le), (labels, ex)  # in the bucket it is shown on
            assert run.start <= float(ex["timestamp"]) <= run.end, ex
    assert seen_streams == set(STREAMS)
    assert count >= len(STREAMS)


def test_the_slowest_frames_bucket_has_an_exemplar(run: Run) -> None:
    """A dot in Grafana's highest band: the bucket of each stream's slowest frame end to end holds an exemplar."""
    result = run.exemplars(f'vidprof_frame_latency_seconds_bucket{{pipeline="{PIPELINE}"}}')
    for stream in STREAMS:
        slowest = run.report["streams"][stream]["e2e"]["max"]
        values = [float(ex["value"]) for series in result if series["seriesLabels"]["stream"] == stream
                  for ex in series["exemplars"]]
        assert _bucket(max(values)) == _bucket(slowest), (stream, slowest, sorted(values))
    # Those of the report's slowest frames that Prometheus holds as exemplars carry the report's e2e: the same
    # figure, three ways. (Not necessarily any: the slowest frames often come first, before Prometheus' first
    # scrape, and a later slow frame in the same bucket then takes their place.)
    named = {(ex["labels"]["stream"], int(ex["labels"]["frame"])): float(ex["value"])
             for series in result for ex in series["exemplars"]}
    for f in run.report["slowest"]:
        if (f["stream"], f["frame"]) in named:
            assert named[(f["stream"], f["frame"])] == f["e2e"], f


def test_dashboard_latency_panels_show_exemplars(run: Run) -> None:
    """Each latency time series over an exemplar histogram has one target with exemplars on (one: each dot once),
    and Grafana's exemplar query for it (the target's expression, variables substituted) returns exemplars."""
    variables = {"pipeline": grafana_values([PIPELINE]), "stream": grafana_values(STREAMS),
                 **grafana_intervals(SCRAPE)}
    checked = 0
    for panel in panels(json.loads(DASHBOARD.read_text())["panels"]):
        latency = [t for t in panel.get("targets", []) if "histogram_quantile" in t.get("expr", "")
                   and any(f"{f}_bucket" in t["expr"] for f in FAMILIES)]
        if not latency:
            continue
        on = [t["expr"] for t in latency if t.get("exemplar")]
        if panel["type"] != "timeseries":  # a stat: no time axis to put dots on
            assert not on, panel["title"]
            continue
        assert len(on) == 1, f"{panel['title']}: exemplars on {len(on)} targets"
        assert run.exemplars(substitute(on[0], variables)), f"{panel['title']}: no exemplar for {on[0]}"
        checked += 1
    assert checked >= 4
