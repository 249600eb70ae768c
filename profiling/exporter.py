"""The /metrics HTTP endpoint: prometheus_client's own server on a registry passed in.

Without a web config this is prometheus_client's ``start_http_server``, unchanged. With one (``--web-config``),
the same parts prometheus_client builds that server from (``make_wsgi_app``, ``ThreadingWSGIServer``, its quiet
request handler) serve the app behind a basic-auth check, over TLS when the config has a certificate:
``start_http_server`` takes TLS settings but no app to wrap, so it cannot check passwords.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

import bcrypt
from prometheus_client import CollectorRegistry, make_wsgi_app, start_http_server

# Internal to prometheus_client, but what start_http_server itself uses: the same threading, address-family choice
# and silent request log as the default path. The web-config tests exercise them on every prometheus_client update.
from prometheus_client.exposition import ThreadingWSGIServer, _get_best_family, _SilentHandler

from vidprof.profiling.errors import RunError
from vidprof.profiling.web_config import BCRYPT_HASH, WebConfig

REALM = "vidprof"
# Prometheus scrapes every few seconds and bcrypt costs ~0.1-0.5 s by design: remember a success for a while
# (a minute spares 11 of 12 checks at a 5 s scrape interval) instead of burning a core on every scrape.
AUTH_CACHE_SECONDS = 60.0
AUTH_CACHE_SIZE = 64
# A client that connects and then says nothing must not hold a worker thread (and its socket) forever.
HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class Exporter:
    server: WSGIServer
    thread: threading.Thread
    host: str
    port: int
    scheme: str = "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(registry: CollectorRegistry, host: str, port: int, web_config: WebConfig | None = None) -> Exporter:
    """Start serving; port 0 picks a free port (read it back from ``Exporter.port``). With ``web_config``, /metrics
    asks for its basic-auth users and, with ``tls_server_config``, speaks only HTTPS (``Exporter.url`` says so)."""
    if web_config is None:
        # The plain path stays on prometheus_client's public API.
        try:
            server, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as e:
            raise _port_error(host, port, e) from e
        return Exporter(server, thread, host, server.server_port)

    context = web_config.tls.ssl_context() if web_config.tls is not None else None  # RunError for a bad file
    app: WSGIApp = make_wsgi_app(registry)
    if web_config.basic_auth_users:
        app = BasicAuth(app, web_config.basic_auth_users)
    try:
        server = _make_server(host, port, app, context)
    except OSError as e:
        raise _port_error(host, port, e) from e
    thread = threading.Thread(target=server.serve_forever, name="vidprof-metrics", daemon=True)
    thread.start()
    return Exporter(server, thread, host, server.server_port, web_config.scheme)


def _port_error(host: str, port: int, e: OSError) -> RunError:
    return RunError(f"--metrics-port {port}: cannot listen on {host}:{port} ({e.strerror or e}); expected a free "
                    "port; choose another --metrics-port, or 0 for any free port")


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

