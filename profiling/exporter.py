"""The /metrics HTTP endpoint of a registry, served by a process of its own.

A scrape answered inside the vidprof process waits for its GIL, which the pipeline's threads (~32 with 8
streams) hold nearly all the time, and rendering ~2000 samples takes milliseconds of GIL time itself: scrapes
took ~80 ms at the median and ~200 ms at p99. So the work is split:

- in this process, ONE writer thread renders the registry at a fixed pace (every ``interval`` seconds, and on
  ``Exporter.refresh()``) and writes it atomically (a temporary file, then ``os.replace``) into a private folder
  (mode 0700, under /dev/shm when there is one): the process collector's figures stay those of this process;
- a small server process (``python -m vidprof.profiling.metrics_server``, started with subprocess: this process
  has OpenVINO's threads, which a bare fork would copy in an unknown state) serves that file on /metrics. It
  needs nothing from this process's GIL, and it checks passwords and TLS exactly as before, with the same
  classes (``BasicAuth``, ``_make_server``, the TLS server below).

The text format is always rendered; OpenMetrics only once a scraper has asked for it (``Accept:
application/openmetrics-text``), signalled by the server touching a marker file, so nobody who never asks pays
for a second rendering.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any
from wsgiref.simple_server import WSGIServer, make_server

import bcrypt
from prometheus_client import CollectorRegistry, generate_latest

# Internal to prometheus_client, but what start_http_server itself uses: the same threading, address-family choice
# and silent request log as the default path. The web-config tests exercise them on every prometheus_client update.
from prometheus_client.exposition import ThreadingWSGIServer, _get_best_family, _SilentHandler
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from vidprof.profiling.errors import RunError
from vidprof.profiling.web_config import BCRYPT_HASH, TLSServerConfig, WebConfig

REALM = "vidprof"
# Prometheus scrapes every few seconds and bcrypt costs ~0.1-0.5 s by design: remember a success for a while
# (a minute spares 11 of 12 checks at a 5 s scrape interval) instead of burning a core on every scrape.
AUTH_CACHE_SECONDS = 60.0
AUTH_CACHE_SIZE = 64
# A client that connects and then says nothing must not hold a worker thread (and its socket) forever.
HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Rendered every half second: fresh enough for any scrape interval. One rendering of 8 streams (~2000 samples,
# 190 KB) takes ~8 ms of GIL time here, half of it collecting: ~2% of one core. ``Exporter.refresh()`` renders
# at once (after a run: the final values).
DEFAULT_INTERVAL = 0.5
# What the server process serves, in the private folder; the marker asks for the OpenMetrics rendering.
TEXT_FILE = "metrics.prom"
OPENMETRICS_FILE = "metrics.om"
WANT_OPENMETRICS = "openmetrics-wanted"
SERVER_LOG = "server.log"  # the server process's stderr: a traceback there explains a failed start
# What the text rendering is (prometheus_client's generate_latest), whatever its CONTENT_TYPE_LATEST says.
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = openmetrics.CONTENT_TYPE_LATEST
# How often the writer looks for the marker until it appears: the first OpenMetrics scrape waits about this.
MARKER_POLL = 0.1
# A fresh interpreter importing prometheus_client, bcrypt and ssl: well under a second, but a loaded machine
# with two cores can stretch that a lot.
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


class Exporter:
    """A /metrics endpoint being served: ``url``, ``refresh()`` to publish the registry's values now, ``close()``.

    It serves until ``close()`` even when nobody keeps a reference (as prometheus_client's own server does), is
    closed at interpreter exit if not before, and its server process exits by itself when this process dies: a
    port and the private folder do not outlive a run."""

    def __init__(self, host: str, port: int, scheme: str, process: subprocess.Popen[bytes], writer: _Writer) -> None:
        self.host = host
        self.port = port
        self.scheme = scheme
        self._process = process
        self._writer = writer
        self._finalizer = weakref.finalize(self, _shut_down, writer, process)  # once only; also at exit
        _OPEN.add(self)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/metrics"

    @property
    def pid(self) -> int:
        """The server process's pid."""
        return self._process.pid

    @property
    def folder(self) -> Path:
        """The private folder the exposition files are written to."""
        return self._writer.folder

    def refresh(self) -> None:
        """Render and publish the registry now, synchronously: the next scrape sees these values. Raises
        ``RunError`` when the file cannot be written."""
        self._writer.write()

    def close(self) -> None:
        """Stop the writer and the server process, remove the folder. Safe to call twice."""
        _OPEN.discard(self)
        self._finalizer()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


_OPEN: set[Exporter] = set()  # the open ones: served until close(), referenced or not


def serve(registry: CollectorRegistry, host: str, port: int, web_config: WebConfig | None = None,
          interval: float = DEFAULT_INTERVAL) -> Exporter:
    """Start serving; port 0 picks a free port (read it back from ``Exporter.port``). With ``web_config``, /metrics
    asks for its basic-auth users and, with ``tls_server_config``, speaks only HTTPS (``Exporter.url`` says so).
    The registry is rendered now (what the first scrape sees), then every ``interval`` seconds."""
    if not interval > 0:
        raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
    if web_config is not None and web_config.tls is not None:
        web_config.tls.ssl_context()  # a RunError for a bad file, before any process is started
    root = _private_root()
    try:
        folder = Path(tempfile.mkdtemp(prefix="vidprof-metrics-", dir=root))  # mode 0700: this user's alone
    except OSError as e:
        raise RunError(f"cannot make a folder for the /metrics exposition in {root or tempfile.gettempdir()} "
                       f"({e.strerror or e}); expected a writable temporary folder; free some space there, or set "
                       "TMPDIR to another folder") from e
    writer = _Writer(registry, folder, interval)
    try:
        writer.write()  # the file exists before the server can be asked for it
        process, bound = _start_server(host, port, writer.folder, web_config)
    except BaseException:
        shutil.rmtree(writer.folder, ignore_errors=True)
        raise
    writer.start()
    return Exporter(host, bound, web_config.scheme if web_config is not None else "http", process, writer)


def _port_error(host: str, port: int, e: OSError) -> RunError:
    # A name that does not resolve, or an address this machine does not have, is the host's fault: blaming
    # the port would send the user after a setting they may never have given.
    if isinstance(e, socket.gaierror) or e.errno == errno.EADDRNOTAVAIL:
        return RunError(f"--metrics-host {host}: cannot listen on it ({e.strerror or e}); expected an address of "
                        "this machine, e.g. 127.0.0.1, 0.0.0.0 or ::; check --metrics-host")
    return RunError(f"--metrics-port {port}: cannot listen on {host}:{port} ({e.strerror or e}); expected a free "
                    "port; choose another --metrics-port, or 0 for any free port")


# ---------------------------------------------------------------- the rendering
# Names every exposition format writes as they are; a family with any other name goes to prometheus_client.
_PLAIN_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TEXT_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
_TEXT_SPLIT = ("_created", "_gsum", "_gcount")  # OpenMetrics-only samples: the text format gives them a gauge each


class _JustOne:
    """A collector of one family, to hand a single family to prometheus_client's renderers."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> list[Metric]:
        return [self.metric]


class _Renderer:
    """prometheus_client's text and OpenMetrics expositions, byte for byte, in a fraction of its time.

    Escaping and sorting each sample's labels is most of the library's cost (~25 ms of GIL time for the ~2000
    samples of 8 streams; ~3 ms here), and the series of a run hardly change between renderings: the
    ``name{labels}`` text of each series is made once and kept, and only values are formatted each time.
    Exemplars (the histograms' slowest frames) are written in OpenMetrics and left out of the text format, as the
    library does. A family with anything this does not cover (a native histogram, an exemplar where the library
    refuses one, a name outside ``[a-zA-Z_][a-zA-Z0-9_]*``) is rendered by the library itself; the tests compare
    both renderings with the library's, on a real run's registry and on odd families."""

    MAX_SERIES = 200_000  # forget the texts when a run keeps making new series (a label per frame, say)

    def __init__(self) -> None:
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], str | None] = {}
        self._headers: dict[tuple[str, str, str, str, bool], str] = {}

    def text(self, families: Iterable[Metric]) -> bytes:
        out: list[str] = []
        for metric in families:
            lines = self._text_family(metric)
            out.extend(lines if lines is not None else (generate_latest(_JustOne(metric)).decode("utf-8"),))
        return "".join(out).encode("utf-8")

    def openmetrics(self, families: Iterable[Metric]) -> bytes:
        out: list[str] = []
        for metric in families:
            lines = self._openmetrics_family(metric)
            if lines is None:
                lines = [openmetrics.generate_latest(_JustOne(metric)).decode("utf-8").removesuffix("# EOF\n")]
            out.extend(lines)
        out.append("# EOF\n")
        return "".join(out).encode("utf-8")

    def _text_family(self, metric: Metric) -> list[str] | None:
        name = metric.name
        header = self._header(metric, openmetrics=False)
        if header is None:
            return None
        out = [header]
        split = {name + suffix: suffix for suffix in _TEXT_SPLIT}
        later: dict[str, list[str]] = {}
        for s in metric.samples:
            series = self._series_text(s)
            if series is None:
                return None
            timestamp = "" if s.timestamp is None else f" {int(float(s.timestamp) * 1000):d}"
            line = f"{series} {floatToGoString(s.value)}{timestamp}\n"
            suffix = split.get(s.name)
            if suffix is None:
                out.append(line)
            else:
                later.setdefault(suffix, []).append(line)
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        for suffix, lines in sorted(later.items()):
            out.append(f"# HELP {name}{suffix} {doc}\n# TYPE {name}{suffix} gauge\n")
            out.extend(lines)
        return out

    def _openmetrics_family(self, metric: Metric) -> list[str] | None:
        header = self._header(metric, openmetrics=True)
        if header is None:
            return None
        out = [header]
        for s in metric.samples:
            series = self._series_text(s)
            if series is None or s.value is None:
                return None
            timestamp = "" if s.timestamp is None else f" {s.timestamp}"
            exemplar = "" if s.exemplar is None else _exemplar_text(metric, s)
            if exemplar is None:
                return None
            out.append(f"{series} {floatToGoString(s.value)}{timestamp}{exemplar}\n")
        return out

    def _header(self, metric: Metric, openmetrics: bool) -> str | None:
        key = (metric.name, metric.type, metric.documentation, metric.unit, openmetrics)
        header = self._headers.get(key)
        if header is None:
            if not _PLAIN_NAME.fullmatch(metric.name):
                return None
            name, mtype, doc = metric.name, metric.type, metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
            if openmetrics:
                doc = doc.replace('"', r"\"")
                header = f"# HELP {name} {doc}\n# TYPE {name} {mtype}\n"
                if metric.unit:
                    header += f"# UNIT {name} {metric.unit}\n"
            else:
                name += {"counter": "_total", "info": "_info"}.get(mtype, "")
                header = f"# HELP {name} {doc}\n# TYPE {name} {_TEXT_TYPES.get(mtype, mtype)}\n"
            self._headers[key] = header
        return header

    def _series_text(self, s: Sample) -> str | None:
        """``name{label="value",...}``, or None when the sample is one for prometheus_client to render."""
        if getattr(s, "native_histogram", None) is not None:
            return None
        key = (s.name, tuple(s.labels.items()))
        try:
            return self._series[key]
        except KeyError:
            pass
        text: str | None = None
        if _PLAIN_NAME.fullmatch(s.name) and all(_PLAIN_NAME.fullmatch(k) for k in s.labels):
            labels = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(s.labels.items()))
            text = f"{s.name}{{{labels}}}" if labels else s.name
        if len(self._series) >= self.MAX_SERIES:
            self._series.clear()
        self._series[key] = text
        return text


def _exemplar_text(metric: Metric, s: Sample) -> str | None:
    """`` # {labels} value [timestamp]`` as prometheus_client's OpenMetrics writes it, or None where the library
    refuses an exemplar (anything but a histogram bucket or a counter's total): it then raises, as it would."""
    kind, name = metric.type, s.name
    if not ((kind == "counter" and name.endswith("_total"))
            or (kind in ("histogram", "gaugehistogram") and name.endswith("_bucket"))
            or (kind == "histogram" and name == metric.name)):
        return None
    e = s.exemplar
    assert e is not None
    labels = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(e.labels.items()))
    timestamp = "" if e.timestamp is None else f" {e.timestamp}"
    return f" # {{{labels}}} {floatToGoString(e.value)}{timestamp}"


def _label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


# ---------------------------------------------------------------- the writer
class _Writer:
    """Renders the registry into ``folder``: on its own thread every ``interval`` seconds, and on ``write()``."""

    def __init__(self, registry: CollectorRegistry, folder: Path, interval: float) -> None:
        self.registry = registry
        self.folder = folder
        self.interval = interval
        self._lock = threading.Lock()  # one rendering at a time: an older one must never replace a newer one
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vidprof-metrics-writer", daemon=True)
        self._want_openmetrics = folder / WANT_OPENMETRICS
        self._openmetrics = False  # set for good once the server has asked for that rendering
        self._renderer = _Renderer()
        self._warned = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(STOP_TIMEOUT)

    def write(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return  # closed: the folder is gone and nobody serves it
            if not self._openmetrics:
                self._openmetrics = self._want_openmetrics.exists()
            try:
                # Collected once for both renderings: collecting is about half the cost, and both then show
                # the same moment.
                families = list(self.registry.collect())
                _replace(self.folder / TEXT_FILE, self._renderer.text(families))
                if self._openmetrics:
                    _replace(self.folder / OPENMETRICS_FILE, self._renderer.openmetrics(families))
            except OSError as e:
                raise RunError(f"cannot write the /metrics exposition to {self.folder} ({e.strerror or e}); expected "
                               f"a writable folder with free space; free some space in {self.folder.parent}") from e

    def _loop(self) -> None:
        next_at = time.monotonic() + self.interval
        while True:
            wait = next_at - time.monotonic()
            if not self._openmetrics:
                wait = min(wait, MARKER_POLL)
            if self._stop.wait(max(wait, 0.0)):
                return
            if time.monotonic() < next_at:  # only a look for the marker
                if not self._want_openmetrics.exists():
                    continue
                self._write_logged()  # somebody waits for OpenMetrics: now, off the fixed pace
                continue
            self._write_logged()
            # A fixed pace, not a fixed pause: the rendering's own time does not stretch the interval. After an
            # overrun (a starved GIL), skip the missed ticks rather than render back to back.
            next_at += self.interval
            if next_at <= time.monotonic():
                next_at = time.monotonic() + self.interval

    def _write_logged(self) -> None:
        try:
            self.write()
        except Exception as e:  # a full /dev/shm, a collector's bug: the run goes on, scrapes get the last file
            if not self._warned:
                self._warned = True
                print(f"vidprof: warning: /metrics is not being updated: {e}", file=sys.stderr)


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _private_root() -> str | None:
    """/dev/shm when it is there: the file is rewritten twice a second, and that belongs in memory, not on a
    disk. None (tempfile's choice) when TMPDIR names a folder: whoever set it chose the place."""
    shm = "/dev/shm"
    if os.environ.get("TMPDIR") or not (os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK)):
        return None
    return shm


# ---------------------------------------------------------------- the server process
def _start_server(host: str, port: int, folder: Path,
                  web_config: WebConfig | None) -> tuple[subprocess.Popen[bytes], int]:
    """Start the server process and wait for its one line: (the process, the bound port), or the RunError that
    binding ``host``:``port`` here would have raised."""
    argv = [sys.executable,
            *(["-P"] if sys.version_info >= (3, 11) else []),  # the cwd's modules must not shadow vidprof's
            "-m", "vidprof.profiling.metrics_server", f"--host={host}", f"--port={port}", f"--folder={folder}",
            f"--parent-pid={os.getpid()}"]
    try:
        with open(folder / SERVER_LOG, "wb") as log:
            process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    except OSError as e:
        raise _start_error(f"{e.strerror or e}") from e
    try:
        assert process.stdin is not None and process.stdout is not None
        try:
            with process.stdin:
                process.stdin.write(json.dumps({"web_config": web_config_doc(web_config)}).encode())
        except BrokenPipeError:
            pass  # it exited already: its log says why
        line = _read_line(process.stdout, STARTUP_TIMEOUT)
        process.stdout.close()
        try:
            doc = json.loads(line)
        except ValueError:
            doc = {}
        if isinstance(doc.get("port"), int):
            return process, doc["port"]
        error = doc.get("error")
        if isinstance(error, dict) and error.get("kind") == "run":
            raise RunError(str(error.get("message")))
        if isinstance(error, dict):
            e = _rebuilt_oserror(error)
            raise _port_error(host, port, e) from e
        if process.poll() is None:
            raise _start_error(f"no answer within {STARTUP_TIMEOUT:g} s")
        raise _start_error(_last_line(folder / SERVER_LOG) or f"exit code {process.returncode}")
    except BaseException:
        _stop_process(process)
        raise


def _start_error(reason: str) -> RunError:
    return RunError(f"cannot start the /metrics server process ({reason}); expected `{sys.executable} -m "
                    "vidprof.profiling.metrics_server` to start; check that vidprof is installed for that Python, "
                    "or pass --no-metrics")


def _read_line(stream: IO[bytes], timeout: float) -> bytes:
    """One line from a pipe, or what came before its end or ``timeout``: a server that hangs must not hang
    vidprof."""
    fd = stream.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data


def _rebuilt_oserror(doc: Mapping[str, Any]) -> OSError:
    """The server process's bind error as the OSError it was, so ``_port_error`` words it as for a bind here."""
    cls = socket.gaierror if doc.get("kind") == "gaierror" else OSError
    if isinstance(doc.get("errno"), int) and isinstance(doc.get("strerror"), str):
        return cls(doc["errno"], doc["strerror"])  # OSError(EACCES, ...) is a PermissionError again, and so on
    return cls(str(doc.get("text") or "unknown error"))


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _shut_down(writer: _Writer, process: subprocess.Popen[bytes]) -> None:
    writer.stop()
    _stop_process(process)
    shutil.rmtree(writer.folder, ignore_errors=True)


def web_config_doc(config: WebConfig | None) -> dict[str, Any] | None:
    """A checked web config as JSON for the server process, which then serves exactly this one (the YAML is read
    once, as docs/security.md says; the certificate files are read again by the server's own TLS context)."""
    if config is None:
        return None
    tls = config.tls
    return {
        "source": str(config.source),
        "tls": None if tls is None else {
            "cert_file": str(tls.cert_file), "key_file": str(tls.key_file),
            "client_ca_file": None if tls.client_ca_file is None else str(tls.client_ca_file),
            "client_auth_type": tls.client_auth_type, "min_version": tls.min_version,
            "max_version": tls.max_version, "source": str(tls.source),
        },
        "basic_auth_users": dict(config.basic_auth_users),
    }


def web_config_from_doc(doc: Mapping[str, Any] | None) -> WebConfig | None:
    """The inverse of ``web_config_doc``."""
    if doc is None:
        return None
    t = doc.get("tls")
    tls = None if t is None else TLSServerConfig(
        Path(t["cert_file"]), Path(t["key_file"]),
        None if t.get("client_ca_file") is None else Path(t["client_ca_file"]),
        t["client_auth_type"], t["min_version"], t.get("max_version"), Path(t["source"]))
    return WebConfig(Path(doc["source"]), tls, MappingProxyType(dict(doc.get("basic_auth_users") or {})))


# ---------------------------------------------------------------- the server
class _Handler(_SilentHandler):
    timeout = REQUEST_TIMEOUT  # StreamRequestHandler applies it to the connection


class _Server(ThreadingWSGIServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up or fails TLS mid-request is not worth a traceback on the profiler's terminal.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _TLSServer(_Server):
    """Does each TLS handshake in the connection's own thread. Wrapping the listening socket the usual way
    (what start_http_server does) runs the handshake inside accept(), in the one thread that accepts: a client
    that connects and stays silent would then stop every scrape."""

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(HANDSHAKE_TIMEOUT)
            request.do_handshake()
        except OSError:  # plain HTTP, a missing or untrusted client certificate, a port scan: drop this one
            return
        super().finish_request(request, client_address)


def _make_server(host: str, port: int, app: WSGIApp, context: ssl.SSLContext | None) -> WSGIServer:
    base = _TLSServer if context is not None else _Server

    class Server(base):  # type: ignore[valid-type, misc]  # a class per call: address_family is a class attribute
        pass

    Server.address_family, addr = _get_best_family(host, port)
    server = make_server(addr, port, app, Server, handler_class=_Handler)
    if context is not None:
        try:
            server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        except (OSError, ValueError):
            server.server_close()
            raise
    return server


# ---------------------------------------------------------------- basic auth
class BasicAuth:
    """WSGI middleware: lets a request through to ``app`` only with the right ``Authorization: Basic`` header for
    one of ``users`` (user name -> bcrypt hash); answers 401 with a ``WWW-Authenticate`` challenge otherwise."""

    def __init__(self, app: WSGIApp, users: Mapping[str, str], cache_seconds: float = AUTH_CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self._hashes = {user: hashed.encode("ascii") for user, hashed in users.items()}
        # An unknown user is checked against a hash of the highest cost in use, so a wrong user name takes as long
        # as a wrong password and response times do not tell which user names exist. Any well-formed hash does:
        # bcrypt does all its work before comparing.
        costs = [BCRYPT_HASH.fullmatch(h) for h in users.values()]
        if not costs or not all(costs):
            raise ValueError("BasicAuth needs at least one user, and a bcrypt hash for each")
        cost = max(int(m.group(1)) for m in costs if m)
        self._dummy = f"$2b${cost:02d}${'.' * 53}".encode("ascii")
        self._cache_seconds = cache_seconds
        self._clock = clock
        # Successes by HMAC of "user:password" under a key that lives only in this process: the cache holds no
        # password, and looking a guess up in it reveals nothing about the right one.
        self._key = secrets.token_bytes(32)
        self._passed: dict[bytes, float] = {}  # token -> expiry
        self._cache_lock = threading.Lock()
        # One bcrypt at a time: a flood of wrong passwords then costs one core, not every core the profiled
        # pipeline is being measured on.
        self._bcrypt_lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        credentials = _basic_credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if credentials is not None and self.check(*credentials):
            return self.app(environ, start_response)
        body = b"Unauthorized\n"
        start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                            ("Content-Length", str(len(body))),
                                            ("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')])
        return [body]

    def check(self, user: str, password: bytes) -> bool:
        token = hmac.new(self._key, user.encode("utf-8") + b":" + password, hashlib.sha256).digest()
        now = self._clock()
        with self._cache_lock:
            expiry = self._passed.get(token)
            if expiry is not None and now < expiry:
                return True
        hashed = self._hashes.get(user)
        with self._bcrypt_lock:
            try:
                ok = bcrypt.checkpw(password, hashed if hashed is not None else self._dummy)
            except ValueError:  # bcrypt >= 5 refuses passwords over 72 bytes; no hash here was made from one
                ok = False
        if not ok or hashed is None:
            return False
        with self._cache_lock:
            self._passed = {t: e for t, e in self._passed.items() if now < e}
            if len(self._passed) >= AUTH_CACHE_SIZE:  # many distinct users: drop the oldest success
                del self._passed[min(self._passed, key=self._passed.__getitem__)]
            self._passed[token] = now + self._cache_seconds
        return True


def _basic_credentials(header: str) -> tuple[str, bytes] | None:
    """(user, password) from an ``Authorization: Basic`` value, or None for anything else."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = raw.partition(b":")
    if not colon:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None

