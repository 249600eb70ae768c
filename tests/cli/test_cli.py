"""vidprof as a user runs it: the installed console script, as a subprocess, outside the repository."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from vidprof.samples.assets import SAMPLE_CLIP_FRAMES

REPORT_KEYS = {"frames", "wall_seconds", "fps", "stages", "e2e", "transfer", "startup", "bottleneck", "config"}


def one_error_line(stderr: str) -> str:
    """The user sees exactly one error line and no traceback."""
    assert "Traceback" not in stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("vidprof: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_default_run_uses_the_embedded_samples(run_cli, tmp_path: Path) -> None:
    r = run_cli("run", "--report", "run.json", "--metrics-port", "0")
    assert r.returncode == 0, r.stderr
    assert "weights are random" in r.stderr
    assert "metrics at http://127.0.0.1:" in r.stderr
    assert "vidprof summary" in r.stdout and "bottleneck" in r.stdout
    rep = json.loads((tmp_path / "run.json").read_text())
    assert REPORT_KEYS <= set(rep)
    assert rep["frames"] == {"completed": SAMPLE_CLIP_FRAMES, "dropped": 0, "failed": 0, "read": SAMPLE_CLIP_FRAMES}
    for stage in ("decode", "preprocess", "inference", "postprocess"):
        assert set(rep["stages"][stage]) == {"count", "mean", "p50", "p95", "p99", "max"}
    assert set(rep["transfer"]) == {"host_to_device", "device_to_host"}
    assert rep["transfer"]["host_to_device"]["bytes"] == SAMPLE_CLIP_FRAMES * 3 * 300 * 300 * 4
    assert rep["config"]["sample_model"] is True and rep["config"]["source_size"] == [1280, 720]
    assert rep["bottleneck"]["stage"] in rep["stages"]
    # The samples were made under XDG_CACHE_HOME, nowhere else.
    cache = Path(os.environ.get("XDG_CACHE_HOME", tmp_path.parent / "xdg-cache"))
    assert any((tmp_path.parent / "xdg-cache" / "vidprof").rglob("*.mp4")) or any(cache.rglob("*.mp4"))


def test_run_with_a_clip_and_model(run_cli, clip: str, detector: str, tmp_path: Path) -> None:
    r = run_cli("run", "--source", clip, "--model", detector, "--report", "r.json", "--no-metrics",
                "--preprocess", "fused", "--hint", "latency", "--nireq", "2")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["frames"]["completed"] == 24
    assert rep["config"]["preprocess"] == "fused" and rep["config"]["inference"]["hint"] == "latency"
    assert rep["config"]["resolved"]["nireq"] == 2
    assert "weights are random" not in r.stderr


def _busy_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


@pytest.mark.parametrize("args, code, fragment", [
    (["--source", "nowhere.mp4"], 1, "no such file"),
    (["--model", "nowhere.xml"], 1, "no such file"),
    (["--nireq", "0"], 2, "--nireq 0"),
    (["--nireq", "two"], 2, "invalid int value"),
    (["--frames", "-1"], 2, "--frames -1"),
    (["--preprocess", "gpu"], 2, "--preprocess 'gpu'"),
    (["--hint", "fastest"], 2, "--hint 'fastest'"),
    (["--inject", "render=5ms"], 2, "unknown stage"),
    (["--report", "/nonexistent-dir/r.json"], 1, "does not exist"),
])
def test_bad_input_gets_one_clear_line(run_cli, clip: str, detector: str, args: list[str], code: int,
                                       fragment: str) -> None:
    base = ["run", "--no-metrics", "--frames", "4"]
    if "--source" not in args:
        base += ["--source", clip]
    if "--model" not in args:
        base += ["--model", detector]
    r = run_cli(*base, *args)
    assert r.returncode == code, r.stderr
    line = one_error_line(r.stderr)
    assert fragment in line


def test_file_that_is_not_a_video(run_cli, tmp_path: Path, detector: str) -> None:
    (tmp_path / "fake.mp4").write_bytes(b"\x00not a video" * 500)
    r = run_cli("run", "--no-metrics", "--source", "fake.mp4", "--model", detector)
    assert r.returncode == 1
    assert "expected" in one_error_line(r.stderr)


def test_broken_model(run_cli, tmp_path: Path, clip: str) -> None:
    (tmp_path / "broken.xml").write_text("<net><layers><layer id='0' type='Nope'/></net>")
    r = run_cli("run", "--no-metrics", "--source", clip, "--model", "broken.xml")
    assert r.returncode == 1
    assert "cannot read model" in one_error_line(r.stderr)


def test_model_with_two_inputs(run_cli, clip: str, two_input_model: str) -> None:
    r = run_cli("run", "--no-metrics", "--source", clip, "--model", two_input_model)
    assert r.returncode == 1
    assert "expected exactly one image input" in one_error_line(r.stderr)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file, so an unreadable file cannot be made")
def test_unreadable_source(run_cli, tmp_path: Path, clip: str, detector: str) -> None:
    p = tmp_path / "locked.mp4"
    p.write_bytes(Path(clip).read_bytes())
    p.chmod(0)
    r = run_cli("run", "--no-metrics", "--source", str(p), "--model", detector)
    assert r.returncode == 1 and "not readable" in one_error_line(r.stderr)


def test_metrics_port_in_use(run_cli, clip: str, detector: str) -> None:
    s = _busy_port()
    try:
        r = run_cli("run", "--source", clip, "--model", detector, "--metrics-port", str(s.getsockname()[1]))
    finally:
        s.close()
    assert r.returncode == 1
    assert "cannot listen" in one_error_line(r.stderr)


def test_debug_shows_the_traceback(run_cli, clip: str, detector: str) -> None:
    r = run_cli("run", "--no-metrics", "--source", "nowhere.mp4", "--model", detector, "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_failed_frames_are_reported_and_exit_1(run_cli, tmp_path: Path, detector: str) -> None:
    """Mixed image sizes cannot go through a preprocessing graph built for the first: those frames fail,
    the others complete, and the report says both."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, (w, h) in enumerate([(160, 120), (160, 120), (80, 60), (160, 120), (80, 60)]):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((h, w, 3), 40 * i, np.uint8))
    r = run_cli("run", "--no-metrics", "--source", str(folder), "--model", detector, "--report", "r.json")
    assert r.returncode == 1
    assert "2 frames failed" in one_error_line(r.stderr)
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["frames"] == {"completed": 3, "dropped": 0, "failed": 2, "read": 5}
    assert "--preprocess host" in rep["first_error"]


def _interrupt(vidprof_cmd: list[str], tmp_path: Path, args: list[str], signals_at: list[float]) -> tuple:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    p = subprocess.Popen([*vidprof_cmd, "run", *args, "--report", "r.json", "--no-metrics"],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        started = time.monotonic()
        for at in signals_at:
            time.sleep(max(0.0, at - (time.monotonic() - started)))
            p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        stopped = time.monotonic() - started
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert "vidprof summary" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["interrupted"] is True
    f = rep["frames"]
    # Nothing is lost: every frame the source gave is completed, dropped or failed.
    assert f["completed"] + f["dropped"] + f["failed"] == f["read"]
    assert rep["stages"]["postprocess"]["count"] == f["completed"]
    return rep, stopped


def test_ctrl_c_still_writes_the_report(vidprof_cmd: list[str], tmp_path: Path, detector: str) -> None:
    rep, _ = _interrupt(vidprof_cmd, tmp_path, ["--source", "synthetic:160x120@30", "--realtime", "--duration", "60",
                                                "--model", detector], [4.0])
    assert rep["frames"]["completed"] > 30  # ~4 s at 30 FPS, minus start-up


def test_ctrl_c_finishes_the_frames_already_queued(vidprof_cmd: list[str], tmp_path: Path, clip: str,
                                                  detector: str) -> None:
    """A slow postprocess leaves frames queued when Ctrl-C comes: they are finished, not lost."""
    rep, _ = _interrupt(vidprof_cmd, tmp_path, ["--source", clip, "--loop", "--frames", "10000", "--model", detector,
                                                "--inject", "postprocess=150ms"], [5.0])
    f = rep["frames"]
    assert f["dropped"] == 0 and f["completed"] == f["read"]
    assert f["completed"] > 10


def test_second_ctrl_c_drops_the_queue_and_stops_quickly(vidprof_cmd: list[str], tmp_path: Path, clip: str,
                                                         detector: str) -> None:
    rep, stopped = _interrupt(vidprof_cmd, tmp_path, ["--source", clip, "--loop", "--frames", "10000",
                                                      "--model", detector, "--inject", "postprocess=300ms"],
                              [5.0, 5.3])
    assert rep["frames"]["dropped"] > 0
    # Queued frames are dropped; only the requests in flight and the postprocess queue are finished.
    assert stopped < 5.3 + 10


def test_metrics_port_zero_prints_the_port(run_cli, clip: str, detector: str) -> None:
    r = run_cli("run", "--source", clip, "--model", detector, "--metrics-port", "0")
    assert r.returncode == 0
    line = next(ln for ln in r.stderr.splitlines() if "metrics at" in ln)
    port = int(line.rsplit(":", 1)[1].split("/")[0])
    assert 0 < port < 65536
