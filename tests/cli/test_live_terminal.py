"""The live table in a real terminal: tmux runs `vidprof run` and `vidprof top` in 80x30 panes, and
`capture-pane` shows each table redrawn in place (one table on screen and in the scrollback, its figures
changing), never wider than the pane.

One tmux server of the test's own (its own socket, killed at the end) and one run of ~15 s: two synthetic
streams paced at 30 FPS. tmux is Debian's `tmux` package (`.ci/install-servers`); without it the test skips,
or fails under VIDPROF_REQUIRE_SERVERS=1.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.servers import find_binary, free_port

WIDTH, HEIGHT = 80, 30
STREAMS = ("left", "right")
FRAMES = 450  # per stream, at 30 FPS: ~15 s
RUN_HEADER = re.compile(r"^stream\s+part\s+p50 ms\s+p99 ms\s+busy\s+FPS\s+drops\s*$")
RUN_TITLE = re.compile(r"^vidprof run · live · ([\d.]+) s · (\d+) frames · ([\d.]+) FPS")


class Tmux:
    def __init__(self, binary: str, socket: Path) -> None:
        self.binary, self.socket = binary, socket

    def __call__(self, *args: str) -> str:
        return subprocess.run([self.binary, "-S", str(self.socket), *args], check=True, capture_output=True,
                              text=True, timeout=10).stdout

    def start(self, name: str, argv: list[str]) -> None:
        # The command's exit status is printed, and the pane kept, so both can be read after it ends.
        command = f"{shlex.join(argv)}; echo EXIT=$?; sleep 600"
        self("new-session", "-d", "-s", name, "-x", str(WIDTH), "-y", str(HEIGHT), command)

    def screen(self, name: str) -> list[str]:
        """What the pane shows now, wrapped lines joined (a line wider than the pane would show here)."""
        return self("capture-pane", "-p", "-J", "-t", name).splitlines()

    def history(self, name: str) -> list[str]:
        """Everything the pane ever showed: the scrollback and the screen."""
        return self("capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", name).splitlines()


def wait_for(what: str, check: object, timeout: float, tmux: Tmux, pane: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()  # type: ignore[operator]
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; the pane shows:\n" + "\n".join(tmux.screen(pane)))
        time.sleep(0.2)


@pytest.fixture(scope="module")
def tmux(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tmux]:
    t = Tmux(find_binary("tmux"), tmp_path_factory.mktemp("tmux") / "socket")
    try:
        yield t
    finally:
        subprocess.run([t.binary, "-S", str(t.socket), "kill-server"], capture_output=True, timeout=10)


def _count(lines: list[str], pattern: re.Pattern[str]) -> int:
    return sum(1 for ln in lines if pattern.match(ln))


def test_run_and_top_redraw_their_tables_in_place(tmux: Tmux, vidprof_cmd: list[str]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    tmux.start("run", [*vidprof_cmd, "run", "--source", "synthetic:320x240@30", "--copies", "2",
                       *(a for s in STREAMS for a in ("--stream", s)), "--realtime", "--frames", str(FRAMES),
                       "--pipeline-name", "live", "--metrics-port", str(port), "--slowest", "0"])
    wait_for("the run's live table", lambda: any(RUN_TITLE.match(ln) for ln in tmux.screen("run")), 60, tmux, "run")

    # `vidprof top` on the same run, in a pane of its own.
    tmux.start("top", [*vidprof_cmd, "top", "--interval", "1", url])
    top_title = re.compile(rf"^{re.escape(url)} · live · over ([\d.]+) s$")
    wait_for("top's table", lambda: any(top_title.match(ln) for ln in tmux.screen("top")), 30, tmux, "top")

    run_seen, top_seen = [], []
    for _ in range(3):  # a few looks, a second or so apart, while frames flow
        for name, seen in (("run", run_seen), ("top", top_seen)):
            screen = tmux.screen(name)
            # The table's lines (vidprof's own notes above it are plain lines a terminal wraps).
            table = screen[next((i for i, ln in enumerate(screen) if RUN_TITLE.match(ln)), 0):]
            assert all(len(ln) <= WIDTH for ln in table), "\n".join(screen)
            assert _count(screen, RUN_HEADER) == 1, "\n".join(screen)
            seen.append(screen)
        time.sleep(1.2)

    # vidprof run: one table, redrawn: its title's clock moves on, and the scrollback holds no older copy.
    elapsed = [float(m[1]) for s in run_seen for m in map(RUN_TITLE.match, s) if m]
    assert len(elapsed) == 3 and elapsed[0] < elapsed[1] < elapsed[2], elapsed
    assert _count(tmux.history("run"), RUN_HEADER) == 1, "\n".join(tmux.history("run"))
    screen = run_seen[-1]
    for stream in STREAMS:
        [row] = [ln for ln in screen if ln.startswith(stream)]
        assert re.match(rf"^{stream}\s+e2e\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+$", row), row
    assert sum(1 for ln in screen if re.match(r"^\s+(decode|preprocess|inference|postprocess)\s", ln)) == 8

    # vidprof top: the same, refreshed every second.
    assert _count(tmux.history("top"), RUN_HEADER) == 1, "\n".join(tmux.history("top"))
    assert len({tuple(s) for s in top_seen}) > 1, "top's table did not change"
    for screen in top_seen:
        assert {ln.split()[0] for ln in screen if " e2e " in ln} == set(STREAMS), "\n".join(screen)

    # Ctrl-C ends top quietly (exit 0), its last table left on the screen.
    tmux("send-keys", "-t", "top", "C-c")
    wait_for("top to exit", lambda: any(ln.startswith("EXIT=") for ln in tmux.screen("top")), 15, tmux, "top")
    screen = tmux.screen("top")
    assert "EXIT=0" in screen, "\n".join(screen)
    assert _count(screen, RUN_HEADER) == 1 and "Traceback" not in "\n".join(screen)

    # The run ends: its last table stays once, above the summary.
    wait_for("the run to end", lambda: any(ln.startswith("EXIT=") for ln in tmux.screen("run")),
             FRAMES / 30 + 60, tmux, "run")
    history = tmux.history("run")
    assert "EXIT=0" in history, "\n".join(history)
    assert _count(history, RUN_HEADER) == 1, "\n".join(history)
    titles = [m for m in map(RUN_TITLE.match, history) if m]
    completed = [int(m[1]) for m in map(re.compile(r"^frames: (\d+) completed").match, history) if m]
    assert len(titles) == 1 and [int(titles[0][2])] == completed, (titles, completed)  # the final figures
    assert any(ln.startswith("vidprof summary") for ln in history)
    assert history.index(next(ln for ln in history if RUN_TITLE.match(ln))) < history.index(
        next(ln for ln in history if ln.startswith("vidprof summary")))
