"""Rendering for people: the live progress line and the summary table. Nothing here measures."""

from __future__ import annotations

import io
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

from vidprof.profiling.marks import STAGES
from vidprof.profiling.report import RunReport, StageStats, as_report
from vidprof.profiling.slowest_text import print_slowest


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def _ms_or_dash(seconds: float | None) -> str:
    return "-" if seconds is None else _ms(seconds)  # None: a figure an older report did not have


def terminal_columns(stream: TextIO) -> int:
    """The width of the terminal ``stream`` writes to: $COLUMNS when set (as Rich and shutil read it), else
    the terminal's own size, asked each time so a resized window is followed."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
        if columns > 0:
            return columns
    except ValueError:
        pass
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        return shutil.get_terminal_size().columns


def fit(parts: Sequence[str], width: int, sep: str = "  ") -> str:
    """As many of ``parts`` (most important first) as fit in ``width`` columns: whole parts only, so
    nothing is cut mid-word."""
    line = ""
    for part in parts:
        candidate = f"{line}{sep}{part}" if line else part
        if len(candidate) > width:
            break
        line = candidate
    return line


class ProgressLine:
    """One line redrawn in place on a terminal; a plain line every few seconds when output is a file or pipe.

    On a terminal the line is cut to its width, whole parts at a time: a line one column too long wraps,
    and ``\r`` then returns to the start of the wrapped part only, so every update would add a line."""

    def __init__(self, stream: TextIO | None = None, every_seconds: float = 5.0) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._every = every_seconds
        self._last = 0.0
        self._drawn = False

    @staticmethod
    def parts(p: Any) -> list[str]:
        """The line's parts, most important first."""
        out = [f"{p.elapsed:.1f} s", f"{p.completed} frames", f"{p.fps:.1f} FPS"]
        if p.dropped:
            out.append(f"{p.dropped} dropped")
        if p.failed:
            out.append(f"{p.failed} failed")
        out += [f"{s} {p.stage_ms[s]:.1f} ms" for s in STAGES]
        return out

    def __call__(self, p: Any) -> None:
        if self._tty:
            # The last column stays empty: some terminals wrap as soon as it is written.
            line = fit(self.parts(p), terminal_columns(self._stream) - 1)
            self._stream.write("\r" + line + "\x1b[K")  # back to the start, draw, clear what an older line left
            self._stream.flush()
            self._drawn = True
        elif time.monotonic() - self._last >= self._every:
            self._last = time.monotonic()
            self._stream.write("  ".join(self.parts(p)) + "\n")
            self._stream.flush()

    def finish(self) -> None:
        if self._tty and self._drawn:
            self._stream.write("\n")  # the last figures stay on screen, above the summary
            self._stream.flush()


def _share(part: float | None, whole: float | None) -> str:
    return f"{part / whole:.0%}" if part is not None and whole else ""


def _paced(config: Mapping[str, Any]) -> bool | None:
    """Did frames arrive at a real pace (a camera, a stream, --realtime)? None: the report does not say."""
    if "live" not in config:
        return None
    return bool(config.get("live") or config.get("realtime"))


def summary_table(report: RunReport) -> Table:
    # No vertical rules: the table then fits an 80-column terminal without folding a figure.
    t = Table(title="vidprof summary (latency in ms; % e2e: share of the mean end-to-end latency)",
              title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
              pad_edge=False, collapse_padding=True)
    for col in ("figure", "count", "mean", "p50", "p95", "p99", "max", "% e2e"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    whole = report.e2e.mean

    def row(name: str, st: StageStats, style: str | None = None) -> None:
        t.add_row(name, str(st.count), *(_ms_or_dash(x) for x in (st.mean, st.p50, st.p95, st.p99, st.max)),
                  _share(st.mean, whole), style=style)

    neck = report.bottleneck.stage
    if neck == "source":
        # Not a stage with figures of its own, but what limits the run: named where a stage would be.
        paced = _paced(report.config)
        what = "source (paced)" if paced else "source"
        t.add_row(f"{what}  <- the limit", str(report.frames.read) if report.frames.read is not None else "",
                  *[""] * 6, style="bold")
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


def stdout_closed() -> None:
    """The reader of stdout went away (``vidprof run | head -1``): send the rest of stdout to /dev/null, as
    Python's documentation advises for SIGPIPE, so neither a later print nor the flush at exit raises again.
    The run itself goes on: its report and metrics are still written."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class StdoutConsole(Console):
    """Rich's console on stdout, for the summaries. Rich's own answer to a reader that went away
    (``vidprof run | head -1``) is ``SystemExit(1)``, which would end the run before its report is written
    and report a failure for a reader that simply had enough: here the console goes quiet instead."""

    def __init__(self, width: int) -> None:
        # A pipe or file gets a fixed width, so the table is never folded to an unknown terminal's.
        super().__init__(highlight=False, width=None if sys.stdout.isatty() else width)

    def on_broken_pipe(self) -> None:
        self.quiet = True
        stdout_closed()


def _settings(r: RunReport) -> str | None:
    """What the device resolved, beside what was asked: the advice talks about --streams and --nireq."""
    c = r.config
    inf, res = c.get("inference") or {}, c.get("resolved") or {}
    if not inf and not res:
        return None  # a report from before these were kept

    def chosen(flag: str, asked: Any) -> str:
        return f" ({flag})" if asked is not None else " (device's choice)"

    parts = [f"device {inf.get('device', '?')}"]
    hint = res.get("hint") or inf.get("hint")
    if hint:
        parts.append(f"hint {str(hint).lower()}")
    if res.get("streams") is not None:
        parts.append(f"{res['streams']} inference streams" + chosen("--streams", inf.get("streams")))
    if res.get("nireq") is not None:
        nireq = " (--sync: one at a time)" if inf.get("sync") else (" (--nireq)" if inf.get("nireq") else " (default)")
        parts.append(f"{res['nireq']} infer requests{nireq}")
    if res.get("threads"):
        parts.append(f"{res['threads']} threads")
    if res.get("precision"):
        asked = inf.get("infer_precision")
        differs = asked and asked != res["precision"]  # e.g. bf16 asked of a CPU without it runs in f32
        parts.append(f"precision {res['precision']}" +
                     (f" (asked {asked})" if differs else chosen("--infer-precision", asked)))
    if c.get("preprocess"):
        parts.append(f"preprocess {c['preprocess']}")
    return "settings: " + ", ".join(parts)


def _perf_lines(pc: Mapping[str, Any] | None, attribution: Mapping[str, float]) -> list[str]:
    """The device's own figures (--perf-counters), which otherwise live only in the JSON."""
    if not pc:
        return []
    if pc.get("error"):
        return [f"device counters (--perf-counters): unavailable ({pc['error']})"]

    def mean(key: str) -> float | None:
        v = pc.get(key)
        return v.get("mean") if isinstance(v, Mapping) else None

    dev, wall, host = mean("device_seconds"), mean("request_wall_seconds"), mean("host_overhead_seconds")
    if dev is None:
        return ["device counters (--perf-counters): no request was sampled"]
    lines = [f"device counters ({pc.get('sampled_requests', '?')} sampled requests): the model's nodes ran "
             f"{dev * 1e3:.2f} ms per inference"
             + (f", inside an inference stage of {wall * 1e3:.2f} ms" if wall is not None else "")
             + (f" (host overhead {host * 1e3:.2f} ms)" if host is not None else "")]
    nodes = pc.get("node_types") or {}
    if nodes:
        top = sorted(nodes.items(), key=lambda kv: -kv[1])[:5]
        lines.append("  by node type: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in top))
    conv = pc.get("conversions") or {}
    if any(conv.values()):
        lines.append("  conversions at the model's boundary: " +
                     ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in conv.items() if v is not None))
    moved = attribution.get("moved_from_inference") or pc.get("preprocess_nodes_seconds")
    if moved:
        lines.append(f"  fused preprocessing: {moved * 1e3:.2f} ms per frame, counted as preprocess, not inference")
    return lines


def _inject_lines(r: RunReport) -> list[str]:
    return [f"what-if (--inject): {stage} +{d.nominal * 1e3:g} ms asked ({'CPU burnt' if d.busy else 'sleep'}), "
            f"{d.actual.mean * 1e3:.2f} ms a frame measured; the figures above include it"
            for stage, d in r.inject.items()]


def _transfer_lines(r: RunReport) -> list[str]:
    inf = r.config.get("inference") or {}
    zero_copy = inf.get("zero_copy")
    if zero_copy is None:
        how_in = ""  # a report from before the setting was kept
    elif zero_copy:
        # The request reads the frame's own memory: nothing is copied on the host (a GPU copies inside inference).
        how_in = " handed over (zero-copy)"
    else:
        how_in = " copied (--no-zero-copy)"
    how_out = " handed over (zero-copy: written into the frame's arrays)" if r.config.get("outputs_zero_copy") \
        else " copied"
    out = []
    for tr, label, how in ((r.transfer.host_to_device, "host->device", how_in),
                           (r.transfer.device_to_host, "device->host", how_out)):
        out.append(f"transfer {label}: {tr.bytes:,} bytes{how}, {tr.seconds * 1e3:.2f} ms in total "
                   f"({tr.per_frame.mean * 1e6:.1f} µs per frame)")
    return out


def backlog_note(r: RunReport) -> str | None:
    """When frames came faster than a camera would deliver them, most of their latency is the queue behind
    earlier frames: say so, or the end-to-end figure reads as what a camera's frame would see."""
    if _paced(r.config) is not False or not r.e2e.mean:
        return None
    queued = sum(st.mean for st in r.waits.values() if st.count)
    share = queued / r.e2e.mean
    if share < 0.3:
        return None
    return (f"the frames came as fast as the source decodes, so {share:.0%} of the mean end-to-end latency "
            f"({queued * 1e3:.1f} of {r.e2e.mean * 1e3:.1f} ms) is waiting in queues behind earlier frames (a "
            "backlog); with --realtime frames arrive at the source's pace, like a camera's, and the latency is "
            "what such a frame sees")


def run_notes(r: RunReport) -> list[str]:
    """What a user would otherwise not know about how the run went; printed on stderr."""
    c = r.config
    duration, limit = c.get("duration"), c.get("frames")
    notes = []
    if duration and not c.get("loop") and not r.interrupted and not r.fault:
        for label, st in r.streams.items():
            if st.kind not in ("file", "images") or st.fault:
                continue
            if limit is not None and st.frames.read is not None and st.frames.read >= limit:
                continue  # --frames ended it, not the file
            if st.seconds < duration - 0.5:
                what = "the file" if st.kind == "file" else "the image folder"
                who = f"stream {label}: " if len(r.streams) > 1 else ""
                notes.append(f"{who}{what} ended after {st.seconds:.1f} s, before --duration {duration:g} s; "
                             "--loop repeats it")
    return notes


def render_summary(report: RunReport | Mapping[str, Any], console: Console | None = None,
                   notes: TextIO | None = None) -> None:
    """``report``: a RunReport, or its JSON document (checked the same way as a file). ``notes``: where
    :func:`run_notes` go (stderr by default). A closed stdout ends the printing quietly."""
    r = as_report(report)
    console = console or StdoutConsole(120)  # one console for every part, so a closed stdout quiets them all
    try:
        _render_summary(r, console)
        print_slowest(r, console)
    except BrokenPipeError:
        stdout_closed()
    for note in run_notes(r):
        print(f"vidprof: note: {note}", file=notes or sys.stderr)


def _render_summary(r: RunReport, console: Console) -> None:
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
    settings = _settings(r)
    if settings:
        console.print(settings, markup=False)
    for line in (*_transfer_lines(r), *_perf_lines(r.perf_counters, r.stage_attribution), *_inject_lines(r)):
        console.print(line, markup=False)  # device error texts may hold brackets
    st = r.startup
    parts = [f"{k} {st[k] * 1e3:.1f} ms" for k in ("read_model", "compile", "first_inference") if k in st]
    if "cache" in st:
        parts.append(f"cache {st['cache']}")
    console.print("startup: " + ", ".join(parts))
    console.print("busy: " + ", ".join(f"{s} {r.busy[s]:.0%}" for s in STAGES if s in r.busy))
    console.print(f"bottleneck: [bold]{r.bottleneck.stage}[/bold]: {r.bottleneck.advice}")
    note = backlog_note(r)
    if note:
        console.print(f"[yellow]note: {note}[/yellow]")
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


def varying_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The grid keys whose value differs between the sweep's configurations (the reference aside): the
    only ones that tell its rows apart."""
    sweep = [r["config"] for r in rows if not r["reference"]]
    keys = list(dict.fromkeys(k for c in sweep for k in c))
    varying = [k for k in keys if len({c.get(k) for c in sweep}) > 1]
    return varying or keys


# The tune table's columns: (name, header, justify, may wrap). Figures never wrap and their headers are
# stacked, so only the text columns shrink on a narrow terminal; and rather than cut a word there, the
# optional columns go, in _TUNE_OPTIONAL's order.
_TUNE_COLUMNS = (("#", "#", "right", False), ("configuration", "configuration", "left", True),
                 ("FPS", "FPS", "right", False), ("model only FPS", "model\nonly\nFPS", "right", False),
                 ("e2e p50 ms", "e2e\np50\nms", "right", False), ("e2e p99 ms", "e2e\np99\nms", "right", False),
                 ("paced drop", "paced\ndrop", "right", False), ("agreement", "agreement", "right", True),
                 ("bottleneck", "bottleneck", "left", True), ("precision", "precision", "right", False),
                 ("peak RSS MiB", "peak\nRSS\nMiB", "right", False), ("compile ms", "compile\nms", "right", False))
_TUNE_OPTIONAL = ("compile ms", "peak RSS MiB", "model only FPS", "precision")  # dropped in this order


def _tune_title(doc: Mapping[str, Any]) -> str:
    pace = f"{doc['pace_fps']:g} FPS" if doc.get("pace_fps") else "the source's FPS"
    if doc.get("latency") == "paced":
        measured = f"FPS as fast as the source decodes; e2e latency with frames paced like a camera at {pace}"
    else:
        measured = ("FPS and e2e latency as fast as the source decodes (latency then includes the backlog; "
                    "--realtime paces frames like a camera)")
    return f"vidprof tune: {measured}. * Pareto front, > recommended"


def _tune_names(doc: Mapping[str, Any]) -> list[str]:
    """Each row's configuration as the table shows it: the settings that vary (the reference's all)."""
    keys = varying_keys(doc["results"])
    out = []
    for r in doc["results"]:
        shown = r["config"] if r["reference"] else {k: v for k, v in r["config"].items() if k in keys}
        # Spaces between settings, so a narrow column wraps between them, never inside one.
        name = " ".join(f"{k}={v}" for k, v in shown.items()) or "defaults"
        out.append("reference: " + name if r["reference"] else name)
    return out


def _tune_table(doc: Mapping[str, Any], columns: Sequence[str], widths: Mapping[str, int] | None = None) -> Table:
    rows = doc["results"]
    names = _tune_names(doc)
    t = Table(title=_tune_title(doc), title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
              collapse_padding=True)
    for name, header, justify, wraps in _TUNE_COLUMNS:
        if name in columns:
            t.add_column(header, justify=justify, no_wrap=not wraps,  # type: ignore[arg-type]
                         width=(widths or {}).get(name))
    order = sorted(range(len(rows)), key=lambda i: -(rows[i]["fps"] or -1) if rows[i]["status"] == "ok" else 1e9)
    for i in order:
        r = rows[i]
        mark = (">" if i == doc["recommended"] else "") + ("*" if i in doc["pareto"] else "")
        cells: dict[str, str] = {"#": f"{mark}{i}", "configuration": names[i]}
        if r["status"] != "ok":
            cells["FPS"] = "failed"  # why, below the table: an error message would squeeze every column
            t.add_row(*(cells.get(c, "") for c in columns), style="red")
            continue
        acc = r["accuracy"] or {}
        agreement = f"{acc.get('agreement', 0):.3f}" if acc else ""
        if acc.get("changes_results"):
            agreement += " CHANGES RESULTS"
        spread = r["fps_spread"]
        paced = r.get("paced")
        cells.update({
            "FPS": f"{r['fps']:.1f}" + (f"\n{spread[0]:.0f}-{spread[1]:.0f}" if spread and r["repeats"] > 1 else ""),
            "model only FPS": f"{r['model_only_fps']:.1f}" if r["model_only_fps"] else "",
            "e2e p50 ms": f"{r['e2e']['p50'] * 1e3:.1f}", "e2e p99 ms": f"{r['e2e']['p99'] * 1e3:.1f}",
            "paced drop": f"{paced['dropped_ratio'] or 0:.0%}" if paced else "",
            "agreement": agreement, "bottleneck": r["bottleneck"] or "", "precision": r["precision"] or "",
            "peak RSS MiB": f"{(r['peak_rss_bytes'] or 0) / 2**20:.0f}",
            "compile ms": f"{(r['compile_seconds'] or 0) * 1e3:.0f}",
        })
        style = "bold" if i == doc["recommended"] else ("yellow" if paced and not paced["keeps_pace"] else None)
        t.add_row(*(cells[c] for c in columns), style=style)
    return t


def render_tune(doc: dict[str, Any], console: Console | None = None) -> None:
    """The sweep's table sorted by FPS, the Pareto front and the recommendation. A closed stdout ends the
    printing quietly."""
    try:
        _render_tune(doc, console)
    except BrokenPipeError:
        stdout_closed()


def _width(table: Table) -> int:
    """How wide ``table`` prints when nothing constrains it."""
    out = io.StringIO()
    Console(file=out, width=1000, color_system=None, highlight=False).print(table)
    return max((len(line.rstrip()) for line in out.getvalue().splitlines()), default=0)


def _cell_texts(doc: Mapping[str, Any], column: str) -> list[str]:
    """What a wrapping column holds, its header included, to size it."""
    texts = [column]
    if column == "configuration":
        return texts + _tune_names(doc)
    for r in doc["results"]:
        if column == "agreement" and r["status"] == "ok" and r["accuracy"]:
            texts.append(f"{r['accuracy'].get('agreement', 0):.3f}"
                         + (" CHANGES RESULTS" if r["accuracy"].get("changes_results") else ""))
        elif column == "bottleneck" and r["status"] == "ok":
            texts.append(r["bottleneck"] or "")
    return texts


def _fitted_tune_table(doc: Mapping[str, Any], columns: Sequence[str], width: int) -> Table | None:
    """The table sized to ``width`` without cutting a word, or None when these columns cannot fit.

    Left to itself, Rich shrinks the widest wrapping columns alike, to nothing if need be; here the
    wrapping columns are sized instead, the configuration (which tells the rows apart) last: each from
    one line per row down to its longest word."""
    wrapping = [c for c in ("agreement", "bottleneck", "configuration") if c in columns]
    natural = {c: max(len(t) for t in _cell_texts(doc, c)) for c in wrapping}
    least = {c: max(len(w) for t in _cell_texts(doc, c) for w in t.split()) for c in wrapping}
    widths = dict(natural)
    for c in wrapping:  # in that order: shrink one column as far as needed, then the next
        excess = _width(_tune_table(doc, columns, widths)) - width
        if excess <= 0:
            break
        widths[c] = max(least[c], natural[c] - excess)
    table = _tune_table(doc, columns, widths)
    return table if _width(table) <= width else None


def _render_tune(doc: dict[str, Any], console: Console | None) -> None:
    console = console or StdoutConsole(200)
    rows = doc["results"]
    columns = [c for c, *_ in _TUNE_COLUMNS if c != "paced drop" or doc.get("latency") == "paced"]
    dropped: list[str] = []
    table = _fitted_tune_table(doc, columns, console.width)
    for optional in _TUNE_OPTIONAL:
        if table is not None:
            break
        columns.remove(optional)
        dropped.append(optional)
        table = _fitted_tune_table(doc, columns, console.width)
    # Narrower than any layout (a setting longer than the terminal is wide): Rich's own folding, then.
    console.print(table if table is not None else _tune_table(doc, columns))
    keys = varying_keys(rows)
    fixed = {k: v for r in rows if not r["reference"] for k, v in r["config"].items() if k not in keys}
    if fixed:
        console.print("every configuration: " + " ".join(f"{k}={v}" for k, v in fixed.items()), markup=False)
    if dropped:
        console.print(f"(left out at this width: {', '.join(dropped)}; --csv and --report have them)", markup=False)
    for i, r in enumerate(rows):
        if r["status"] != "ok":
            console.print(f"#{i} failed: {r['error'] or 'no report'}", style="red", markup=False)
    front = sorted(doc["pareto"], key=lambda i: -rows[i]["fps"])
    def agreement(r: dict[str, Any]) -> str:
        acc = r.get("accuracy") or {}
        return f" / agreement {acc['agreement']:.3f}" if acc.get("agreement") is not None else ""

    console.print("Pareto front (FPS, p99, agreement): " + "; ".join(
        f"#{i} {rows[i]['fps']:.1f} FPS / {rows[i]['e2e']['p99'] * 1e3:.1f} ms{agreement(rows[i])}" for i in front))
    if doc["recommended"] is None:
        console.print(f"no recommendation: {doc['recommended_why']}", style="red", markup=False)
    else:
        console.print(f"recommended: #{doc['recommended']} ({doc['recommended_why']})", markup=False)
        console.print(f"  {doc['recommended_command']}", soft_wrap=True, markup=False)
