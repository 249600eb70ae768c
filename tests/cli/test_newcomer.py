"""The first ten minutes, as a newcomer sees them: an 80-column terminal (a real pseudo-terminal), a pipe
into `head`, the files a run leaves, and what vidprof says while it makes its samples and when a run ends
differently from what was asked."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shlex
import stat
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

COLUMNS = 80
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
FAST_TUNE = ["--model-only-seconds", "0.2", "--warmup", "1"]

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sample cache of this module's own: the first test sees the samples being made."""
    return tmp_path_factory.mktemp("newcomer-cache")


@pytest.fixture
def env(cache: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(cache), "COLUMNS": str(COLUMNS)}


@pytest.fixture
def run(vidprof_cmd: list[str], tmp_path: Path, env: dict[str, str]) -> Run:
    def go(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*vidprof_cmd, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    return go


def in_terminal(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run ``cmd`` with stdout and stderr on an 80x24 pseudo-terminal; returns (exit code, what it drew)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def screen_lines(drawn: str) -> list[str]:
    """The physical lines of what was drawn: a terminal's \\n is \\r\\n, and \\r alone redraws a line."""
    lines = []
    for raw in ANSI.sub("", drawn).replace("\r\n", "\n").split("\n"):
        lines.append(raw.split("\r")[-1])  # what is left on the line once every redraw is done
    return lines


# --------------------------------------------------------------------------- item 2 and 12: the samples
def test_samples_are_made_once_with_a_word_and_their_paths_printed(run: Run, cache: Path, tmp_path: Path) -> None:
    r = run("samples")
    assert r.returncode == 0, r.stderr
    clip, model = r.stdout.split()
    assert clip.endswith(".mp4") and model.endswith(".xml")
    assert Path(clip).is_file() and Path(model).is_file() and Path(model).with_suffix(".bin").is_file()
    assert str(cache) in clip and str(cache) in model
    # Said before the wait, with where and that it happens once; then how long it took.
    making = [ln for ln in r.stderr.splitlines() if "first use: making" in ln]
    assert len(making) == 2 and "once" in making[0], r.stderr
    assert clip in r.stderr and model in r.stderr and "made sample_720p.mp4 in" in r.stderr
    # Made under the usual umask (the test runner's), the clip is as readable as any file open() makes.
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(clip).st_mode) == 0o666 & ~mask
    again = run("samples")
    assert again.stdout == r.stdout and again.stderr == ""  # made once
    assert "samples" in run("--help").stdout


# --------------------------------------------------------------------------- item 1: an 80-column terminal
def test_progress_redraws_in_place_and_the_summary_fits_80_columns(vidprof_cmd: list[str], detector: str,
                                                                     tmp_path: Path, env: dict[str, str]) -> None:
    # 3 s of frames paced like a camera: six or so progress updates.
    code, drawn = in_terminal([*vidprof_cmd, "run", "--source", "synthetic:320x240@30", "--realtime", "--frames",
                               "90", "--model", detector, "--no-metrics"], tmp_path, env)
    assert code == 0, drawn
    # On a terminal the progress is the live table (one block per stream and stage), redrawn in place: each
    # update moves the cursor back up over the previous one instead of scrolling (tests/cli/test_live_terminal.py
    # checks the screen itself in tmux).
    raw = drawn[:drawn.index("vidprof summary")]
    progress = ANSI.sub("", raw)
    updates = progress.count("vidprof run ·")
    assert updates >= 4, progress
    assert len(re.findall(r"\x1b\[\d*A", raw)) >= updates - 1, "the live table scrolled instead of redrawing"
    for line in progress.replace("\r", "\n").split("\n"):
        assert len(line) < COLUMNS, line  # never as wide as the terminal, so it never wraps
    lines = screen_lines(drawn)
    summary = lines[next(i for i, ln in enumerate(lines) if "vidprof summary" in ln):]
    assert all(len(ln.rstrip()) <= COLUMNS for ln in summary), "\n".join(summary)
    text = "\n".join(summary)
    assert "…" not in text  # Rich's mark for a cell cut short
    # Every row of the table on one line: nothing folded.
    for row in ("decode", "preprocess", "inference", "postprocess", "queue before preprocess",
                "wait for infer request", "end-to-end"):
        assert any(ln.startswith(row) or ln.startswith("  " + row) for ln in summary), (row, text)


def test_a_pipe_into_head_ends_quietly(vidprof_cmd: list[str], detector: str, tmp_path: Path,
                                       env: dict[str, str]) -> None:
    cmd = shlex.join([*vidprof_cmd, "run", "--source", "synthetic:160x120@30", "--frames", "30", "--model",
                      detector, "--no-metrics", "--quiet", "--report", "r.json"])
    # No pipefail: head's status is 0; vidprof's own is PIPESTATUS[0].
    r = subprocess.run(["bash", "-c", f"set +o pipefail; {cmd} | head -1; exit ${{PIPESTATUS[0]}}"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("vidprof summary") and r.stdout.count("\n") == 1
    assert "Traceback" not in r.stderr and "rror" not in r.stderr and "Exception" not in r.stderr, r.stderr
    assert (tmp_path / "r.json").is_file()  # the run went on: its report is written
    assert "report written to r.json" in r.stderr


# --------------------------------------------------------------------------- item 7: file modes
def test_reports_respect_the_umask(vidprof_cmd: list[str], detector: str, tmp_path: Path,
                                   env: dict[str, str]) -> None:
    cmd = shlex.join([*vidprof_cmd, "run", "--source", "synthetic:160x120@30", "--frames", "5", "--model", detector,
                      "--no-metrics", "--quiet", "--report", "r.json", "--metrics-textfile", "m.prom"])
    r = subprocess.run(["bash", "-c", f"umask 022; {cmd}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    for name in ("r.json", "m.prom"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name
    # Item 10: no *_created series beside the counters and histograms.
    prom = (tmp_path / "m.prom").read_text()
    assert "vidprof_frames_total" in prom and "_created" not in prom


# --------------------------------------------------------------------------- items 3, 5, 11: the summary
def test_a_paced_source_is_named_as_the_limit_and_the_settings_are_shown(run: Run, detector: str,
                                                                          tmp_path: Path) -> None:
    # 15 FPS of a tiny model: nothing near saturation even on a loaded machine.
    r = run("run", "--source", "synthetic:160x120@15", "--realtime", "--frames", "30", "--model", detector,
            "--no-metrics", "--quiet", "--report", "r.json", "--perf-counters", "--inject", "postprocess=1ms")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["bottleneck"]["stage"] == "source", rep["busy"]
    assert "source (paced)  <- the limit" in r.stdout and "<- bottleneck" not in r.stdout
    assert "bottleneck: source: no stage is saturated" in r.stdout
    assert "% e2e" in r.stdout and "100%" in r.stdout
    flat = " ".join(r.stdout.split())
    assert "settings: device CPU, hint throughput," in flat and "infer requests" in flat and "precision" in flat
    assert "preprocess separate" in flat
    assert "transfer host->device:" in flat and "handed over (zero-copy)" in flat
    assert "device counters (" in flat and "by node type:" in flat
    assert "what-if (--inject): postprocess +1 ms asked (sleep)" in flat
    assert "backlog" not in flat  # paced: no queue behind earlier frames to speak of
    # A saved report prints the same summary again, without flags.
    again = run("report", "r.json")
    assert again.returncode == 0 and again.stdout == r.stdout
    assert "again" in " ".join(run("report", "--help").stdout.split())


def test_copied_input_and_a_backlog_are_said(run: Run, detector: str, tmp_path: Path) -> None:
    r = run("run", "--source", "synthetic:160x120@30", "--frames", "10", "--model", detector, "--no-metrics",
            "--quiet", "--no-zero-copy")
    assert r.returncode == 0, r.stderr
    assert "copied (--no-zero-copy)" in r.stdout and "zero-copy)" not in r.stdout.replace("--no-zero-copy)", "")
    # The sample clip as fast as it decodes, behind a slow postprocess: most of its latency is the backlog, and
    # the summary says so. The slow stage makes the backlog on any machine; without it a machine whose decode is
    # the pipeline's limit builds no queue at all (and the summary rightly says nothing).
    r = run("run", "--frames", "60", "--no-metrics", "--quiet", "--inject", "postprocess=20ms")
    assert r.returncode == 0, r.stderr
    assert "weights are random" in r.stderr
    flat = " ".join(r.stdout.split())
    assert "backlog" in flat and "--realtime" in flat, flat


# --------------------------------------------------------------------------- item 8
def test_a_file_that_ends_before_duration_is_said(run: Run, clip: str, detector: str) -> None:
    r = run("run", "--source", clip, "--model", detector, "--duration", "20", "--no-metrics", "--quiet")
    assert r.returncode == 0, r.stderr
    notes = [ln for ln in r.stderr.splitlines() if "the file ended after" in ln]
    assert len(notes) == 1 and "--duration 20 s; --loop repeats it" in notes[0], r.stderr
    # Not said when --frames ends the run, nor with --loop.
    r = run("run", "--source", clip, "--model", detector, "--duration", "20", "--frames", "5", "--no-metrics",
            "--quiet")
    assert "ended after" not in r.stderr


# --------------------------------------------------------------------------- items 4 and 6: tune
def test_tune_at_80_columns(vidprof_cmd: list[str], clip: str, detector: str, tmp_path: Path,
                            env: dict[str, str]) -> None:
    code, drawn = in_terminal([*vidprof_cmd, "tune", "--source", clip, "--model", detector, "--frames", "8",
                               *FAST_TUNE, "--grid", "nireq=1,2", "--grid", "preprocess=host,separate",
                               "--report", "t.json"], tmp_path, env, timeout=240)
    assert code == 0, drawn
    plain = ANSI.sub("", drawn)
    # The progress names the run under way, as the table will name it.
    assert "running reference" in plain and "running #0 nireq=1 preprocess=host" in plain
    doc = json.loads((tmp_path / "t.json").read_text())
    lines = screen_lines(drawn)
    start = next(i for i, ln in enumerate(lines) if ln.startswith("vidprof tune:"))
    table = lines[start:next(i for i, ln in enumerate(lines) if ln.startswith("Pareto front"))]
    text = "\n".join(table)
    # No budget: latency as fast as the source decodes, and the title says what that means.
    assert doc["latency"] == "unpaced" and "includes the backlog" in " ".join(text.split())
    assert all(len(ln.rstrip()) <= COLUMNS for ln in table) and "…" not in text, text
    # Each row's block (its first line to the next row's) names every setting of its configuration.
    starts = [(i, int(m.group(1))) for i, ln in enumerate(table) if (m := re.match(r"\s*[>*]*(\d+)\s", ln))]
    assert sorted(k for _, k in starts) == list(range(len(doc["results"]))), text
    for n, (i, k) in enumerate(starts):
        block = " ".join(" ".join(table[i:starts[n + 1][0] if n + 1 < len(starts) else len(table)]).split())
        for key, value in doc["results"][k]["config"].items():
            assert f"{key}={value}" in block, (k, block)
    assert "recommended: #" in plain


def test_tune_on_the_sample_with_a_budget(run: Run, tmp_path: Path) -> None:
    """Interpolation rounding moves the random-weights detector's scores by a few thousandths: boxes at the
    threshold flip and NMS keeps another box of a cluster. Neither is a changed result, so vidprof's own
    default placement is not flagged against host preprocessing. And a budget paces the latency runs."""
    r = run("tune", "--frames", "30", *FAST_TUNE, "--infer-precision", "f32", "--grid", "preprocess=separate,host",
            "--max-latency-ms", "1000", "--report", "t.json", timeout=240)
    assert r.returncode == 0, r.stderr
    assert "weights are random" in r.stderr and "each runs twice" in r.stderr
    doc = json.loads((tmp_path / "t.json").read_text())
    [separate] = [x for x in doc["results"] if x["config"].get("preprocess") == "separate"]
    acc = separate["accuracy"]
    assert acc["max_abs_diff"] > 0  # the placements do differ...
    assert not acc["changes_results"], acc  # ...but not in what was detected
    assert doc["latency"] == "paced" and all(x["paced"] and x["paced"]["e2e"]["p99"] for x in doc["results"])
    flat = " ".join(r.stdout.split())
    assert "e2e latency with frames paced like a camera" in flat
    # On a loaded machine every paced run may drop frames, and then nothing is recommended, saying why.
    if doc["recommended"] is not None:
        assert "recommended: #" in flat and "--realtime" in doc["recommended_command"]
    else:
        assert "no recommendation:" in flat and "dropping frames" in flat
