"""``/healthz`` and ``/metrics`` over HTTP, on exactly the address given,
``POST /runs/{id}/pause|resume|cancel``, and providers' report callbacks.

The run controls change what is sent, so they are guarded: with
``$CAMPAIGN_RUNNER_HTTP_TOKEN`` set they need ``Authorization: Bearer <token>``;
without it they are only taken from a loopback client. A callback
(``/callbacks/{token}``, POST or GET) comes from the provider, so its token is
its only credential: single-use, issued by a check_report step, its body at
most ``CALLBACK_MAX`` bytes; anything else is 404 with nothing recorded.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from runner.daemon.health import Health
from runner.daemon.metrics import build_registry
from runner.engine.control import ACTIONS, request
from runner.errors import UsageError
from runner.journal.journal import Journal

TOKEN_ENV = "CAMPAIGN_RUNNER_HTTP_TOKEN"
_RUN_ACTION = re.compile(r"^/runs/([^/]+)/(" + "|".join(ACTIONS) + r")$")
_CALLBACK = re.compile(r"^/callbacks/([A-Za-z0-9_-]{20,100})$")
CALLBACK_MAX = 64 * 1024  # bytes of a callback's body

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
                health = {**state.as_dict(), "daemons": self._daemons()}
                body = json.dumps(health).encode()
                self._reply(200 if state.ok else 503, "application/json", body)
            elif _CALLBACK.match(path):
                self._callback(path)
            elif path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(200, content_type, encoder(self.server.registry))
            else:
                self._reply(404, "text/plain; charset=utf-8", b"not found\n")
        except Exception:  # a scrape must never take the daemon down
            log.exception("http: %s failed", path)
            self._reply(500, "text/plain; charset=utf-8", b"internal error\n")

    def _daemons(self) -> list[dict[str, Any]] | None:
        """Every daemon of the journal, as ``status`` shows them; None when the
        journal cannot be read now (the probe still answers for this one)."""
        try:
            rows = self.server.journal.daemons_now()
        except Exception:
            log.warning("http: /healthz could not read the daemons", exc_info=True)
            return None
        return [{**asdict(d), "alive": d.alive()} for d in rows]

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if _CALLBACK.match(path):
            try:
                self._callback(path)
            except Exception:  # a provider's call must never take the daemon down
                log.exception("http: callback failed")
                self._json(500, {"error": "internal error"})
            return
        match = _RUN_ACTION.match(path)
        if match is None:
            self._json(404, {"error": "not found"})
            return
        refused = self._refused()
        if refused is not None:
            self._json(*refused)
            return
        run_id, action = match.groups()
        client = self.client_address[0]
        try:
            answer = request(self.server.journal, run_id, action, f"http {client}")
        except UsageError as e:
            self._json(404 if str(e).startswith("no run") else 409, {"error": str(e)})
            return
        except Exception:  # a request must never take the daemon down
            log.exception("http: %s failed", path)
            self._json(500, {"error": "internal error"})
            return
        self._json(200, {"run_id": answer.run_id, "message": answer.message})

    def _callback(self, path: str) -> None:
        """A provider says a report is ready: mark its token's callback, once."""
        match = _CALLBACK.match(path)
        assert match is not None
        length = self.headers.get("Content-Length") or "0"
        size = int(length) if length.isdigit() else -1
        if not 0 <= size <= CALLBACK_MAX:
            self.close_connection = True  # the body is not read
            self._json(404, {"error": "not found"})
            return
        self.rfile.read(size)  # read (to keep the connection sane), not kept
        found = self.server.journal.receive_callback(match.group(1), size)
        if found is None:
            self._json(404, {"error": "not found"})
            return
        log.info("http: report callback for run %s step %s", *found)
        self._json(200, {"status": "OK"})

    def _refused(self) -> tuple[int, dict[str, str]] | None:
        """Why this client may not control runs (None: it may)."""
        token = os.environ.get(TOKEN_ENV)
        if token:
            given = self.headers.get("Authorization", "")
            if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return None
            return 401, {"error": "a valid Authorization: Bearer token is required"}
        if ipaddress.ip_address(self.client_address[0].split("%")[0]).is_loopback:
            return None
        return 403, {"error": f"only loopback clients, unless {TOKEN_ENV} is set"}

    def _json(self, status: int, body: dict[str, str]) -> None:
        self._reply(status, "application/json", json.dumps(body).encode() + b"\n")

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
    journal: Journal


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """``/healthz``, ``/metrics`` and the run controls on exactly the address
    given, in a thread."""

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
        self._server.journal = journal
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
