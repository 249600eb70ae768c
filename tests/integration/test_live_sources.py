"""Live sources that misbehave, served for real on loopback: outages and reconnects, stalls that must not
block --duration or Ctrl-C, UDP and RTSP, SIGTERM/SIGHUP as graceful stops, and damaged files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration import stream_servers as ss


@pytest.fixture(scope="module")
def h264(tmp_path_factory: pytest.TempPathFactory) -> str:
    return ss.h264_clip(tmp_path_factory.mktemp("live") / "clip.mp4", seconds=30)


@pytest.fixture
def start_cli(vidprof_cmd: list[str], tmp_path: Path) -> Callable[..., subprocess.Popen[str]]:
    """Start `vidprof` in the background, as a user would in a terminal (its own process group)."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path.parent / "xdg-cache")}
        p = subprocess.Popen([*vidprof_cmd, *args], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def finish(p: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


COMMON = ("--no-metrics", "--quiet", "--preprocess", "host", "--read-timeout", "2", "--reconnect-delay", "0.5")


def test_http_outage_is_survived_and_reported(h264: str, start_cli, tmp_path: Path) -> None:
    """The server dies at ~3 s and comes back 3 s later: the stream reconnects, the run goes on, the other
    stream loses nothing, and the outage is in the report and on the exit status line."""
    port = ss.free_port()
    server, url = ss.serve_http(h264, port)
    report = tmp_path / "r.json"
    p = start_cli("run", "--source", url, "--source", "synthetic:160x120@10", "--realtime", "--duration", "12",
                  "--stream", "cam", "--stream", "steady", "--report", str(report), *COMMON)
    time.sleep(3)
    server.close()
    time.sleep(3)
    server, _ = ss.serve_http(h264, port)
    try:
        code, _, err = finish(p)
    finally:
        server.close()
    assert code == 0, err
    doc = json.loads(report.read_text())
    cam = doc["streams"]["cam"]
    assert cam["reconnects"] >= 1 and len(cam["outages"]) >= 1
    first = cam["outages"][0]
    assert 0.2 < first["start"] < 8 and first["seconds"] > 1.0  # killed ~3 s after start-up began
    assert cam["frames"]["completed"] > 60  # frames before and after the outage
    steady = doc["streams"]["steady"]
    assert steady["outages"] == [] and steady["frames"]["dropped"] == steady["frames"]["failed"] == 0
    assert steady["frames"]["completed"] >= 100  # 12 s at 10 FPS, less start-up
    assert "outage" in err and "cam" in err
    assert "Traceback" not in err and "[h264" not in err and "[http" not in err


def test_lost_stream_without_reconnect_is_a_fault(h264: str, start_cli, tmp_path: Path) -> None:
    server, url = ss.serve_http(h264, ss.free_port())
    report = tmp_path / "r.json"
    p = start_cli("run", "--source", url, "--no-reconnect", "--report", str(report), *COMMON)
    time.sleep(3)
    server.close()
    code, _, err = finish(p)
    assert code == 1
    errors = [ln for ln in err.splitlines() if ln.startswith("vidprof: error:")]
    assert len(errors) == 1 and "stopped delivering" in errors[0], err
    assert json.loads(report.read_text())["fault"]


def test_a_stall_does_not_block_duration_or_ctrl_c(h264: str, start_cli, tmp_path: Path) -> None:
    """The server keeps its connection open and sends nothing (SIGSTOP): --duration still ends the run, and
    Ctrl-C during the stall ends it within a few seconds, with the report."""
    server, url = ss.serve_http(h264, ss.free_port())
    try:
        t0 = time.monotonic()
        p = start_cli("run", "--source", url, "--duration", "6", "--report", str(tmp_path / "a.json"), *COMMON)
        time.sleep(2.5)
        server.pause()
        code, _, err = finish(p)
        assert code == 0, err
        assert time.monotonic() - t0 < 6 + 2 + 6  # duration + read timeout + start-up and drain
    finally:
        server.close()
    server, url = ss.serve_http(h264, ss.free_port())
    try:
        p = start_cli("run", "--source", url, "--report", str(tmp_path / "b.json"), *COMMON)
        time.sleep(2.5)
        server.pause()
        time.sleep(1)
        t_int = time.monotonic()
        p.send_signal(signal.SIGINT)
        code, _, err = finish(p)
        assert code == 130, err
        assert time.monotonic() - t_int < 2 + 3  # at most one read timeout, then the drain
        assert json.loads((tmp_path / "b.json").read_text())["interrupted"] is True
    finally:
        server.close()


@pytest.mark.parametrize("transport", ["udp", "rtsp"])
def test_udp_and_rtsp_streams(h264: str, run_cli, tmp_path: Path, transport: str) -> None:
    if transport == "rtsp":
        ss.require_rtsp()
        server, url = ss.serve_rtsp(h264, ss.free_port())
    else:
        server, url = ss.send_udp(h264, ss.free_port(socket.SOCK_DGRAM))
    try:
        r = run_cli("run", "--source", url, "--duration", "4", "--report", str(tmp_path / "r.json"), *COMMON)
    finally:
        server.close()
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["frames"]["completed"] > 30 and doc["config"]["streams"][0]["kind"] == "url"
    assert doc["config"]["source_size"] == [640, 360]
    assert "[" not in r.stderr.replace("[bold]", "")  # no native log line ("[h264 @ ...]", "[mpegts @ ...]")


def test_udp_without_a_sender_fails_within_the_open_timeout(run_cli) -> None:
    t0 = time.monotonic()
    r = run_cli("run", "--source", f"udp://127.0.0.1:{ss.free_port(socket.SOCK_DGRAM)}", "--open-timeout", "2",
                "--no-metrics", "--quiet")
    assert r.returncode == 1
    assert time.monotonic() - t0 < 15
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("vidprof: error:")]
    assert len(errors) == 1 and "--open-timeout 2 s" in errors[0], r.stderr


def test_http_404_is_named_in_the_error(h264: str, run_cli) -> None:
    port = ss.free_port()
    server = ss.Served(["ffmpeg", "-v", "error", "-re", "-i", h264, "-c", "copy", "-f", "mpegts", "-listen", "1",
                        f"http://127.0.0.1:{port}/live.ts"])
    ss._wait_listening(port)
    try:
        # ffmpeg's one-client server answers any path; a path it does not serve needs a real web server's 404.
        import http.server
        import threading
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
        t = threading.Thread(target=httpd.serve_forever, daemon=True)
        t.start()
        r = run_cli("run", "--source", f"http://127.0.0.1:{httpd.server_address[1]}/no-such.ts", "--no-metrics",
                    "--quiet")
        httpd.shutdown()
    finally:
        server.close()
    assert r.returncode == 1
    assert "404" in r.stderr and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_gracefully_with_a_complete_report(start_cli, tmp_path: Path, sig: int,
                                                                   code: int) -> None:
    report = tmp_path / "r.json"
    p = start_cli("run", "--source", "synthetic:320x240@30", "--realtime", "--duration", "60", "--no-metrics",
                  "--preprocess", "host", "--report", str(report), "--metrics-textfile", str(tmp_path / "m.prom"))
    time.sleep(4)
    p.send_signal(sig)
    rc, out, err = finish(p, timeout=30)
    assert rc == code, err
    doc = json.loads(report.read_text())
    f = doc["frames"]
    assert doc["interrupted"] is True and f["completed"] > 30
    assert f["completed"] + f["dropped"] + f["failed"] == f["read"]  # the requests in flight were drained
    assert "vidprof_frames_total" in (tmp_path / "m.prom").read_text()
    assert "end-to-end" in out  # the summary was printed
    assert signal.Signals(sig).name in err and "Traceback" not in err


def test_a_second_sigterm_hurries(start_cli, tmp_path: Path) -> None:
    """A second signal drops what is queued (counted) instead of processing it; the report still follows."""
    report = tmp_path / "r.json"
    p = start_cli("run", "--source", "synthetic:640x360@30", "--frames", "100000", "--inject", "postprocess=20ms",
                  "--no-metrics", "--quiet", "--preprocess", "host", "--report", str(report))
    time.sleep(4)
    p.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    rc, _, err = finish(p, timeout=30)
    assert rc == 143, err
    f = json.loads(report.read_text())["frames"]
    assert f["completed"] + f["dropped"] + f["failed"] == f["read"]


def test_damaged_file_decodes_as_far_as_ffmpeg_does(h264: str, run_cli, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.mp4"
    data = bytearray(Path(h264).read_bytes())
    mid = len(data) // 2
    data[mid:mid + 200_000] = os.urandom(200_000)
    damaged.write_bytes(bytes(data))
    counted = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                              "stream=nb_read_frames", "-of", "csv=p=0", str(damaged)],
                             capture_output=True, text=True, check=True)
    ffmpeg_frames = int(counted.stdout.strip())
    r = run_cli("run", "--source", str(damaged), "--report", str(tmp_path / "r.json"), "--no-metrics", "--quiet",
                "--preprocess", "host")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["frames"]["completed"] == ffmpeg_frames < 900
    st = doc["streams"]["0"]
    assert st["failed_reasons"]["damaged"] == doc["frames"]["failed"] == 900 - ffmpeg_frames
    assert doc["native_log"]["lines"] > 0  # FFmpeg complained, into the report ...
    assert "NAL" not in r.stderr and "[h264" not in r.stderr  # ... not onto the terminal
    assert "damaged" in r.stderr
