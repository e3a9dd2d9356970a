"""MailUp's OAuth2 bearer token for the console API: the password grant, the refresh
grant, renewal before expiry and once after a 401 (shared/provider-docs/
mailup-sms-reports-credits.txt, NOTES.md).

One cache per provider, shared by every thread; a single renewal at a time. Each
refresh answer carries a NEW refresh token (the old one is single use). Token
answers are never quoted in an error: they may hold the tokens themselves.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.providers.base import (
    CallError,
    ErrorKind,
    ProviderCallError,
    excerpt,
    http_error,
    json_object,
)
from runner.providers.http import Response

log = logging.getLogger(__name__)

# Provider.request: one HTTP call, or the CallError of a failure below HTTP
Request = Callable[..., Response | CallError]


@dataclass(frozen=True)
class _Token:
    access: str
    refresh: str | None
    refresh_at: float  # on the cache's clock: renew from here on (before expiry)


class TokenCache:
    """Bearer tokens from ``token_url`` for the client and user that ``require``
    returns (client_id, client_secret, username, password).

    ``clean`` makes an error secret-free; ``learned`` is told every new token so
    the provider can mask it in quoted text. ``clock`` (seconds) is injectable.
    """

    def __init__(
        self,
        *,
        name: str,
        token_url: str,
        request: Request,
        require: Callable[[str], Any],
        margin: float,
        clean: Callable[[CallError], CallError],
        learned: Callable[[list[str]], None],
    ) -> None:
        self.name = name
        self.token_url = token_url
        self.clock: Callable[[], float] = time.monotonic
        self._request = request
        self._require = require
        self._margin = margin
        self._clean = clean
        self._learned = learned
        self._token: _Token | None = None
        self._lock = threading.Lock()

    def get(self, url: str, params: Mapping[str, Any] | None) -> Response:
        """GET ``url`` with the bearer token; renewed and retried once after a 401
        (expired or revoked before our clock says so). Raises ProviderCallError
        for failures below HTTP."""
        token = self.bearer()
        resp = self._get(url, params, token)
        if resp.status_code == 401:
            log.debug("mailup %s: token refused, renewing it", self.name)
            resp = self._get(url, params, self.bearer(stale=token))
        return resp

    def bearer(self, stale: str | None = None) -> str:
        """A valid access token: cached, renewed before expiry or when ``stale``
        (the one the server just refused) is still the current one."""
        with self._lock:
            tok = self._token
            if tok is not None and tok.access != stale and self.clock() < tok.refresh_at:
                return tok.access
            new: _Token | None = None
            if tok is not None and tok.refresh:
                try:
                    new = self._grant(
                        {"grant_type": "refresh_token", "refresh_token": tok.refresh}
                    )
                except ProviderCallError as e:  # refused or failed: log in again
                    log.debug("mailup %s: refresh failed (%s)", self.name, e)
            if new is None:
                new = self._grant(
                    {
                        "grant_type": "password",
                        "username": str(self._require("username")),
                        "password": str(self._require("password")),
                    }
                )
            self._token = new
            return new.access

    def _get(self, url: str, params: Mapping[str, Any] | None, token: str) -> Response:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        resp = self._request("GET", url, params=params, headers=headers)
        if isinstance(resp, CallError):
            raise ProviderCallError(self._clean(resp))
        return resp

    def _grant(self, form: dict[str, str]) -> _Token:
        form = {
            **form,
            "client_id": str(self._require("client_id")),
            "client_secret": str(self._require("client_secret")),
        }
        started = self.clock()
        resp = self._request(
            "POST", self.token_url, data=form, headers={"Accept": "application/json"}
        )
        if isinstance(resp, CallError):
            raise ProviderCallError(self._clean(resp))
        data = json_object(resp)
        if resp.status_code != 200:
            error = http_error(resp)  # its detail is replaced: never quoted
            if resp.status_code in (400, 401):  # invalid_grant / invalid_client
                code = str((data or {}).get("error") or f"HTTP {resp.status_code}")
                error = CallError(ErrorKind.AUTH, excerpt(code, 40), "token refused")
            else:
                error = dataclasses.replace(error, detail="token endpoint failed")
            raise ProviderCallError(self._clean(error))
        access = (data or {}).get("access_token")
        if not isinstance(access, str) or not access:
            what = f"keys {sorted(data)}" if data is not None else "not JSON"
            raise ProviderCallError(
                CallError(
                    ErrorKind.PROTOCOL,
                    "protocol",
                    f"token answer without access_token ({what})",
                )
            )
        assert data is not None
        refresh = data.get("refresh_token")
        lifetime = _seconds(data.get("expires_in")) or 3600.0
        margin = min(self._margin, lifetime / 2)
        self._learned([access, refresh] if isinstance(refresh, str) else [access])
        log.debug("mailup %s: new access token, %.0fs", self.name, lifetime)
        return _Token(
            access,
            refresh if isinstance(refresh, str) and refresh else None,
            started + lifetime - margin,
        )


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
