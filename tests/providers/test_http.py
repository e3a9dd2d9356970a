"""The providers' HTTP transport (runner/providers/http.py) against a real server."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from runner.model.campaign import ProviderConfig
from runner.providers.base import USER_AGENT, ErrorKind, Provider
from runner.providers.http import Response as HttpResponse
from runner.providers.http import Transport, taken


def transport(**kw: object) -> Transport:
    args: dict[str, object] = {
        "pool_size": 4,
        "timeout": (2.0, 2.0),
        "user_agent": "test-agent/1",
    }
    args.update(kw)
    return Transport(**args)  # type: ignore[arg-type]


def test_what_goes_on_the_wire(httpserver: HTTPServer) -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response('{"ok": true}', content_type="application/json")

    httpserver.expect_request("/send").respond_with_handler(handler)
    t = transport()
    url = httpserver.url_for("/send")
    r = t.request("POST", url, params={"a": "1 2"}, json={"to": "+34€"}, auth=("u", "p"))
    assert (r.status_code, taken(r), r.json()) == (200, True, {"ok": True})
    r = t.request("POST", url + "?x=1", data={"k": "v&w"}, headers={"X-Extra": "1"})
    first, second = seen
    assert first.args["a"] == "1 2"
    assert json.loads(first.get_data()) == {"to": "+34€"}
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["User-Agent"] == "test-agent/1"
    assert first.headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    assert second.args.to_dict() == {"x": "1"}
    assert second.form["k"] == "v&w"
    assert second.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert second.headers["X-Extra"] == "1"
    assert "Authorization" not in second.headers


class _KeepAlive(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    connections: ClassVar[set[int]] = set()

    def do_GET(self) -> None:
        self.connections.add(self.client_address[1])
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_connections_are_reused_across_calls_and_threads() -> None:
    _KeepAlive.connections.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/x"
    t = transport(pool_size=4)
    try:
        for _ in range(20):
            assert t.request("GET", url).text == "ok"
        assert len(_KeepAlive.connections) == 1  # not one connection per call
        with ThreadPoolExecutor(4) as pool:
            texts = list(pool.map(lambda _: t.request("GET", url).text, range(200)))
        assert texts == ["ok"] * 200
        assert len(_KeepAlive.connections) <= 4  # the pool's size, kept alive
    finally:
        server.shutdown()
        server.server_close()


def test_redirects_are_never_followed(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/send").respond_with_data(
        "", status=302, headers={"Location": httpserver.url_for("/elsewhere")}
    )
    r = transport().request("POST", httpserver.url_for("/send"), json={})
    assert r.status_code == 302 and not taken(r)  # only 2xx is taken
    assert [req.path for req, _ in httpserver.log] == ["/send"]


def test_text_is_decoded_with_the_declared_charset(httpserver: HTTPServer) -> None:
    """The declared charset, else UTF-8 (not requests' ISO-8859-1 for text/*, nor
    a guess); an unknown charset decodes as UTF-8 with replacements."""
    answers = {
        "/latin": (b"\xe9", "text/plain; charset=latin-1"),
        "/bare": ("é".encode(), "text/xml"),
        "/odd": (b"ok\xff", "text/plain; charset=nope"),
        "/html": (b"<html>", "text/html"),
    }
    for path, (body, ctype) in answers.items():
        httpserver.expect_request(path).respond_with_data(body, content_type=ctype)
    t = transport()
    texts = [t.request("GET", httpserver.url_for(p)).text for p in answers]
    assert texts[:3] == ["é", "é", "ok\ufffd"]
    with pytest.raises(ValueError):
        t.request("GET", httpserver.url_for("/html")).json()


def test_cookies_are_kept_only_when_asked(httpserver: HTTPServer) -> None:
    cookies: list[str | None] = []

    def handler(request: Request) -> Response:
        cookies.append(request.headers.get("Cookie"))
        resp = Response("ok")
        resp.set_cookie("SESSION", "abc", httponly=True)
        return resp

    httpserver.expect_request("/s").respond_with_handler(handler)
    jarred, plain = transport(cookies=True), transport()
    for t in (jarred, jarred, plain, plain):
        t.request("GET", httpserver.url_for("/s"))
    assert cookies == [None, "SESSION=abc", None, None]
    assert jarred.cookie("SESSION") == "abc"
    jarred.forget_cookies()
    assert jarred.cookie("SESSION") is None
    jarred.request("GET", httpserver.url_for("/s"))
    assert cookies[-1] is None


def test_a_proxy_from_the_environment_and_no_proxy(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets: list[str] = []

    def proxy(request: Request) -> Response:
        targets.append(request.environ.get("REQUEST_URI") or request.url)
        return Response("via proxy")

    httpserver.expect_request("/send").respond_with_handler(proxy)
    monkeypatch.setenv("http_proxy", httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("no_proxy", "bypass.invalid")
    t = transport()
    r = t.request("POST", "http://provider.invalid/send?a=1", json={})
    assert r.text == "via proxy"
    assert targets == ["http://provider.invalid/send?a=1"]  # absolute form, to the proxy
    bare = Bare.with_transport(t)
    err = bare.request("GET", "http://bypass.invalid/send")  # NO_PROXY: direct, no DNS
    assert not isinstance(err, HttpResponse) and err.code == "connection"
    assert len(targets) == 1


class Bare(Provider):
    """A provider with no API of its own: only the shared HTTP behaviour."""

    type = "bare"
    default_base_url = "http://127.0.0.1"

    @classmethod
    def with_transport(cls, t: Transport) -> Bare:
        p = cls(ProviderConfig(name="p", type="bare", base_url=None, options={}), {})
        p.http = t
        return p


# -- failures, classified for the exactly-once rule -------------------------------------


@pytest.fixture
def provider() -> Iterator[Provider]:
    config = ProviderConfig(
        name="p", type="bare", base_url=None, options={}, timeout=(1.0, 0.5)
    )
    p = Bare(config, {})
    yield p
    p.close()


def test_refused_connection_never_reached_the_provider(provider: Provider) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    err = provider.request("POST", f"http://127.0.0.1:{port}/send")
    assert not isinstance(err, HttpResponse)
    assert (err.kind, err.code, err.may_have_acted) == (
        ErrorKind.TRANSIENT,
        "connection",
        False,
    )
    assert err.retryable


def test_no_answer_in_time_may_have_acted(
    provider: Provider, httpserver: HTTPServer
) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response("late")

    httpserver.expect_request("/send").respond_with_handler(slow)
    err = provider.request("POST", httpserver.url_for("/send"))
    assert not isinstance(err, HttpResponse)
    assert (err.code, err.may_have_acted, err.retryable) == ("timeout", True, False)


@contextmanager
def one_answer(raw: bytes) -> Iterator[int]:
    """A server that reads one request, writes ``raw`` and hangs up; yields its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(raw)
        conn.close()

    th = threading.Thread(target=serve)
    th.start()
    try:
        yield srv.getsockname()[1]
    finally:
        th.join(timeout=5)
        srv.close()


def test_a_cut_answer_may_have_acted(provider: Provider) -> None:
    """The server reads the request, then answers half a body and hangs up."""
    with one_answer(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"id":') as port:
        err = provider.request("POST", f"http://127.0.0.1:{port}/send")
    assert not isinstance(err, HttpResponse)
    assert (err.code, err.may_have_acted, err.retryable) == ("connection", True, False)


def test_the_user_agent_names_the_runner(
    provider: Provider, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/ua").respond_with_handler(
        lambda r: Response(r.headers["User-Agent"])
    )
    r = provider.request("GET", httpserver.url_for("/ua"))
    assert isinstance(r, HttpResponse) and r.text == USER_AGENT


def test_tls_fails_cleanly_against_a_plain_server(provider: Provider) -> None:
    with one_answer(b"HTTP/1.1 400 Bad Request\r\n\r\n") as port:
        err = provider.request("GET", f"https://127.0.0.1:{port}/")
    assert not isinstance(err, HttpResponse)
    assert err.code == "tls"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl tool")
def test_tls_is_verified_against_the_ca_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A self-signed certificate is refused, unless ``ca_bundle`` names it, or
    the environment does (REQUESTS_CA_BUNDLE, as requests reads it)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_port}/"
    try:
        refused = Bare.with_transport(transport()).request("GET", url)
        assert not isinstance(refused, HttpResponse)
        assert refused.code == "tls" and "CERTIFICATE_VERIFY_FAILED" in refused.detail
        trusted = transport(ca_bundle=str(cert)).request("GET", url)
        assert (trusted.status_code, trusted.text) == (200, "ok")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        from_env = transport().request("GET", url)
        assert (from_env.status_code, from_env.text) == (200, "ok")
    finally:
        server.shutdown()
        server.server_close()


def test_tls_proxies_and_cookies_are_requests_own() -> None:
    """Nothing under runner/ re-does what requests does (issue 17): no CA bundle
    lookup, proxy environment or cookie jar of its own."""
    root = Path(__file__).resolve().parents[2] / "runner"
    for path in root.rglob("*.py"):
        text = path.read_text()
        for own in ("import certifi", "http.cookiejar", "getproxies", "proxy_bypass("):
            assert own not in text, f"{path.relative_to(root)} uses {own}"
