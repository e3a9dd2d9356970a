"""The providers' HTTP transport: urllib3 pools, explicit timeouts, no redirects.

Why urllib3 and not ``requests.Session``: a send is one small request, and the
session's per-call work (settings merge, hooks, cookie extraction, model objects)
doubled the client CPU of a send; with 32 sender threads sharing one GIL that was the
runner's throughput ceiling (``bench/throughput.py``, latency case). urllib3 is what
requests sends with, so pooling, TLS verification and proxies behave as they did.

Redirects are never followed: none of the documented APIs redirects, and following
one on a send would replay a non-idempotent call to somewhere else.
"""

from __future__ import annotations

import http.cookiejar
import json as jsonlib
import os
import threading
import urllib.request
from base64 import b64encode
from collections.abc import Mapping
from email.message import Message
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit

import certifi
import urllib3
from urllib3.util import Timeout

Params = Mapping[str, Any] | None


class Response:
    """What a provider reads of an answer: status, headers, body."""

    __slots__ = ("_text", "content", "headers", "status_code", "url")

    def __init__(
        self, status_code: int, headers: Mapping[str, str], content: bytes, url: str
    ) -> None:
        self.status_code = status_code
        self.headers = headers  # case-insensitive (urllib3's HTTPHeaderDict)
        self.content = content
        self.url = url
        self._text: str | None = None

    @property
    def ok(self) -> bool:
        """2xx: the request was taken (a redirect is not followed, so it was not)."""
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        """The body decoded with its declared charset (UTF-8 when none is given);
        undecodable bytes are replaced, since text is only ever quoted."""
        if self._text is None:
            msg = Message()
            msg["Content-Type"] = self.headers.get("Content-Type", "")
            charset = msg.get_content_charset() or "utf-8"
            try:
                self._text = self.content.decode(charset, errors="replace")
            except LookupError:  # an unknown charset name
                self._text = self.content.decode("utf-8", errors="replace")
        return self._text

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not."""
        return jsonlib.loads(self.content)


class Transport:
    """Pooled HTTP(S) for one provider, safe to share between sender threads.

    ``pool_size`` connections are kept per origin, so a send with concurrency N
    never opens a connection per message. The environment (proxies, CA bundle) is
    read once here, not on every call. ``cookies`` keeps a session's cookies
    (Tellody's login) in a standard cookie jar.
    """

    def __init__(
        self,
        *,
        pool_size: int,
        timeout: tuple[float, float],
        user_agent: str,
        ca_bundle: str | None = None,
        cookies: bool = False,
    ) -> None:
        env_ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        self._pool_kw: dict[str, Any] = {
            "maxsize": pool_size,
            "cert_reqs": "CERT_REQUIRED",  # never off for a provider
            "ca_certs": ca_bundle or env_ca or certifi.where(),
        }
        self.timeout = Timeout(connect=timeout[0], read=timeout[1])
        self.user_agent = user_agent
        self.cookies = http.cookiejar.CookieJar() if cookies else None
        self._proxies = urllib.request.getproxies_environment()
        self._direct = urllib3.PoolManager(num_pools=4, **self._pool_kw)
        self._via: dict[str, urllib3.ProxyManager] = {}
        self._routes: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Params = None,
        json: Any = None,
        data: Params = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> Response:
        """One call; raises urllib3's exceptions for failures below HTTP."""
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
        hdrs = {
            "User-Agent": self.user_agent,
            "Accept-Encoding": "gzip, deflate",
            "Accept": "*/*",
        }
        body: bytes | None = None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            hdrs["Content-Type"] = "application/json"
        elif data is not None:
            body = urlencode(data, doseq=True).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        if auth is not None:
            pair = f"{auth[0]}:{auth[1]}".encode()
            hdrs["Authorization"] = "Basic " + b64encode(pair).decode()
        if headers:
            hdrs.update(headers)
        cookie_req = None
        if self.cookies is not None:
            cookie_req = urllib.request.Request(url, method=method)
            self.cookies.add_cookie_header(cookie_req)
            if cookie := cookie_req.get_header("Cookie"):
                hdrs["Cookie"] = cookie
        route, target = self._route(url)
        raw = route.urlopen(
            method,
            target,
            body=body,
            headers=hdrs,
            redirect=False,
            retries=False,
            assert_same_host=False,
            timeout=self.timeout
            if timeout is None
            else Timeout(connect=timeout[0], read=timeout[1]),
            preload_content=True,
        )
        if cookie_req is not None and self.cookies is not None:
            # the jar reads only .info().get_all() of the response it is given
            source: Any = _CookieSource(raw.headers)
            self.cookies.extract_cookies(source, cookie_req)
        return Response(raw.status, raw.headers, raw.data, url)

    def cookie(self, name: str) -> str | None:
        for c in self.cookies or ():
            if c.name == name:
                return c.value
        return None

    def forget_cookies(self) -> None:
        if self.cookies is not None:
            self.cookies.clear()

    def close(self) -> None:
        self._direct.clear()
        for manager in self._via.values():
            manager.clear()

    def _route(self, url: str) -> tuple[Any, str]:
        """The pool for ``url``'s origin and what to ask it (a path, or the whole
        URL through a proxy), cached per origin."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        pool = self._routes.get(key)
        if pool is None:
            with self._lock:
                pool = self._routes[key] = self._new_route(parts.scheme, parts)
        if isinstance(pool, urllib3.ProxyManager):
            return pool, url
        path = parts.path or "/"
        return pool, f"{path}?{parts.query}" if parts.query else path

    def _new_route(self, scheme: str, parts: SplitResult) -> Any:
        host = parts.hostname
        proxy = self._proxies.get(scheme)
        if proxy and host and not urllib.request.proxy_bypass(host):  # NO_PROXY
            if proxy not in self._via:
                self._via[proxy] = urllib3.ProxyManager(proxy, **self._pool_kw)
            return self._via[proxy]
        return self._direct.connection_from_host(host, port=parts.port, scheme=scheme)


class _CookieSource:
    """The two methods of a urllib response that ``CookieJar.extract_cookies`` uses."""

    def __init__(self, headers: Any) -> None:
        self._headers = headers

    def info(self) -> _CookieSource:
        return self

    def get_all(self, name: str, default: Any = None) -> Any:
        return self._headers.getlist(name) or default
