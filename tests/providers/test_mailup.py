"""MailUp provider against its emulator over real HTTP on 127.0.0.1, plus
pytest-httpserver for answers the emulator never gives (HTML pages, truncated
bodies, 5xx variants, the send API's 300-302 codes)."""

from __future__ import annotations

import itertools
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from clockkit import Clock
from pytest_httpserver import HTTPServer
from refusalkit import Refusal, Refusals, send, table
from werkzeug import Response as WResponse

from runner.model.campaign import ProviderConfig
from runner.model.secrets import Secret
from runner.providers import PROVIDERS
from runner.providers.base import (
    DeliveryStatus,
    ErrorKind,
    OutboundMessage,
    ProviderCallError,
    ReportQuery,
    SentRecord,
)
from runner.providers.mailup import MailUp
from runner.providers.mailup_report import ReportCursor
from runner.sandbox import EMULATORS
from runner.sandbox.mailup import MailUpEmulator
from runner.sandbox.server import Fault, Sandbox
from runner.sandbox.server import Response as SbResponse

CREDS: dict[str, Any] = {
    "client_id": Secret("cid-Q7hZ2k"),
    "client_secret": Secret("csecret-9Xw3LpT"),
    "username": "alice@example.com",
    "password": Secret("pw-Hu84sQ1v"),
    "account_id": 1234,
    "list_id": 5,
    "list_guid": "b8f9d0b2-1b7a-4a4e-9a3c-0f5d2e6a7c11",
    "list_secret": Secret("lsecret-4Rt6Yb"),
    "sender": "ACME",
    "campaign_code": "spring-sale",
}
SECRETS = [str(CREDS[k]) for k in MailUp.secret_options]
T0 = 1_700_000_000.0


@dataclass
class Env:
    sb: Sandbox
    name: str
    emu: MailUpEmulator
    urls: dict[str, str]
    clock: Clock

    def provider(
        self, timeout: tuple[float, float] = (2.0, 5.0), **options: Any
    ) -> MailUp:
        return build(self.urls, timeout, **options)

    def calls(self, suffix: str) -> list[Any]:
        return [
            c for c in self.sb.calls if c.mount == self.name and c.path.endswith(suffix)
        ]


def build(
    urls: dict[str, str], timeout: tuple[float, float] = (2.0, 5.0), **options: Any
) -> MailUp:
    opts = {**CREDS, **{k: v for k, v in urls.items() if k != "base_url"}, **options}
    cfg = ProviderConfig(
        name="main",
        type="mailup",
        base_url=urls["base_url"],
        options=opts,
        timeout=timeout,
    )
    return MailUp(cfg, opts)


@pytest.fixture
def env(sandbox: Sandbox) -> Iterator[Env]:
    with make_env(sandbox) as e:
        yield e


_mounts = itertools.count()


@contextmanager
def make_env(sb: Sandbox, **emu_kwargs: Any) -> Iterator[Env]:
    clock = Clock(T0)
    emu = MailUpEmulator(dict(CREDS), clock=clock, settle=30.0, **emu_kwargs)
    name = f"mailup{next(_mounts)}"
    try:
        yield Env(sb, name, emu, sb.mount(name, emu), clock)
    finally:
        sb.faults = None


def msg(
    to: str = "+393471234567", text: str = "Hello from ACME", **kw: Any
) -> OutboundMessage:
    return OutboundMessage(to=to, text=text, key=f"run/step/{to}", **kw)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def when(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


# -- send ---------------------------------------------------------------------------


def test_send_posts_the_documented_body_without_oauth(env: Env) -> None:
    p = env.provider()
    result = p.send(msg())
    assert result.accepted and result.message_id == "1648"  # the docs' example id
    assert result.cost == 1.0 and result.status == "DONE"
    (call,) = env.calls("/sms/1234/5")
    body = json.loads(call.body)
    assert body == {
        "Content": "Hello from ACME",
        "ListGuid": CREDS["list_guid"],
        "ListSecret": str(CREDS["list_secret"]),
        "Recipient": "+393471234567",
        "isUnicode": 0,
        "CampaignCode": "spring-sale",
        "Sender": "ACME",
    }
    assert not env.calls("/Token")  # the send API needs no token
    (sent,) = env.emu.messages
    assert (sent.to, sent.text, sent.extra["campaign_code"]) == (
        "393471234567",
        "Hello from ACME",
        "spring-sale",
    )


def test_unicode_send_sets_isunicode_and_costs_its_segments(env: Env) -> None:
    text = "Привет " * 12  # 84 UCS-2 characters: two parts
    result = env.provider().send(msg(text=text, unicode=True))
    assert result.accepted and result.cost == 2.0
    (call,) = env.calls("/sms/1234/5")
    assert json.loads(call.body)["isUnicode"] == 1
    assert env.emu.credits == 10_000.0 - 2


REFUSALS = [
    Refusal("wrong list secret", ErrorKind.AUTH, "103",
            options={"list_secret": Secret("nope-1234")}),
    Refusal("wrong list guid", ErrorKind.AUTH, "102",
            options={"list_guid": "00000000-0000"}),
    Refusal("wrong account", ErrorKind.AUTH, "250", options={"account_id": 999}),
    Refusal("wrong list", ErrorKind.AUTH, "104", options={"list_id": 6}),
    Refusal("bad recipient", ErrorKind.REJECTED, "106", message={"to": "+3912"}),
    Refusal("too long", ErrorKind.REJECTED, "107", message={"text": "x" * 460}),
    Refusal("too long unicode", ErrorKind.REJECTED, "107",
            message={"text": "ж" * 202, "unicode": True}),
    Refusal("uncertified sender", ErrorKind.AUTH, "207", message={"sender": "OTHER"}),
    Refusal("bad sender", ErrorKind.REJECTED, "100",
            message={"sender": "TOO-LONG-SENDER"}),
    Refusal("opted out", ErrorKind.REJECTED, "206",
            emulator={"opted_out": ["+393471234567"]}),
    Refusal("no credits", ErrorKind.AUTH, "205", emulator={"credits": 0}),
]  # fmt: skip
SEND_REFUSALS = Refusals(make_env, send(msg), SECRETS, lambda env: env.emu.messages)


@table(REFUSALS)
def test_send_refusals_are_classified(sandbox: Sandbox, case: Refusal) -> None:
    SEND_REFUSALS.run(sandbox, case)


def _json(status: int, body: Any, **headers: str) -> WResponse:
    return WResponse(json.dumps(body), status, headers, content_type="application/json")


ANSWERS = [
    # (case, answer, accepted, kind, code, may_have_acted)
    (
        "300 server error",
        _json(500, {"Code": "300", "Description": "Internal error"}),
        False,
        ErrorKind.TRANSIENT,
        "300",
        True,
    ),
    (
        "302 says not sent",
        _json(500, {"Code": "302", "Description": "Message not sent"}),
        False,
        ErrorKind.TRANSIENT,
        "302",
        False,
    ),
    (
        "301 sent, no id",
        _json(500, {"Data": {"DeliveryId": 0, "Cost": 1.0}, "Code": "301"}),
        True,
        None,
        None,
        None,
    ),
    (
        "500 html page",
        WResponse("<html><h1>500</h1></html>", 500, content_type="text/html"),
        False,
        ErrorKind.TRANSIENT,
        "HTTP 500",
        True,
    ),
    (
        "200 html page",
        WResponse("<html>maintenance</html>", 200, content_type="text/html"),
        False,
        ErrorKind.PROTOCOL,
        "protocol",
        True,
    ),
    (
        "200 truncated",
        WResponse('{"Data":{"DeliveryId":16', 200, content_type="application/json"),
        False,
        ErrorKind.PROTOCOL,
        "protocol",
        True,
    ),
    (
        "200 wrong shape",
        _json(200, {"Code": "0", "Data": {}}),
        False,
        ErrorKind.PROTOCOL,
        "protocol",
        True,
    ),
    (
        "200 unknown code",
        _json(200, {"Code": "999"}),
        False,
        ErrorKind.PROTOCOL,
        "protocol",
        True,
    ),
    (
        "503 retry after",
        _json(503, {}, **{"Retry-After": "7"}),
        False,
        ErrorKind.TRANSIENT,
        "HTTP 503",
        False,
    ),
    (
        "502 gateway",
        WResponse("bad gateway", 502),
        False,
        ErrorKind.TRANSIENT,
        "HTTP 502",
        False,
    ),
    (
        "429 slow down",
        WResponse("slow down", 429),
        False,
        ErrorKind.RATE_LIMITED,
        "HTTP 429",
        False,
    ),
    ("401", WResponse("no", 401), False, ErrorKind.AUTH, "HTTP 401", False),
]


@pytest.mark.parametrize(
    ("answer", "accepted", "kind", "code", "acted"),
    [case[1:] for case in ANSWERS],
    ids=[case[0] for case in ANSWERS],
)
def test_send_answers_the_emulator_never_gives(
    httpserver: HTTPServer,
    answer: WResponse,
    accepted: bool,
    kind: ErrorKind | None,
    code: str | None,
    acted: bool | None,
) -> None:
    httpserver.expect_request(
        "/api/v2.0/sms/1234/5", method="POST"
    ).respond_with_response(answer)
    p = build(_urls(httpserver))
    result = p.send(msg())
    assert result.accepted is accepted
    if accepted:
        assert result.message_id is None and result.status == "301" and result.cost == 1.0
        return
    assert result.error is not None
    assert (result.error.kind, result.error.code, result.error.may_have_acted) == (
        kind,
        code,
        acted,
    )
    if code == "HTTP 503":
        assert result.error.retry_after == 7.0 and result.error.retryable


def test_send_error_excerpt_never_quotes_a_secret(httpserver: HTTPServer) -> None:
    def echo(request: Any) -> WResponse:  # a server that echoes what it got
        body = request.get_data(as_text=True)
        secret = json.loads(body)["ListSecret"]
        return WResponse(f"<html>bad secret {secret}; request: {body}</html>", 400)

    httpserver.expect_request("/api/v2.0/sms/1234/5").respond_with_handler(echo)
    result = build(_urls(httpserver)).send(msg())
    assert result.error is not None and result.error.kind is ErrorKind.REJECTED
    assert "bad secret ***" in result.error.detail
    assert_clean(str(result.error))
    assert "lsec" not in result.error.detail  # nor the start of one cut by the excerpt


def test_read_timeout_is_unknown_and_connection_refused_is_retryable(env: Env) -> None:
    env.sb.faults = lambda mount, req: Fault(drop=True, hang=0.5)
    result = env.provider(timeout=(1.0, 0.2)).send(msg())
    assert result.error is not None and result.error.code == "timeout"
    assert result.error.may_have_acted and not result.error.retryable

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = build(
        {"base_url": f"http://127.0.0.1:{port}", "send_url": f"http://127.0.0.1:{port}"}
    )
    result = closed.send(msg())
    assert result.error is not None and result.error.kind is ErrorKind.TRANSIENT
    assert not result.error.may_have_acted and result.error.retryable


def test_a_500_after_the_send_is_unknown_with_a_short_excerpt(env: Env) -> None:
    """The emulator sends, then the answer is replaced by a long 500 page: the
    server-side record shows why such a send must be recorded ``unknown``."""
    long_page = SbResponse(500, b"<p>oops</p>" * 500, "text/html")
    env.sb.faults = lambda mount, req: Fault(mangle=lambda r: long_page)
    result = env.provider().send(msg())
    assert result.error is not None and result.error.code == "HTTP 500"
    assert result.error.may_have_acted and len(result.error.detail) <= 120
    assert len(env.emu.messages) == 1


def test_max_text_length_follows_the_options(env: Env) -> None:
    assert env.provider().max_text_length(False) == 459
    assert env.provider(max_length_unicode=70).max_text_length(True) == 70


# -- OAuth2 and credits ---------------------------------------------------------------


def test_balance_logs_in_once_and_reads_credits(env: Env) -> None:
    p = env.provider()
    before = p.balance()
    assert before.credits == 10_000.0 and before.details["list_credits"] == 10_000.0
    assert p.send(msg(text="y" * 200)).accepted  # two GSM-7 parts
    assert p.balance().credits == before.credits - 2
    assert env.emu.grants == ["password"]  # the token was cached
    (login,) = env.calls("/Authorization/OAuth/Token")
    assert "grant_type=password" in login.body.decode()


def test_token_is_refreshed_before_it_expires(env: Env) -> None:
    p = env.provider(token_refresh_margin=60)
    p.tokens.clock = clock = Clock(0.0)
    p.balance()
    clock.advance(3600 - 60)  # inside the margin: renew before the server expires it
    p.balance()
    clock.advance(3600 - 60)
    p.balance()  # the first refresh token was single use: this needs the new one
    assert env.emu.grants == ["password", "refresh_token", "refresh_token"]
    assert all(c.status == 200 for c in env.calls(""))


def test_401_renews_the_token_and_retries_once(env: Env) -> None:
    p = env.provider()
    p.balance()
    env.emu.expire_tokens()  # the server ends it early; the client's clock disagrees
    assert p.balance().credits == 10_000.0
    assert env.emu.grants == ["password", "refresh_token"]
    statuses = [c.status for c in env.calls("/Console/Authentication/Details")]
    assert statuses == [200, 401, 200]


def test_refused_refresh_falls_back_to_the_password_grant(env: Env) -> None:
    p = env.provider()
    p.balance()
    env.emu.expire_tokens()
    env.emu.revoke_refresh_tokens()
    assert p.balance().credits == 10_000.0
    assert env.emu.grants == ["password", "password"]
    assert [c.status for c in env.calls("/Token")] == [200, 400, 200]


def test_many_threads_share_one_renewal(env: Env) -> None:
    p = env.provider()
    p.balance()
    env.emu.expire_tokens()
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            p.balance()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert env.emu.grants == ["password", "refresh_token"]


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"password": Secret("wrong-pass-1")}, "invalid_grant"),
        ({"client_secret": Secret("wrong-secret-2")}, "invalid_client"),
    ],
    ids=["password", "client secret"],
)
def test_login_refused_is_auth_and_secret_free(
    env: Env, options: dict[str, Any], code: str
) -> None:
    with pytest.raises(ProviderCallError) as info:
        env.provider(**options).balance()
    assert (info.value.error.kind, info.value.error.code) == (ErrorKind.AUTH, code)
    assert_clean(str(info.value))
    assert "wrong-" not in str(info.value)


TOKEN_ANSWERS = [
    ("no access_token", _json(200, {"token": "tok-LEAK-1", "expires_in": 3600})),
    (
        "truncated",
        WResponse(
            '{"access_token":"tok-LEAK-2","expi', 200, content_type="application/json"
        ),
    ),
    (
        "html",
        WResponse("<html>login page tok-LEAK-3</html>", 200, content_type="text/html"),
    ),
]


@pytest.mark.parametrize(
    "answer", [c[1] for c in TOKEN_ANSWERS], ids=[c[0] for c in TOKEN_ANSWERS]
)
def test_bad_token_answers_are_protocol_errors_that_quote_nothing(
    httpserver: HTTPServer, answer: WResponse
) -> None:
    httpserver.expect_request("/token", method="POST").respond_with_response(answer)
    with pytest.raises(ProviderCallError) as info:
        build(_urls(httpserver)).balance()
    assert info.value.error.kind is ErrorKind.PROTOCOL
    assert "LEAK" not in str(info.value)


CONSOLE_ANSWERS = [
    (
        "html page",
        WResponse("<html>Service Unavailable</html>", 200, content_type="text/html"),
        ErrorKind.PROTOCOL,
    ),
    (
        "truncated",
        WResponse('{"TotalCredits": 4', 200, content_type="application/json"),
        ErrorKind.PROTOCOL,
    ),
    ("wrong shape", _json(200, {"Credits": 4}), ErrorKind.PROTOCOL),
    (
        "503",
        _json(503, {"ErrorCode": "503", "ErrorDescription": "Down"}),
        ErrorKind.TRANSIENT,
    ),
    (
        "403",
        _json(403, {"ErrorCode": "403", "ErrorDescription": "Forbidden for tok-1"}),
        ErrorKind.AUTH,
    ),
]


@pytest.mark.parametrize(
    ("answer", "kind"),
    [c[1:] for c in CONSOLE_ANSWERS],
    ids=[c[0] for c in CONSOLE_ANSWERS],
)
def test_bad_console_answers(
    httpserver: HTTPServer, answer: WResponse, kind: ErrorKind
) -> None:
    _serve_token(httpserver)
    httpserver.expect_request(
        "/console/Console/Authentication/Details"
    ).respond_with_response(answer)
    with pytest.raises(ProviderCallError) as info:
        build(_urls(httpserver)).balance()
    assert info.value.error.kind is kind
    assert_clean(str(info.value))
    assert "tok-1" not in str(info.value)  # nor the bearer token


# -- report ---------------------------------------------------------------------------


def send_all(p: MailUp, numbers: list[str]) -> list[SentRecord]:
    out = []
    for n in numbers:
        r = p.send(msg(to=n))
        assert r.accepted, r.error
        out.append(SentRecord(n, r.message_id, when(T0)))
    return out


def poll_until_final(
    p: MailUp, query: ReportQuery, env: Env, step: float
) -> tuple[int, dict[str, Any]]:
    """Poll like the engine: at once while ``more``, else after ``step`` seconds."""
    cursor, latest, polls = None, {}, 0
    while polls < 20:
        polls += 1
        report = p.report(query, cursor)
        latest.update({d.to: d for d in report.deliveries})
        if report.final:
            return polls, latest
        cursor = report.cursor
        if not report.more:
            env.clock.advance(step)
    raise AssertionError("the report never became final")


def test_report_becomes_final_after_several_polls(env: Env) -> None:
    p = env.provider()
    numbers = ["+393470000001", "+393470000002", "+393470000099"]  # ...99 fails
    query = ReportQuery(
        since=when(T0 - 5), until=when(T0 + 60), sent=send_all(p, numbers)
    )
    first = p.report(query)
    assert not first.final and {d.status for d in first.deliveries} == {
        DeliveryStatus.PENDING
    }
    polls, latest = poll_until_final(p, query, env, step=10)  # settle is 30 s
    assert polls >= 3
    assert {n: latest[n].status for n in numbers} == {
        "+393470000001": DeliveryStatus.DELIVERED,
        "+393470000002": DeliveryStatus.DELIVERED,
        "+393470000099": DeliveryStatus.FAILED,
    }
    failed = latest["+393470000099"]
    assert failed.raw_code == "FAILED_AT_004" and failed.message_id == "1650"
    assert failed.at == when(T0)
    assert env.emu.grants == ["password"]


def test_report_reads_pages_across_polls(env: Env) -> None:
    p = env.provider(report_page_size=2, report_pages_per_poll=2)
    numbers = [f"+39347000{i:04d}" for i in range(7)]
    query = ReportQuery(
        since=when(T0 - 5), until=when(T0 + 60), sent=send_all(p, numbers)
    )
    env.clock.advance(31)
    first = p.report(query)
    assert first.more and not first.final and len(first.deliveries) == 4
    assert isinstance(first.cursor, ReportCursor) and first.cursor.page == 2
    second = p.report(query, first.cursor)
    assert second.final and not second.more and len(second.deliveries) == 3
    seen = {d.to for d in first.deliveries + second.deliveries}
    assert seen == set(numbers)
    assert len(env.calls("/Sendings/ReportDetails")) == 4  # pages 0..3
    assert len(env.calls("/Messages")) == 1  # the message id came with the cursor


def test_a_failed_page_is_read_again_without_the_pages_before_it(env: Env) -> None:
    """Defect: one 502 on page 2 of 4 used to restart the pass from page 0."""
    p = env.provider(report_page_size=2, report_pages_per_poll=5)
    numbers = [f"+39347000{i:04d}" for i in range(7)]
    query = ReportQuery(
        since=when(T0 - 5), until=when(T0 + 60), sent=send_all(p, numbers)
    )
    env.clock.advance(31)
    pages: list[str] = []

    def bad_gateway_on_page_2(mount: str, req: Any) -> Fault | None:
        if not req.path.endswith("/ReportDetails"):
            return None
        pages.append(req.query.get("pageNumber", [""])[0])
        if pages.count("2") == 1 and pages[-1] == "2":
            return Fault(response=SbResponse(502, b"<h1>Bad Gateway</h1>", "text/html"))
        return None

    env.sb.faults = bad_gateway_on_page_2
    first = p.report(query)
    assert first.more and not first.final and len(first.deliveries) == 4
    assert isinstance(first.cursor, ReportCursor) and first.cursor.page == 2
    second = p.report(query, first.cursor)
    assert second.final and {d.to for d in first.deliveries + second.deliveries} == set(
        numbers
    )
    assert pages == ["0", "1", "2", "2", "3"]  # page 2 again, never 0 and 1


def test_a_failure_on_the_first_page_of_a_poll_is_raised_for_the_retry(
    env: Env,
) -> None:
    p = env.provider(report_page_size=2)
    query = ReportQuery(
        since=when(T0 - 5), until=when(T0 + 60), sent=send_all(p, ["+393470000001"])
    )
    env.sb.faults = lambda mount, req: (
        Fault(response=SbResponse(503, b"busy", "text/plain"))
        if req.path.endswith("/ReportDetails")
        else None
    )
    with pytest.raises(ProviderCallError) as info:
        p.report(query)
    assert info.value.error.kind is ErrorKind.TRANSIENT


def test_report_of_one_send_uses_the_delivery_id(env: Env) -> None:
    p = env.provider()
    others = send_all(p, ["+393470000001", "+393470000002"])
    query = ReportQuery(since=when(T0 - 5), until=when(T0), sent=others[1:])
    env.clock.advance(31)
    report = p.report(query)
    assert report.final
    assert [(d.to, d.status, d.message_id) for d in report.deliveries] == [
        ("+393470000002", DeliveryStatus.DELIVERED, "1649")
    ]


def test_report_leaves_out_earlier_runs_and_applies_filterby(env: Env) -> None:
    p = env.provider(report_filterby="Receiver.Contains('3934700')")
    send_all(p, ["+393470000001"])  # an earlier run with the same CampaignCode
    env.clock.advance(86_400)
    later = send_all(p, ["+393470000002", "+447700900123"])
    query = ReportQuery(since=when(env.clock.t - 5), until=when(env.clock.t), sent=later)
    report = p.report(query)
    assert [d.to for d in report.deliveries] == ["+393470000002"]
    assert not report.final  # still queued, and the UK number is not listed


def test_report_without_a_message_for_the_code(env: Env) -> None:
    p = env.provider(campaign_code="never-used")
    sent = [SentRecord("+393470000001", "1648", when(T0))]
    assert not p.report(ReportQuery(when(T0), when(T0), sent=sent)).final
    unknown = [SentRecord("+393470000001", None, when(T0))]
    report = p.report(ReportQuery(when(T0), when(T0), sent=unknown))
    assert (
        report.final and report.deliveries == () and report.details["message_id"] is None
    )


def test_report_is_final_when_unknown_sends_are_absent(env: Env) -> None:
    """Reconciliation: a send without a DeliveryId that is not listed never went out."""
    p = env.provider()
    sent = send_all(p, ["+393470000001"])
    unknown = [
        SentRecord(sent[0].to, None, when(T0)),
        SentRecord("+393470000002", None, when(T0)),
    ]
    env.clock.advance(31)
    report = p.report(ReportQuery(when(T0 - 5), when(T0), sent=unknown))
    assert report.final and [d.to for d in report.deliveries] == ["+393470000001"]


def test_report_item_without_status_is_a_protocol_error(httpserver: HTTPServer) -> None:
    _serve_token(httpserver)
    httpserver.expect_request("/console/Console/Sms/List/5/Messages").respond_with_json(
        {"IsPaginated": False, "Items": [{"idMessage": 24, "Subject": "spring-sale"}]}
    )
    httpserver.expect_request(
        "/console/Console/Sms/24/Sendings/ReportDetails"
    ).respond_with_json(
        {"IsPaginated": False, "Items": [{"Receiver": "393471234567", "ErrorCode": ""}]}
    )
    with pytest.raises(ProviderCallError) as info:
        build(_urls(httpserver)).report(ReportQuery(when(T0), when(T0)))
    assert info.value.error.kind is ErrorKind.PROTOCOL and "ReportDetails" in str(
        info.value
    )


def test_report_reads_the_documented_unpaged_example(httpserver: HTTPServer) -> None:
    """The document's own answer: IsPaginated false, TotalElementsCount 0, 9 items."""
    doc = (
        '{"IsPaginated":false,"Items":['
        '{"ErrorCode":"FAILED_AT_004","Receiver":"391111111111",'
        '"SentDate":"2015-01-29 14:11:10Z","Status":2},'
        '{"ErrorCode":"","Receiver":"396666666666",'
        '"SentDate":"2015-01-29 14:11:10Z","Status":0}'
        '],"PageNumber":0,"PageSize":0,"Skipped":0,"TotalElementsCount":0}'
    )
    _serve_token(httpserver)
    httpserver.expect_request("/console/Console/Sms/List/5/Messages").respond_with_json(
        {"IsPaginated": False, "Items": [{"idMessage": 24, "Subject": "spring-sale"}]}
    )
    httpserver.expect_request(
        "/console/Console/Sms/24/Sendings/ReportDetails"
    ).respond_with_data(doc, content_type="application/json")
    sent = [
        SentRecord("+391111111111", "1", when(T0)),
        SentRecord("+396666666666", "2", when(T0)),
    ]
    since = datetime(2015, 1, 29, 14, 0, tzinfo=UTC)
    report = build(_urls(httpserver)).report(ReportQuery(since, since, sent=sent))
    assert report.final and not report.more
    assert [(d.to, d.status, d.raw_code) for d in report.deliveries] == [
        ("+391111111111", DeliveryStatus.FAILED, "FAILED_AT_004"),
        ("+396666666666", DeliveryStatus.DELIVERED, "0"),
    ]
    assert report.deliveries[0].at == datetime(2015, 1, 29, 14, 11, 10, tzinfo=UTC)


# -- lookup (reconciling unknown sends) -------------------------------------------


def test_lookup_finds_a_send_to_that_exact_number_after_since(env: Env) -> None:
    p = env.provider()
    send_all(p, ["+393331112222", "+3933311122221"])  # the second contains the first
    env.clock.advance(600)
    send_all(p, ["+393331112222"])
    found = p.lookup("+393331112222", when(T0 - 5))
    assert [d.to for d in found] == ["+393331112222"] * 2
    assert found[0].at == when(T0 + 600)  # newest first
    recent = p.lookup("+393331112222", when(T0 + 300))
    assert [d.at for d in recent] == [when(T0 + 600)]
    assert p.lookup("+393339999999", when(T0 - 5)) == []
    assert p.lookup("+393331112222", when(T0 - 5), campaign_code="other") == []


def test_lookup_needs_a_campaign_code(env: Env) -> None:
    with pytest.raises(ProviderCallError):
        env.provider(campaign_code="").lookup("+393331112222", when(T0))


# -- the emulator itself ----------------------------------------------------------------


def test_registered_emulator_serves_every_endpoint_option(env: Env) -> None:
    assert EMULATORS["mailup"] is MailUpEmulator and PROVIDERS["mailup"] is MailUp
    assert set(env.urls) == {"base_url", *MailUp.extra_urls}


def test_emulator_checks_bearer_tokens_and_quoted_expressions(env: Env) -> None:
    details = env.urls["base_url"] + "/Console/Authentication/Details"
    r = requests.get(details, headers={"Authorization": "Bearer forged"}, timeout=5)
    assert r.status_code == 401 and r.json()["ErrorDescription"].endswith(
        "invalid access token"
    )
    r = requests.post(env.urls["token_url"], json={"grant_type": "password"}, timeout=5)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
    p = env.provider()
    send_all(p, ["+393470000001"])
    auth = {"Authorization": f"Bearer {p.tokens.bearer()}"}
    report = env.urls["base_url"] + "/Console/Sms/24/Sendings/ReportDetails"
    bad = requests.get(
        report, params={"filterby": "Receiver.Contains('39')"}, headers=auth, timeout=5
    )
    assert bad.status_code == 400 and bad.json()["ErrorCode"] == "400"
    unpaged = requests.get(report, headers=auth, timeout=5).json()
    assert unpaged["IsPaginated"] is False and unpaged["TotalElementsCount"] == 0
    assert unpaged["Items"] == [
        {
            "ErrorCode": "",
            "Receiver": "393470000001",
            "SentDate": "2023-11-14 22:13:20Z",
            "Status": 1,
        }
    ]
    by_status = requests.get(
        report, params={"filterby": '"Status==0"'}, headers=auth, timeout=5
    )
    assert by_status.json()["Items"] == []


def test_emulator_fills_dynamic_fields(env: Env) -> None:
    body = {
        "Content": "Hi [name]",
        "ListGuid": CREDS["list_guid"],
        "ListSecret": str(CREDS["list_secret"]),
        "Recipient": "00393470000001",
        "DynamicFields": [{"N": "name", "V": "Ada"}],
    }
    r = requests.post(env.urls["send_url"] + "/sms/1234/5", json=body, timeout=5)
    assert r.json() == {
        "Data": {"DeliveryId": 1648, "Cost": 1.0},
        "Code": "0",
        "Description": "",
        "State": "DONE",
    }
    assert (env.emu.messages[0].to, env.emu.messages[0].text) == (
        "393470000001",
        "Hi Ada",
    )
    body["DynamicFields"] = "name=Ada"
    r = requests.post(env.urls["send_url"] + "/sms/1234/5", json=body, timeout=5)
    assert (r.status_code, r.json()["Code"]) == (400, "100")


# -- helpers ---------------------------------------------------------------------------


def _urls(httpserver: HTTPServer) -> dict[str, str]:
    return {
        "base_url": httpserver.url_for("/console"),
        "send_url": httpserver.url_for("/api/v2.0"),
        "token_url": httpserver.url_for("/token"),
    }


def _serve_token(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/token", method="POST").respond_with_json(
        {"access_token": "tok-1", "expires_in": 3600, "refresh_token": "ref-1"}
    )
