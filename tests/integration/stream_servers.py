"""Real network streams on loopback for the live-source tests: Debian's ffmpeg serving a clip at real-time
pace over HTTP and sending UDP MPEG-TS, and GStreamer's RTSP server (Debian's python3-gi with
gir1.2-gst-rtsp-server-1.0; Debian's ffmpeg cannot serve RTSP to players). `.ci/install-servers`
installs them; without them these tests skip, or fail when VIDPROF_REQUIRE_SERVERS is set."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-gi lives (not the project's interpreter)
RTSP_SERVER = r'''
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
Gst.init(None)
port, clip = sys.argv[1], sys.argv[2]
server = GstRtspServer.RTSPServer.new()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory.new()
factory.set_launch(f"( filesrc location={clip} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )")
factory.set_shared(True)
server.get_mount_points().add_factory("/live", factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()
'''


def require(tool: str) -> None:
    if shutil.which(tool) is None:
        if os.environ.get("VIDPROF_REQUIRE_SERVERS"):
            pytest.fail(f"{tool} is not installed; .ci/install-servers installs it")
        pytest.skip(f"{tool} is not installed (bash .ci/install-servers installs it)")


def require_rtsp() -> None:
    ok = os.path.exists(SYSTEM_PYTHON) and subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                              "from gi.repository import GstRtspServer"],
        capture_output=True).returncode == 0
    if not ok:
        if os.environ.get("VIDPROF_REQUIRE_SERVERS"):
            pytest.fail("GStreamer's RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0) is not installed; "
                        ".ci/install-servers installs it")
        pytest.skip("GStreamer's RTSP server is not installed (bash .ci/install-servers installs it)")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def h264_clip(path: Path, seconds: float = 20, size: str = "640x360", fps: int = 30) -> str:
    """An H.264 clip with a keyframe every second (a receiver that joins late starts within a second)."""
    require("ffmpeg")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
                    "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-g", str(fps),
                    "-pix_fmt", "yuv420p", str(path)], check=True, timeout=120)
    return str(path)


class Served:
    """One server process, stopped (and waited for) on close."""

    def __init__(self, cmd: list[str], wait_for: str | None = None) -> None:
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        if wait_for is not None:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if wait_for not in line:
                self.close()
                raise RuntimeError(f"server did not start: {cmd[:3]}")

    def pause(self) -> None:
        """A stall: the process keeps its connection open and sends nothing."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(10)


def serve_http(clip: str, port: int) -> tuple[Served, str]:
    """ffmpeg serves the clip once, at its own pace, as MPEG-TS over HTTP (one client)."""
    url = f"http://127.0.0.1:{port}/live.ts"
    served = Served(["ffmpeg", "-v", "error", "-re", "-i", clip, "-c", "copy", "-f", "mpegts", "-listen", "1", url])
    _wait_listening(port)
    return served, url


def send_udp(clip: str, port: int) -> tuple[Served, str]:
    """ffmpeg sends the clip as MPEG-TS over UDP at its own pace, whether or not anyone listens."""
    served = Served(["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", clip, "-c", "copy", "-f", "mpegts",
                     f"udp://127.0.0.1:{port}?pkt_size=1316"])
    return served, f"udp://127.0.0.1:{port}"


def serve_rtsp(clip: str, port: int) -> tuple[Served, str]:
    served = Served([SYSTEM_PYTHON, "-c", RTSP_SERVER, str(port), clip], wait_for="ready")
    return served, f"rtsp://127.0.0.1:{port}/live"


def _wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # ffmpeg's one-client HTTP server: a probe connection would be taken as its client, so watch
        # the listening sockets instead of connecting.
        with open("/proc/net/tcp") as f:
            if any(line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A" for line in f.readlines()[1:]):
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")
