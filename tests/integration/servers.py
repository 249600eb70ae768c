"""Helpers for tests that run real servers (Prometheus, Pushgateway) next to a real `vidprof run`.

Everything listens on 127.0.0.1 only, every wait is bounded, and every process a ``Harness`` starts is
stopped by ``Harness.stop_all()`` (terminate, then kill), which the tests' fixtures call in ``finally``.

The server binaries come from Debian's `prometheus` and `prometheus-pushgateway` packages
(`.ci/install-servers`). When one is missing the tests that need it skip with the reason, unless
VIDPROF_REQUIRE_SERVERS=1 is set (CI, where they are installed): then they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRE_ENV = "VIDPROF_REQUIRE_SERVERS"
METRICS_LINE = re.compile(r"vidprof: metrics at http://127\.0\.0\.1:(\d+)/metrics")

# The cheap source for these runs: no decode cost, exact frame counts.
SYNTHETIC = ("--source", "synthetic:320x240@30")


def find_binary(name: str) -> str:
    """The path of a server binary; skip (or fail, under VIDPROF_REQUIRE_SERVERS=1) when it is missing."""
    path = shutil.which(name)
    if path is None:
        reason = (f"`{name}` is not installed (Debian package {name}; run .ci/install-servers as root, "
                  f"or apt-get install {name})")
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 requires it")
        pytest.skip(reason)
    return path


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the usual small race; servers started with it fail loudly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # loopback URLs built here
        return r.read()


def http_json(url: str, timeout: float = 5.0) -> Any:
    return json.loads(http_get(url, timeout))


class Proc:
    """A subprocess whose stdout and stderr go to files, so nothing blocks on a full pipe."""

    def __init__(self, name: str, argv: Sequence[str], folder: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = folder / f"{name}.log"
        self._log = open(self.log_path, "wb")  # closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.popen = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=cwd, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running after {timeout:g} s; its log ends:\n{self.tail()}")

    def stop(self) -> None:
        try:
            if self.alive():
                self.popen.terminate()
                try:
                    self.popen.wait(10)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(10)
        finally:
            self._log.close()


def wait_until(what: str, check: Callable[[], Any], timeout: float, procs: Sequence[Proc] = (),
               interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the logs of ``procs`` on timeout or exit."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, urllib.error.URLError, ValueError, KeyError) as e:  # not up yet
            last_error = e
        for p in procs:
            if not p.alive():
                # One last look: the process may have done its part just before exiting.
                try:
                    result = check()
                    if result:
                        return result
                except (OSError, urllib.error.URLError, ValueError, KeyError):
                    pass
                pytest.fail(f"{p.name} exited (code {p.popen.returncode}) while waiting for {what}; "
                            f"its log ends:\n{p.tail()}")
        if time.monotonic() >= deadline:
            logs = "\n".join(f"--- {p.name} log ends:\n{p.tail()}" for p in procs)
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}"
                        f"{f' (last error: {last_error})' if last_error else ''}\n{logs}")
        time.sleep(interval)


class Harness:
    """Starts processes for one test or module; ``stop_all()`` stops every one of them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], cwd: Path | None = None) -> Proc:
        proc = Proc(name, argv, self.folder, cwd)
        self.procs.append(proc)
        return proc

    def vidprof(self, name: str, args: Sequence[str]) -> Proc:
        """``python -m vidprof.pipeline run ARGS`` from the repository root."""
        return self.start(name, [sys.executable, "-m", "vidprof.pipeline", "run", *args], cwd=REPO)

    def metrics_port(self, proc: Proc, timeout: float = 60.0) -> int:
        """The port a vidprof run started with --metrics-port 0 serves on, from its stderr line."""
        m = wait_until(f"{proc.name} to print 'vidprof: metrics at ...'", lambda: METRICS_LINE.search(proc.log()),
                       timeout, [proc])
        return int(m.group(1))

    def stop_all(self) -> None:
        errors = []
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                errors.append(f"{p.name}: {e}")
        self.procs.clear()
        if errors:
            raise RuntimeError("could not stop: " + "; ".join(errors))


def start_pushgateway(h: Harness, binary: str) -> str:
    """A fresh Pushgateway on a free loopback port, in memory only; returns its base URL once it is ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = h.start("pushgateway", [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file=",
                                   "--log.level=warn"])
    wait_until("the Pushgateway to be ready", lambda: http_get(f"{url}/-/ready", timeout=1) is not None, 30, [proc])
    return url
