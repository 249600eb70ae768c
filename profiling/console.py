"""Rendering for people: the live progress line and the summary table. Nothing here measures."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from vidprof.profiling.marks import STAGES
from vidprof.profiling.report import RunReport, StageStats, as_report


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


class ProgressLine:
    """One updating line on a terminal; a plain line every few seconds when output is a file or pipe."""

    def __init__(self, stream: TextIO | None = None, every_seconds: float = 5.0) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._every = every_seconds
        self._last = 0.0

    def __call__(self, p: Any) -> None:
        stages = " ".join(f"{s} {p.stage_ms[s]:.1f}" for s in STAGES)
        line = (f"{p.elapsed:6.1f}s  frames {p.completed}  dropped {p.dropped}  failed {p.failed}  "
                f"{p.fps:6.1f} FPS  ms: {stages}")
        if self._tty:
            self._stream.write("\r" + line[:160].ljust(120))
            self._stream.flush()
        elif time.monotonic() - self._last >= self._every:
            self._last = time.monotonic()
            self._stream.write(line + "\n")
            self._stream.flush()

    def finish(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()


def summary_table(report: RunReport) -> Table:
    t = Table(title="vidprof summary (latency in ms)", title_justify="left")
    for col in ("figure", "count", "mean", "p50", "p90", "p99", "max"):
        t.add_column(col, justify="left" if col == "figure" else "right")

    def row(name: str, st: StageStats, style: str | None = None) -> None:
        t.add_row(name, str(st.count), *(_ms(x) for x in (st.mean, st.p50, st.p90, st.p99, st.max)), style=style)

    neck = report.bottleneck.stage
    for s in STAGES:
        if s in report.stages:
            row(s + ("  <- bottleneck" if s == neck else ""), report.stages[s], "bold" if s == neck else None)
    for w, st in report.waits.items():
        if st.count:
            row(f"  queue before {w}" if w != "infer_wait" else "  wait for infer request", st, "dim")
    row("end-to-end", report.e2e, "bold")
    return t


def streams_table(report: RunReport) -> Table:
    """One row per stream: what each stream got out of the shared model."""
    t = Table(title="per stream (latency in ms)", title_justify="left")
    for col in ("stream", "source", "done", "dropped", "failed", "FPS", "e2e p50", "e2e p99", "bottleneck"):
        t.add_column(col, justify="left" if col in ("stream", "source", "bottleneck") else "right")
    for label, st in report.streams.items():
        f = st.frames
        t.add_row(label, st.source, str(f.completed), str(f.dropped), str(f.failed), f"{st.fps:.1f}",
                  _ms(st.e2e.p50), _ms(st.e2e.p99), st.bottleneck.stage + (" (fault)" if st.fault else ""),
                  style="red" if st.fault else None)
    return t


def render_summary(report: RunReport | Mapping[str, Any], console: Console | None = None) -> None:
    """``report``: a RunReport, or its JSON document (checked the same way as a file)."""
    r = as_report(report)
    # A pipe or file gets a fixed width so the table is never folded at 80 columns.
    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    console.print(summary_table(r))
    if len(r.streams) > 1:
        console.print(streams_table(r))
        spread = r.stream_fps
        if spread is not None:
            console.print(f"{len(r.streams)} streams through one model: per-stream FPS {spread.min:.1f} to "
                          f"{spread.max:.1f} (slowest/fastest {spread.ratio:.2f})")
    f = r.frames
    console.print(f"frames: {f.completed} completed, {f.dropped} dropped, {f.failed} failed "
                  f"in {r.wall_seconds:.2f} s  ->  [bold]{r.fps:.1f} FPS[/bold]")
    if r.model_only_fps:
        console.print(f"model alone on a pre-made input: {r.model_only_fps:.1f} FPS "
                      f"(the application reaches {r.fps / r.model_only_fps:.0%} of it)")
    for tr, label in ((r.transfer.host_to_device, "host->device"), (r.transfer.device_to_host, "device->host")):
        console.print(f"transfer {label}: {tr.bytes:,} bytes, {tr.seconds * 1e3:.2f} ms in total "
                      f"({tr.per_frame.mean * 1e6:.1f} µs per frame)")
    st = r.startup
    parts = [f"{k} {st[k] * 1e3:.1f} ms" for k in ("read_model", "compile", "first_inference") if k in st]
    if "cache" in st:
        parts.append(f"cache {st['cache']}")
    console.print("startup: " + ", ".join(parts))
    console.print("busy: " + ", ".join(f"{s} {r.busy[s]:.0%}" for s in STAGES if s in r.busy))
    console.print(f"bottleneck: [bold]{r.bottleneck.stage}[/bold]: {r.bottleneck.advice}")
    for label, stream in r.streams.items():
        if stream.outage_count:
            lasted = sum(o.seconds or 0.0 for o in stream.outages)
            console.print(f"[yellow]stream {label}: {stream.outage_count} source outage(s), {lasted:.1f} s in all, "
                          f"{stream.reconnects} reconnected[/yellow]")
        damaged = stream.failed_reasons.get("damaged", 0)
        if damaged:
            console.print(f"[yellow]stream {label}: {damaged} damaged frames the decoder could not read[/yellow]")
    if r.native_log and r.native_log.get("lines"):
        console.print(f"[dim]FFmpeg/OpenCV logged {r.native_log['lines']} lines (kept in the report's native_log, "
                      "not printed)[/dim]")
    if r.first_error:
        console.print(f"[red]first frame error: {r.first_error}[/red]")
    if r.fault:
        console.print(f"[red]run stopped by a fault: {r.fault}[/red]")


def render_tune(doc: dict[str, Any], console: Console | None = None) -> None:
    """The sweep's table sorted by FPS, the Pareto front and the recommendation."""
    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    rows = doc["results"]
    t = Table(title="vidprof tune (sorted by end-to-end FPS; * Pareto front, > recommended)", title_justify="left")
    for col in ("#", "configuration", "FPS", "model-only FPS", "e2e p50 ms", "e2e p99 ms", "bottleneck",
                "peak RSS MiB", "compile ms", "precision", "agreement"):
        t.add_column(col, justify="left" if col in ("configuration", "bottleneck") else "right")
    order = sorted(range(len(rows)), key=lambda i: -(rows[i]["fps"] or -1) if rows[i]["status"] == "ok" else 1e9)
    for i in order:
        r = rows[i]
        mark = (">" if i == doc["recommended"] else "") + ("*" if i in doc["pareto"] else "")
        name = ",".join(f"{k}={v}" for k, v in r["config"].items()) or "defaults"
        if r["reference"]:
            name = "reference: " + name
        if r["status"] != "ok":
            t.add_row(f"{mark}{i}", name, "failed", "", "", "", r["error"] or "", "", "", "", "", style="red")
            continue
        acc = r["accuracy"] or {}
        agreement = f"{acc.get('agreement', 0):.3f}" if acc else ""
        if acc.get("changes_results"):
            agreement += " CHANGES RESULTS"
        spread = r["fps_spread"]
        fps = f"{r['fps']:.1f}" + (f" ({spread[0]:.0f}-{spread[1]:.0f})" if spread and r["repeats"] > 1 else "")
        t.add_row(f"{mark}{i}", name, fps, f"{r['model_only_fps']:.1f}" if r["model_only_fps"] else "",
                  f"{r['e2e']['p50'] * 1e3:.1f}", f"{r['e2e']['p99'] * 1e3:.1f}", r["bottleneck"] or "",
                  f"{(r['peak_rss_bytes'] or 0) / 2**20:.0f}", f"{(r['compile_seconds'] or 0) * 1e3:.0f}",
                  r["precision"] or "", agreement, style="bold" if i == doc["recommended"] else None)
    console.print(t)
    front = sorted(doc["pareto"], key=lambda i: -rows[i]["fps"])
    console.print("Pareto front (FPS vs p99): " + "; ".join(
        f"#{i} {rows[i]['fps']:.1f} FPS / {rows[i]['e2e']['p99'] * 1e3:.1f} ms" for i in front))
    if doc["recommended"] is None:
        console.print(f"[red]no recommendation: {doc['recommended_why']}[/red]")
    else:
        console.print(f"recommended: #{doc['recommended']} ({doc['recommended_why']})")
        console.print(f"  {doc['recommended_command']}", soft_wrap=True)
