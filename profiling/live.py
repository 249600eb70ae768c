"""The live table: per stream and stage, p50, p99, busy, FPS and drops, redrawn in place on a terminal.

Two sources fill the same table:

- ``vidprof run`` on a terminal (``RunLive``): the recorders of the run itself, every tick (0.5 s): p50 and p99
  exact over each stream's latest ``RECENT`` frames, FPS over the tick, busy and drops since the start;
- ``vidprof top`` (``pipeline.top``): any running vidprof's /metrics, read twice: p50 and p99 from the histogram
  buckets between the two reads (interpolated within a bucket, as Prometheus' ``histogram_quantile``), FPS from
  the completed-frames counter's rate, busy from ``vidprof_stage_busy_ratio`` and drops from the counter.

The table fits the terminal: its width is the terminal's (a long stream label is cut with an ellipsis, figures
never are) and, when a row per stage of every stream would not fit its height, one row per stream (end to end,
and the busiest stage).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from vidprof.profiling.console import terminal_columns
from vidprof.profiling.marks import STAGES
from vidprof.profiling.summary import busy_ratios

if TYPE_CHECKING:
    from vidprof.pipeline.runner import Progress, Runner

RECENT = 256  # frames per stream the run's live p50 and p99 cover (at most: figures.RECENT)
E2E = "e2e"


@dataclass(frozen=True)
class Row:
    """One line of a stream: ``part`` is "e2e" or a stage; seconds, or None when no frame was measured."""

    part: str
    p50: float | None
    p99: float | None
    busy: float | None = None


@dataclass(frozen=True)
class StreamView:
    stream: str
    rows: tuple[Row, ...]  # e2e first, then the stages in pipeline order
    fps: float | None
    dropped: int | None
    failed: int = 0

    def busiest(self) -> Row | None:
        stages = [r for r in self.rows if r.part != E2E and r.busy is not None]
        return max(stages, key=lambda r: r.busy or 0.0) if stages else None


@dataclass(frozen=True)
class View:
    """One vidprof's table: a title, its streams, and a note (why it could not be read this time)."""

    title: str
    streams: tuple[StreamView, ...]
    note: str = ""


# ---------------------------------------------------------------- figures
def percentiles(values: Sequence[float]) -> tuple[float | None, float | None]:
    """p50 and p99 of ``values`` (numpy's linear interpolation, as the report's); None without values."""
    if len(values) == 0:
        return None, None
    p50, p99 = np.percentile(np.asarray(values, dtype=np.float64), (50, 99))
    return float(p50), float(p99)


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a histogram's cumulative ``(le, count)`` buckets (sorted, +Inf last), as Prometheus'
    ``histogram_quantile`` computes it: linear within the bucket the rank falls in, from the bucket below's bound
    (0 for the first); the highest finite bound when it falls in +Inf. None without observations."""
    if not buckets or not math.isinf(buckets[-1][0]):
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for i, (le, count) in enumerate(buckets):
        if count >= rank:
            if math.isinf(le):
                return buckets[-2][0] if len(buckets) > 1 else None
            if i == 0 and le <= 0:
                return le
            inside = count - below
            return lower + (le - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = le, count
    return None


# ---------------------------------------------------------------- rendering
def _ms(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    ms = seconds * 1e3
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def _pct(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.0%}"


def _fps(fps: float | None) -> str:
    return "-" if fps is None else f"{fps:.1f}"


def _drops(s: StreamView) -> str:
    if s.dropped is None:
        return "-"
    return f"{s.dropped}" + (f" +{s.failed} failed" if s.failed else "")


_FULL = (("stream", "<"), ("part", "<"), ("p50 ms", ">"), ("p99 ms", ">"), ("busy", ">"), ("FPS", ">"),
         ("drops", ">"))
_COMPACT = (("stream", "<"), ("e2e p50 ms", ">"), ("e2e p99 ms", ">"), ("busiest", "<"), ("FPS", ">"),
            ("drops", ">"))
GAP = 2  # spaces between columns


def _rows(view: View, compact: bool) -> list[tuple[list[str], str | None]]:
    """Each line's cells (in the columns' order) and its style."""
    out: list[tuple[list[str], str | None]] = []
    for s in view.streams:
        e2e = next((r for r in s.rows if r.part == E2E), Row(E2E, None, None))
        if compact:
            b = s.busiest()
            out.append(([s.stream, _ms(e2e.p50), _ms(e2e.p99), f"{b.part} {_pct(b.busy)}" if b else "",
                         _fps(s.fps), _drops(s)], None))
            continue
        out.append(([s.stream, E2E, _ms(e2e.p50), _ms(e2e.p99), "", _fps(s.fps), _drops(s)], "bold"))
        out.extend(([" ", r.part, _ms(r.p50), _ms(r.p99), _pct(r.busy), "", ""], None) for r in s.rows
                   if r.part != E2E)
    return out


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def _table(view: View, compact: bool, width: int | None) -> Text:
    """The table as aligned lines: columns as wide as their widest cell, the stream labels cut (with an
    ellipsis) so that the figures keep their room within ``width``. Formatted here rather than by a Rich
    Table, which takes ~30x as long to lay out (~60 ms for 8 streams, twice a second, in the profiled
    process)."""
    columns = _COMPACT if compact else _FULL
    rows = _rows(view, compact)
    widths = [max(len(h), *(len(cells[i]) for cells, _ in rows)) for i, (h, _) in enumerate(columns)]
    if width is not None:
        others = sum(widths[1:]) + GAP * (len(widths) - 1)
        widths[0] = max(len("stream"), min(widths[0], width - others))
    out = Text(no_wrap=True, overflow="ellipsis")

    def line(cells: Sequence[str], style: str | None) -> None:
        text = (" " * GAP).join(_cut(c, w).ljust(w) if j == "<" else _cut(c, w).rjust(w)
                                for c, w, (_, j) in zip(cells, widths, columns, strict=True))
        out.append(text.rstrip() + "\n", style=style)

    line([h for h, _ in columns], "bold")
    out.append("─" * (sum(widths) + GAP * (len(widths) - 1)) + "\n", style="dim")
    for cells, style in rows:
        line(cells, style)
    out.rstrip()
    return out


def full_height(views: Sequence[View]) -> int:
    """Lines the tables take with a row per stage: title, header and its rule, the rows, a note, a gap."""
    return sum(1 + (2 if v.streams else 0) + sum(len(s.rows) for s in v.streams) + (1 if v.note else 0) + 1
               for v in views) - 1


def render(views: Sequence[View], height: int | None = None, width: int | None = None) -> RenderableType:
    """The tables of ``views``, their labels cut to fit ``width`` columns; one row per stream when a row per stage
    would not fit ``height`` lines. No line wraps: what does not fit the width is cut."""
    compact = height is not None and full_height(views) > height
    parts: list[RenderableType] = []
    for i, v in enumerate(views):
        if i:
            parts.append(Text(""))
        parts.append(Text(v.title, style="bold", no_wrap=True, overflow="ellipsis"))
        if v.streams:
            parts.append(_table(v, compact, width))
        if v.note:
            parts.append(Text(v.note, style="red", overflow="fold"))
    return Group(*parts)


def terminal_lines(stream: TextIO) -> int | None:
    """The height of the terminal ``stream`` writes to ($LINES when set), or None."""
    try:
        lines = int(os.environ.get("LINES", ""))
        if lines > 0:
            return lines
    except ValueError:
        pass
    try:
        return os.get_terminal_size(stream.fileno()).lines or None
    except (OSError, ValueError, AttributeError):
        return None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LiveScreen:
    """Tables redrawn in place on a terminal, sized to it at each update (a resized window is followed)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.console = Console(file=stream, highlight=False, force_terminal=True)
        self._live: Live | None = None

    def update(self, views: Sequence[View]) -> None:
        width, height = terminal_columns(self._stream), terminal_lines(self._stream)
        self.console.size = (width, height or 25)  # type: ignore[assignment]
        # One line fewer than the terminal: a table as tall as the screen would scroll it by a line each time.
        shown = render(views, (height or 25) - 1, width)
        if self._live is None:
            # Lines printed meanwhile go above the table; but a stdout redirected to a file stays that file's.
            self._live = Live(shown, console=self.console, auto_refresh=False, transient=False,
                              vertical_overflow="ellipsis", redirect_stdout=_isatty(sys.stdout),
                              redirect_stderr=_isatty(sys.stderr))
            self._live.start(refresh=True)
        else:
            self._live.update(shown, refresh=True)

    def stop(self) -> None:
        """Leave the last tables on the screen."""
        if self._live is not None:
            self._live.stop()
            self._live = None


# ---------------------------------------------------------------- vidprof run
def run_title(pipeline: str, elapsed: float, completed: int, fps: float) -> str:
    return f"vidprof run · {pipeline} · {elapsed:.1f} s · {completed} frames · {fps:.1f} FPS"


class RunLive:
    """``vidprof run``'s live table on a terminal (stderr): the runner's ``on_progress`` every tick, ``finish()``
    at the end (the last table stays above the summary)."""

    def __init__(self, runner: Runner, stream: TextIO | None = None) -> None:
        self._runner = runner
        self._screen = LiveScreen(stream or sys.stderr)
        self._last: tuple[float, list[int]] | None = None  # (elapsed, each stream's completed) at the last tick
        self._progress: Progress | None = None

    def view(self, elapsed: float, fps: float, final: bool = False) -> View:
        """Each stream's FPS over the time since the last view (``final``: since the start, the run's mean)."""
        runner = self._runner
        counts = [r.completed for r in runner.recorders]
        last = None if final else self._last
        window = elapsed - last[0] if last is not None else elapsed
        before = last[1] if last is not None else [0] * len(counts)
        self._last = (elapsed, counts)
        streams = []
        for worker, recorder, done, was in zip(runner.workers, runner.recorders, counts, before, strict=False):
            recent = recorder.recent(RECENT)
            busy = busy_ratios(recorder, elapsed, runner.nireq, preprocess_threads=worker.preprocess_threads)
            rows = [Row(E2E, *percentiles(recent[E2E]))]
            rows += [Row(st, *percentiles(recent[st]), busy[st]) for st in STAGES]
            streams.append(StreamView(worker.label, tuple(rows), (done - was) / window if window > 0 else None,
                                      recorder.dropped, recorder.failed))
        return View(run_title(runner.pipeline_name, elapsed, sum(counts), fps), tuple(streams))

    def __call__(self, p: Progress) -> None:
        self._progress = p
        self._screen.update([self.view(p.elapsed, p.fps)])

    def finish(self) -> None:
        p = self._progress
        if p is not None:
            # The run's end: every frame, and the run's mean FPS, as the summary below says them.
            wall = self._runner.info.wall_seconds or p.elapsed
            done = sum(r.completed for r in self._runner.recorders)
            self._screen.update([self.view(wall, done / wall if wall > 0 else 0.0, final=True)])
        self._screen.stop()


def run_progress(runner: Runner, quiet: bool, stream: TextIO | None = None) -> Any:
    """What ``vidprof run`` shows while it runs: nothing with --quiet; the live table on a terminal (one that can
    move its cursor); else the plain progress line (a line every few seconds in a file or pipe)."""
    from vidprof.profiling.console import ProgressLine

    if quiet:
        return None
    out = stream or sys.stderr
    if out.isatty() and os.environ.get("TERM", "") not in ("dumb", "unknown"):
        return RunLive(runner, out)
    return ProgressLine(out)
