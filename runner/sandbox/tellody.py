"""Tellody emulator: session cookie + XSRF token, form login, code statistics and
credits (shared/provider-docs/tellody-report-uniquecode.txt and NOTES.md).

Tellody's CampaignCloud is a Spring application, and where the documents are
silent the emulator answers as Spring Security does: a ``JSESSIONID`` cookie, a
CSRF token bound to that session (issued by ``RememberMeController/ping`` in the
``X-XSRF-TOKEN`` header), 403 "Invalid CSRF Token" for a POST without the
session's token, a new session id after login (the token carried over), and the
JSON error body ``{timestamp, status, error, message, path}``. The remember-me
cookie is not emulated: an expired session needs a new login.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from runner.sandbox.server import Emulator, Request, Response

PREFIX = "/CampaignCloud"
KINDS = ("SMS_SENT", "DL", "OPTOUT", "URL", "VOUCHER", "EMAIL_SENT")
UNITS = ("hour", "day", "week", "month")
_ANSWER_ORDER = ("OPTOUT", "DL", "VOUCHER", "SMS_SENT", "URL", "EMAIL_SENT")  # the docs'


@dataclass
class _Session:
    xsrf: str
    seen: float  # the clock at the last request (sessions expire when idle)
    user: str | None = None
    remember_me: str | None = None


class TellodyEmulator(Emulator):
    """Sessions expire after ``session_lifetime`` idle seconds (or at once with
    ``expire_sessions()``); statistics count the events given to ``add_event``;
    ``denied_status`` is the HTTP status of a refused login (its body is always
    the documented ``{"access-denied":true,"cause":"badCredentials"}``).
    ``logins`` records each login attempt's outcome, for tests.
    """

    type = "tellody"

    def __init__(
        self,
        credentials: Mapping[str, Any] | None = None,
        *,
        credits: float = 10_000.0,
        settle: float = 1.0,
        clock: Callable[[], float] = time.time,
        session_lifetime: float = 1800.0,
        credits_spent: float = 0.0,
        denied_status: int = 401,
    ) -> None:
        self.session_lifetime = session_lifetime
        self.credits_spent = credits_spent
        self.denied_status = denied_status
        super().__init__(credentials, credits=credits, settle=settle, clock=clock)

    def setup(self) -> None:
        self.events: list[tuple[str, float]] = []
        self.logins: list[bool] = []
        self._sessions: dict[str, _Session] = {}
        self._cookie_path = PREFIX
        p = re.escape(PREFIX)
        self.route("GET", p + "/RememberMeController/ping", self._ping)
        self.route("POST", p + "/login", self._login)
        self.route("POST", p + "/Report/UniqueCode", self._unique_code)
        self.route("GET", p + "/UserInfo", self._user_info)

    def urls(self, root: str) -> dict[str, str]:
        self._cookie_path = urlsplit(root).path.rstrip("/") + PREFIX
        return {"base_url": root}

    def add_event(
        self, kind: str, at: float | datetime | None = None, count: int = 1
    ) -> None:
        """``count`` events of ``kind`` (SMS_SENT, DL, OPTOUT...) at ``at`` (the
        emulator clock or a datetime; default now), for Report/UniqueCode."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r} (one of {', '.join(KINDS)})")
        when = at.timestamp() if isinstance(at, datetime) else at
        with self.lock:
            stamp = self.clock() if when is None else when
            self.events.extend([(kind, stamp)] * count)

    def expire_sessions(self) -> None:
        with self.lock:
            self._sessions.clear()

    # -- sessions -------------------------------------------------------------------

    def _session(self, req: Request) -> tuple[str, _Session] | None:
        """The live session of the request's cookie (touched), or None."""
        sid = req.cookies.get("JSESSIONID", "")
        with self.lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            now = self.clock()
            if now - session.seen >= self.session_lifetime:
                del self._sessions[sid]
                return None
            session.seen = now
            return sid, session

    def _new_session(self, carry: _Session | None = None) -> tuple[str, _Session]:
        sid = secrets.token_hex(16).upper()
        with self.lock:
            session = carry or _Session(secrets.token_urlsafe(27), self.clock())
            session.seen = self.clock()
            self._sessions[sid] = session
        return sid, session

    def _cookie(self, sid: str) -> dict[str, str]:
        return {"Set-Cookie": f"JSESSIONID={sid}; Path={self._cookie_path}; HttpOnly"}

    def _csrf(self, req: Request, found: tuple[str, _Session] | None) -> Response | None:
        """403 unless the request carries its session's token (every POST)."""
        if found is None:
            return _error(
                req,
                403,
                "Could not verify the provided CSRF token because your session "
                "was not found.",
            )
        given = req.headers.get("x-xsrf-token")
        if given is None or not hmac.compare_digest(
            given.encode(), found[1].xsrf.encode()
        ):
            return _error(
                req,
                403,
                f"Invalid CSRF Token '{given}' was found on the request parameter "
                "'_csrf' or header 'X-XSRF-TOKEN'.",
            )
        return None

    # -- endpoints ------------------------------------------------------------------

    def _ping(self, req: Request, _m: re.Match[str]) -> Response:
        found = self._session(req)
        headers: dict[str, str] = {}
        if found is None:
            found = self._new_session()
            headers.update(self._cookie(found[0]))
        headers["X-XSRF-TOKEN"] = found[1].xsrf
        return Response(200, b"", "text/plain; charset=utf-8", headers)

    def _login(self, req: Request, _m: re.Match[str]) -> Response:
        found = self._session(req)
        refused = self._csrf(req, found)
        if refused is not None:
            return refused
        assert found is not None
        # like Spring's form login: only form parameters count, a JSON body has none
        form = req.form() if _ctype(req) == "application/x-www-form-urlencoded" else {}
        ok = _same(form.get("username", ""), self.credentials.get("username")) and _same(
            form.get("password", ""), self.credentials.get("password")
        )
        with self.lock:
            self.logins.append(ok)
        if not ok:
            return Response.json(
                {"access-denied": True, "cause": "badCredentials"}, self.denied_status
            )
        sid, session = found
        with self.lock:  # a new session id after login (session fixation)
            self._sessions.pop(sid, None)
            session.user = form["username"]
            session.remember_me = form.get("remember-me")
        new_sid, _ = self._new_session(carry=session)
        resp = Response.json({"status": "success"})
        resp.headers.update(self._cookie(new_sid))
        return resp

    def _unique_code(self, req: Request, _m: re.Match[str]) -> Response:
        found = self._session(req)
        refused = self._csrf(req, found) or _unauthenticated(req, found)
        if refused is not None:
            return refused
        if _ctype(req) != "application/json":
            return _error(req, 415, f"Content type '{_ctype(req)}' not supported")
        try:
            body = req.json()
        except (UnicodeDecodeError, ValueError):
            return _error(req, 400, "Required request body is missing or not JSON")
        problem = _check_period(body)
        if problem:
            return _error(req, 400, problem)
        start, end = body["from"], body["to"]
        with self.lock:
            counts = dict.fromkeys(_ANSWER_ORDER, 0)
            for kind, at in self.events:
                if start <= round(at * 1000) <= end:
                    counts[kind] += 1
        return Response.json(counts)

    def _user_info(self, req: Request, _m: re.Match[str]) -> Response:
        found = self._session(req)
        refused = _unauthenticated(req, found)
        if refused is not None:
            return refused
        assert found is not None
        with self.lock:
            return Response.json(
                {
                    "username": found[1].user,
                    "creditsAvailable": self.credits,
                    "creditsSpent": self.credits_spent,
                }
            )


def _check_period(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "a JSON object is required"
    for key in ("from", "to", "dow"):
        value = body.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            return f"'{key}' must be an integer"
    if body["from"] > body["to"]:
        return "'from' must not be after 'to'"
    if body.get("unit") not in UNITS:
        return f"'unit' must be one of {', '.join(UNITS)}"
    return None


def _unauthenticated(req: Request, found: tuple[str, _Session] | None) -> Response | None:
    if found is None or found[1].user is None:
        return _error(req, 401, "Full authentication is required to access this resource")
    return None


def _error(req: Request, status: int, message: str) -> Response:
    """Spring Boot's JSON error body."""
    reasons = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}
    return Response.json(
        {
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "status": status,
            "error": reasons.get(status, "Unsupported Media Type"),
            "message": message,
            "path": PREFIX + req.path.split(PREFIX, 1)[-1],
        },
        status,
    )


def _ctype(req: Request) -> str:
    return req.headers.get("content-type", "").split(";")[0].strip().lower()


def _same(given: str, expected: Any) -> bool:
    expected = "" if expected is None else str(expected)
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
