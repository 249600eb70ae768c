"""The /metrics server process: serves the exposition files the vidprof process writes.

    python -m vidprof.profiling.metrics_server --host=H --port=P --folder=DIR --parent-pid=PID

``exporter.serve`` starts it; it is not meant to be run by hand. A scrape served from inside the profiled
process waits for that process's GIL, which ~32 busy pipeline threads hold most of the time; in a process of its
own, a scrape only reads a file that the profiled process rewrites at a fixed pace.

The protocol with the parent:

- stdin: one JSON document, ``{"web_config": ...}`` (``exporter.web_config_doc``: TLS files and bcrypt hashes),
  so this process serves exactly the config the parent checked, without reading the YAML a second time;
- stdout: one JSON line, ``{"port": N}`` once listening, or ``{"error": {...}}`` (an ``OSError`` of the bind, or a
  ``RunError`` message of the TLS files) and exit code 1;
- ``DIR``: ``exporter.TEXT_FILE`` (always there), ``exporter.OPENMETRICS_FILE`` (once this process has touched
  ``exporter.WANT_OPENMETRICS``, on the first request for OpenMetrics);
- SIGTERM ends it; so does the parent's death (``--parent-pid`` is polled; it then also removes ``DIR``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from vidprof.profiling.errors import RunError
from vidprof.profiling.exporter import (
    OPENMETRICS_CONTENT_TYPE,
    OPENMETRICS_FILE,
    TEXT_CONTENT_TYPE,
    TEXT_FILE,
    WANT_OPENMETRICS,
    BasicAuth,
    WSGIApp,
    _make_server,
    web_config_from_doc,
)

# How often the parent's pid is checked: an orphaned server must not keep a port (and its folder) for long.
PARENT_POLL = 0.25
# The first OpenMetrics request waits this long at most for the parent to write that rendering (it looks for the
# marker every 0.1 s); after that it gets the text format, which every Prometheus also accepts.
OPENMETRICS_WAIT = 2.0
# Level 1: the 190 KB exposition of 8 streams compresses ~13x in ~1 ms; level 9 (prometheus_client's) takes
# ~10x as long, paid by a scrape, for a body ~25% smaller. Made once per version of the file, not per scrape.
GZIP_LEVEL = 1

INDEX = (b"<!DOCTYPE html>\n<html><head><title>vidprof</title></head>\n"
         b"<body><h1>vidprof</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n")
ALLOW = "GET, HEAD, OPTIONS"


class _Stop(BaseException):
    """SIGTERM, raised in the main thread wherever it is waiting."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


# ---------------------------------------------------------------- the files
class Exposition:
    """One exposition file, read again only when the parent has replaced it (a new inode: ``os.replace``), and
    its gzip made once per version, on the first request that asks for it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._key: tuple[int, int, int] | None = None
        self._body = b""
        self._gzipped: bytes | None = None

    def get(self, gzipped: bool) -> bytes | None:
        """The current body (gzipped if asked), or None while the file does not exist."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return None
        with f, self._lock:
            st = os.fstat(f.fileno())
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            if key != self._key:
                self._body, self._gzipped, self._key = f.read(), None, key
            if not gzipped:
                return self._body
            if self._gzipped is None:
                self._gzipped = gzip.compress(self._body, compresslevel=GZIP_LEVEL)
            return self._gzipped


def wants_openmetrics(accept: str) -> bool:
    """Whether an Accept header names OpenMetrics (the same test prometheus_client's own server makes)."""
    return any(part.split(";")[0].strip() == "application/openmetrics-text" for part in accept.split(","))


def accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        coding, *params = (p.strip() for p in part.split(";"))
        if coding.lower() == "gzip":
            return not any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params)
    return False


class MetricsApp:
    """WSGI app: /metrics from the files in ``folder``, a small page on /, 404 elsewhere."""

    def __init__(self, folder: Path) -> None:
        self.text = Exposition(folder / TEXT_FILE)
        self.openmetrics = Exposition(folder / OPENMETRICS_FILE)
        self.want_openmetrics = folder / WANT_OPENMETRICS

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO") or "/"
        if method == "OPTIONS":
            return _respond(start_response, "200 OK", b"", [("Allow", ALLOW)], head=False)
        if method not in ("GET", "HEAD"):
            return _respond(start_response, "405 Method Not Allowed",
                            f"# HTTP 405: {method}; use GET\n".encode(), [("Allow", ALLOW)], head=False)
        head = method == "HEAD"
        if path == "/":
            return _respond(start_response, "200 OK", INDEX, [("Content-Type", "text/html; charset=utf-8")], head)
        if path != "/metrics":
            return _respond(start_response, "404 Not Found", b"Not Found: the metrics are at /metrics\n",
                            [("Content-Type", "text/plain; charset=utf-8")], head)
        gzipped = accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", ""))
        body = None
        if wants_openmetrics(environ.get("HTTP_ACCEPT", "")):
            body = self._openmetrics(gzipped)
            content_type = OPENMETRICS_CONTENT_TYPE
        if body is None:
            body = self.text.get(gzipped)
            content_type = TEXT_CONTENT_TYPE
        if body is None:  # only if the folder was removed under us
            return _respond(start_response, "503 Service Unavailable", b"no exposition yet\n",
                            [("Content-Type", "text/plain; charset=utf-8")], head)
        headers = [("Content-Type", content_type)]
        if gzipped:
            headers.append(("Content-Encoding", "gzip"))
        return _respond(start_response, "200 OK", body, headers, head)

    def _openmetrics(self, gzipped: bool) -> bytes | None:
        body = self.openmetrics.get(gzipped)
        if body is not None:
            return body
        # The parent renders OpenMetrics only once somebody asks for it: tell it, and give it a moment.
        try:
            self.want_openmetrics.touch()
        except OSError:
            return None
        deadline = time.monotonic() + OPENMETRICS_WAIT
        while body is None and time.monotonic() < deadline:
            time.sleep(0.02)
            body = self.openmetrics.get(gzipped)
        return body


def _respond(start_response: Callable[..., Any], status: str, body: bytes, headers: list[tuple[str, str]],
             head: bool) -> list[bytes]:
    start_response(status, [*headers, ("Content-Length", str(len(body)))])
    return [] if head else [body]


# ---------------------------------------------------------------- the process
def _say(doc: dict[str, Any]) -> None:
    """The one line the parent reads; stdout then goes to /dev/null, so nothing later can block on the pipe."""
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _oserror_doc(e: OSError) -> dict[str, Any]:
    # Enough for the parent to rebuild the same exception and give the message it gives for its own bind errors.
    return {"kind": "gaierror" if isinstance(e, socket.gaierror) else "oserror", "errno": e.errno,
            "strerror": e.strerror, "text": str(e)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vidprof.profiling.metrics_server",
                                description="Serve the exposition files of a vidprof run (started by vidprof).")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--folder", type=Path, required=True)
    p.add_argument("--parent-pid", type=int, required=True)
    args = p.parse_args(argv)

    # Ctrl-C, and the hang-up of a closed terminal, reach the whole process group; vidprof carries on after
    # either (it writes its report, lingers), so it alone decides when this server ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if os.getppid() != args.parent_pid:
            return 0  # the parent is gone already
        doc = json.loads(sys.stdin.read() or "{}")
        web_config = web_config_from_doc(doc.get("web_config"))
        context = None
        app: WSGIApp = MetricsApp(args.folder)
        if web_config is not None:
            context = web_config.tls.ssl_context() if web_config.tls is not None else None
            if web_config.basic_auth_users:
                app = BasicAuth(app, web_config.basic_auth_users)
        try:
            server = _make_server(args.host, args.port, app, context)
        except OSError as e:
            _say({"error": _oserror_doc(e)})
            return 1
    except RunError as e:
        _say({"error": {"kind": "run", "message": str(e)}})
        return 1
    except _Stop:
        return 0

    orphaned = False
    thread: threading.Thread | None = None
    try:
        _say({"port": server.server_port})
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                                  name="metrics-server", daemon=True)
        thread.start()
        # Polled rather than PR_SET_PDEATHSIG: that signal comes when the *thread* that started this process
        # ends, which need not be when the vidprof process does.
        while os.getppid() == args.parent_pid:
            time.sleep(PARENT_POLL)
        orphaned = True
    except _Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
        if thread is not None and thread.is_alive():
            server.shutdown()  # waits for serve_forever, so only once it runs
        server.server_close()
        if orphaned:  # nobody else will remove the parent's folder now
            shutil.rmtree(args.folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
