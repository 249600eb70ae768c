"""Draw a saved JSON report: the Grafana dashboard's panels as one PNG, and a self-contained HTML page.

Nothing here measures: every figure comes from the report (``vidprof run --report``, read into a
``RunReport``), whose values are in base units (seconds, bytes). Reading the file checked its shape; the
timeline rows stay plain JSON, and a run that was interrupted, failed or shorter than a second has few
of them or gaps in them, so every panel draws what it can and says so when it cannot.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# The OO API (Figure + Agg canvas) instead of pyplot: no GUI backend, no global figure state, so it works
# headless and from any thread.
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vidprof.profiling.errors import RunError
from vidprof.profiling.marks import STAGES, WAITS
from vidprof.profiling.report import RunReport, StageStats, as_report
from vidprof.profiling.slowest_text import PART_WORDS, culprit, explain, ms, parts
from vidprof.profiling.summary import SATURATED

NAN = math.nan
MIB = 1024 * 1024
# One colour per stage (and per queue, named after the stage it feeds), the same in every panel.
COLORS = {s: f"C{i}" for i, s in enumerate(STAGES)} | {"infer_wait": "C4"}
WAIT_LABELS = {"infer_wait": "wait for infer request"}


def _d(x: Any) -> dict[str, Any]:
    """A dict, or {} for anything missing or of the wrong type (a timeline row's gap, a free-form part)."""
    return x if isinstance(x, dict) else {}


def _f(x: Any) -> float:
    """A number, or NaN: matplotlib leaves a gap and the page prints a dash."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else NAN


def _rows(doc: RunReport) -> list[dict[str, Any]]:
    # A row without a time cannot be placed on any panel.
    return [r for r in doc.timeline if not math.isnan(_f(r.get("t")))]


def _col(rows: Sequence[dict[str, Any]], *path: str, scale: float = 1.0) -> list[float]:
    """One series from the rows, following nested keys; a missing step (no frame in a window) is NaN."""
    out = []
    for r in rows:
        v: Any = r
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        out.append(_f(v) * scale)
    return out


def _rate(t: Sequence[float], cumulative: Sequence[float],
          start: tuple[float, float] | None) -> tuple[list[float], list[float]]:
    """Per-second rate of a cumulative counter, as (window edges, one value per window). ``start`` is the
    (t, value) before the first row when it is known (byte counters start at 0 with the run); without it the
    first window is unknown and the rates begin at the first row."""
    pairs = ([start] if start is not None else []) + list(zip(t, cumulative, strict=True))
    rates = [(v1 - v0) / (t1 - t0) if t1 > t0 else NAN for (t0, v0), (t1, v1) in itertools.pairwise(pairs)]
    return [p[0] for p in pairs], rates


def _some(values: Sequence[float]) -> bool:
    return any(not math.isnan(v) for v in values)


def _line(ax: Axes, t: Sequence[float], values: Sequence[float], **kw: Any) -> None:
    """Samples at an instant (percentiles of a window, gauges), points joined by lines. A series with no
    value at all is left out, so the legend lists only what is drawn."""
    if _some(values):
        ax.plot(t, values, marker=".", **kw)


def _windows(ax: Axes, edges: Sequence[float], values: Sequence[float], **kw: Any) -> None:
    """A figure that covers a window (a rate, a per-window sum) is drawn over its window, not at one instant:
    a short last window then looks short, and a single row still shows as a line."""
    if _some(values):
        ax.stairs(values, edges, baseline=None, lw=1.5, **kw)


def _bytes_unit(peak: float) -> tuple[str, float]:
    """A unit that keeps tick labels short, whatever the model's tensor sizes."""
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if peak >= scale:
            return unit, scale
    return "B/s", 1.0


def _empty(ax: Axes, text: str = "no timeline") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.45", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])


def _ts(ax: Axes, title: str, unit: str, t: Sequence[float], draw: Callable[[], None], need: int = 1,
        integer: bool = False) -> None:
    """A time-series panel: title, axes labels, grid; 'no timeline' when there are too few rows."""
    ax.set_title(title, fontsize=10, loc="left")
    if len(t) < need:
        _empty(ax, "no timeline" if not t else f"needs {need}+ timeline rows")
        return
    draw()
    if not ax.lines and not ax.patches:
        _empty(ax, "no samples in the timeline")
        return
    ax.set_xlabel("run time (s)", fontsize=8)
    if unit:
        ax.set_ylabel(unit, fontsize=8)
    ax.set_xlim(0, max(t[-1], 1e-3) * 1.02)  # a little room so the last point is not cut by the frame
    # From 0, so a flat line near its maximum is not drawn as a swing; with headroom, so a line at the
    # maximum (the peak RSS, the whole-run FPS) does not hide under the frame.
    top = ax.get_ylim()[1]
    ax.set_ylim(0, (max(top, 1) if integer else top) * 1.08)
    if integer:  # counts: 1, 2, 3 requests or frames, never 0.25; an all-zero count still gets a scale
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")


def _ms(x: Any) -> str:
    v = _f(x)
    return "–" if math.isnan(v) else f"{v * 1e3:.2f}"


def _short(path: Any) -> str:
    """A file path's name; URLs, camera indices and synthetic specs stay whole."""
    s = str(path) if path is not None else "?"
    return os.path.basename(s) if os.sep in s and "://" not in s else s


def _title(doc: RunReport) -> str:
    cfg = doc.config
    device = _d(cfg.get("inference")).get("device", "?")
    return (f"vidprof: {_short(cfg.get('model'))} on {device}  ·  source {_short(cfg.get('source'))}  ·  "
            f"{doc.fps:.1f} FPS")


# `vidprof report --html a --png b` draws the same report twice and a figure takes about a second: keep
# the last one. The report itself is kept too, so an identity check cannot match a new one at a recycled id.
_last: tuple[RunReport, bytes] | None = None


def render_png(report: RunReport | Mapping[str, Any]) -> bytes:
    """The panels as PNG bytes: the ones the Grafana dashboard draws from the live metrics."""
    global _last
    doc = as_report(report)
    if _last is not None and _last[0] is doc:
        return _last[1]
    _last = (doc, _draw(doc))
    return _last[1]


def _draw(doc: RunReport) -> bytes:
    rows = _rows(doc)
    t = _col(rows, "t")
    fig = Figure(figsize=(16, 19), dpi=100)
    FigureCanvasAgg(fig)
    fig.suptitle(_title(doc), fontsize=14, fontweight="bold")
    gs = fig.add_gridspec(5, 3, left=0.05, right=0.98, top=0.95, bottom=0.03, hspace=0.38, wspace=0.22)
    ax = [fig.add_subplot(gs[i // 3, i % 3]) for i in range(13)]
    stages = [s for s in STAGES if s in doc.stages] or list(STAGES)
    mean_fps = doc.fps

    def fps() -> None:
        # Each row's FPS counts the frames completed since the previous row.
        _windows(ax[0], [0.0, *t], _col(rows, "fps"), color="C0", label="per window")
        if not math.isnan(mean_fps):
            ax[0].axhline(mean_fps, color="0.3", ls="--", lw=1, label=f"whole run {mean_fps:.1f}")
    _ts(ax[0], "FPS (frames completed per second)", "frames/s", t, fps)

    def e2e() -> None:
        for q, ls in (("p50", "-"), ("p95", "--"), ("p99", ":")):
            _line(ax[1], t, _col(rows, "e2e", q, scale=1e3), ls=ls, color="C3", label=q)
    _ts(ax[1], "End-to-end latency", "ms", t, e2e)

    def stage_lat() -> None:
        for s in stages:
            _line(ax[2], t, _col(rows, "stages", s, "p50", scale=1e3), color=COLORS.get(s), label=f"{s} p50")
            _line(ax[2], t, _col(rows, "stages", s, "p95", scale=1e3), color=COLORS.get(s), ls="--", lw=1,
                  markersize=3)
    _ts(ax[2], "Stage latency (p50 solid, p95 dashed)", "ms", t, stage_lat)

    def waits() -> None:
        for w in WAITS:
            _line(ax[3], t, _col(rows, "waits", w, "p50", scale=1e3), color=COLORS.get(w),
                  label=WAIT_LABELS.get(w, f"queue before {w}"))
    _ts(ax[3], "Queue waits p50", "ms", t, waits)

    def infer() -> None:
        # Instantaneous samples, like a Prometheus gauge: points joined by lines, not windows.
        _line(ax[4], t, _col(rows, "infer_requests_busy"), color="C2", label="busy")
        _line(ax[4], t, _col(rows, "nireq"), color="0.3", ls="--", label="available")
    _ts(ax[4], "Infer requests busy vs available", "requests", t, infer, integer=True)

    def depth() -> None:
        queues = list(dict.fromkeys(q for r in rows for q in _d(r.get("queue_depth"))))
        for q in queues:
            _line(ax[5], t, _col(rows, "queue_depth", q), color=COLORS.get(q), label=f"before {q}")
    _ts(ax[5], "Queue depth", "frames", t, depth, integer=True)

    def xfer_bytes() -> None:
        # Counters are cumulative and start at 0 with the run, so the first window's rate is known too.
        series = [(label, c, *_rate(t, _col(rows, key), (0.0, 0.0)))
                  for key, label, c in (("h2d_bytes", "host→device", "C0"), ("d2h_bytes", "device→host", "C1"))]
        unit, scale = _bytes_unit(max([v for *_, rates in series for v in rates if not math.isnan(v)], default=0.0))
        for label, c, edges, rates in series:
            _windows(ax[6], edges, [v / scale for v in rates], color=c, label=label)
        ax[6].set_ylabel(unit, fontsize=8)
    _ts(ax[6], "Transfer bytes", "", t, xfer_bytes)

    def xfer_time() -> None:
        # Seconds are per window; dividing by the window's length makes short (last) windows comparable.
        win = [t1 - t0 for t0, t1 in itertools.pairwise([0.0, *t])]
        for key, label, c in (("h2d_seconds", "host→device", "C0"), ("d2h_seconds", "device→host", "C1")):
            ms = [v * 1e3 / w if w > 0 else NAN for v, w in zip(_col(rows, key), win, strict=True)]
            _windows(ax[7], [0.0, *t], ms, color=c, label=label)
    _ts(ax[7], "Transfer time", "ms per s of run", t, xfer_time)

    def lost() -> None:
        for key, c in (("dropped", "C1"), ("failed", "C3")):
            ax[8].step([0.0, *t], [0.0, *_col(rows, key)], where="post", color=c, marker=".", label=key)
    _ts(ax[8], "Dropped and failed frames (cumulative)", "frames", t, lost, integer=True)

    _startup(ax[9], doc.startup)
    _busy(ax[10], doc.busy, doc.bottleneck.stage)

    def cpu() -> None:
        # cpu_seconds is the process total including startup, so only differences between rows are a rate.
        _windows(ax[11], *_rate(t, _col(rows, "cpu_seconds"), None), color="C4", label="user + system")
    _ts(ax[11], "Process CPU", "cores", t, cpu, need=2)

    def rss() -> None:
        _line(ax[12], t, _col(rows, "rss_bytes", scale=1 / MIB), color="C5", label="RSS")
        peak = _f(doc.memory.get("peak_rss_bytes")) / MIB
        if not math.isnan(peak):
            ax[12].axhline(peak, color="0.3", ls="--", lw=1, label=f"peak {peak:.0f} MiB")
    _ts(ax[12], "Resident memory", "MiB", t, rss)

    _verdict(fig.add_subplot(gs[4, 1:]), doc)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _startup(ax: Axes, st: dict[str, Any]) -> None:
    ax.set_title("Startup", fontsize=10, loc="left")
    phases = [(k, _f(st.get(k)) * 1e3) for k in ("read_model", "compile", "first_inference")]
    phases = [(k, v) for k, v in phases if not math.isnan(v)]
    if not phases:
        _empty(ax, "no startup figures")
        return
    bars = ax.bar([k for k, _ in phases], [v for _, v in phases], color="C0")
    ax.bar_label(bars, labels=[f"{v:.1f} ms" for _, v in phases], fontsize=8, padding=2)
    ax.set_ylabel("ms", fontsize=8)
    if "cache" in st:
        ax.set_xlabel(f"model cache: {st['cache']}", fontsize=8)
    ax.margins(y=0.15)


def _busy(ax: Axes, busy: dict[str, float], neck: str) -> None:
    ax.set_title("Stage busy ratio, bottleneck in red (inference: per request)", fontsize=10, loc="left")
    stages = [s for s in STAGES if s in busy] or list(busy)
    if not stages:
        _empty(ax, "no busy figures")
        return
    vals = [_f(busy[s]) * 100 for s in stages]
    # Below SATURATED the summary calls no stage the limit (the source's pace is): outline the busiest
    # stage then, but keep the red for a real bottleneck.
    saturated = _f(busy.get(neck)) >= SATURATED
    bars = ax.bar(stages, vals, color=["C3" if s == neck and saturated else "0.7" for s in stages],
                  edgecolor=["black" if s == neck else "none" for s in stages], linewidth=1.5)
    ax.bar_label(bars, labels=[f"{v:.0f}%" for v in vals], fontsize=8)
    ax.axhline(100, color="0.3", lw=1)
    ax.axhline(SATURATED * 100, color="0.5", lw=1, ls=":", label=f"saturated from {SATURATED:.0%}")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_ylabel("% of run time", fontsize=8)
    ax.set_ylim(0, max(120.0, *[v for v in vals if not math.isnan(v)]) * 1.05)


def _problems(doc: RunReport) -> list[tuple[str, str]]:
    """What went wrong in the run, as (label, text): the fault, the first failed frame, an interruption."""
    out = [(label, text) for label, text in (("run stopped by a fault", doc.fault),
                                             ("first frame error", doc.first_error)) if text]
    if doc.interrupted:
        out.append(("interrupted", "the figures cover what ran until then"))
    return out


def _verdict(ax: Axes, doc: RunReport) -> None:
    """The run in words: what a reader of the picture alone needs to act on it."""
    ax.axis("off")
    lines = [_frames_line(doc), _bottleneck_line(doc)] + [f"{label}: {text}" for label, text in _problems(doc)]
    ax.text(0, 1, "\n\n".join(lines), va="top", ha="left", fontsize=10, wrap=True, transform=ax.transAxes)


def _frames_line(doc: RunReport) -> str:
    f = doc.frames
    return (f"frames: {f.completed} completed, {f.dropped} dropped, {f.failed} failed in {doc.wall_seconds:.2f} s"
            f"  →  {doc.fps:.1f} FPS")


def _bottleneck_line(doc: RunReport) -> str:
    return f"bottleneck: {doc.bottleneck.stage}: {doc.bottleneck.advice}"


def _check_folder(path: str, what: str) -> None:
    """Fail before the second of drawing, not after it, when the output cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise RunError(f"{what} {path}: cannot write (folder {folder} does not exist); choose another path")


def _write(path: str, data: bytes, what: str) -> None:
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:  # a user's path, not a bug: one line, exit 1
        raise RunError(f"{what} {path}: cannot write ({e.strerror}); choose another path") from e


def write_png(report: RunReport | Mapping[str, Any], path: str) -> None:
    _check_folder(path, "--png")
    _write(path, render_png(report), "--png")


def _table(doc: RunReport) -> str:
    neck = doc.bottleneck.stage
    # As in the busy panel: below SATURATED the busiest stage is not what limits the run.
    mark = "  ← bottleneck" if doc.bottleneck.busy_ratio >= SATURATED else "  ← busiest"
    rows: list[tuple[str, StageStats, str]] = [(s + (mark if s == neck else ""), st, "neck" if s == neck else "")
                                               for s, st in doc.stages.items()]
    rows += [(WAIT_LABELS.get(w, f"queue before {w}"), st, "wait") for w, st in doc.waits.items() if st.count]
    rows.append(("end-to-end", doc.e2e, "e2e"))
    cells = "".join(
        f'<tr class="{cls}"><td>{html.escape(name)}</td><td>{st.count}</td>'
        + "".join(f"<td>{_ms(x) if x is not None else '-'}</td>" for x in (st.mean, st.p50, st.p95, st.p99, st.max))
        + "</tr>"
        for name, st, cls in rows)
    head = "".join(f"<th>{h}</th>" for h in ("figure", "count", "mean", "p50", "p95", "p99", "max"))
    return f"<table><caption>latency in ms</caption><tr>{head}</tr>{cells}</table>"


def _facts(doc: RunReport) -> list[str]:
    """The console summary's lines, for the page."""
    out = [_frames_line(doc)]
    cfg = doc.config
    inf, res = _d(cfg.get("inference")), _d(cfg.get("resolved"))
    # What the device chose (resolved) next to what was asked: the figures depend on both.
    out.append(f"run: model {cfg.get('model', '?')}, source {cfg.get('source', '?')}, device {inf.get('device', '?')}, "
               f"hint {inf.get('hint', '?')} (device: {res.get('hint', '?')}), {res.get('nireq', '?')} infer requests, "
               f"{res.get('streams', '?')} streams, preprocess {cfg.get('preprocess', '?')}")
    for tr, label in ((doc.transfer.host_to_device, "host→device"), (doc.transfer.device_to_host, "device→host")):
        out.append(f"transfer {label}: {tr.bytes:,} bytes, {_ms(tr.seconds)} ms in total "
                   f"({tr.per_frame.mean * 1e6:.1f} µs per frame)")
    st = doc.startup
    parts = [f"{k} {_f(st[k]) * 1e3:.1f} ms" for k in ("read_model", "compile", "first_inference") if k in st]
    if "cache" in st:
        parts.append(f"model cache {st['cache']}")
    out.append("startup: " + (", ".join(parts) or "–"))
    mem = doc.memory
    if mem:
        out.append("memory: " + ", ".join(f"{k.removesuffix('_bytes').replace('_', ' ')} {_f(v) / MIB:.0f} MiB"
                                          for k, v in mem.items()))
    out.append("busy: " + (", ".join(f"{s} {v:.0%}" for s, v in doc.busy.items()) or "–"))
    return out


GANTT_ROWS = 40  # frames drawn at most, the slowest of the run first: a chart of 16 streams x 5 stays legible


def _part_style(kind: str, name: str) -> dict[str, Any]:
    """A stage in its colour; a wait in the colour of the stage it waits for, pale and hatched, so the eye
    separates work from waiting; the wait for an infer request in its own colour, as in the panels."""
    if kind == "stage":
        return {"facecolor": COLORS.get(name, "0.5")}
    # A hatch is drawn in the edge colour: a grey edge keeps it visible without outlining every wait.
    if name == "infer_wait":
        return {"facecolor": COLORS["infer_wait"], "alpha": 0.55, "hatch": "xx", "edgecolor": "0.45", "linewidth": 0}
    return {"facecolor": COLORS.get(name, "0.5"), "alpha": 0.3, "hatch": "//", "edgecolor": "0.45", "linewidth": 0}


def render_gantt(report: RunReport | Mapping[str, Any]) -> bytes | None:
    """The slowest frames as a Gantt chart (PNG): one row per frame, its stages and waits end to end from
    its decode start, the part furthest above its median outlined. None when the report has no slowest
    frames (older reports, or ``--slowest 0``)."""
    doc = as_report(report)
    frames = sorted(doc.slowest, key=lambda f: -f.e2e)[:GANTT_ROWS]
    if not frames:
        return None
    multi = len(doc.streams) > 1 or len({f.stream for f in frames}) > 1
    height = 1.9 + 0.42 * len(frames)
    fig = Figure(figsize=(14, height), dpi=100)
    FigureCanvasAgg(fig)
    # Fixed margins in inches (the frame labels left, the legend below), whatever the number of rows.
    fig.subplots_adjust(left=1.5 / 14, right=0.98, top=1 - 0.45 / height, bottom=0.95 / height)
    ax = fig.add_subplot()
    seen: dict[tuple[str, str], None] = {}
    longest = max(f.e2e for f in frames) * 1e3
    for row, f in enumerate(frames):
        c = culprit(f, doc.streams.get(f.stream))
        x = 0.0
        for kind, name, sec in parts(f):
            ax.broken_barh([(x * 1e3, sec * 1e3)], (row - 0.38, 0.76), **_part_style(kind, name))
            if c is not None and (c.kind, c.name) == (kind, name):
                ax.broken_barh([(x * 1e3, sec * 1e3)], (row - 0.38, 0.76), facecolor="none", edgecolor="black",
                               linewidth=1.6)
            seen[(kind, name)] = None
            x += sec
        note = ms(f.e2e) + (f": {ms(c.seconds)} {PART_WORDS[(c.kind, c.name)]}" if c is not None else "")
        ax.text(f.e2e * 1e3 + longest * 0.01, row, note, va="center", fontsize=8)
    ax.set_yticks(range(len(frames)),
                  labels=[f"stream {f.stream} · frame {f.frame}" if multi else f"frame {f.frame}" for f in frames],
                  fontsize=8)
    ax.set_ylim(len(frames) - 0.5, -0.5)  # the slowest on top
    ax.set_xlim(0, longest * 1.45)  # room for the notes right of the bars
    ax.set_xlabel("ms since the frame's decode started", fontsize=9, labelpad=2)
    ax.grid(axis="x", alpha=0.3)
    from matplotlib.patches import Patch  # only the chart needs it

    handles = [Patch(label=WAIT_LABELS.get(name, f"queue before {name}") if kind == "wait" else name,
                     **_part_style(kind, name)) for kind, name in seen]
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=len(handles), frameon=False)
    ax.set_title("The slowest frames end to end: each stage and wait, the part furthest above its median "
                 "outlined", fontsize=10, loc="left")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _slowest_section(doc: RunReport) -> str:
    """The Gantt chart and one line per frame, or nothing for a report without slowest frames."""
    png = render_gantt(doc)
    if png is None:
        return ""
    frames = sorted(doc.slowest, key=lambda f: -f.e2e)
    multi = len(doc.streams) > 1
    items = "".join(f"<li>{html.escape(explain(f, doc.streams.get(f.stream), multi))}</li>" for f in frames)
    return (f'<h2>The slowest frames</h2>\n<img alt="the slowest frames as a Gantt chart" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">\n<ul class="slow">{items}</ul>\n')


def write_html(report: RunReport | Mapping[str, Any], path: str) -> None:
    _check_folder(path, "--html")
    doc = as_report(report)
    png = base64.b64encode(render_png(doc)).decode("ascii")
    title = html.escape(_title(doc))
    facts = "".join(f"<li>{html.escape(x)}</li>" for x in _facts(doc))
    problems = "".join(f'<p class="bad">{html.escape(label)}: {html.escape(text)}</p>'
                       for label, text in _problems(doc))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
caption {{ text-align: left; color: #666; }}
th, td {{ padding: .2em .8em; border-bottom: 1px solid #ddd; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; white-space: pre; }}
tr.neck, tr.e2e {{ font-weight: bold; }} tr.wait {{ color: #777; }}
.advice {{ font-size: 1.1em; }} .bad {{ color: #b00; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>{title}</h1>
{problems}<p class="advice"><b>{html.escape(_bottleneck_line(doc))}</b></p>
{_table(doc)}
<ul>{facts}</ul>
<img alt="vidprof panels" src="data:image/png;base64,{png}">
{_slowest_section(doc)}</body></html>
"""
    _write(path, page.encode("utf-8"), "--html")
