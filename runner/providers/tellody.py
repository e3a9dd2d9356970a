"""Tellody: one session with an XSRF token; messaging/code statistics and credits
(shared/provider-docs/tellody-report-uniquecode.txt and NOTES.md).

Sending is not offered: ``CampaignCloud/Config`` sends to contact ids and groups,
not to numbers, and its response format is undocumented, so a per-recipient send
could not be made honest. Tellody is a report and credits provider.

Session: ``RememberMeController/ping`` hands out the ``X-XSRF-TOKEN`` header, a
form login makes the session cookie authenticated, and every POST carries the
token. When the server refuses the session or the token (401, 403, or a redirect
to its login page) the session is opened again once and the call retried; both
calls are read-only, so a retry cannot do anything twice. Threads share the one
session: the first to see a refusal opens the new one, the others reuse it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from runner.errors import ProviderError
from runner.model.campaign import ProviderConfig
from runner.model.secrets import Redactor
from runner.providers.base import (
    Balance,
    CallError,
    Capability,
    ErrorKind,
    Provider,
    ProviderCallError,
    Report,
    ReportQuery,
    excerpt,
    http_error,
    json_object,
    protocol_error,
)
from runner.providers.http import Response

log = logging.getLogger(__name__)

PING = "/CampaignCloud/RememberMeController/ping"
LOGIN = "/CampaignCloud/login"
UNIQUE_CODE = "/CampaignCloud/Report/UniqueCode"
USER_INFO = "/CampaignCloud/UserInfo"
XSRF = "X-XSRF-TOKEN"
COUNTS = ("SMS_SENT", "DL", "OPTOUT", "URL", "VOUCHER", "EMAIL_SENT")
UNITS = ("hour", "day", "week", "month")

# Option defaults (schemas/providers/tellody.schema.json says the same).
DEFAULTS: Mapping[str, Any] = {"unit": "day", "remember_me": True}


class Tellody(Provider):
    type = "tellody"
    defaults = DEFAULTS
    service_name = "Tellody"
    capabilities = frozenset({Capability.REPORT, Capability.CREDITS})
    schema = "providers/tellody.schema.json"
    default_base_url = "https://app.tellody.com"
    secret_options = ("password",)
    keeps_cookies = True  # the login session (JSESSIONID, XSRF-TOKEN)
    optout_counts = True  # the statistics' OPTOUT

    def __init__(self, config: ProviderConfig, options: Mapping[str, Any]) -> None:
        super().__init__(config, options)
        self._xsrf: str | None = None
        self._session_lock = threading.Lock()
        self._secrets = [str(options[k]) for k in self.secret_options if options.get(k)]

    # -- capabilities -------------------------------------------------------------

    def report(self, query: ReportQuery, cursor: Any = None) -> Report:
        """Report/UniqueCode for the query's window: final at once (these are
        statistics, not a job); counts SMS_SENT, DL, OPTOUT, URL, VOUCHER, EMAIL_SENT."""
        unit = str(query.options.get("unit") or self.option("unit"))
        if unit not in UNITS:
            raise ProviderError(
                f"provider {self.config.name!r}: unit must be one of "
                f"{', '.join(UNITS)}, not {excerpt(unit, 20)!r}"
            )
        body = {"from": _ms(query.since), "to": _ms(query.until), "unit": unit, "dow": 0}
        data = self._json(self._authed("POST", UNIQUE_CODE, body), "Report/UniqueCode")
        counts: dict[str, float] = {}
        for key in COUNTS:
            if key in data:
                counts[key] = _number(data[key], f"Report/UniqueCode {key}", data)
        if not counts:
            raise ProviderCallError(_shape("Report/UniqueCode", data))
        details = {"from": body["from"], "to": body["to"], "unit": unit}
        return Report(final=True, counts=counts, details=details)

    def balance(self) -> Balance:
        """creditsAvailable from UserInfo (creditsSpent in the details)."""
        data = self._json(self._authed("GET", USER_INFO), "UserInfo")
        if "creditsAvailable" not in data:
            raise ProviderCallError(_shape("UserInfo", data))
        credits = _number(data["creditsAvailable"], "UserInfo creditsAvailable", data)
        details: dict[str, Any] = {}
        if "creditsSpent" in data:
            details["credits_spent"] = _number(data["creditsSpent"], "creditsSpent", data)
        return Balance(credits, "credits", details)

    # -- the session ----------------------------------------------------------------

    def _authed(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> Response:
        """One call in the session; opened again and retried once when refused."""
        token = self._open()
        resp = self._call(method, path, token, body)
        if _refused(resp):
            log.debug(
                "tellody %s: session refused (%s)", self.config.name, resp.status_code
            )
            token = self._open(stale=token)
            resp = self._call(method, path, token, body)
            if _refused(resp):
                raise ProviderCallError(
                    dataclasses.replace(
                        self._http_error(resp),
                        kind=ErrorKind.AUTH,
                        code=f"HTTP {resp.status_code}",
                    )
                )
        if resp.status_code != 200:
            raise ProviderCallError(self._http_error(resp))
        return resp

    def _call(
        self, method: str, path: str, token: str, body: Mapping[str, Any] | None
    ) -> Response:
        headers = {"Accept": "application/json"}
        if method == "POST":  # the documented rule: the token on every POST
            headers[XSRF] = token
        resp = self.request(
            method,
            self.base_url + path,
            headers=headers,
            json=body,
        )
        if isinstance(resp, CallError):
            raise ProviderCallError(self._clean(resp))
        return resp

    def _open(self, stale: str | None = None) -> str:
        """The session's XSRF token; ping and log in unless it is open and not the
        ``stale`` one the server just refused (another thread may have renewed it)."""
        with self._session_lock:
            if self._xsrf is not None and self._xsrf != stale:
                return self._xsrf
            self._xsrf = None
            self.http.forget_cookies()
            token = self._login(self._ping())
            self._xsrf = token
            log.debug("tellody %s: session opened", self.config.name)
            return token

    def _ping(self) -> str:
        resp = self.request("GET", self.base_url + PING)
        if isinstance(resp, CallError):
            raise ProviderCallError(self._clean(resp))
        if resp.status_code != 200:
            raise ProviderCallError(self._http_error(resp))
        # Spring's cookie token repository sends it as the XSRF-TOKEN cookie instead
        token = resp.headers.get(XSRF) or self.http.cookie("XSRF-TOKEN")
        if not token:
            raise ProviderCallError(
                CallError(ErrorKind.PROTOCOL, "protocol", f"ping answer without {XSRF}")
            )
        return str(token)

    def _login(self, token: str) -> str:
        """Form login; returns the token to use from now on (a rotated one if the
        answer carries it). Login answers are never quoted: they concern secrets."""
        form = {
            "username": str(self.require("username")),
            "password": str(self.require("password")),
            "remember-me": "true" if _truthy(self.option("remember_me")) else "false",
        }
        resp = self.request(
            "POST",
            self.base_url + LOGIN,
            data=form,
            headers={XSRF: token, "Accept": "application/json"},
        )
        if isinstance(resp, CallError):
            raise ProviderCallError(self._clean(resp))
        data = json_object(resp)
        if resp.status_code in (401, 403) or (data or {}).get("access-denied"):
            cause = (data or {}).get("cause") or f"HTTP {resp.status_code}"
            raise ProviderCallError(
                CallError(
                    ErrorKind.AUTH, excerpt(self._redact(str(cause)), 40), "login refused"
                )
            )
        if resp.status_code != 200:
            error = http_error(resp)
            raise ProviderCallError(dataclasses.replace(error, detail="login failed"))
        if data is None or data.get("status") != "success":
            what = f"keys {sorted(data)}" if data is not None else "not JSON"
            raise ProviderCallError(
                CallError(
                    ErrorKind.PROTOCOL, "protocol", f"unexpected login answer ({what})"
                )
            )
        return str(resp.headers.get(XSRF) or token)

    # -- helpers --------------------------------------------------------------------

    def _json(self, resp: Response, what: str) -> dict[str, Any]:
        data = json_object(resp)
        if data is None:
            raise ProviderCallError(
                protocol_error(
                    f"{what} answer is not a JSON object", self._redact(resp.text)
                )
            )
        return data

    def _redact(self, text: str) -> str:
        """Mask the password and the session's token and cookies in quoted text
        (Spring's 403 page echoes the token it refused)."""
        values = [*self._secrets, *(c.value or "" for c in self.http.cookies or ())]
        if self._xsrf:
            values.append(self._xsrf)
        return Redactor(values)(text)

    def _http_error(self, resp: Response) -> CallError:
        error = http_error(resp)
        return dataclasses.replace(error, detail=excerpt(self._redact(resp.text)))

    def _clean(self, error: CallError) -> CallError:
        """Secret-free, and never "may have acted": every call here is read-only."""
        error = dataclasses.replace(error, may_have_acted=False)
        detail = self._redact(error.detail)
        return (
            error if detail == error.detail else dataclasses.replace(error, detail=detail)
        )


def _refused(resp: Response) -> bool:
    """The session or the token was refused (or we were sent to the login page)."""
    return resp.status_code in (401, 403) or 300 <= resp.status_code < 400


def _number(value: Any, what: str, data: Mapping[str, Any]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProviderCallError(_shape(what, data))
    return float(value)


def _shape(what: str, data: Any) -> CallError:
    keys = sorted(data) if isinstance(data, dict) else type(data).__name__
    return CallError(ErrorKind.PROTOCOL, "protocol", f"{what}: unexpected shape ({keys})")


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes", "on")


def _ms(when: datetime) -> int:
    """Epoch milliseconds (naive datetimes are UTC)."""
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)
