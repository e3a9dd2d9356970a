"""The sandbox HTTP server: one threaded server on 127.0.0.1 hosting every emulator.

Each emulator is mounted under ``/<mount>/`` (the provider's local name), so one
campaign may use two accounts of the same provider. The server keeps a record of
every request it received (``Sandbox.calls``) for tests and ``run --sandbox``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

from runner.audience.encoding import segment

log = logging.getLogger(__name__)


@dataclass
class Request:
    method: str
    path: str  # below the mount point, raw (still percent-encoded), e.g. /rest/api/...
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    cookies: dict[str, str] = field(default_factory=dict)

    def segments(self) -> list[str]:
        """Path segments, percent-decoded."""
        return [unquote(s) for s in self.path.strip("/").split("/")]

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8")).items()}


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, **headers: str) -> Response:
        return cls(status, json.dumps(data).encode("utf-8"), headers=dict(headers))

    @classmethod
    def xml(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode("utf-8"), "application/xml; charset=utf-8")

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode("utf-8"), "text/plain; charset=utf-8")


Handler = Callable[[Request, "re.Match[str]"], Response]


@dataclass(frozen=True)
class Call:
    """One request as the sandbox saw it: the server-side record."""

    at: float
    mount: str
    method: str
    path: str
    status: int
    body: bytes


@dataclass
class SentMessage:
    """One message an emulator accepted: the server-side truth tests assert on."""

    id: str
    to: str  # digits only, international, no + (as the emulators normalise it)
    text: str
    sender: str | None
    segments: int
    at: float  # the sandbox clock when accepted
    final_status: str  # "delivered" or "failed", reached ``settle`` seconds after ``at``
    extra: dict[str, Any] = field(default_factory=dict)


class Emulator:
    """Base of the per-provider emulators (one module per provider in sandbox/).

    ``credentials`` are the values a client must present (taken from the
    campaign's resolved provider options, so the sandbox rejects exactly what the
    real service would). State lives on the instance, guarded by ``self.lock``.

    Sandbox conventions, the same for every provider: a number ending in ``99``
    is accepted but its delivery fails; a message is ``queued`` for ``settle``
    seconds, then final; each accepted segment costs one credit.
    """

    type: ClassVar[str]

    def __init__(
        self,
        credentials: Mapping[str, Any] | None = None,
        *,
        credits: float = 10_000.0,
        settle: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = dict(credentials or {})
        self.credits = credits
        self.settle = settle
        self.clock = clock
        self.lock = threading.RLock()
        self.messages: list[SentMessage] = []
        # digits -> the text that number replies to any message it gets
        # (``sandbox: {replies: ...}``); providers with MO messages list it
        self.reply_texts: dict[str, str] = {}
        # digits the provider refuses as opted out, where it has such a refusal
        self.opted_out: set[str] = set()
        self._next_id = 0
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.setup()

    def accept(
        self, to: str, text: str, sender: str | None = None, **extra: Any
    ) -> SentMessage | None:
        """Record an accepted message and charge for it; None when out of credits."""

        segments = segment(text).segments
        with self.lock:
            if self.credits < segments:
                return None
            self.credits -= segments
            self._next_id += 1
            msg = SentMessage(
                id=self.new_id(self._next_id),
                to=to.lstrip("+"),
                text=text,
                sender=sender,
                segments=segments,
                at=self.clock(),
                final_status="failed" if to.endswith("99") else "delivered",
                extra=extra,
            )
            self.messages.append(msg)
        answer = self.reply_texts.get(msg.to)
        if answer is not None:
            self.reply(msg, answer)
        return msg

    def reply(self, msg: SentMessage, text: str) -> None:
        """The recipient of ``msg`` answers ``text`` (a second later): providers
        with incoming (MO) messages store it; the others have nowhere to."""

    def new_id(self, n: int) -> str:
        """The provider's message id for the n-th accepted message."""
        return str(n)

    def status_of(self, msg: SentMessage) -> str:
        """``queued`` until ``settle`` seconds have passed, then the final status."""
        return msg.final_status if self.clock() - msg.at >= self.settle else "queued"

    def setup(self) -> None:
        """Register routes with ``self.route``; set up state."""

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(pattern), handler))

    def urls(self, root: str) -> dict[str, str]:
        """Provider options (``base_url`` and any extra endpoints) pointing here."""
        return {"base_url": root}

    def dispatch(self, req: Request) -> Response:
        allowed = False
        for method, pattern, handler in self._routes:
            m = pattern.fullmatch(req.path)
            if m is None:
                continue
            if method != req.method:
                allowed = True
                continue
            return handler(req, m)
        if allowed:
            return Response.text("method not allowed", 405)
        return Response.text("not found", 404)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # http.server writes headers and body separately: without TCP_NODELAY every
    # keep-alive request stalls ~40 ms on delayed ACK (shared/PERFORMANCE.md).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox: " + format, *args)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        mount, _, rest = parts.path.lstrip("/").partition("/")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        cookies = {}
        for chunk in (self.headers.get("Cookie") or "").split(";"):
            k, _, v = chunk.strip().partition("=")
            if k:
                cookies[k] = v
        req = Request(
            self.command,
            "/" + rest,
            parse_qs(parts.query, keep_blank_values=True),
            {k.lower(): v for k, v in self.headers.items()},
            body,
            cookies,
        )
        sandbox = self.server.sandbox
        if mount == "_sandbox":  # the server-side record, for tests and benchmarks
            self._reply(sandbox.admin(req))
            return
        emulator = sandbox.emulators.get(mount)
        if sandbox.latency:
            time.sleep(sandbox.latency)
        fault = sandbox.faults(mount, req) if sandbox.faults else None
        if fault is not None and fault.drop:
            # the request is lost after it was received: the client times out
            time.sleep(fault.hang)
            self.close_connection = True
            return
        if fault is not None and fault.response is not None:
            resp = fault.response
        elif emulator is None:
            resp = Response.text(f"no emulator mounted at /{mount}", 404)
        else:
            try:
                resp = emulator.dispatch(req)
            except Exception:  # a bug in an emulator must not kill the server
                log.exception("sandbox emulator %s failed", mount)
                resp = Response.text("emulator error", 500)
            if fault is not None and fault.mangle is not None:
                resp = fault.mangle(resp)
        sandbox._record(
            Call(time.time(), mount, self.command, req.path, resp.status, body)
        )
        self._reply(resp)

    def _reply(self, resp: Response) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    sandbox: Sandbox


@dataclass
class Fault:
    """What the fault injector decided for one request (see sandbox.faults)."""

    response: Response | None = None  # answer this instead of the emulator
    mangle: Callable[[Response], Response] | None = None  # corrupt the real answer
    drop: bool = False  # never answer (after ``hang`` seconds, close)
    hang: float = 0.0


FaultInjector = Callable[[str, Request], Fault | None]


class Sandbox:
    """The emulators behind one HTTP server on 127.0.0.1 (port 0: any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulators: dict[str, Emulator] = {}
        self.latency = 0.0
        self.faults: FaultInjector | None = None
        self.calls: list[Call] = []
        self._calls_lock = threading.Lock()
        self._server = _Server((host, port), _Handler)
        self._server.sandbox = self
        self._thread: threading.Thread | None = None

    @property
    def root(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def mount(self, name: str, emulator: Emulator) -> dict[str, str]:
        """Serve ``emulator`` under ``/<name>/``; returns its URL options."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"bad mount name {name!r}")
        self.emulators[name] = emulator
        return emulator.urls(f"{self.root}/{name}")

    def admin(self, req: Request) -> Response:
        """``/_sandbox/calls`` and ``/_sandbox/messages``: what the sandbox received."""
        if req.path == "/calls":
            with self._calls_lock:
                calls = [
                    {"at": c.at, "mount": c.mount, "method": c.method, "status": c.status}
                    for c in self.calls
                ]
            return Response.json(calls)
        if req.path == "/messages":
            out = {}
            for name, emulator in self.emulators.items():
                with emulator.lock:
                    # a PIN is shown as the phone would show it
                    out[name] = [
                        {"id": m.id, "to": m.to, "text": m.text, "at": m.at}
                        | ({"pin": m.extra["pin"]} if "pin" in m.extra else {})
                        for m in emulator.messages
                    ]
            return Response.json(out)
        return Response.text("not found", 404)

    def _record(self, call: Call) -> None:
        with self._calls_lock:
            self.calls.append(call)

    def start(self) -> Sandbox:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
