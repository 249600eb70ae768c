"""Soak: memory must not grow with the length of a run, and /metrics must stay quick to scrape.

    python bench/soak.py [--frames 100000] [--streams 4] [--scrape-streams 8]

Part 1: STREAMS non-paced synthetic streams (host preprocessing, passthrough postprocessing: the cheapest
frames, so many of them fit in a few minutes) through the sample model until FRAMES frames in all, in
process, with metrics on. RSS is read after a warm-up (a tenth of the frames: the exact-value stores of
every figure are full by then at 10 000 values, and caches are warm) and at the end; the ratio
end / warm-up is the figure (goal <= 1.02). The size of the /metrics exposition at the start and at the
end is printed too (it must not grow either: label cardinality is bounded).

Part 2: SCRAPE_STREAMS paced streams (synthetic 640x360 at 30 FPS) while an HTTP client scrapes /metrics
back to back; p50 and p99 of the scrape latency (goal p99 < 5 ms).

Prints ``RESULT soak_rss ratio=... rss_warm_mib=... rss_end_mib=... frames=...``,
``RESULT soak_metrics_size start_bytes=... end_bytes=...`` and
``RESULT soak_scrape p50_ms=... p99_ms=... streams=... scrapes=...``.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from prometheus_client import CollectorRegistry, ProcessCollector

from bench._common import base_parser, log, machine_note
from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.runner import Runner, rss_bytes
from vidprof.profiling import exporter
from vidprof.stages.postprocess import PostprocessOptions


def _series(exposition: bytes) -> int:
    return sum(1 for line in exposition.splitlines() if line and not line.startswith(b"#"))


def soak(frames: int, streams: int) -> None:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    server = exporter.serve(registry, "127.0.0.1", 0)
    per_stream = frames // streams
    runner = Runner(RunConfig(sources=("synthetic:320x240@30",), copies=streams, frames=per_stream,
                              preprocess="host", postprocess=PostprocessOptions(kind="passthrough"),
                              pipeline_name="soak"), registry)
    runner.prepare()
    server.refresh()  # the exposition with every stream's series, as a scraper sees it once the run starts
    start = urllib.request.urlopen(server.url, timeout=30).read()
    start_size, start_series = len(start), _series(start)
    t = threading.Thread(target=runner.run, daemon=True)
    t.start()
    warm_at = frames // 10
    rss_warm = None
    while t.is_alive():
        done = sum(r.completed for r in runner.recorders)
        if rss_warm is None and done >= warm_at:
            rss_warm = rss_bytes()
            log(f"warm-up done at {done} frames: RSS {rss_warm / 2**20:.1f} MiB")
        time.sleep(0.5)
    t.join()
    rss_end = rss_bytes()
    server.refresh()
    end = urllib.request.urlopen(server.url, timeout=30).read()
    end_size, end_series = len(end), _series(end)
    server.close()
    rep = runner.summary().run_report
    assert rss_warm is not None
    print(f"RESULT soak_rss ratio={rss_end / rss_warm:.4f} rss_warm_mib={rss_warm / 2**20:.1f} "
          f"rss_end_mib={rss_end / 2**20:.1f} frames={rep.frames.completed} streams={streams} "
          f"fps={rep.fps:.0f}")
    # Bytes grow a little as counters gain digits; the number of series must not grow at all.
    print(f"RESULT soak_metrics_size start_bytes={start_size} end_bytes={end_size} start_series={start_series} "
          f"end_series={end_series}")


def scrapes(streams: int, seconds: float) -> None:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    server = exporter.serve(registry, "127.0.0.1", 0)
    runner = Runner(RunConfig(sources=("synthetic:640x360@30",), copies=streams, realtime=True, duration=seconds,
                              preprocess="host", pipeline_name="scrape"), registry)
    runner.prepare()
    t = threading.Thread(target=runner.run, daemon=True)
    t.start()
    time.sleep(2)  # past start-up
    lat: list[float] = []
    size = 0
    while t.is_alive():
        t0 = time.perf_counter()
        body = urllib.request.urlopen(server.url, timeout=30).read()
        lat.append(time.perf_counter() - t0)
        size = len(body)
    t.join()
    server.close()
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"RESULT soak_scrape p50_ms={statistics.median(lat) * 1e3:.2f} p99_ms={p99 * 1e3:.2f} streams={streams} "
          f"scrapes={len(lat)} size_bytes={size}")


def main() -> None:
    p = base_parser(__doc__.splitlines()[0], pairs=1)
    p.add_argument("--frames", type=int, default=100_000, help="frames in all (default 100000)")
    p.add_argument("--streams", type=int, default=4, help="streams for the memory soak (default 4)")
    p.add_argument("--scrape-streams", type=int, default=8, help="paced streams while scraping (default 8)")
    p.add_argument("--scrape-seconds", type=float, default=20.0, help="seconds of scraping (default 20)")
    a = p.parse_args()
    log(machine_note())
    soak(a.frames, a.streams)
    scrapes(a.scrape_streams, a.scrape_seconds)


if __name__ == "__main__":
    main()
