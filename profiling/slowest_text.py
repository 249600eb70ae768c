"""The slowest frames in words: which part made each one slow, for the console summary and the HTML page.

"The part that made a frame slow" is the stage or wait furthest above its own median in that stream, not
merely the longest: inference may be most of every frame, while the slow one lost its time queueing. The
report keeps the raw figures (``RunReport.slowest``); this module only reads them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from rich.console import Console

from vidprof.profiling.report import RunReport, SlowFrame, StreamReport

# What each part means, in a phrase that follows "N ms of it".
PART_WORDS: dict[tuple[str, str], str] = {
    ("stage", "decode"): "decoding",
    ("wait", "preprocess"): "queued before preprocess",
    ("stage", "preprocess"): "preprocessing",
    ("wait", "inference"): "queued before inference",
    ("wait", "infer_wait"): "waiting for a free infer request",
    ("stage", "inference"): "in inference",
    ("wait", "postprocess"): "queued before postprocess",
    ("stage", "postprocess"): "postprocessing",
}
# The parts in a frame's order, for drawing and listing.
PART_ORDER: tuple[tuple[str, str], ...] = tuple(PART_WORDS)


@dataclass(frozen=True)
class Culprit:
    kind: str  # "stage" | "wait"
    name: str
    seconds: float  # this frame's
    p50: float | None  # the stream's median of the same part; None when the report has no figure for it


def parts(f: SlowFrame) -> list[tuple[str, str, float]]:
    """(kind, name, seconds) of the frame's stages and waits, in pipeline order."""
    out = []
    for kind, name in PART_ORDER:
        table = f.stages if kind == "stage" else f.waits
        if name in table:
            out.append((kind, name, table[name]))
    return out


def culprit(f: SlowFrame, stream: StreamReport | None) -> Culprit | None:
    """The part furthest above the stream's median for it (the longest part when there are no medians)."""
    def p50(kind: str, name: str) -> float | None:
        if stream is None:
            return None
        st = (stream.stages if kind == "stage" else stream.waits).get(name)
        return st.p50 if st is not None and st.count else None

    found = [(kind, name, sec, p50(kind, name)) for kind, name, sec in parts(f)]
    if not found:
        return None
    kind, name, sec, med = max(found, key=lambda c: c[2] - (c[3] or 0.0))
    return Culprit(kind, name, sec, med)


def ms(seconds: float) -> str:
    v = seconds * 1e3
    return f"{v:.1f} ms" if abs(v) >= 1 else f"{v:.2f} ms"


def explain(f: SlowFrame, stream: StreamReport | None, with_stream: bool = False) -> str:
    """e.g. "frame 812 at 12.3 s: 61.0 ms, 48.0 ms of it waiting for a free infer request (p50 0.40 ms)"."""
    who = f"stream {f.stream} frame {f.frame}" if with_stream else f"frame {f.frame}"
    text = f"{who} at {f.start:.1f} s: {ms(f.e2e)}"
    c = culprit(f, stream)
    if c is None:
        return text
    text += f", {ms(c.seconds)} of it {PART_WORDS[(c.kind, c.name)]}"
    if c.name == "inference" and c.kind == "stage" and f.request is not None:
        text += f" on request {f.request}"
    if c.p50 is not None:
        text += f" (p50 {ms(c.p50)})"
    return text


def per_stream(report: RunReport) -> int:
    """How many slowest frames the report keeps per stream (the most any stream has)."""
    counts: dict[str, int] = {}
    for f in report.slowest:
        counts[f.stream] = counts.get(f.stream, 0) + 1
    return max(counts.values(), default=0)


def slowest_lines(report: RunReport) -> list[str]:
    """The summary's lines: the slowest frames of the run (at most as many as a stream keeps), slowest first."""
    if not report.slowest:
        return []
    k = per_stream(report)
    multi = len({f.stream for f in report.slowest}) > 1 or len(report.streams) > 1
    top = sorted(report.slowest, key=lambda f: -f.e2e)[:k]
    lines = ["slowest frames end to end, and the part that made each slow (the furthest above its p50):"]
    lines += [f"  {explain(f, report.streams.get(f.stream), multi)}" for f in top]
    if multi:
        lines.append(f"  (the report's slowest[] lists the {k} slowest of each stream)")
    return lines


def print_slowest(report: RunReport, console: Console | None = None) -> None:
    """Print ``slowest_lines`` after the summary; the console's own settings when one is given."""
    lines = slowest_lines(report)
    if not lines:
        return
    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    for line in lines:
        console.print(line, markup=False)
