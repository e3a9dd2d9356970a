"""Tatango provider against its emulator over real HTTP on 127.0.0.1, plus
pytest-httpserver for answers the emulator never gives (HTML pages, truncated
bodies, 5xx variants, the documents' own MOMT example)."""

from __future__ import annotations

import itertools
import json
import socket
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
from werkzeug import Request as WRequest
from werkzeug import Response as WResponse

from runner.errors import ProviderError
from runner.model.campaign import ProviderConfig
from runner.model.secrets import Secret
from runner.providers import PROVIDERS
from runner.providers.base import (
    ErrorKind,
    OutboundMessage,
    ProviderCallError,
    ReportQuery,
)
from runner.providers.tatango import MomtCursor, Tatango
from runner.sandbox import EMULATORS
from runner.sandbox.server import Fault, Sandbox
from runner.sandbox.tatango import TatangoEmulator

CREDS: dict[str, Any] = {"email": "ops@example.com", "api_key": Secret("tk-8Hq2Lm5Zr")}
KEY = str(CREDS["api_key"])
T0 = 1_700_000_000.0
SEND = "/api/v2/transactional_messages"


@dataclass
class Env:
    sb: Sandbox
    name: str
    emu: TatangoEmulator
    urls: dict[str, str]
    clock: Clock

    def provider(
        self, timeout: tuple[float, float] = (2.0, 5.0), **options: Any
    ) -> Tatango:
        return build(self.urls["base_url"], timeout, **options)

    def calls(self, suffix: str = "") -> list[Any]:
        return [
            c for c in self.sb.calls if c.mount == self.name and c.path.endswith(suffix)
        ]


def build(
    base_url: str, timeout: tuple[float, float] = (2.0, 5.0), **options: Any
) -> Tatango:
    opts = {**CREDS, **options}
    cfg = ProviderConfig("main", "tatango", base_url, opts, timeout=timeout)
    return Tatango(cfg, opts)


_mounts = itertools.count()


@contextmanager
def make_env(sb: Sandbox, **emu_kwargs: Any) -> Iterator[Env]:
    clock = Clock(T0)
    emu = TatangoEmulator(dict(CREDS), clock=clock, **emu_kwargs)
    name = f"tatango{next(_mounts)}"
    try:
        yield Env(sb, name, emu, sb.mount(name, emu), clock)
    finally:
        sb.faults = None


@pytest.fixture
def env(sandbox: Sandbox) -> Iterator[Env]:
    with make_env(sandbox) as e:
        yield e


def msg(
    to: str = "+12141234567", text: str = "Order #12 is ready", **kw: Any
) -> OutboundMessage:
    return OutboundMessage(to=to, text=text, key=f"run/step/{to}", **kw)


def when(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


# -- send ---------------------------------------------------------------------------


def test_send_posts_ten_national_digits_with_basic_auth(env: Env) -> None:
    result = env.provider().send(msg())
    assert result.accepted and result.message_id == "1001"
    assert result.status == "pending"
    (call,) = env.calls(SEND)
    assert json.loads(call.body) == {
        "phone_number": "2141234567",
        "content": "Order #12 is ready",
    }
    (sent,) = env.emu.messages
    assert (sent.id, sent.to, sent.text) == ("1001", "12141234567", "Order #12 is ready")


def test_international_format_sends_the_country_code(env: Env) -> None:
    result = env.provider(phone_format="international").send(msg())
    assert result.accepted
    assert json.loads(env.calls(SEND)[0].body)["phone_number"] == "12141234567"


REFUSALS = [
    Refusal("wrong api key", ErrorKind.AUTH, "HTTP 401",
            options={"api_key": Secret("nope-nope")}, calls=1),
    Refusal("wrong email", ErrorKind.AUTH, "HTTP 401",
            options={"email": "x@example.com"}, calls=1),
    Refusal("no credits", ErrorKind.AUTH, "HTTP 403", emulator={"credits": 0}, calls=1),
    Refusal("too long", ErrorKind.REJECTED, "too-long", message={"text": "x" * 161},
            calls=0),
    Refusal("too long for Tatango", ErrorKind.REJECTED, "HTTP 422",
            options={"max_length": 500}, message={"text": "x" * 161}, calls=1),
    Refusal("not a +1 number", ErrorKind.REJECTED, "not-us-number",
            message={"to": "+34600000101"}, calls=0),
    Refusal("not a US number for Tatango", ErrorKind.REJECTED, "HTTP 422",
            options={"phone_format": "international"}, message={"to": "+34600000101"},
            calls=1),
]  # fmt: skip
SEND_REFUSALS = Refusals(
    make_env,
    send(msg),
    [KEY],
    lambda env: env.emu.messages,
    calls=lambda env: len(env.calls(SEND)),
)


@table(REFUSALS)
def test_send_refusals_are_classified(sandbox: Sandbox, case: Refusal) -> None:
    SEND_REFUSALS.run(sandbox, case)


def test_422_quotes_tatangos_reason(env: Env) -> None:
    result = env.provider(max_length=1000).send(msg(text="é" * 200))
    assert result.error is not None and result.error.code == "HTTP 422"
    assert "too long" in result.error.detail and "160" in result.error.detail


def test_rate_limit_answers_429_with_retry_after(sandbox: Sandbox) -> None:
    # the class declarations keep polling and sending within 1,200 calls an hour
    assert 3600 / Tatango.min_poll_interval <= Tatango.default_rate.count  # type: ignore[union-attr]
    with make_env(sandbox, rate_limit=(2, 10.0)) as env:
        p = env.provider()
        assert p.send(msg()).accepted
        env.clock.advance(4)
        assert p.send(msg()).accepted
        env.clock.advance(1)
        limited = p.send(msg())
        assert limited.error is not None
        assert limited.error.kind is ErrorKind.RATE_LIMITED
        assert limited.error.retry_after == 5.0  # when the first call leaves the window
        assert limited.error.retryable and not limited.error.may_have_acted
        env.clock.advance(5)
        assert p.send(msg()).accepted
        assert len(env.emu.messages) == 3


def _answer(
    status: int, body: str, ctype: str = "application/json", **headers: str
) -> WResponse:
    return WResponse(body, status=status, content_type=ctype, headers=headers)


SEND_ANSWERS = [
    # (case, answer, kind, may have acted, retry_after)
    (
        "html page",
        _answer(200, "<html><h1>Oops</h1></html>", "text/html"),
        "protocol",
        True,
        None,
    ),
    (
        "truncated",
        _answer(200, '{"status":"Message successfully sent.","transac'),
        "protocol",
        True,
        None,
    ),
    (
        "no id",
        _answer(200, '{"status":"OK","transactional_message":{}}'),
        "protocol",
        True,
        None,
    ),
    ("json list", _answer(200, "[1, 2]"), "protocol", True, None),
    (
        "500 html",
        _answer(500, "<html>Internal Server Error</html>", "text/html"),
        "transient",
        True,
        None,
    ),
    ("500 json", _answer(500, '{"error":"boom"}'), "transient", True, None),
    ("502", _answer(502, "Bad Gateway", "text/plain"), "transient", False, None),
    (
        "503",
        _answer(503, "busy", "text/plain", **{"Retry-After": "7"}),
        "transient",
        False,
        7.0,
    ),
    ("504", _answer(504, "Gateway Timeout", "text/plain"), "transient", False, None),
    (
        "429",
        _answer(429, '{"error":"slow down"}', **{"Retry-After": "30"}),
        "rate_limited",
        False,
        30.0,
    ),
    ("400", _answer(400, '{"error":"bad request"}'), "rejected", False, None),
]


@pytest.mark.parametrize(
    ("answer", "kind", "acted", "retry_after"),
    [a[1:] for a in SEND_ANSWERS],
    ids=[a[0] for a in SEND_ANSWERS],
)
def test_send_answers_the_emulator_never_gives(
    httpserver: HTTPServer,
    answer: WResponse,
    kind: str,
    acted: bool,
    retry_after: float | None,
) -> None:
    httpserver.expect_request(SEND, method="POST").respond_with_response(answer)
    result = build(httpserver.url_for("/api/v2")).send(msg())
    assert result.error is not None
    assert (result.error.kind.value, result.error.may_have_acted) == (kind, acted)
    assert result.error.retry_after == retry_after
    assert len(result.error.detail) <= 130


def test_documented_send_answer_is_parsed(httpserver: HTTPServer) -> None:
    answer = {
        "status": "Message successfully sent.",
        "transactional_message": {
            "id": 98765,
            "number": "2141234567",
            "content": "Order #12 is ready",
            "status": "pending",
        },
    }
    httpserver.expect_request(
        SEND,
        method="POST",
        json={"phone_number": "2141234567", "content": "Order #12 is ready"},
        headers={"Accept": "application/json", "Content-Type": "application/json"},
    ).respond_with_json(answer)
    result = build(httpserver.url_for("/api/v2")).send(msg())
    assert (result.message_id, result.status) == ("98765", "pending")


def test_error_excerpt_never_quotes_the_api_key(httpserver: HTTPServer) -> None:
    def echo(request: WRequest) -> WResponse:  # a server that echoes what it got
        auth = request.headers.get("Authorization", "")
        return WResponse(
            f"{KEY} denied for {auth}", status=401, content_type="text/plain"
        )

    httpserver.expect_request(SEND).respond_with_handler(echo)
    result = build(httpserver.url_for("/api/v2")).send(msg())
    assert result.error is not None and result.error.kind is ErrorKind.AUTH
    assert KEY not in result.error.detail and "***" in result.error.detail


def test_read_timeout_is_unknown_and_connection_refused_is_retryable(env: Env) -> None:
    env.sb.faults = lambda mount, req: Fault(drop=True, hang=0.5)
    result = env.provider(timeout=(1.0, 0.2)).send(msg())
    assert result.error is not None and result.error.code == "timeout"
    assert result.error.may_have_acted and not result.error.retryable

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = build(f"http://127.0.0.1:{port}/api/v2").send(msg())
    assert result.error is not None and result.error.kind is ErrorKind.TRANSIENT
    assert not result.error.may_have_acted and result.error.retryable


def test_max_text_length_is_160_unless_set(env: Env) -> None:
    assert env.provider().max_text_length(False) == 160
    assert env.provider().max_text_length(True) == 160
    assert env.provider(max_length=70).max_text_length(True) == 70


def test_bad_phone_format_is_a_configuration_error() -> None:
    with pytest.raises(ProviderError, match="phone_format"):
        build("http://127.0.0.1:9", phone_format="e164")


# -- MOMT report --------------------------------------------------------------------


def test_report_completes_after_several_polls_with_counts(sandbox: Sandbox) -> None:
    with make_env(sandbox, report_steps=(10, 50, 100)) as env:
        p = env.provider()
        env.clock.advance(-86_400)
        assert p.send(msg(to="+12145550100")).accepted  # a day before: out of range
        env.clock.advance(86_400)
        for n in ("+12145550101", "+12145550102"):
            assert p.send(msg(to=n)).accepted
        env.emu.add_mo("+12145550101", "STOP")
        env.emu.add_mo("+12145550109", "old", at=T0 - 86_400)
        query = ReportQuery(since=when(T0 - 60), until=when(T0 + 60))

        first = p.report(query)
        assert not first.final and first.cursor == MomtCursor("1")
        assert first.counts == {"percent_complete": 0.0}
        seen = [first]
        while not seen[-1].final:
            assert len(seen) < 10
            seen.append(p.report(query, seen[-1].cursor))
        assert [r.counts["percent_complete"] for r in seen] == [0, 10, 50, 100]
        last = seen[-1]
        assert last.counts == {"percent_complete": 100, "mo_count": 1, "mt_count": 2}
        assert last.cursor is None
        assert last.details["s3_url"].endswith("/s3/momt_reports/1.csv")
        assert last.details["report_id"] == "1"

        (create,) = [c for c in env.calls("/momt_reports") if c.method == "POST"]
        assert json.loads(create.body) == {
            "date_from": "2023-11-14T22:12:20+00:00",
            "date_to": "2023-11-14T22:14:20+00:00",
        }
        assert len(env.calls("/momt_reports/1")) == 3
        csv = requests.get(last.details["s3_url"], timeout=5).text.splitlines()
        assert csv[0] == "direction,phone_number,content,created_at"
        assert sorted(line.split(",")[0] for line in csv[1:]) == ["MO", "MT", "MT"]


def test_report_window_covers_the_fractions_of_its_seconds(env: Env) -> None:
    p = env.provider()
    env.clock.advance(0.5)
    assert p.send(msg()).accepted  # at T0 + 0.5, inside a window ending at T0 + 0.6
    query = ReportQuery(since=when(T0 + 0.2), until=when(T0 + 0.6))
    report = p.report(query)
    while not report.final:
        report = p.report(query, report.cursor)
    assert report.counts["mt_count"] == 1
    body = json.loads(env.calls("/momt_reports")[0].body)
    assert (body["date_from"], body["date_to"]) == (
        "2023-11-14T22:13:20+00:00",
        "2023-11-14T22:13:21+00:00",
    )


def test_report_passes_the_webhook_from_options_or_the_step(env: Env) -> None:
    query = ReportQuery(since=when(T0), until=when(T0 + 1))
    env.provider().report(query)
    hooked = env.provider(webhook_callback_url="https://hooks.example.com/a")
    hooked.report(query)
    step = ReportQuery(
        since=when(T0),
        until=when(T0 + 1),
        options={"webhook_callback_url": "https://hooks.example.com/b"},
    )
    hooked.report(step)
    bodies = [json.loads(c.body) for c in env.calls("/momt_reports")]
    assert [b.get("webhook_callback_url") for b in bodies] == [
        None,
        "https://hooks.example.com/a",
        "https://hooks.example.com/b",
    ]
    assert env.emu.reports[3]["webhook_callback_url"] == "https://hooks.example.com/b"


@pytest.mark.parametrize(
    ("breakage", "code"),
    [
        ({"run_errors": "S3 upload failed"}, "run_errors"),
        ({"cancelled": True}, "cancelled"),
    ],
)
def test_a_failed_report_raises(env: Env, breakage: dict[str, Any], code: str) -> None:
    p = env.provider()
    first = p.report(ReportQuery(since=when(T0), until=when(T0 + 1)))
    env.emu.break_report(1, **breakage)
    with pytest.raises(ProviderCallError) as e:
        p.report(ReportQuery(since=when(T0), until=when(T0 + 1)), first.cursor)
    assert e.value.error.kind is ErrorKind.REJECTED and e.value.error.code == code
    assert not e.value.error.retryable
    assert "S3 upload failed" in e.value.error.detail or code == "cancelled"


def test_report_refusals_from_the_emulator(env: Env) -> None:
    query = ReportQuery(since=when(T0), until=when(T0 + 1))
    with pytest.raises(ProviderCallError) as e:
        env.provider(api_key=Secret("wrong-key-1")).report(query)
    assert e.value.error.kind is ErrorKind.AUTH
    with pytest.raises(ProviderCallError) as e:
        env.provider().report(query, MomtCursor("404"))
    assert e.value.error.kind is ErrorKind.REJECTED and e.value.error.code == "HTTP 404"
    backwards = ReportQuery(since=when(T0 + 1), until=when(T0))
    with pytest.raises(ProviderCallError) as e:
        env.provider().report(backwards)
    assert e.value.error.code == "HTTP 422" and "date_to" in e.value.error.detail


DOC_EXAMPLE: dict[str, Any] = {
    "status": "OK",
    "momt_report": {
        "id": 2,
        "account_id": 21,
        "s3_url": None,
        "import_started_at": None,
        "import_completed_at": None,
        "total_rows": None,
        "processed_rows": 0,
        "percent_complete": 0,
        "mo_count": 0,
        "mt_count": 0,
        "date_range": "json",
        "date_from": "2016-08-08T22:10:41+01:00",
        "date_to": "2016-09-07T22:10:41+01:00",
        "created_at": "2016-09-07T14:10:41-07:00",
        "updated_at": "2016-09-07T14:10:41-07:00",
        "counts_calculated": False,
        "is_csv": False,
        "webhook_callback_url": None,
        "run_errors": None,
        "cancelled": None,
    },
}


def test_documented_status_example_is_a_pending_report(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v2/momt_reports/2", method="GET").respond_with_json(
        DOC_EXAMPLE
    )
    query = ReportQuery(since=when(T0), until=when(T0))
    report = build(httpserver.url_for("/api/v2")).report(query, MomtCursor("2"))
    assert not report.final and report.cursor == MomtCursor("2")
    assert report.counts == {"percent_complete": 0}
    assert report.details["date_from"] == "2016-08-08T22:10:41+01:00"


REPORT_ANSWERS = [
    # (case, answer, kind, retryable)
    (
        "html page",
        _answer(200, "<html>maintenance</html>", "text/html"),
        "protocol",
        False,
    ),
    ("truncated", _answer(200, json.dumps(DOC_EXAMPLE)[:60]), "protocol", False),
    ("no momt_report", _answer(200, '{"status":"OK"}'), "protocol", False),
    (
        "percent not a number",
        _answer(200, json.dumps({"momt_report": {"id": 2, "percent_complete": "x"}})),
        "protocol",
        False,
    ),
    ("500", _answer(500, "oops", "text/plain"), "transient", True),
    (
        "503",
        _answer(503, "busy", "text/plain", **{"Retry-After": "3"}),
        "transient",
        True,
    ),
    ("429", _answer(429, "{}", **{"Retry-After": "60"}), "rate_limited", True),
]


@pytest.mark.parametrize(
    ("answer", "kind", "retryable"),
    [a[1:] for a in REPORT_ANSWERS],
    ids=[a[0] for a in REPORT_ANSWERS],
)
def test_report_answers_the_emulator_never_gives(
    httpserver: HTTPServer, answer: WResponse, kind: str, retryable: bool
) -> None:
    httpserver.expect_request("/api/v2/momt_reports/2").respond_with_response(answer)
    query = ReportQuery(since=when(T0), until=when(T0))
    with pytest.raises(ProviderCallError) as e:
        build(httpserver.url_for("/api/v2")).report(query, MomtCursor("2"))
    assert (e.value.error.kind.value, e.value.error.retryable) == (kind, retryable)


def test_a_report_poll_that_times_out_may_be_retried(env: Env) -> None:
    env.sb.faults = lambda mount, req: Fault(drop=True, hang=0.5)
    with pytest.raises(ProviderCallError) as e:
        env.provider(timeout=(1.0, 0.2)).report(
            ReportQuery(since=when(T0), until=when(T0)), MomtCursor("1")
        )
    assert e.value.error.code == "timeout" and e.value.error.retryable


# -- the emulator itself -------------------------------------------------------------


def test_registered_for_the_sandbox() -> None:
    assert EMULATORS["tatango"] is TatangoEmulator and PROVIDERS["tatango"] is Tatango


def test_emulator_pages_the_report_list(env: Env) -> None:
    p = env.provider()
    for _ in range(5):
        p.report(ReportQuery(since=when(T0), until=when(T0 + 1)))
    url = env.urls["base_url"] + "/momt_reports"
    auth = (CREDS["email"], KEY)

    def ids(**params: Any) -> list[int]:
        resp = requests.get(url, params=params, auth=auth, timeout=5)
        assert resp.status_code == 200, resp.text
        return [r["id"] for r in resp.json()["momt_reports"]]

    assert [ids(page=n, per_page=2) for n in (1, 2, 3, 4)] == [[1, 2], [3, 4], [5], []]
    assert ids(per_page=5000) == [1, 2, 3, 4, 5]  # per_page is capped at 1000
    bad = requests.get(url, params={"page": 0}, auth=auth, timeout=5)
    assert bad.status_code == 422
    assert requests.get(url, timeout=5).status_code == 401


EMULATOR_SENDS = [
    # (case, headers, body, status, error field)
    ("no auth", {}, {"phone_number": "2141234567", "content": "hi"}, 401, None),
    (
        "dashes",
        None,
        {"phone_number": "214-123-4567", "content": "hi"},
        422,
        "phone_number",
    ),
    (
        "nine digits",
        None,
        {"phone_number": "214123456", "content": "hi"},
        422,
        "phone_number",
    ),
    (
        "number as int",
        None,
        {"phone_number": 2141234567, "content": "hi"},
        422,
        "phone_number",
    ),
    (
        "blank content",
        None,
        {"phone_number": "2141234567", "content": ""},
        422,
        "content",
    ),
    (
        "161 characters",
        None,
        {"phone_number": "2141234567", "content": "x" * 161},
        422,
        "content",
    ),
    ("form body", {"Content-Type": "application/x-www-form-urlencoded"}, None, 415, None),
]


@pytest.mark.parametrize(
    ("headers", "body", "status", "field"),
    [c[1:] for c in EMULATOR_SENDS],
    ids=[c[0] for c in EMULATOR_SENDS],
)
def test_emulator_checks_auth_and_the_send_body(
    env: Env, headers: dict[str, str] | None, body: Any, status: int, field: str | None
) -> None:
    url = env.urls["base_url"] + "/transactional_messages"
    auth = None if headers == {} else (CREDS["email"], KEY)
    if body is None:
        resp = requests.post(url, data="a=b", headers=headers, auth=auth, timeout=5)
    else:
        resp = requests.post(url, json=body, auth=auth, timeout=5)
    assert resp.status_code == status
    if status == 401:
        assert resp.headers["WWW-Authenticate"].startswith("Basic")
    if field:
        assert field in resp.json()["errors"]
    assert env.emu.messages == []


def test_emulator_csv_is_served_only_when_complete(env: Env) -> None:
    env.provider().report(ReportQuery(since=when(T0), until=when(T0 + 1)))
    csv_url = env.urls["base_url"].replace("/api/v2", "/s3/momt_reports/1.csv")
    resp = requests.get(csv_url, timeout=5)
    assert resp.status_code == 404
