"""`vidprof top --once` against a real `vidprof run`, and its one-line errors.

One run for the module (~15 s): two copies of a synthetic source paced at 30 FPS, on a free port (read back from
its `vidprof: metrics at ...` line), lingering so the run is still there for the last reads.
"""

from __future__ import annotations

import http.server
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.integration.servers import SYNTHETIC, Harness, free_port, metrics_url, wait_until
from vidprof.profiling.marks import STAGES

STREAMS = ("north", "south")
FPS = 30
FRAMES = 450  # per stream: ~15 s, long enough for the reads below while frames flow
ROW = re.compile(r"^(?P<stream>\S*)\s+(?P<part>e2e|decode|preprocess|inference|postprocess)\s+(?P<p50>[\d.]+|-)\s+"
                 r"(?P<p99>[\d.]+|-)(?:\s+(?P<busy>\d+)%)?(?:\s+(?P<fps>[\d.]+)\s+(?P<drops>\d+))?\s*$")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    h = Harness(tmp_path_factory.mktemp("top"))
    try:
        proc = h.vidprof("vidprof", [
            *SYNTHETIC, "--copies", "2", *(a for s in STREAMS for a in ("--stream", s)), "--realtime",
            "--frames", str(FRAMES), "--metrics-port", "0", "--linger", "10", "--pipeline-name", "toptest",
            "--quiet"])
        found = metrics_url(proc)
        # Frames flow once the line is out (the model is compiled before it); give the rates a second of them.
        wait_until("frames to flow", lambda: min(_completed(found), default=0) >= FPS, 30, [proc])
        yield found
    finally:
        h.stop_all()


def _get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as r:  # the loopback URL vidprof printed
        return r.read()


def _completed(url: str) -> list[float]:
    """Each stream's completed frames, as /metrics says now."""
    return [float(ln.rsplit(b" ", 1)[1]) for ln in _get(url).splitlines()
            if ln.startswith(b"vidprof_frames_total{") and b'outcome="completed"' in ln]


def _one_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidprof: error: "), result.stderr
    return lines[0]


def _rows(out: str) -> dict[tuple[str, str], dict[str, str | None]]:
    rows: dict[tuple[str, str], dict[str, str | None]] = {}
    stream = ""
    for line in out.splitlines():
        m = ROW.match(line)
        if m is None:
            continue
        stream = m["stream"] or stream
        rows[(stream, m["part"])] = m.groupdict()
    return rows


def test_once_prints_each_stream_with_plausible_figures(run_cli: Callable[..., subprocess.CompletedProcess[str]],
                                                        url: str) -> None:
    t0 = time.monotonic()
    result = run_cli("top", "--once", "--interval", "2", url, timeout=60)
    took = time.monotonic() - t0
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert 2.0 <= took < 20, took  # two reads --interval apart
    out = result.stdout
    title = out.splitlines()[0]
    assert title.startswith(f"{url} · toptest · over ") and title.endswith(" s"), out
    window = float(re.search(r"over ([\d.]+) s", title)[1])
    assert 1.9 <= window <= 3.5, title  # --interval, and at most a rendering (0.5 s) of waiting for a fresh one
    rows = _rows(out)
    assert {s for s, _ in rows} == set(STREAMS), out
    for stream in STREAMS:
        e2e = rows[(stream, "e2e")]
        fps = float(e2e["fps"] or "nan")
        assert FPS * 0.5 <= fps <= FPS * 1.5, out  # paced at 30 FPS
        assert int(e2e["drops"] or -1) >= 0
        p50, p99 = float(e2e["p50"] or "nan"), float(e2e["p99"] or "nan")
        assert 0 < p50 <= p99 < 1000, out  # milliseconds
        for stage in STAGES:
            row = rows[(stream, stage)]
            assert row["p50"] != "-" and 0 <= float(row["p50"] or "nan") <= float(row["p99"] or "nan") < 1000, out
            assert 0 <= int(row["busy"] or -1) <= 100, out
            assert float(row["p50"] or 0) <= p99, out  # no stage is slower than the frame it is part of


def test_several_urls_give_a_table_each(run_cli: Callable[..., subprocess.CompletedProcess[str]], url: str) -> None:
    short = url.removeprefix("http://").removesuffix("/metrics")  # host:port is enough
    result = run_cli("top", "--once", "--interval", "1", url, short, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(f"{url} · toptest · over ") == 2, result.stdout


def test_an_unreachable_url_is_one_error_line(run_cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    port = free_port()
    line = _one_error(run_cli("top", "--once", f"127.0.0.1:{port}", timeout=30))
    assert f"http://127.0.0.1:{port}/metrics: cannot connect" in line


class _Other(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (b"<html><body>not metrics</body></html>\n" if self.path == "/html"
                else b"# TYPE up gauge\nup 1\n")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def other_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Other)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_that_are_not_vidprofs_are_one_error_line(
        run_cli: Callable[..., subprocess.CompletedProcess[str]], other_server: str) -> None:
    line = _one_error(run_cli("top", "--once", f"{other_server}/metrics", timeout=30))
    assert "not a vidprof's /metrics" in line
    line = _one_error(run_cli("top", "--once", f"{other_server}/html", timeout=30))
    assert "not Prometheus metrics" in line


@pytest.mark.parametrize(("args", "says"), [
    (["--interval", "0", "127.0.0.1:1"], "--interval 0"),
    (["ftp://127.0.0.1:1/metrics"], "expected http://HOST:PORT/metrics"),
])
def test_impossible_settings_are_usage_errors(run_cli: Callable[..., subprocess.CompletedProcess[str]],
                                              args: list[str], says: str) -> None:
    result = run_cli("top", "--once", *args, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("vidprof: error: ") and says in result.stderr and len(
        result.stderr.splitlines()) == 1
