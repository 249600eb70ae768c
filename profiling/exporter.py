"""The /metrics HTTP endpoint: prometheus_client's own server on a registry passed in."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from vidprof.profiling.errors import RunError


@dataclass
class Exporter:
    server: WSGIServer
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(registry: CollectorRegistry, host: str, port: int) -> Exporter:
    """Start serving; port 0 picks a free port (read it back from ``Exporter.port``)."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise RunError(f"--metrics-port {port}: cannot listen on {host}:{port} ({e.strerror or e}); expected a free "
                       "port; choose another --metrics-port, or 0 for any free port") from e
    return Exporter(server, thread, host, server.server_port)
