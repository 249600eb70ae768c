"""Helpers for tests that run real servers (Prometheus, Pushgateway) next to a real `vidprof run`.

Everything listens on 127.0.0.1 only, every wait is bounded, and every process a ``Harness`` starts is
stopped by ``Harness.stop_all()`` (terminate, then kill), which the tests' fixtures call in ``finally``.

Also here: the dashboards' PromQL as Grafana would send it (``dashboard_queries``, ``substitute``), so the
tests of one vidprof and of a fleet judge the shipped JSON the same way.

The server binaries come from Debian's `prometheus` and `prometheus-pushgateway` packages
(`.ci/install-servers`). When one is missing the tests that need it skip with the reason, unless
VIDPROF_REQUIRE_SERVERS=1 is set (CI, where they are installed): then they fail.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRE_ENV = "VIDPROF_REQUIRE_SERVERS"
METRICS_LINE = re.compile(r"vidprof: metrics at https?://127\.0\.0\.1:(\d+)/metrics")
LINGER_LINE = "vidprof: serving final metrics"

# The cheap source for these runs: no decode cost, exact frame counts.
SYNTHETIC = ("--source", "synthetic:320x240@30")


def find_binary(name: str) -> str:
    """The path of a server binary; skip (or fail, under VIDPROF_REQUIRE_SERVERS=1) when it is missing."""
    path = shutil.which(name)
    if path is None:
        reason = (f"`{name}` is not installed (Debian package {name}; run .ci/install-servers as root, "
                  f"or apt-get install {name})")
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 requires it")
        pytest.skip(reason)
    return path


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the usual small race; servers started with it fail loudly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # loopback URLs built here
        return r.read()


def http_json(url: str, timeout: float = 5.0) -> Any:
    return json.loads(http_get(url, timeout))


class Proc:
    """A subprocess whose stdout and stderr go to files, so nothing blocks on a full pipe."""

    def __init__(self, name: str, argv: Sequence[str], folder: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = folder / f"{name}.log"
        self._log = open(self.log_path, "wb")  # closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.popen = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=cwd, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running after {timeout:g} s; its log ends:\n{self.tail()}")

    def end_linger(self, timeout: float = 30.0) -> int:
        """End a vidprof's --linger early once it serves its final metrics (Ctrl-C ends only the linger there)."""
        wait_until(f"{self.name} to finish its run and linger", lambda: LINGER_LINE in self.log(), timeout, [self])
        self.popen.send_signal(signal.SIGINT)
        return self.wait_exit(timeout)

    def stop(self) -> None:
        try:
            if self.alive():
                self.popen.terminate()
                try:
                    self.popen.wait(10)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(10)
        finally:
            self._log.close()


def wait_until(what: str, check: Callable[[], Any], timeout: float, procs: Sequence[Proc] = (),
               interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the logs of ``procs`` on timeout or exit."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, urllib.error.URLError, ValueError, KeyError) as e:  # not up yet
            last_error = e
        for p in procs:
            if not p.alive():
                # One last look: the process may have done its part just before exiting.
                try:
                    result = check()
                    if result:
                        return result
                except (OSError, urllib.error.URLError, ValueError, KeyError):
                    pass
                pytest.fail(f"{p.name} exited (code {p.popen.returncode}) while waiting for {what}; "
                            f"its log ends:\n{p.tail()}")
        if time.monotonic() >= deadline:
            logs = "\n".join(f"--- {p.name} log ends:\n{p.tail()}" for p in procs)
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}"
                        f"{f' (last error: {last_error})' if last_error else ''}\n{logs}")
        time.sleep(interval)


class Harness:
    """Starts processes for one test or module; ``stop_all()`` stops every one of them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], cwd: Path | None = None) -> Proc:
        proc = Proc(name, argv, self.folder, cwd)
        self.procs.append(proc)
        return proc

    def vidprof(self, name: str, args: Sequence[str]) -> Proc:
        """``python -m vidprof.pipeline run ARGS`` from the repository root."""
        return self.start(name, [sys.executable, "-m", "vidprof.pipeline", "run", *args], cwd=REPO)

    def metrics_port(self, proc: Proc, timeout: float = 60.0) -> int:
        """The port a vidprof run started with --metrics-port 0 serves on, from its stderr line."""
        m = wait_until(f"{proc.name} to print 'vidprof: metrics at ...'", lambda: METRICS_LINE.search(proc.log()),
                       timeout, [proc])
        return int(m.group(1))

    def stop_all(self) -> None:
        errors = []
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                errors.append(f"{p.name}: {e}")
        self.procs.clear()
        if errors:
            raise RuntimeError("could not stop: " + "; ".join(errors))


def start_pushgateway(h: Harness, binary: str) -> str:
    """A fresh Pushgateway on a free loopback port, in memory only; returns its base URL once it is ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = h.start("pushgateway", [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file=",
                                   "--log.level=warn"])
    wait_until("the Pushgateway to be ready", lambda: http_get(f"{url}/-/ready", timeout=1) is not None, 30, [proc])
    return url


# ---------------------------------------------------------------- Prometheus
@dataclass
class Prometheus:
    """A real Prometheus started by a test, and the parts of its HTTP API the tests use."""

    url: str
    proc: Proc

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        doc = http_json(f"{self.url}/api/v1/{path}?{query}", timeout=10)
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        return self.api("query", query=expr, time=f"{at:.3f}")["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}s")
        assert data["resultType"] == "matrix"
        return data["result"]

    def targets_up(self, targets: Sequence[str]) -> bool:
        """Whether every host:port in ``targets`` is an active target whose last scrape succeeded."""
        active = http_json(f"{self.url}/api/v1/targets?state=active", timeout=2)["data"]["activeTargets"]
        up = {t["labels"]["instance"] for t in active if t["health"] == "up"}
        return set(targets) <= up


def start_prometheus(h: Harness, binary: str, config: str, name: str = "prometheus",
                     folder: Path | None = None) -> Prometheus:
    """A fresh Prometheus on a free loopback port with ``config`` (YAML text) written to ``folder``; returns once
    it is ready. Relative paths in the config (file_sd files) are relative to ``folder``, as for any config file."""
    folder = folder or h.folder
    config_path = folder / f"{name}.yml"
    config_path.write_text(config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = h.start(name, [binary, f"--config.file={config_path}", f"--storage.tsdb.path={folder / f'{name}-tsdb'}",
                          f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"])
    wait_until(f"{name} to be ready", lambda: http_get(f"{url}/-/ready", timeout=1) is not None, 30, [proc])
    return Prometheus(url, proc)


def finite_points(result: list[dict[str, Any]]) -> int:
    """Points of a range query that are numbers (histogram_quantile over an empty window gives NaN)."""
    return sum(1 for series in result for _, v in series["values"] if math.isfinite(float(v)))


def last_time(result: list[dict[str, Any]]) -> float:
    """The time of the last point of a range query: the last scrape before the series went stale."""
    return max(float(t) for series in result for t, _ in series["values"])


# ---------------------------------------------------------------- Grafana dashboards
@dataclass(frozen=True)
class Query:
    """One PromQL target of a dashboard panel."""

    qid: str  # "panel title [refId]"
    panel: str
    expr: str
    legend: str
    instant: bool  # Grafana runs it once, at the end of the time range, not as a range query


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside a collapsed row included."""
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def dashboard_queries(path: Path) -> list[Query]:
    doc = json.loads(path.read_text())
    out = []
    for panel in panels(doc["panels"]):
        for t in panel.get("targets", []):
            if t.get("expr"):
                out.append(Query(f"{panel['title']} [{t['refId']}]", panel["title"], t["expr"],
                                 t.get("legendFormat", ""), bool(t.get("instant")) and not t.get("range")))
    return out


def grafana_values(values: Sequence[str]) -> str:
    """A multi-value variable (or All) as Grafana's Prometheus data source writes it into a query: each value's
    regex specials escaped with a PromQL-escaped backslash, the values joined as (a|b|c)."""
    escaped = [re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), v.replace("\\", "\\" * 4))
               for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def grafana_intervals(scrape: float) -> dict[str, str]:
    """Grafana's interval variables for a data source scraped every ``scrape`` seconds: $__interval is the step,
    $__rate_interval is max($__interval + scrape interval, 4 x scrape interval)."""
    return {"__interval": f"{scrape:g}s", "__rate_interval": f"{4 * scrape:g}s", "__range": "5m"}


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in variables:
            raise KeyError(f"unknown template variable ${name} in {expr!r}")
        return variables[name]

    # $var, ${var}, ${var:format} and the old [[var]]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", value, expr)


def check_dashboard_layout(doc: dict[str, Any], variables: Sequence[str]) -> None:
    """What Grafana needs to load a dashboard and show every panel: the data source variable, the query variables
    (multi-select, with All), every panel on that data source, unique panel ids, panels side by side, not on top of
    each other."""
    assert doc["schemaVersion"] >= 39
    listed = {v["name"]: v for v in doc["templating"]["list"]}
    assert listed["datasource"]["type"] == "datasource"
    assert listed["datasource"]["query"] == "prometheus"
    for name in variables:
        v = listed[name]
        assert v["type"] == "query" and v["multi"] and v["includeAll"], name
        assert "label_values(" in v["definition"]
        assert v["datasource"]["uid"] == "${datasource}"
    ids = []
    for panel in panels(doc["panels"]):
        ids.append(panel["id"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for t in panel["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", panel["title"]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    taken: dict[tuple[int, int], str] = {}
    for panel in doc["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for cell in ((x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])):
            assert cell not in taken, f"{panel['title']!r} overlaps {taken[cell]!r}"
            taken[cell] = panel["title"]


def start_prometheus_with(h: Harness, binary: str, config: str, flags: Sequence[str],
                          name: str = "prometheus") -> Prometheus:
    """``start_prometheus`` with extra command-line ``flags`` (e.g. ``--enable-feature=exemplar-storage``)."""
    config_path = h.folder / f"{name}.yml"
    config_path.write_text(config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = h.start(name, [binary, f"--config.file={config_path}", f"--storage.tsdb.path={h.folder / f'{name}-tsdb'}",
                          f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", *flags])
    wait_until(f"{name} to be ready", lambda: http_get(f"{url}/-/ready", timeout=1) is not None, 30, [proc])
    return Prometheus(url, proc)


def metrics_url(proc: Proc, timeout: float = 60.0) -> str:
    """The /metrics URL a vidprof run announces on stderr (``vidprof: metrics at URL``)."""
    m = wait_until(f"{proc.name} to print 'vidprof: metrics at ...'",
                   lambda: re.search(r"vidprof: metrics at (\S+)", proc.log()), timeout, [proc])
    return m.group(1)
