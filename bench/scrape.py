"""How long a /metrics scrape takes while 8 paced streams run.

    cd /work/main && python bench/scrape.py [--duration 15] [--scrapes 300] [--client process|in-process] [--gzip]

What runs: ``exporter.serve`` on a registry with the process and platform collectors (what ``vidprof run``
serves), and a ``Runner`` with 8 copies of ``synthetic:640x360@30`` paced like cameras (``--realtime``), host
preprocessing, the embedded sample detector. After a 3 s warm-up, sequential scrapes (a new connection each,
20 ms apart, as many as fit in the run up to ``--scrapes``) time the full request: connect, response, body.

The scraper is a separate process by default, like a real Prometheus: its own interpreter, so the figure is
the server's alone. ``--client in-process`` scrapes from a thread of the profiled process instead (what a quick
script with urllib does); that figure also holds the scraper's own wait for the pipeline's GIL.
``--gzip`` asks for ``Accept-Encoding: gzip`` (Prometheus does), ``--openmetrics`` for OpenMetrics.

The reference: with the separate scraper, a plain ``python -m http.server`` serving the same exposition file
is scraped in turn with vidprof's (A B A B ...), so both see the same load; on a shared machine the other
jobs on the cores set a floor no server gets under, and the plain server's figure shows where it is.

The last line is ``RESULT scrape_8_streams p50_ms=... p99_ms=... size_bytes=... ...`` (size: the body as
sent; ``plain_p50_ms``/``plain_p99_ms``: the plain server's; ``render_ms``: one rendering and write of the
exposition after the run, the GIL time the writer thread takes every 0.5 s). p99 is nearest-rank over ~300
scrapes, i.e. the third-slowest: run it a few times.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

WARMUP = 3.0
PAUSE = 0.02


def scrape_once(url: str, headers: dict[str, str]) -> tuple[float, int]:
    """Seconds for one scrape on a fresh connection, and the body's size."""
    u = urllib.parse.urlsplit(url)
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=10)
    try:
        conn.request("GET", u.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}")
    finally:
        conn.close()
    return time.perf_counter() - t0, len(body)


def scrape_loop(url: str, headers: dict[str, str], count: int, until: float,
                plain_url: str | None = None) -> tuple[list[float], int, list[float]]:
    """Sequential scrapes until ``count`` are done or the monotonic clock passes ``until``; with ``plain_url``,
    each one followed by a scrape of that plain server (its times: the third list)."""
    times: list[float] = []
    plain: list[float] = []
    size = 0
    while len(times) < count and time.monotonic() < until:
        seconds, size = scrape_once(url, headers)
        times.append(seconds)
        time.sleep(PAUSE)
        if plain_url is not None:
            plain.append(scrape_once(plain_url, headers)[0])
            time.sleep(PAUSE)
    return times, size, plain


def headers_for(gzip: bool, openmetrics: bool) -> dict[str, str]:
    headers = {}
    if gzip:
        headers["Accept-Encoding"] = "gzip"
    if openmetrics:
        headers["Accept"] = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    return headers


def scraper_main(args: argparse.Namespace) -> int:
    """The separate scraper process: waits out the warm-up, scrapes, prints one JSON line."""
    time.sleep(args.delay)
    times, size, plain = scrape_loop(args.url, headers_for(args.gzip, args.openmetrics), args.scrapes,
                                     time.monotonic() + args.seconds, args.plain)
    print(json.dumps({"times": times, "size": size, "plain": plain}), flush=True)
    return 0


def start_plain_server(folder: os.PathLike[str] | str) -> tuple[subprocess.Popen[str], str]:
    """``python -m http.server`` on a free loopback port, serving the folder vidprof's server serves from."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory",
                             os.fspath(folder)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N (http://127.0.0.1:N/) ..."
    port = int(line.split(" port ")[1].split()[0])
    return proc, f"http://127.0.0.1:{port}/metrics.prom"


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=15.0, help="seconds the 8-stream run lasts (default 15)")
    p.add_argument("--scrapes", type=int, default=300, help="at most this many scrapes (default 300)")
    p.add_argument("--client", choices=("process", "in-process"), default="process",
                   help="scrape from a separate process (default, like Prometheus) or from this one")
    p.add_argument("--gzip", action="store_true", help="send Accept-Encoding: gzip")
    p.add_argument("--openmetrics", action="store_true", help="ask for OpenMetrics")
    # The separate scraper process runs this same file with these:
    p.add_argument("--scraper", dest="url", help=argparse.SUPPRESS)
    p.add_argument("--plain", help=argparse.SUPPRESS)
    p.add_argument("--delay", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.url:
        return scraper_main(args)

    from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

    from bench._common import log, machine_note
    from vidprof.pipeline.config import RunConfig
    from vidprof.pipeline.runner import Runner
    from vidprof.profiling import exporter

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    server = exporter.serve(registry, "127.0.0.1", 0)
    plain_server = None
    try:
        runner = Runner(RunConfig(sources=("synthetic:640x360@30",), copies=8, realtime=True,
                                  duration=args.duration, preprocess="host", pipeline_name="bench"), registry)
        runner.prepare()
        seconds = max(1.0, args.duration - WARMUP - 1.0)  # stop scraping before the run winds down
        scraper = None
        plain: list[float] = []
        if args.client == "process":
            extra = []
            folder = getattr(server, "folder", None)  # the file vidprof's server serves, when it serves a file
            if folder is not None and not args.openmetrics:
                plain_server, plain_url = start_plain_server(folder)
                extra = ["--plain", plain_url]
            # Started with the run, waiting out the warm-up itself: its interpreter's start-up is not timed.
            scraper = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--scraper", server.url, "--delay", str(WARMUP),
                 "--seconds", str(seconds), "--scrapes", str(args.scrapes), *extra]
                + (["--gzip"] if args.gzip else []) + (["--openmetrics"] if args.openmetrics else []),
                stdout=subprocess.PIPE, text=True)
        run = threading.Thread(target=runner.run, name="bench-run")
        run.start()
        if scraper is not None:
            out, _ = scraper.communicate(timeout=args.duration + 60)
            doc = json.loads(out.strip().splitlines()[-1])
            times, size, plain = doc["times"], doc["size"], doc["plain"]
        else:
            time.sleep(WARMUP)
            times, size, _ = scrape_loop(server.url, headers_for(args.gzip, args.openmetrics), args.scrapes,
                                         time.monotonic() + seconds)
        run.join()
        rep = runner.summary().report
        render_ms = float("nan")
        if hasattr(server, "refresh"):
            # What the writer thread costs the profiled process per rendering: GIL time, measured uncontended.
            costs = []
            for _ in range(10):
                t0 = time.perf_counter()
                server.refresh()
                costs.append(time.perf_counter() - t0)
            render_ms = sorted(costs)[len(costs) // 2] * 1e3
    finally:
        if plain_server is not None:
            plain_server.terminate()
            plain_server.wait(10)
        server.close()
    if not times:
        log("no scrape finished during the run")
        return 1
    times.sort()
    log(machine_note())
    log(f"slowest 5 (ms): {[round(t * 1e3, 1) for t in times[-5:]]}")
    log(f"pipeline: fps={rep['fps']:.1f} completed={rep['frames']['completed']} dropped={rep['frames']['dropped']}")
    encoding = "gzip" if args.gzip else "identity"
    fmt = "openmetrics" if args.openmetrics else "text"
    print(f"RESULT scrape_8_streams p50_ms={percentile(times, 0.5) * 1e3:.2f} "
          f"p99_ms={percentile(times, 0.99) * 1e3:.2f} max_ms={times[-1] * 1e3:.2f} size_bytes={size} "
          f"scrapes={len(times)} client={args.client} encoding={encoding} format={fmt} fps={rep['fps']:.1f} "
          f"render_ms={render_ms:.2f}"
          + (f" plain_p50_ms={percentile(sorted(plain), 0.5) * 1e3:.2f}"
             f" plain_p99_ms={percentile(sorted(plain), 0.99) * 1e3:.2f}" if plain else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
