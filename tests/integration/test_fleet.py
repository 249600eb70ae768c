"""vidprof on several machines: one real Prometheus, configured like samples/prometheus/fleet.yml, discovers three
`vidprof run` processes through a file_sd targets file; the fleet totals it answers must be the sums of the three
JSON reports, and every PromQL expression of the fleet dashboard must return data.

The "machines" are three processes on 127.0.0.1, each on a free port (each one is an `instance` to Prometheus,
as a box would be): two read one stream, one reads two. One module-wide fleet (~15 s on 2 cores):

- Prometheus starts first, from the shipped fleet.yml with 1 s scrapes, its targets folder still empty; then the
  three runs start, and their ports go into targets/vidprof.json as soon as they announce them. Prometheus picks
  the file up on its own (file_sd watches the folder), as it would when a box is added to a real fleet.
- Prometheus 2.x hands discovered targets to its scrapers on a 5 s tick, so each run is paced (--realtime) for
  10 s: long enough for rate() and quantile panels to be judged on frames that
  were flowing, which a test checks.
- Each run lingers (--linger) so its final values are scraped; once Prometheus has scraped every target after its
  report was written, the figures it holds are final, the lingers are ended (Ctrl-C ends only the linger) and
  every query is evaluated at that moment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.servers import (
    LINGER_LINE,
    Harness,
    Prometheus,
    Query,
    check_dashboard_layout,
    dashboard_queries,
    find_binary,
    finite_points,
    grafana_intervals,
    grafana_values,
    start_prometheus,
    substitute,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
FLEET_YML = REPO / "samples" / "prometheus" / "fleet.yml"
TARGETS_SAMPLE = REPO / "samples" / "prometheus" / "targets" / "vidprof.json"
DASHBOARD = REPO / "samples" / "grafana" / "vidprof-fleet.json"
MAIN_DASHBOARD = REPO / "samples" / "grafana" / "vidprof-dashboard.json"
SCRAPE = 1.0
# Paced at 15 FPS, 150 frames last 10 s: Prometheus discovers the targets ~5 s after it starts (its discovery tick),
# by then the runs are under way, and it still scrapes several seconds of frames flowing. A low rate keeps four
# streams light on a 2-core machine; 60 frames per 4 s rate window are plenty for a p99.
FPS = 15
SOURCE = f"synthetic:320x240@{FPS}"
FRAMES = 150
LINGER = 60.0  # an upper bound: the test ends each linger as soon as Prometheus holds the final values


@dataclass(frozen=True)
class Box:
    name: str
    pipeline: str  # two boxes share a pipeline name: the fleet view adds up by instance, whatever the pipelines
    sources: int


BOXES = (Box("box-a", "entrance", 1), Box("box-b", "yard", 2), Box("box-c", "entrance", 1))
QUERIES = dashboard_queries(DASHBOARD)


def fleet_config() -> str:
    """The shipped fleet.yml, scraping every second (the test's runs last seconds, not hours)."""
    text = FLEET_YML.read_text()
    for old, new in (("scrape_interval: 5s", f"scrape_interval: {SCRAPE:g}s"),
                     ("scrape_timeout: 4s", f"scrape_timeout: {int(SCRAPE * 800)}ms"),
                     # A fallback for where file change notifications do not arrive; they normally do.
                     ("refresh_interval: 1m", "refresh_interval: 1s")):
        assert old in text, f"fleet.yml no longer says {old!r}; update this test"
        text = text.replace(old, new)
    return text


# ---------------------------------------------------------------- static checks
def test_fleet_config_and_sample_targets_are_valid() -> None:
    """promtool checks the config and, through its file_sd pattern, the sample targets file beside it."""
    promtool = find_binary("promtool")  # shipped in Debian's prometheus package
    done = subprocess.run([promtool, "check", "config", str(FLEET_YML)], capture_output=True, text=True, timeout=60,
                          cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "targets/*.json" in FLEET_YML.read_text()


def test_sample_targets_use_placeholder_hosts() -> None:
    """The example lists two boxes by names that can never resolve (RFC 2606 .invalid), never real addresses."""
    groups = json.loads(TARGETS_SAMPLE.read_text())
    hosts = set()
    for group in groups:
        for target in group["targets"]:
            host, _, port = target.rpartition(":")
            assert host.endswith(".invalid") and port.isdigit(), target
            hosts.add(host)
    assert len(hosts) >= 2, hosts


def test_fleet_dashboard_shape() -> None:
    doc = json.loads(DASHBOARD.read_text())
    check_dashboard_layout(doc, ("instance", "pipeline"))
    # Provisioned from the same folder as the main dashboard: both load only with distinct uids.
    assert doc["uid"] == "vidprof-fleet" != json.loads(MAIN_DASHBOARD.read_text())["uid"]
    assert len(QUERIES) >= 10
    for q in QUERIES:
        for window in re.findall(r"\[([^\]]+)\]", q.expr):
            assert window == "$__rate_interval", f"{q.qid}: use [$__rate_interval], not [{window}]"
        assert 'instance=~"$instance"' in q.expr, f"{q.qid}: every query follows the instance variable"
        substitute(q.expr, {"instance": "x", "pipeline": "y", **grafana_intervals(SCRAPE)})  # no unknown variables


# ---------------------------------------------------------------- the live fleet
@dataclass
class Fleet:
    prom: Prometheus
    start: float
    final: float  # every target scraped after its run ended: the figures Prometheus holds here are final
    reports: dict[str, dict[str, Any]]  # by instance (host:port)
    variables: dict[str, str]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.prom.query(expr, self.final)

    def value(self, expr: str) -> float:
        [series] = self.query(expr)
        return float(series["value"][1])

    def by_instance(self, expr: str) -> dict[str, float]:
        return {r["metric"]["instance"]: float(r["value"][1]) for r in self.query(expr)}


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    return find_binary("prometheus")


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("fleet"))
    try:
        yield h
    finally:
        h.stop_all()


def _last_scrape(prom: Prometheus, instance: str) -> float:
    result = prom.query(f'timestamp(up{{instance="{instance}"}})', time.time())
    return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture(scope="module")
def fleet(prometheus_bin: str, procs: Harness) -> Fleet:
    h = procs
    conf_dir = h.folder / "prometheus"
    targets_dir = conf_dir / "targets"
    targets_dir.mkdir(parents=True)
    # Started before the runs: its start-up and first discovery tick overlap their model compiles.
    prom = start_prometheus(h, prometheus_bin, fleet_config(), name="fleet", folder=conf_dir)
    start = time.time() - 5

    runs = []
    for box in BOXES:
        report = h.folder / f"{box.name}.json"
        proc = h.vidprof(box.name, [
            *(a for _ in range(box.sources) for a in ("--source", SOURCE)),
            "--realtime", "--frames", str(FRAMES), "--pipeline-name", box.pipeline,
            "--metrics-host", "127.0.0.1", "--metrics-port", "0",
            "--linger", f"{LINGER:g}", "--report", str(report), "--quiet",
        ])
        runs.append((proc, report))
    instances = [f"127.0.0.1:{h.metrics_port(proc)}" for proc, _ in runs]

    # As a fleet's targets file would be edited: written aside, then renamed into the watched folder in one step,
    # so Prometheus never reads half a file.
    staged = conf_dir / "vidprof.json.new"
    staged.write_text(json.dumps([{"targets": [i], "labels": {"box": box.name}}
                                  for i, box in zip(instances, BOXES, strict=True)], indent=2))
    staged.replace(targets_dir / "vidprof.json")
    all_procs = [prom.proc, *(p for p, _ in runs)]
    wait_until("Prometheus to discover and scrape the three runs", lambda: prom.targets_up(instances), 30, all_procs)

    for (proc, report), instance in zip(runs, instances, strict=True):
        wait_until(f"{proc.name} to finish its run", lambda p=proc: LINGER_LINE in p.log(),
                   FRAMES / FPS + 90, [proc])
        done = os.stat(report).st_mtime
        # A scrape that started after the report was written read the final counters.
        wait_until(f"Prometheus to scrape {proc.name}'s final values",
                   lambda i=instance, d=done: _last_scrape(prom, i) > d, 15, [prom.proc, proc])
    final = time.time()
    for proc, _ in runs:
        code = proc.end_linger()
        assert code == 0, f"{proc.name} exited with {code}:\n{proc.tail()}"
    assert prom.proc.alive(), f"Prometheus died:\n{prom.proc.tail()}"

    reports = {i: json.loads(report.read_text()) for i, (_, report) in zip(instances, runs, strict=True)}
    variables = {"instance": grafana_values(sorted(instances)),
                 "pipeline": grafana_values(sorted({b.pipeline for b in BOXES})), **grafana_intervals(SCRAPE)}
    return Fleet(prom, start, final, reports, variables)


def test_fleet_totals_match_the_reports(fleet: Fleet) -> None:
    reports = fleet.reports
    assert len(reports) == len(BOXES)
    assert sorted(len(r["streams"]) for r in reports.values()) == sorted(b.sources for b in BOXES)
    for r in reports.values():
        assert r["frames"]["completed"] > 0
        assert r["frames"]["failed"] == 0

    completed = sum(r["frames"]["completed"] for r in reports.values())
    assert fleet.value('sum(vidprof_frames_total{outcome="completed"})') == completed
    assert fleet.value("count(vidprof_stream_info)") == sum(len(r["streams"]) for r in reports.values())

    assert fleet.by_instance('sum by (instance) (vidprof_frames_total{outcome="completed"})') == {
        i: r["frames"]["completed"] for i, r in reports.items()}
    assert fleet.by_instance("count by (instance) (vidprof_stream_info)") == {
        i: len(r["streams"]) for i, r in reports.items()}
    for outcome in ("dropped", "failed"):
        assert fleet.by_instance(f'sum by (instance) (vidprof_frames_total{{outcome="{outcome}"}})') == {
            i: r["frames"][outcome] for i, r in reports.items()}, outcome
    # Each instance's streams, under the labels its report uses.
    for instance, r in reports.items():
        result = fleet.query(f'vidprof_frames_total{{outcome="completed", instance="{instance}"}}')
        assert {s["metric"]["stream"]: float(s["value"][1]) for s in result} == {
            label: s["frames"]["completed"] for label, s in r["streams"].items()}, instance


def test_prometheus_saw_the_fleet_while_frames_flowed(fleet: Fleet) -> None:
    """Otherwise the rate() and quantile panels below would only have been checked against finished runs."""
    for instance, r in fleet.reports.items():
        first = fleet.value(f'min_over_time(sum by (instance) (vidprof_frames_total{{outcome="completed", '
                            f'instance="{instance}"}})[5m:1s])')
        completed = r["frames"]["completed"]
        assert first < completed * 0.75, (
            f"Prometheus first scraped {instance} after {first:g} of {completed} frames: too late to judge rate() "
            "panels on a live run; the machine is slow or discovery was late; raise FRAMES")


def _panel(title: str) -> list[Query]:
    found = [q for q in QUERIES if q.panel == title]
    assert found, f"no panel {title!r} in the fleet dashboard"
    return found


def test_fleet_dashboard_figures_are_the_reports(fleet: Fleet) -> None:
    """The dashboard's own counting panels, evaluated as Grafana would, show the reports' sums."""
    reports = fleet.reports

    def one(title: str, ref: str = "A") -> list[dict[str, Any]]:
        [q] = [q for q in _panel(title) if q.qid.endswith(f"[{ref}]")]
        return fleet.query(substitute(q.expr, fleet.variables))

    def per_instance(result: list[dict[str, Any]]) -> dict[str, float]:
        return {r["metric"]["instance"]: float(r["value"][1]) for r in result}

    completed = {i: r["frames"]["completed"] for i, r in reports.items()}
    streams = {i: len(r["streams"]) for i, r in reports.items()}
    assert float(one("Frames completed")[0]["value"][1]) == sum(completed.values())
    assert float(one("Streams")[0]["value"][1]) == sum(streams.values())
    assert per_instance(one("Frames completed per instance")) == completed
    assert per_instance(one("Streams per instance")) == streams
    assert per_instance(one("Instances", "B")) == streams
    assert per_instance(one("Instances", "C")) == completed
    assert per_instance(one("Instances", "D")) == {i: r["frames"]["dropped"] for i, r in reports.items()}
    assert per_instance(one("Instances", "E")) == {i: r["frames"]["failed"] for i, r in reports.items()}
    assert float(one("Instances up", "A")[0]["value"][1]) == len(BOXES)
    assert float(one("Instances up", "B")[0]["value"][1]) == 0


@pytest.mark.parametrize("q", QUERIES, ids=[q.qid for q in QUERIES])
def test_fleet_dashboard_query_returns_data(fleet: Fleet, q: Query) -> None:
    promql = substitute(q.expr, fleet.variables)
    result = fleet.prom.query_range(promql, fleet.start, fleet.final, SCRAPE)
    assert finite_points(result) > 0, f"{q.qid}: no data over the run for\n{promql}\nresult: {result}"
    if q.instant:  # what Grafana asks for: one evaluation, at the end of the range
        assert fleet.query(promql), f"{q.qid}: the instant query returns nothing\n{promql}"
    if "{{instance}}" in q.legend:  # a per-instance panel shows every instance, and nothing else
        assert {r["metric"].get("instance") for r in result} == set(fleet.reports), f"{q.qid}\n{promql}"
