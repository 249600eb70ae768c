"""``vidprof top URL [URL ...]``: the live table of any running vidprof (or several), read from its /metrics.

For whoever has no Grafana at hand: each refresh reads every URL, and the table shows what happened between
that read and the one before (``profiling.live``): p50 and p99 from the latency histograms' buckets, FPS from
the completed-frames counter's rate, busy from ``vidprof_stage_busy_ratio``, drops from the counter.

vidprof renders /metrics every 0.5 s, so a read may show figures up to half a second old; a rate over two such
reads would be off by as much. So each read waits for the next rendering (it reads again every ``POLL`` seconds
until the exposition changes, at most ``SYNC_WAIT``) and is timed when that arrives: two reads ``--interval``
apart are then two renderings about that far apart.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from vidprof.pipeline import signals
from vidprof.profiling.errors import RunError, UsageError
from vidprof.profiling.live import E2E, LiveScreen, Row, StreamView, View, bucket_quantile, render
from vidprof.profiling.marks import STAGES

TIMEOUT = 5.0  # seconds for one HTTP read
POLL = 0.05
SYNC_WAIT = 1.0  # vidprof renders every 0.5 s: a changed exposition comes within that, unless nothing moves
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"  # the text format: OpenMetrics adds only exemplars here

Series = tuple[str, str]  # (pipeline, stream)


# ---------------------------------------------------------------- reading
@dataclass(frozen=True)
class Target:
    url: str  # without credentials: what the table and errors show, and what is read
    auth: str | None  # an Authorization header value

    @classmethod
    def parse(cls, text: str) -> Target:
        raw = text.strip()
        if "://" not in raw:
            raw = "http://" + raw
        u = urllib.parse.urlsplit(raw)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise UsageError(f"URL {text!r}: expected http://HOST:PORT/metrics (or HOST:PORT), as `vidprof run` "
                             "prints it")
        try:
            u.port  # noqa: B018  # a port that is not a number raises here
        except ValueError:
            raise UsageError(f"URL {text!r}: the port is not a number; expected http://HOST:PORT/metrics") from None
        path = u.path if u.path not in ("", "/") else "/metrics"
        host = u.hostname if ":" not in u.hostname else f"[{u.hostname}]"
        netloc = host + (f":{u.port}" if u.port is not None else "")
        shown = urllib.parse.urlunsplit((u.scheme, netloc, path, u.query, ""))
        auth = None
        if u.username is not None:
            user = urllib.parse.unquote(u.username)
            password = urllib.parse.unquote(u.password or "")
            auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return cls(shown, auth)


@dataclass
class Scrape:
    """One read of one vidprof's /metrics: what the table needs, by (pipeline, stream)."""

    at: float  # time.monotonic() when this exposition was read
    histograms: dict[tuple[Series, str], list[tuple[float, float]]] = field(default_factory=dict)  # part -> buckets
    frames: dict[tuple[Series, str], float] = field(default_factory=dict)  # outcome -> frames
    busy: dict[tuple[Series, str], float] = field(default_factory=dict)  # stage -> ratio

    @property
    def streams(self) -> list[Series]:
        return sorted({s for s, _ in self.frames})


def _fetch(target: Target) -> bytes:
    headers = {"Accept": ACCEPT, "Accept-Encoding": "gzip", "User-Agent": "vidprof-top"}
    if target.auth:
        headers["Authorization"] = target.auth
    request = urllib.request.Request(target.url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as r:  # the user's own URL
            body = r.read()
            if r.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            return body
    except urllib.error.HTTPError as e:
        if e.code == 401:
            raise RunError(f"{target.url}: 401 Unauthorized; this /metrics asks for a user and password: give them "
                           "in the URL, http://USER:PASSWORD@HOST:PORT/metrics") from None
        raise RunError(f"{target.url}: HTTP {e.code} {e.reason}; expected the /metrics URL `vidprof run` printed"
                       ) from None
    except urllib.error.URLError as e:
        reason = e.reason.strerror if isinstance(e.reason, OSError) and e.reason.strerror else e.reason
        raise RunError(f"{target.url}: cannot connect ({reason}); is vidprof running there, with /metrics on "
                       "(not --no-metrics)?") from None
    except (OSError, ValueError) as e:  # a reset connection, a timeout, a bad gzip body
        raise RunError(f"{target.url}: cannot read ({e}); is vidprof running there?") from None


def parse_metrics(url: str, body: bytes, at: float) -> Scrape:
    """The figures the table needs from a text exposition; RunError when it is not a vidprof's."""
    out = Scrape(at)
    try:
        families = list(text_string_to_metric_families(body.decode("utf-8")))
    except (ValueError, UnicodeDecodeError, IndexError, TypeError) as e:
        raise RunError(f"{url}: not Prometheus metrics ({e}); expected the /metrics URL `vidprof run` printed"
                       ) from None
    found = False
    for fam in families:
        if fam.name == "vidprof_frames":
            found = True
            for s in fam.samples:
                if s.name == "vidprof_frames_total":
                    out.frames[(_series(s.labels), s.labels.get("outcome", ""))] = s.value
        elif fam.name in ("vidprof_frame_latency_seconds", "vidprof_stage_latency_seconds"):
            for s in fam.samples:
                if s.name.endswith("_bucket"):
                    part = s.labels.get("stage", E2E) if fam.name == "vidprof_stage_latency_seconds" else E2E
                    out.histograms.setdefault((_series(s.labels), part), []).append(
                        (float(s.labels["le"]), s.value))
        elif fam.name == "vidprof_stage_busy_ratio":
            for s in fam.samples:
                out.busy[(_series(s.labels), s.labels.get("stage", ""))] = s.value
    if not found:
        raise RunError(f"{url}: no vidprof_frames_total there, so not a vidprof's /metrics; expected the URL "
                       "`vidprof run` prints as 'vidprof: metrics at ...'")
    for buckets in out.histograms.values():
        buckets.sort()
    return out


def _series(labels: dict[str, str]) -> Series:
    return labels.get("pipeline", ""), labels.get("stream", "")


def read(target: Target, sync: bool = True, clock: Callable[[], float] = time.monotonic) -> Scrape:
    """One read, timed when the exposition it holds was rendered (see the module's docstring)."""
    body, at = _fetch(target), clock()
    if sync:
        deadline = at + SYNC_WAIT
        while clock() < deadline:
            time.sleep(POLL)
            newer = _fetch(target)
            if newer != body:
                body, at = newer, clock()
                break
    return parse_metrics(target.url, body, at)


def read_all(targets: Sequence[Target], pool: ThreadPoolExecutor) -> list[Scrape | RunError]:
    """Every target at once; a target that fails gives its RunError in its place."""
    def one(t: Target) -> Scrape | RunError:
        try:
            return read(t)
        except RunError as e:
            return e

    return list(pool.map(one, targets))


# ---------------------------------------------------------------- the table
def _delta(now: list[tuple[float, float]], before: list[tuple[float, float]] | None) -> list[tuple[float, float]]:
    """Bucket counts between two reads; the whole of ``now`` after a restart (a counter that went down)."""
    if before is None or len(before) != len(now) or any(a[0] != b[0] for a, b in zip(now, before, strict=True)):
        return now
    delta = [(le, n - b) for (le, n), (_, b) in zip(now, before, strict=True)]
    return now if any(n < 0 for _, n in delta) else delta


def view(target: Target, now: Scrape, before: Scrape | None) -> View:
    """The table of one vidprof: the interval between ``before`` and ``now`` (only ``now``'s totals without one)."""
    window = now.at - before.at if before is not None else 0.0
    streams = []
    pipelines = sorted({p for p, _ in now.streams})
    for series in now.streams:
        rows = []
        for part in (E2E, *STAGES):
            buckets = now.histograms.get((series, part))
            if buckets is None:
                rows.append(Row(part, None, None, now.busy.get((series, part))))
                continue
            d = _delta(buckets, before.histograms.get((series, part)) if before is not None else None)
            busy = None if part == E2E else now.busy.get((series, part))
            rows.append(Row(part, bucket_quantile(0.5, d), bucket_quantile(0.99, d), busy))
        fps = None
        if before is not None and window > 0:
            done, was = now.frames.get((series, "completed"), 0.0), before.frames.get((series, "completed"))
            fps = max(done - (was if was is not None and was <= done else 0.0), 0.0) / window
        label = series[1] if len(pipelines) == 1 else f"{series[0]}/{series[1]}"
        streams.append(StreamView(label, tuple(rows), fps, int(now.frames.get((series, "dropped"), 0)),
                                  int(now.frames.get((series, "failed"), 0))))
    title = f"{target.url} · {', '.join(pipelines) or 'no streams yet'}"
    if before is not None:
        title += f" · over {window:.1f} s"
    return View(title, tuple(streams))


def views(targets: Sequence[Target], now: Sequence[Scrape | RunError],
          before: Sequence[Scrape | RunError | None]) -> list[View]:
    out = []
    for t, n, b in zip(targets, now, before, strict=True):
        if isinstance(n, RunError):
            out.append(View(t.url, (), note=str(n)))
        else:
            out.append(view(t, n, b if isinstance(b, Scrape) else None))
    return out


# ---------------------------------------------------------------- the command
def run_top(args: argparse.Namespace) -> int:
    if not (0 < args.interval < math.inf):
        raise UsageError(f"--interval {args.interval}: expected a positive, finite number of seconds")
    targets = [Target.parse(u) for u in args.urls]
    with ThreadPoolExecutor(max_workers=min(len(targets), 16), thread_name_prefix="vidprof-top") as pool:
        first = read_all(targets, pool)
        for r in first:
            if isinstance(r, RunError):  # at the start, a URL that cannot be read is a mistake: say so, stop
                raise r
        if args.once:
            time.sleep(args.interval)
            now = read_all(targets, pool)
            for r in now:
                if isinstance(r, RunError):
                    raise r
            _print(views(targets, now, first))
            return 0
        return _loop(targets, pool, first, args.interval)


def _print(shown: Sequence[View]) -> None:
    from rich.console import Console

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    console.print(render(shown, width=console.width))


def _loop(targets: Sequence[Target], pool: ThreadPoolExecutor, first: list[Scrape | RunError],
          interval: float) -> int:
    """Refresh every ``interval`` seconds until Ctrl-C: in place on a terminal, a table per refresh otherwise
    (like ``top -b``). A vidprof that stops answering stays in the table with the reason, until it is back."""
    screen = LiveScreen(sys.stdout) if sys.stdout.isatty() else None
    before: list[Scrape | RunError | None] = list(first)
    try:
        if screen is not None:
            screen.update([View(f"{t.url} · reading again in {interval:g} s", ()) for t in targets])
        next_at = time.monotonic() + interval
        while True:
            time.sleep(max(next_at - time.monotonic(), 0.0))
            next_at += interval
            if next_at < time.monotonic():  # reads slower than the interval: do not catch up in a burst
                next_at = time.monotonic() + interval
            now = read_all(targets, pool)
            shown = views(targets, now, before)
            if screen is not None:
                screen.update(shown)
            else:
                _print(shown)
                sys.stdout.flush()
            # A failed read keeps the last good one, so the next good read still has an interval to cover.
            before = [n if isinstance(n, Scrape) else b for n, b in zip(now, before, strict=True)]
    except KeyboardInterrupt:
        return signals.exit_code() if signals.received() else 0  # Ctrl-C is how top ends; SIGTERM says so
    finally:
        if screen is not None:
            screen.stop()
