"""`vidprof report --html/--png`: a real run's report drawn as a PNG and a self-contained HTML page."""

from __future__ import annotations

import base64
import json
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")  # the optional `vidprof[report]` extra

from vidprof.profiling import html_report  # after the skip: it imports matplotlib
from vidprof.profiling.recorder import Recorder
from vidprof.profiling.report import RunReport
from vidprof.profiling.summary import RunInfo, Summary

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def vidprof(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vidprof.pipeline", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG has first, right after the signature."""
    assert data[:8] == PNG_MAGIC, data[:8]
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    return struct.unpack(">II", data[16:24])


def assert_figure(data: bytes) -> None:
    w, h = png_size(data)
    assert 800 <= w <= 4000 and 800 <= h <= 4000, (w, h)
    assert len(data) > 20_000  # thirteen panels of lines and text, not a blank canvas


@pytest.fixture(scope="module")
def run_report(tmp_path_factory: pytest.TempPathFactory, clip: str, detector: str) -> tuple[Path, dict[str, Any]]:
    """A real run: OpenCV decode, OpenVINO inference. Paced at 30 FPS so it lasts over a second and the
    timeline has more than one row."""
    path = tmp_path_factory.mktemp("report") / "run.json"
    r = vidprof("run", "--source", clip, "--model", detector, "--loop", "--realtime", "--frames", "40",
                "--report", str(path), "--quiet", "--no-metrics")
    assert r.returncode == 0, r.stderr
    return path, json.loads(path.read_text())


def test_real_report_renders_png_and_html(run_report: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, doc = run_report
    assert doc["frames"]["completed"] > 0 and len(doc["timeline"]) >= 2
    out_html, out_png = tmp_path / "out.html", tmp_path / "out.png"
    r = vidprof("report", str(path), "--html", str(out_html), "--png", str(out_png))
    assert r.returncode == 0, r.stderr
    assert f"wrote {out_html}" in r.stderr and f"wrote {out_png}" in r.stderr
    assert_figure(out_png.read_bytes())

    page = out_html.read_text(encoding="utf-8")
    f = doc["frames"]
    assert f"{f['completed']} completed, {f['dropped']} dropped, {f['failed']} failed" in page
    assert f"{doc['fps']:.1f} FPS" in page
    # Seconds in the report, milliseconds on the page.
    assert f"<td>{doc['e2e']['p50'] * 1e3:.2f}</td>" in page
    assert f"<td>{doc['stages']['inference']['p99'] * 1e3:.2f}</td>" in page
    assert html_report.html.escape(doc["bottleneck"]["advice"]) in page
    # Self-contained: the figure is embedded, nothing is fetched.
    embedded = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    # The panels, then the slowest frames as a Gantt chart, a row per frame, each explained below it.
    assert len(embedded) == 2
    assert_figure(base64.b64decode(embedded[0]))
    assert png_size(base64.b64decode(embedded[1]))[0] >= 1000 and len(doc["slowest"]) == 5
    assert page.count("</li>") >= 5 and f"frame {doc['slowest'][0]['frame']} at " in page
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page


def _row(t: float) -> dict[str, Any]:
    return {"t": t, "completed": 10, "dropped": 1, "failed": 0, "fps": 10.0,
            "e2e": {"p50": 0.02, "p95": 0.03, "p99": 0.04}, "stages": {"inference": {"p50": 0.01, "p95": 0.02}},
            "waits": {"infer_wait": None}, "h2d_bytes": 1000, "d2h_bytes": 100, "h2d_seconds": 0.001,
            "d2h_seconds": 0.001, "infer_requests_busy": 1, "nireq": 2, "queue_depth": {"inference": 1},
            "busy": {"inference": 0.5}, "rss_bytes": 100 * 2**20, "cpu_seconds": 1.5}


ZERO = {"count": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
NO_TRANSFER = {"bytes": 0, "seconds": 0.0, "per_frame": ZERO}
# A version-1 file (no per-stream figures) of a run whose every frame failed: no stage figures, no timeline.
MINIMAL = {"vidprof_report": 1, "frames": {"completed": 0, "dropped": 0, "failed": 3}, "fps": 0.0,
           "wall_seconds": 0.01, "stages": {}, "waits": {}, "e2e": ZERO, "startup": {"compile": 0.05},
           "busy": {}, "transfer": {"host_to_device": NO_TRANSFER, "device_to_host": NO_TRANSFER},
           "bottleneck": {"stage": "decode", "busy_ratio": 0.0, "advice": "a <b>tagged</b> & quoted \"advice\""},
           "config": {"source": "synthetic:8x8@1"}, "first_error": "preprocess: <boom>", "timeline": []}


def _nothing_measured() -> RunReport:
    """A run stopped before its first frame: zero counts everywhere, no startup figures, no timeline."""
    return Summary.build([Recorder(None)], RunInfo(), streams=()).run_report


@pytest.mark.parametrize("doc", [
    MINIMAL,
    {**MINIMAL, "timeline": [_row(0.5)]},  # a run shorter than a second: one row
    _nothing_measured(),  # every panel says what is missing
], ids=["empty-timeline", "single-row", "nothing-measured"])
def test_partial_reports_render(doc: dict[str, Any] | RunReport, tmp_path: Path) -> None:
    html_report.write_png(doc, str(tmp_path / "out.png"))
    html_report.write_html(doc, str(tmp_path / "out.html"))
    png_size((tmp_path / "out.png").read_bytes())
    page = (tmp_path / "out.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page
    assert "<b>tagged</b>" not in page and "<boom>" not in page  # the report's text is escaped
    if doc is MINIMAL:
        assert "0 completed, 0 dropped, 3 failed" in page and "compile 50.0 ms" in page
        assert "a &lt;b&gt;tagged&lt;/b&gt; &amp; quoted &quot;advice&quot;" in page


def test_empty_timeline_cli(tmp_path: Path) -> None:
    path = tmp_path / "min.json"
    path.write_text(json.dumps(MINIMAL))
    r = vidprof("report", str(path), "--png", str(tmp_path / "out.png"))
    assert r.returncode == 0, r.stderr
    png_size((tmp_path / "out.png").read_bytes())


@pytest.mark.parametrize(("content", "out", "expect"), [
    ('{"vidprof_report": 1, "frames": ', "out.html", "not valid JSON"),
    ('{"frames": {}}', "out.html", "without a vidprof_report field"),
    ('{"vidprof_report": 1, "frames": {}}', "out.html", "missing wall_seconds"),
    (json.dumps({**MINIMAL, "e2e": {"count": 0}}), "out.html", "missing e2e.mean"),
    (json.dumps({**MINIMAL, "fps": "fast"}), "out.html", "fps is 'fast', not a number"),
    (json.dumps({**MINIMAL, "vidprof_report": 99}), "out.html", "schema version 99, newer than"),
    ('{"vidprof_tune": 1, "results": []}', "out.html", "a `vidprof tune` report"),
    (json.dumps(MINIMAL), "missing-folder/out.png", "does not exist"),
], ids=["truncated", "not-a-report", "incomplete", "incomplete-figure", "wrong-type", "newer-version", "tune-report",
        "unwritable-output"])
def test_bad_input_is_one_line_error(tmp_path: Path, content: str, out: str, expect: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    flag = "--png" if out.endswith(".png") else "--html"
    r = vidprof("report", str(path), flag, str(tmp_path / out))
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidprof: error: ") and expect in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / out).exists()
