"""``/healthz`` and ``/metrics`` over HTTP, on exactly the address given."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from runner.daemon.health import Health
from runner.daemon.metrics import build_registry
from runner.errors import UsageError
from runner.journal.journal import Journal

log = logging.getLogger(__name__)


def parse_address(text: str) -> tuple[str, int]:
    """``127.0.0.1:9464`` or ``[::1]:9464`` -> (host, port); UsageError otherwise."""
    host, sep, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"--http {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    return host, int(port_text)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path == "/healthz":
                state = self.server.health()
                body = json.dumps(state.as_dict()).encode()
                self._reply(200 if state.ok else 503, "application/json", body)
            elif path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(200, content_type, encoder(self.server.registry))
            else:
                self._reply(404, "text/plain; charset=utf-8", b"not found\n")
        except Exception:  # a scrape must never take the daemon down
            log.exception("http: %s failed", path)
            self._reply(500, "text/plain; charset=utf-8", b"internal error\n")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry
    health: Callable[[], Health]


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """``/healthz`` and ``/metrics`` on exactly the address given, in a thread."""

    def __init__(
        self,
        address: str,
        journal: Journal,
        health: Callable[[], Health],
    ) -> None:
        host, port = parse_address(address)
        server_cls = _Server6 if ":" in host else _Server
        try:
            self._server = server_cls((host, port), _Handler)
        except OSError as e:
            raise UsageError(f"--http {address}: cannot listen: {e.strerror}") from e
        self._server.registry = build_registry(journal, health)
        self._server.health = health
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def url(self) -> str:
        address, port = self._server.server_address[:2]
        host = address.decode() if isinstance(address, bytes) else str(address)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
