"""The providers' HTTP transport: one ``requests.Session`` per provider, explicit
timeouts, no retries, no redirects.

TLS verification, the CA bundle (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``,
certifi), proxies with ``NO_PROXY`` and the cookie jar are requests' own. A call
skips ``Session.request`` and goes through the session's own adapter: the
request is prepared with requests' ``PreparedRequest``, the environment's
settings come from ``Session.merge_environment_settings`` (read once per origin,
not on every call) and ``HTTPAdapter.send`` sends it on the adapter's pool. That
keeps the per-call work that requests does on top (settings merged again,
hooks, redirect handling) off the send path, where it used to cap throughput
(``bench/throughput.py``).

The engine owns retries (it knows which calls may have acted), so the adapter
retries nothing. Redirects are never followed: none of the documented APIs
redirects, and following one on a send would replay a non-idempotent call to
somewhere else. The body is read before a call returns, so every failure to
read it is a failure of the call (classified by ``Provider.request``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from requests.utils import (
    check_header_validity,
    get_encoding_from_headers,
    select_proxy,
)
from urllib3.exceptions import ClosedPoolError
from urllib3.util import Timeout

Params = Mapping[str, Any] | None
Response = requests.Response


def taken(resp: Response) -> bool:
    """2xx: the request was taken (a 3xx is not followed, so it was not)."""
    return 200 <= resp.status_code < 300


class Transport:
    """Pooled HTTP(S) for one provider, safe to share between sender threads.

    ``pool_size`` connections are kept per origin, so a send with concurrency N
    never opens a connection per message. ``cookies`` keeps a session's cookies
    (Tellody's login) in the session's jar; without it none are kept.
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
        self.session = requests.Session()
        self.adapter = HTTPAdapter(
            pool_connections=8, pool_maxsize=pool_size, max_retries=0
        )
        self.session.mount("http://", self.adapter)
        self.session.mount("https://", self.adapter)
        # never off for a provider: a CA bundle of the provider's, else the
        # environment's (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE), else certifi
        self.verify: str | bool = ca_bundle or True
        self.timeout = timeout
        self.headers = {
            "User-Agent": user_agent,
            "Accept-Encoding": "gzip, deflate",
            "Accept": "*/*",
        }
        for header in self.headers.items():
            check_header_validity(header)
        self._headers = CaseInsensitiveDict(self.headers)
        self.keeps_cookies = cookies
        self._timeout = Timeout(connect=timeout[0], read=timeout[1])
        self._routes: dict[tuple[str, str], tuple[Any, bool, Any]] = {}
        self._lock = threading.Lock()

    @property
    def cookies(self) -> requests.cookies.RequestsCookieJar | None:
        return self.session.cookies if self.keeps_cookies else None

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
        """One call, its body read; raises requests' exceptions for failures
        below HTTP."""
        # PreparedRequest.prepare() step by step, without the hooks and cookie
        # jar a call without them does not need (a tenth of a send's CPU)
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method)
        if params or not url.isascii():
            prepared.prepare_url(url, params)
        else:  # built already quoted by the provider: requests would re-quote it
            prepared.url = url
        if headers:
            prepared.prepare_headers({**self.headers, **headers})
        else:  # ours, checked once
            prepared.headers = self._headers.copy()
        if self.keeps_cookies:
            prepared.prepare_cookies(self.session.cookies)
        prepared.prepare_body(data or None, None, json)
        if auth is not None:
            prepared.prepare_auth(auth, url)
        call_timeout = (
            self._timeout
            if timeout is None
            else Timeout(connect=timeout[0], read=timeout[1])
        )
        for _ in range(2):
            pool, target = self._route(prepared)
            try:
                raw = pool.urlopen(
                    method,
                    target,
                    body=prepared.body,
                    headers=prepared.headers,
                    redirect=False,
                    assert_same_host=False,
                    preload_content=True,  # read now: a cut body fails this call
                    decode_content=True,
                    retries=self.adapter.max_retries,
                    timeout=call_timeout,
                )
                break
            except ClosedPoolError:  # evicted from the adapter: nothing was sent
                self._routes.clear()
        else:
            raise ClosedPoolError(None, "connection pool closed")  # type: ignore[arg-type]
        resp = _response(prepared, raw)
        if self.keeps_cookies:
            extract_cookies_to_jar(self.session.cookies, prepared, raw)
        return resp

    def cookie(self, name: str) -> str | None:
        return self.session.cookies.get(name) if self.keeps_cookies else None

    def forget_cookies(self) -> None:
        self.session.cookies.clear()

    def close(self) -> None:
        self.session.close()

    def _route(self, prepared: requests.PreparedRequest) -> tuple[Any, str]:
        """The adapter's connection pool for the request's origin (through a
        proxy from the environment unless NO_PROXY says not) and what to ask it:
        settled once per origin, as ``Session.send`` would settle it every call."""
        url = str(prepared.url)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        route = self._routes.get(key)
        if route is None:
            with self._lock:
                env = self.session.merge_environment_settings(
                    url, {}, False, self.verify, None
                )
                pool = self.adapter.get_connection_with_tls_context(
                    prepared, env["verify"], env["proxies"], env["cert"]
                )
                proxied = bool(select_proxy(url, env["proxies"]))
                route = self._routes[key] = (pool, proxied, env["proxies"])
        pool, proxied, proxies = route
        target = (
            self.adapter.request_url(prepared, proxies) if proxied else prepared.path_url
        )
        return pool, target


def _response(prepared: requests.PreparedRequest, raw: Any) -> Response:
    """requests' Response of a urllib3 answer, as ``HTTPAdapter.build_response``
    makes it, its body already read; with no declared charset, UTF-8 (not
    requests' guess, nor ISO-8859-1 for text/*)."""
    resp = Response()
    resp.status_code = raw.status
    resp.headers = CaseInsensitiveDict(raw.headers)
    resp.encoding = get_encoding_from_headers(resp.headers)
    if "charset" not in resp.headers.get("Content-Type", "").lower():
        resp.encoding = "utf-8"
    resp.raw = raw
    resp.reason = raw.reason
    resp.url = str(prepared.url)
    resp.request = prepared
    resp._content = raw.data
    resp._content_consumed = True  # type: ignore[attr-defined]
    return resp
