"""Tellody provider against its emulator over real HTTP on 127.0.0.1 (session
cookie, XSRF token, form login, refresh), plus pytest-httpserver for answers the
emulator never gives."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from clockkit import Clock
from pytest_httpserver import HTTPServer
from refusalkit import Refusal, Refusals, raises, table
from werkzeug import Response as WResponse

from runner.errors import ProviderError
from runner.model.campaign import ProviderConfig
from runner.model.secrets import Secret
from runner.providers import PROVIDERS
from runner.providers.base import Capability, ErrorKind, ProviderCallError, ReportQuery
from runner.providers.tellody import (
    COUNTS,
    LOGIN,
    PING,
    UNIQUE_CODE,
    USER_INFO,
    Tellody,
)
from runner.sandbox import EMULATORS
from runner.sandbox.server import Fault, Sandbox
from runner.sandbox.tellody import TellodyEmulator

CREDS: dict[str, Any] = {"username": "acme-marketing", "password": Secret("pw-Zq81xLw3")}
PASSWORD = str(CREDS["password"])
T0 = 1_700_000_000.0


@dataclass
class Env:
    sb: Sandbox
    name: str
    emu: TellodyEmulator
    urls: dict[str, str]
    clock: Clock

    def provider(
        self, timeout: tuple[float, float] = (2.0, 5.0), **options: Any
    ) -> Tellody:
        return build(self.urls["base_url"], timeout, **options)

    def paths(self) -> list[str]:
        """What the sandbox received, as ``METHOD path status``."""
        return [
            f"{c.method} {c.path.removeprefix('/CampaignCloud')} {c.status}"
            for c in self.sb.calls
            if c.mount == self.name
        ]


def build(
    base_url: str, timeout: tuple[float, float] = (2.0, 5.0), **options: Any
) -> Tellody:
    opts = {**CREDS, **options}
    cfg = ProviderConfig("main", "tellody", base_url, opts, timeout=timeout)
    return Tellody(cfg, opts)


_mounts = itertools.count()


@contextmanager
def make_env(sb: Sandbox, **emu_kwargs: Any) -> Iterator[Env]:
    clock = Clock(T0)
    emu = TellodyEmulator(dict(CREDS), clock=clock, **emu_kwargs)
    name = f"tellody{next(_mounts)}"
    try:
        yield Env(sb, name, emu, sb.mount(name, emu), clock)
    finally:
        sb.faults = None


@pytest.fixture
def env(sandbox: Sandbox) -> Iterator[Env]:
    with make_env(sandbox, credits=750, credits_spent=250) as e:
        yield e


def when(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def query(since: float = T0 - 3600, until: float = T0, **options: Any) -> ReportQuery:
    return ReportQuery(since=when(since), until=when(until), options=options)


# -- session, balance, report --------------------------------------------------------


def test_balance_pings_logs_in_and_reads_user_info(env: Env) -> None:
    balance = env.provider().balance()
    assert (balance.credits, balance.unit) == (750, "credits")
    assert balance.details == {"credits_spent": 250}
    assert env.paths() == [
        "GET /RememberMeController/ping 200",
        "POST /login 200",
        "GET /UserInfo 200",
    ]
    login = next(
        c for c in env.sb.calls if c.mount == env.name and c.path.endswith("login")
    )
    assert parse_qs(login.body.decode()) == {
        "username": ["acme-marketing"],
        "password": [PASSWORD],
        "remember-me": ["true"],
    }


def test_report_counts_the_events_of_the_window_in_one_session(env: Env) -> None:
    for kind, at in [
        ("SMS_SENT", T0 - 60),
        ("SMS_SENT", T0 - 30),
        ("OPTOUT", T0 - 10),
        ("URL", T0),  # "to" is inclusive
        ("SMS_SENT", T0 - 7200),  # before the window
        ("DL", T0 + 1),  # after it
    ]:
        env.emu.add_event(kind, at)
    p = env.provider()
    report = p.report(query())
    assert report.final and report.cursor is None
    assert report.counts == {
        "SMS_SENT": 2,
        "DL": 0,
        "OPTOUT": 1,
        "URL": 1,
        "VOUCHER": 0,
        "EMAIL_SENT": 0,
    }
    hourly = p.report(query(unit="hour"))  # a check_report step's options win
    assert hourly.details["unit"] == "hour"
    bodies = [
        json.loads(c.body)
        for c in env.sb.calls
        if c.mount == env.name and c.path.endswith("UniqueCode")
    ]
    assert bodies == [
        {"from": 1_699_996_400_000, "to": 1_700_000_000_000, "unit": "day", "dow": 0},
        {"from": 1_699_996_400_000, "to": 1_700_000_000_000, "unit": "hour", "dow": 0},
    ]
    assert env.paths().count("POST /login 200") == 1  # the session is reused


@pytest.mark.parametrize("call", ["report", "balance"])
def test_an_expired_session_is_opened_again_once(env: Env, call: str) -> None:
    env.emu.session_lifetime = 60
    p = env.provider()
    p.balance()
    env.clock.advance(61)
    getattr(p, call)(*([query()] if call == "report" else []))
    refused = "POST /Report/UniqueCode 403" if call == "report" else "GET /UserInfo 401"
    ok = refused.replace("403", "200").replace("401", "200")
    assert env.paths()[3:] == [
        refused,
        "GET /RememberMeController/ping 200",
        "POST /login 200",
        ok,
    ]
    assert env.emu.logins == [True, True]


def test_threads_share_one_session_and_one_renewal(env: Env) -> None:
    p = env.provider()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            p.report(query())
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    for _round in range(2):
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        env.emu.expire_sessions()
    assert errors == []
    assert env.emu.logins == [True, True]  # one per round, however many threads
    assert env.paths().count("GET /RememberMeController/ping 200") == 2


LOGIN_REFUSALS = [
    Refusal("wrong password", ErrorKind.AUTH, "badCredentials",
            options={"password": Secret("wrong-pass-9")}),
    Refusal("wrong user", ErrorKind.AUTH, "badCredentials",
            options={"username": "someone"}),
    Refusal("refusal with 200", ErrorKind.AUTH, "badCredentials",
            options={"password": Secret("wrong-pass-9")},
            emulator={"denied_status": 200}),
]  # fmt: skip
# one login, refused: no second try with the same password
BALANCE_REFUSALS = Refusals(
    make_env, raises("balance"), [PASSWORD], lambda env: env.emu.logins, [False]
)


@table(LOGIN_REFUSALS)
def test_login_refused_is_auth_once_and_secret_free(
    sandbox: Sandbox, case: Refusal
) -> None:
    BALANCE_REFUSALS.run(sandbox, case)


def test_emulator_refuses_posts_without_the_sessions_token(env: Env) -> None:
    base = env.urls["base_url"] + "/CampaignCloud"
    s = requests.Session()
    ping = s.get(base + "/RememberMeController/ping", timeout=5)
    token = ping.headers["X-XSRF-TOKEN"]
    assert "JSESSIONID" in s.cookies
    form = {"username": "acme-marketing", "password": PASSWORD, "remember-me": "true"}
    assert s.post(base + "/login", data=form, timeout=5).status_code == 403
    wrong = s.post(base + "/login", data=form, headers={"X-XSRF-TOKEN": "x"}, timeout=5)
    assert wrong.status_code == 403 and "'x'" in wrong.json()["message"]
    # another session's token does not do either
    other = requests.get(base + "/RememberMeController/ping", timeout=5)
    stolen = s.post(
        base + "/login",
        data=form,
        headers={"X-XSRF-TOKEN": other.headers["X-XSRF-TOKEN"]},
        timeout=5,
    )
    assert stolen.status_code == 403
    login = s.post(base + "/login", data=form, headers={"X-XSRF-TOKEN": token}, timeout=5)
    assert login.json() == {"status": "success"}
    assert env.emu.logins == [True]
    body = {"from": 0, "to": 1, "unit": "day", "dow": 0}
    assert s.post(base + "/Report/UniqueCode", json=body, timeout=5).status_code == 403
    # the vendor sample's bug: headers passed positionally become the form body
    buggy = s.post(base + "/Report/UniqueCode", {"X-XSRF-TOKEN": token}, body, timeout=5)
    assert buggy.status_code == 403
    good = s.post(
        base + "/Report/UniqueCode", json=body, headers={"X-XSRF-TOKEN": token}, timeout=5
    )
    assert good.status_code == 200 and set(good.json()) == set(COUNTS)
    for bad in ({**body, "unit": "year"}, {**body, "from": "0"}, {"from": 2, "to": 1}):
        resp = s.post(
            base + "/Report/UniqueCode",
            json=bad,
            headers={"X-XSRF-TOKEN": token},
            timeout=5,
        )
        assert resp.status_code == 400
    assert requests.get(base + "/UserInfo", timeout=5).status_code == 401


def test_a_rejected_token_renews_the_session(env: Env) -> None:
    p = env.provider()
    p.balance()
    with env.emu.lock:  # the server no longer knows the token the client holds
        for session in env.emu._sessions.values():
            session.xsrf = "rotated-by-the-server"
    assert p.report(query()).final
    assert env.paths()[3:] == [
        "POST /Report/UniqueCode 403",
        "GET /RememberMeController/ping 200",
        "POST /login 200",
        "POST /Report/UniqueCode 200",
    ]


def test_a_token_refused_twice_is_auth_and_never_quoted(httpserver: HTTPServer) -> None:
    """Spring's 403 answer echoes the token it refused: the error must not."""
    _serve_session(httpserver)
    echo = '{"message":"Invalid CSRF Token \'tok-123\' was found"}'
    httpserver.expect_request(UNIQUE_CODE).respond_with_response(_answer(403, echo))
    with pytest.raises(ProviderCallError) as e:
        build(httpserver.url_for("/")).report(query())
    assert (e.value.error.kind, e.value.error.code) == (ErrorKind.AUTH, "HTTP 403")
    assert "tok-123" not in str(e.value) and "Invalid CSRF" in str(e.value)
    paths = [r.path for r, _ in httpserver.log]
    assert paths == [PING, LOGIN, UNIQUE_CODE, PING, LOGIN, UNIQUE_CODE]


def test_unknown_unit_is_a_configuration_error(env: Env) -> None:
    with pytest.raises(ProviderError, match="unit"):
        env.provider(unit="fortnight").report(query())


def test_read_timeout_may_be_retried(env: Env) -> None:
    env.sb.faults = lambda mount, req: Fault(drop=True, hang=0.5)
    with pytest.raises(ProviderCallError) as e:
        env.provider(timeout=(1.0, 0.2)).balance()
    assert e.value.error.code == "timeout" and e.value.error.retryable


def test_registered_and_cannot_send() -> None:
    assert EMULATORS["tellody"] is TellodyEmulator and PROVIDERS["tellody"] is Tellody
    assert Capability.SEND not in Tellody.capabilities


# -- answers the emulator never gives ---------------------------------------------------


def _answer(
    status: int, body: str, ctype: str = "application/json", **headers: str
) -> WResponse:
    return WResponse(body, status=status, content_type=ctype, headers=headers)


def _serve_session(httpserver: HTTPServer, login: WResponse | None = None) -> None:
    httpserver.expect_request(PING).respond_with_response(
        _answer(200, "", "text/plain", **{"X-XSRF-TOKEN": "tok-123"})
    )
    httpserver.expect_request(LOGIN, method="POST").respond_with_response(
        login or _answer(200, '{"status":"success"}')
    )


DOC_ANSWER = '{"OPTOUT":0,"DL":0,"VOUCHER":0,"SMS_SENT":0,"URL":0,"EMAIL_SENT":0}'

REPORT_ANSWERS = [
    # (case, answer, kind or None for a good answer, retryable)
    ("the documents' example", _answer(200, DOC_ANSWER), None, False),
    ("html page", _answer(200, "<html>Login</html>", "text/html"), "protocol", False),
    ("truncated", _answer(200, DOC_ANSWER[:30]), "protocol", False),
    ("wrong shape", _answer(200, '{"status":"error"}'), "protocol", False),
    ("a count not a number", _answer(200, '{"SMS_SENT":"many"}'), "protocol", False),
    ("json list", _answer(200, "[]"), "protocol", False),
    ("400", _answer(400, '{"status":400,"error":"Bad Request"}'), "rejected", False),
    ("500", _answer(500, "oops", "text/plain"), "transient", True),
    (
        "503",
        _answer(503, "busy", "text/plain", **{"Retry-After": "2"}),
        "transient",
        True,
    ),
]


@pytest.mark.parametrize(
    ("answer", "kind", "retryable"),
    [a[1:] for a in REPORT_ANSWERS],
    ids=[a[0] for a in REPORT_ANSWERS],
)
def test_report_answers(
    httpserver: HTTPServer, answer: WResponse, kind: str | None, retryable: bool
) -> None:
    _serve_session(httpserver)
    httpserver.expect_request(
        UNIQUE_CODE, method="POST", headers={"X-XSRF-TOKEN": "tok-123"}
    ).respond_with_response(answer)
    p = build(httpserver.url_for("/"))
    if kind is None:
        report = p.report(query())
        assert report.final and sum(report.counts.values()) == 0
        assert len(report.counts) == 6
        return
    with pytest.raises(ProviderCallError) as e:
        p.report(query())
    assert (e.value.error.kind.value, e.value.error.retryable) == (kind, retryable)


SESSION_ANSWERS = [
    # (case, ping answer, login answer, kind, code)
    ("ping without token", _answer(200, ""), None, "protocol", "protocol"),
    ("ping 503", _answer(503, "down", "text/plain"), None, "transient", "HTTP 503"),
    (
        "login not json",
        None,
        _answer(200, "<html>hi</html>", "text/html"),
        "protocol",
        "protocol",
    ),
    ("login other json", None, _answer(200, '{"ok":1}'), "protocol", "protocol"),
    ("login 500", None, _answer(500, PASSWORD, "text/plain"), "transient", "HTTP 500"),
    ("login 403", None, _answer(403, '{"status":403}'), "auth", "HTTP 403"),
]


@pytest.mark.parametrize(
    ("ping", "login", "kind", "code"),
    [a[1:] for a in SESSION_ANSWERS],
    ids=[a[0] for a in SESSION_ANSWERS],
)
def test_session_answers(
    httpserver: HTTPServer,
    ping: WResponse | None,
    login: WResponse | None,
    kind: str,
    code: str,
) -> None:
    if ping is not None:
        httpserver.expect_request(PING).respond_with_response(ping)
    else:
        _serve_session(httpserver, login)
    with pytest.raises(ProviderCallError) as e:
        build(httpserver.url_for("/")).balance()
    assert (e.value.error.kind.value, e.value.error.code) == (kind, code)
    assert PASSWORD not in str(e.value)


def test_token_from_the_xsrf_cookie_when_no_header(httpserver: HTTPServer) -> None:
    httpserver.expect_request(PING).respond_with_response(
        _answer(200, "", "text/plain", **{"Set-Cookie": "XSRF-TOKEN=cookie-tok; Path=/"})
    )
    httpserver.expect_request(
        LOGIN, method="POST", headers={"X-XSRF-TOKEN": "cookie-tok"}
    ).respond_with_json({"status": "success"})
    httpserver.expect_request(USER_INFO).respond_with_json(
        {"creditsAvailable": 12.5, "creditsSpent": 3}
    )
    balance = build(httpserver.url_for("/")).balance()
    assert balance.credits == 12.5 and balance.details == {"credits_spent": 3}


def test_a_redirect_to_the_login_page_renews_once_then_is_auth(
    httpserver: HTTPServer,
) -> None:
    _serve_session(httpserver)
    httpserver.expect_request(USER_INFO).respond_with_response(
        WResponse("", status=302, headers={"Location": "/CampaignCloud/login.html"})
    )
    with pytest.raises(ProviderCallError) as e:
        build(httpserver.url_for("/")).balance()
    assert e.value.error.kind is ErrorKind.AUTH
    paths = [r.path for r, _ in httpserver.log]
    assert paths == [PING, LOGIN, USER_INFO, PING, LOGIN, USER_INFO]


def test_user_info_without_credits_is_a_protocol_error(httpserver: HTTPServer) -> None:
    _serve_session(httpserver)
    httpserver.expect_request(USER_INFO).respond_with_json({"username": "x"})
    with pytest.raises(ProviderCallError) as e:
        build(httpserver.url_for("/")).balance()
    assert e.value.error.kind is ErrorKind.PROTOCOL
    assert e.value.error.detail == "UserInfo: unexpected shape (['username'])"
