"""`vidprof top`'s options: argparse only, so the CLI declares them without importing what `top` runs with."""

from __future__ import annotations

import argparse

DEFAULT_INTERVAL = 2.0


def add_top_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("urls", nargs="+", metavar="URL",
                   help="a running vidprof's /metrics, as `vidprof run` prints it (host:port is enough; "
                        "http://user:password@host:port/metrics for basic auth)")
    p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, metavar="S",
                   help=f"seconds between reads; the figures cover each interval (default {DEFAULT_INTERVAL:g})")
    p.add_argument("--once", action="store_true",
                   help="read twice, --interval apart, print one table and exit (for scripts)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
