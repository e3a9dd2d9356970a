"""Ogangi provider against its emulator over real HTTP on 127.0.0.1, plus
pytest-httpserver for answers the emulator never gives (ERROR, HTML pages,
truncated XML, 5xx variants, hostile XML)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import itertools
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from clockkit import Clock
from pytest_httpserver import HTTPServer
from refusalkit import Refusal, Refusals, send, table
from werkzeug import Response as WResponse

from runner.errors import ProviderError
from runner.loader.schema import provider_fragment
from runner.model.campaign import ProviderConfig
from runner.model.secrets import Secret
from runner.providers import PROVIDERS
from runner.providers.base import (
    Capability,
    DeliveryStatus,
    ErrorKind,
    OutboundMessage,
    ProviderCallError,
    ReportQuery,
    SentRecord,
)
from runner.providers.ogangi import DEFAULTS, Ogangi
from runner.providers.ogangi_answers import delivery_status
from runner.providers.ogangi_mo import ReportCursor, search_string
from runner.sandbox import EMULATORS
from runner.sandbox.ogangi import FIRST_ID, OgangiEmulator
from runner.sandbox.server import Fault, Sandbox
from runner.sandbox.server import Response as SbResponse

PUBLIC = "pub-Zq81LxK"
PRIVATE = "priv-7Hs2mWq9"
CREDS: dict[str, Any] = {
    "instance_id": 8,
    "public_key": Secret(PUBLIC),
    "private_key": Secret(PRIVATE),
    "sender": "2020",
}
T0 = 1_700_000_000.0
TO = "+584121234501"
TO_B64 = "NTg0MTIxMjM0NTAx"  # base64("584121234501"), written out by hand
HOLA_B64 = "SG9sYQ=="  # base64("Hola")


def by_hand(signed: str, key: str = PRIVATE) -> str:
    """The documented signature, computed here without the provider's code."""
    return hmac.new(key.encode(), signed.encode(), hashlib.sha256).hexdigest()


@dataclass
class Env:
    sb: Sandbox
    name: str
    emu: OgangiEmulator
    urls: dict[str, str]
    clock: Clock

    def provider(
        self, timeout: tuple[float, float] = (2.0, 5.0), **options: Any
    ) -> Ogangi:
        return build(self.urls["base_url"], timeout, **options)

    def paths(self) -> list[str]:
        return [c.path for c in self.sb.calls if c.mount == self.name]


def build(
    base_url: str, timeout: tuple[float, float] = (2.0, 5.0), **options: Any
) -> Ogangi:
    opts = {**CREDS, **options}
    cfg = ProviderConfig(
        name="main", type="ogangi", base_url=base_url, options=opts, timeout=timeout
    )
    return Ogangi(cfg, opts)


_mounts = itertools.count()


@contextmanager
def make_env(
    sb: Sandbox, emu_options: dict[str, Any] | None = None, **kw: Any
) -> Iterator[Env]:
    clock = Clock(T0)
    emu = OgangiEmulator({**CREDS, **(emu_options or {})}, clock=clock, **kw)
    name = f"ogangi{next(_mounts)}"
    try:
        yield Env(sb, name, emu, sb.mount(name, emu), clock)
    finally:
        sb.faults = None


@pytest.fixture
def env(sandbox: Sandbox) -> Iterator[Env]:
    with make_env(sandbox) as e:
        yield e


def msg(to: str = TO, text: str = "Hola", **kw: Any) -> OutboundMessage:
    return OutboundMessage(to=to, text=text, key=f"run/step/{to}", **kw)


def assert_clean(text: str) -> None:
    assert PRIVATE not in text and PUBLIC not in text


def when(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


# -- the signature and the URLs --------------------------------------------------------


def test_signature_of_the_documented_login_example() -> None:
    p = build("http://127.0.0.1:9", private_key=Secret("peterkey"))
    expected = hmac.new(b"peterkey", b"8/peter/peterpassword", hashlib.sha256).hexdigest()
    assert p.signature(["8", "peter", "peterpassword"]) == expected


def test_send_sms_url_is_signed_over_the_base64_path_parameters(env: Env) -> None:
    result = env.provider().send(msg())
    assert result.accepted and result.status == "SENT_TO_CARRIER"
    assert result.message_id == str(FIRST_ID + 1) and int(result.message_id) < 0
    signed = f"8/null/2020/{TO_B64}/{HOLA_B64}"
    assert env.paths() == [f"/rest/api/tools/sendSMS/{signed}/{PUBLIC}/{by_hand(signed)}"]
    (sent,) = env.emu.messages
    assert (sent.to, sent.text, sent.sender, sent.id) == (
        "584121234501",
        "Hola",
        "2020",
        result.message_id,
    )


def test_ids_stay_negative_64_bit_strings(env: Env) -> None:
    p = env.provider()
    ids = [p.send(msg(to=f"+58412123450{i}")).message_id for i in range(3)]
    assert ids == [str(FIRST_ID + n) for n in (1, 2, 3)]
    assert all(-(2**63) <= int(i) < 0 for i in ids if i)


@pytest.mark.parametrize(
    ("options", "params"),
    [
        ({}, f"8/2020/null/584121234501/{HOLA_B64}"),
        ({"flags": "X1"}, f"8/2020/null/584121234501/{HOLA_B64}/X1"),
        ({"carrier": "Movistar"}, f"8/2020/Movistar/584121234501/{HOLA_B64}"),
    ],
    ids=["plain", "with flags", "carrier"],
)
def test_send_mt_keeps_the_number_plain_and_answers_without_an_id(
    env: Env, options: dict[str, Any], params: str
) -> None:
    result = env.provider(method="send_mt", **options).send(msg())
    assert result.accepted and result.message_id is None and result.status == "OK"
    assert env.paths() == [f"/rest/api/sendMT/{params}/{PUBLIC}/{by_hand(params)}"]
    assert [m.to for m in env.emu.messages] == ["584121234501"]


# Text whose standard Base64 holds both "/" and "+": "ÿ?>>>" -> "w78/Pj4+"
AWKWARD = "ÿ?>>>"
CONVENTIONS = [
    # (case, options, expected piece of the raw URL path)
    ("base64 signature", {"signature_encoding": "base64"}, None),
    ("base64url signature", {"signature_encoding": "base64url"}, None),
    ("standard alphabet", {"base64_alphabet": "standard"}, "/w78%2FPj4%2B/"),
    (
        "standard, encoded form signed",
        {"base64_alphabet": "standard", "signed_form": "encoded"},
        "/w78%2FPj4%2B/",
    ),
    ("urlsafe alphabet", {}, "/w78_Pj4-/"),
    ("e164 number", {"method": "send_mt", "number_format": "e164"}, "/%2B584121234501/"),
    ("00 number", {"method": "send_mt", "number_format": "intl_00"}, "/00584121234501/"),
    ("e164 in Base64", {"number_format": "e164"}, "/KzU4NDEyMTIzNDUwMQ==/"),
]


@pytest.mark.parametrize(
    ("options", "piece"),
    [c[1:] for c in CONVENTIONS],
    ids=[c[0] for c in CONVENTIONS],
)
def test_every_convention_is_an_option_the_emulator_follows(
    sandbox: Sandbox, options: dict[str, Any], piece: str | None
) -> None:
    with make_env(sandbox, options) as env:
        result = env.provider(**options).send(msg(text=AWKWARD))
        assert result.accepted, result.error
        (sent,) = env.emu.messages
        assert (sent.to, sent.text) == ("584121234501", AWKWARD)
        (path,) = env.paths()
        if piece:
            assert piece in path
        signature = unquote(path.rsplit("/", 1)[1])
        if options.get("signature_encoding") == "base64":
            assert len(base64.b64decode(signature)) == 32
        elif options.get("signature_encoding") == "base64url":
            assert len(base64.urlsafe_b64decode(signature)) == 32
        else:
            assert re.fullmatch(r"[0-9a-f]{64}", signature)


def test_standard_alphabet_signs_the_decoded_or_the_encoded_form(env: Env) -> None:
    params = ["8", "null", "2020", "NTg0MTIxMjM0NTAx", "w78/Pj4+"]
    decoded = build("http://x", base64_alphabet="standard").signature(params)
    encoded = build("http://x", base64_alphabet="standard", signed_form="encoded")
    assert decoded == by_hand("8/null/2020/NTg0MTIxMjM0NTAx/w78/Pj4+")
    assert encoded.signature(params) == by_hand(
        "8/null/2020/NTg0MTIxMjM0NTAx/w78%2FPj4%2B"
    )


def test_a_mismatched_convention_is_refused_like_a_bad_signature(
    sandbox: Sandbox,
) -> None:
    with make_env(sandbox) as env:  # the server expects hex
        result = env.provider(signature_encoding="base64").send(msg())
    assert result.error is not None and result.error.code == "BAD_SIGNATURE"


# -- refusals --------------------------------------------------------------------------

REFUSALS = [
    Refusal("wrong private key", ErrorKind.AUTH, "BAD_SIGNATURE",
            options={"private_key": Secret("priv-wrong-1")}),
    Refusal("wrong public key", ErrorKind.AUTH, "BAD_SIGNATURE",
            options={"public_key": Secret("pub-wrong-22")}),
    Refusal("wrong instance", ErrorKind.AUTH, "BAD_SIGNATURE",
            options={"instance_id": 9}),
    Refusal("bad number", ErrorKind.REJECTED, "BAD_TO", message={"to": "+0123456789"}),
    Refusal("bad sender", ErrorKind.REJECTED, "BAD_FROM", message={"sender": "ACME"}),
    Refusal("bad number send_mt", ErrorKind.REJECTED, "BAD_TO",
            options={"method": "send_mt"}, message={"to": "+0123456789"}),
    Refusal("no credits", ErrorKind.AUTH, "NOT_ENOUGH_FUNDS", emulator={"credits": 0}),
    Refusal("not a number", ErrorKind.REJECTED, "bad-number", message={"to": "+58"}),
    Refusal("empty text", ErrorKind.REJECTED, "empty-text", message={"text": ""}),
]  # fmt: skip
SEND_REFUSALS = Refusals(
    make_env, send(msg), [PRIVATE, PUBLIC], lambda env: env.emu.messages
)


@table(REFUSALS)
def test_send_refusals_are_classified(sandbox: Sandbox, case: Refusal) -> None:
    SEND_REFUSALS.run(sandbox, case)


def _xml(
    body: str, status: int = 200, ctype: str = "application/xml", **headers: str
) -> WResponse:
    return WResponse(body, status, headers, content_type=ctype)


def _answer(status: str, description: str = "", result: str = "") -> str:
    return (
        f"<response><input>sendSMS</input><status>{status}</status>"
        f"<description>{description}</description>{result}</response>"
    )


def _message(status: str, ident: str = "-8174720676710228700") -> str:
    return (
        f"<result><messages><message><id>{ident}</id><status>{status}</status>"
        f"<statusDescription>{status.title()}</statusDescription></message></messages>"
        "</result>"
    )


ANSWERS = [
    # (case, answer, accepted, kind, code, may_have_acted)
    ("ERROR", _xml(_answer("ERROR", "Internal error: db")), False, ErrorKind.TRANSIENT,
     "ERROR", True),
    ("ERROR with 500", _xml(_answer("ERROR", "Internal error"), 500), False,
     ErrorKind.TRANSIENT, "ERROR", True),
    ("BAD_SIGNATURE with 403", _xml(_answer("BAD_SIGNATURE", "Invalid signature"), 403),
     False, ErrorKind.AUTH, "BAD_SIGNATURE", False),
    ("BAD ADDRESS", _xml(_answer("OK", "Completed", _message("BAD ADDRESS"))), False,
     ErrorKind.REJECTED, "BAD ADDRESS", False),
    ("BAD_CARRIER/FROM", _xml(_answer("OK", "Completed", _message("BAD_CARRIER/FROM"))),
     False, ErrorKind.REJECTED, "BAD_CARRIER/FROM", False),
    ("DELIVRD", _xml(_answer("OK", "Completed", _message("DELIVRD"))), True, None,
     "DELIVRD", None),
    ("unknown message status",
     _xml(_answer("OK", "Completed", _message("QUEUED_ON_MARS"))), True, None,
     "QUEUED_ON_MARS", None),
    ("namespaced root", _xml('<x:r xmlns:x="urn:o"><x:status>OK</x:status></x:r>'), True,
     None, "OK", None),
    ("unknown status", _xml(_answer("MAINTENANCE")), False, ErrorKind.PROTOCOL,
     "protocol", True),
    ("no status", _xml("<response><input>sendSMS</input></response>"), False,
     ErrorKind.PROTOCOL, "protocol", True),
    ("200 html page", _xml("<html><body>maintenance</body></html>", ctype="text/html"),
     False, ErrorKind.PROTOCOL, "protocol", True),
    ("200 json", _xml('{"status":"OK"}', ctype="application/json"), False,
     ErrorKind.PROTOCOL, "protocol", True),
    ("200 truncated", _xml(_answer("OK", "Completed", _message("SENT"))[:60]), False,
     ErrorKind.PROTOCOL, "protocol", True),
    ("500 html page", _xml("<html><h1>500</h1></html>", 500, "text/html"), False,
     ErrorKind.TRANSIENT, "HTTP 500", True),
    ("503 retry after", _xml("down", 503, "text/plain", **{"Retry-After": "7"}), False,
     ErrorKind.TRANSIENT, "HTTP 503", False),
    ("502 gateway", _xml("bad gateway", 502, "text/plain"), False, ErrorKind.TRANSIENT,
     "HTTP 502", False),
    ("429", _xml("slow down", 429, "text/plain"), False, ErrorKind.RATE_LIMITED,
     "HTTP 429", False),
    ("401", _xml("no", 401, "text/plain"), False, ErrorKind.AUTH, "HTTP 401", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "accepted", "kind", "code", "acted"),
    [c[1:] for c in ANSWERS],
    ids=[c[0] for c in ANSWERS],
)
def test_send_answers_the_emulator_never_gives(
    httpserver: HTTPServer,
    answer: WResponse,
    accepted: bool,
    kind: ErrorKind | None,
    code: str,
    acted: bool | None,
) -> None:
    httpserver.expect_request(
        re.compile("/rest/api/tools/sendSMS/.*")
    ).respond_with_response(answer)
    result = build(httpserver.url_for("")).send(msg())
    assert result.accepted is accepted
    if accepted:
        assert result.status == code
        return
    assert result.error is not None
    assert (result.error.kind, result.error.code, result.error.may_have_acted) == (
        kind,
        code,
        acted,
    )
    assert len(result.error.detail) <= 160
    if code == "HTTP 503":
        assert result.error.retry_after == 7.0 and result.error.retryable


def test_error_details_never_quote_keys_or_signatures(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that echoes the request URL in an error page, and urllib3's debug
    log of the request line: the public key and the signature are masked."""

    def echo(request: Any) -> WResponse:
        return WResponse(f"<html>no route for {request.path}</html>", 404)

    httpserver.expect_request(re.compile("/rest/api/.*")).respond_with_handler(echo)
    p = build(httpserver.url_for(""))
    with caplog.at_level(logging.DEBUG, logger="urllib3"):
        result = p.send(msg())
    assert result.error is not None and result.error.code == "HTTP 404"
    signature = by_hand(f"8/null/2020/{TO_B64}/{HOLA_B64}")
    ours = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("urllib3")
    )
    for text in (str(result.error), ours):
        assert_clean(text)
        assert signature not in text and signature[:16] not in text
    assert "/rest/api/tools/sendSMS/" in ours  # the line itself is still there


def test_read_timeout_is_unknown_and_connection_refused_is_retryable(env: Env) -> None:
    env.sb.faults = lambda mount, req: Fault(drop=True, hang=0.5)
    result = env.provider(timeout=(1.0, 0.2)).send(msg())
    assert result.error is not None and result.error.code == "timeout"
    assert result.error.may_have_acted and not result.error.retryable

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = build(f"http://127.0.0.1:{port}").send(msg())
    assert result.error is not None and result.error.kind is ErrorKind.TRANSIENT
    assert not result.error.may_have_acted and result.error.retryable
    assert_clean(str(result.error))


def test_a_500_after_the_send_is_unknown_with_a_short_excerpt(env: Env) -> None:
    long_page = SbResponse(500, b"<p>oops</p>" * 500, "text/html")
    env.sb.faults = lambda mount, req: Fault(mangle=lambda r: long_page)
    result = env.provider().send(msg())
    assert result.error is not None and result.error.code == "HTTP 500"
    assert result.error.may_have_acted and len(result.error.detail) <= 120
    assert len(env.emu.messages) == 1  # why it must be recorded unknown


def test_a_truncated_answer_after_the_send_is_unknown(env: Env) -> None:
    def cut(r: SbResponse) -> SbResponse:
        return SbResponse(r.status, r.body[: len(r.body) // 2], r.content_type)

    env.sb.faults = lambda mount, req: Fault(mangle=cut)
    result = env.provider().send(msg())
    assert result.error is not None and result.error.kind is ErrorKind.PROTOCOL
    assert result.error.may_have_acted and "not usable XML" in result.error.detail
    assert len(env.emu.messages) == 1


# -- hostile XML from a server (issue 6) -----------------------------------------------


def _evil(kind: str, target: str) -> bytes:
    if kind == "billion laughs":
        lol = "".join(
            f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
        )
        return (
            f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY l0 "lol">{lol}]>'
            "<response><status>OK</status><description>&l9;</description></response>"
        ).encode()
    return (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "{target}">]>'
        "<response><status>OK</status><description>&x;</description></response>"
    ).encode()


@pytest.mark.parametrize("kind", ["billion laughs", "external entity", "passwd"])
def test_hostile_xml_from_the_sandbox_is_refused_without_reading_or_hanging(
    env: Env, tmp_path: Path, kind: str
) -> None:
    fifo = tmp_path / "block.fifo"  # opening it for reading would block for ever
    os.mkfifo(fifo)
    target = "file:///etc/passwd" if kind == "passwd" else fifo.as_uri()
    body = _evil(kind, target)
    env.sb.faults = lambda mount, req: Fault(
        response=SbResponse(200, body, "application/xml")
    )
    p = env.provider()
    out: list[Any] = []

    def calls() -> None:
        out.append(p.send(msg()))
        try:
            p.incoming({}, 1, 10)
        except ProviderCallError as e:
            out.append(e.error)

    started = time.monotonic()
    t = threading.Thread(target=calls, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive() and time.monotonic() - started < 3
    send, listing = out
    assert send.error.kind is ErrorKind.PROTOCOL and send.error.may_have_acted
    assert listing.kind is ErrorKind.PROTOCOL and "refused" in listing.detail
    assert "root:" not in str(send.error) + str(listing)


# -- PIN, fireMessage ------------------------------------------------------------------


def test_send_pin_returns_the_generated_pin(env: Env) -> None:
    result = env.provider().send_pin(msg(text="Your code"), 6)
    pin = result.secret
    assert result.accepted and pin is not None and re.fullmatch(r"\d{6}", pin)
    assert env.emu.pins == [("584121234501", pin)]
    assert pin not in repr(result)  # a secret: never in a repr or a log line
    text = base64.urlsafe_b64encode(b"Your code").decode()
    params = f"8/null/2020/584121234501/{text}/6"
    assert env.paths() == [
        f"/rest/api/tools/sendSMSPinMobileNumberConfirm/{params}/{PUBLIC}/"
        + by_hand(params)
    ]
    assert env.emu.messages[0].extra["pin"] == pin


def test_send_pin_failures(env: Env, httpserver: HTTPServer) -> None:
    with pytest.raises(ValueError, match="PIN length"):
        env.provider().send_pin(msg(), 0)
    refused = env.provider(private_key=Secret("nope-nope")).send_pin(msg(), 4)
    assert refused.error is not None and refused.error.kind is ErrorKind.AUTH
    bad = env.provider().send_pin(msg(to="+12"), 4)
    assert bad.error is not None and bad.error.code == "bad-number"
    assert env.emu.pins == []
    httpserver.expect_request(re.compile("/rest/api/.*")).respond_with_response(
        _xml(_answer("OK", "Completed", "<result><PinSMSConfirmation/></result>"))
    )
    garbled = build(httpserver.url_for("")).send_pin(msg(), 4)
    # the PIN went out but we cannot tell which: unknown, never sent blindly again
    assert garbled.error is not None and garbled.error.kind is ErrorKind.PROTOCOL
    assert garbled.error.may_have_acted and "without pin" in str(garbled.error)


def test_fire_get_and_post(env: Env) -> None:
    p = env.provider()
    assert p.fire(msg(text="STOP")).accepted
    descriptor = {"campaign": "join", "mobileNumber": "ignored"}
    assert p.fire(msg(to="+584121234502", text="Hola de nuevo"), descriptor).accepted
    assert [(m.from_, m.text) for m in env.emu.mo] == [
        ("584121234501", "STOP"),
        ("584121234502", "Hola de nuevo"),
    ]
    get, post = [c for c in env.sb.calls if c.mount == env.name]
    assert get.path == (
        f"/rest/api/fireMessage/8/584121234501/U1RPUA==/{PUBLIC}/"
        + by_hand("8/584121234501/U1RPUA==")
    )
    assert (post.method, post.path) == (
        "POST",
        f"/rest/api/fireMessage/8/{PUBLIC}/{by_hand('8')}",
    )
    # the descriptor's own fields, with the number and the text of the message
    assert json.loads(post.body) == {
        "campaign": "join",
        "mobileNumber": "584121234502",
        "text": "Hola de nuevo",
    }


def test_fire_refused(env: Env) -> None:
    empty = env.provider().fire(msg(text=""))
    assert empty.error is not None and empty.error.code == "empty-text"
    refused = env.provider(private_key=Secret("nope-nope")).fire(msg())
    assert refused.error is not None and refused.error.kind is ErrorKind.AUTH
    assert env.emu.mo == []


# -- incoming (getMOMessages) ----------------------------------------------------------


def test_search_string_is_comma_separated_with_the_regex_url_encoded() -> None:
    text = search_string(
        {
            "order": "desc",
            "keyword": "^(STOP|BAJA).*",
            "from": ["584121234501", "584121234502"],
            "carrier": "Movistar Ve",
        }
    )
    assert text == (
        "from=584121234501,584121234502&keyword=%5E%28STOP%7CBAJA%29.%2A"
        "&carrier=Movistar%20Ve&order=desc"
    )
    with pytest.raises(ValueError, match="unknown search key"):
        search_string({"text": "x"})
    with pytest.raises(ValueError, match="asc or desc"):
        search_string({"order": "up"})


def _fill(emu: OgangiEmulator, n: int) -> None:
    for i in range(n):
        emu.add_mo(f"58412123450{i}", "2020", f"reply {i}", at=T0 + i)


def test_incoming_pages_and_search_is_one_base64_segment(env: Env) -> None:
    _fill(env.emu, 7)
    p = env.provider()
    pages = [p.incoming({"order": "asc"}, page, 3) for page in (1, 2, 3)]
    assert [total for total, _ in pages] == [7, 7, 7]
    assert [len(items) for _, items in pages] == [3, 3, 1]
    assert [m.text for _, items in pages for m in items] == [
        f"reply {i}" for i in range(7)
    ]
    first = pages[0][1][0]
    assert (first.from_, first.to, first.carrier, first.encoding) == (
        "584121234500",
        "2020",
        "Movistar",
        "UTF-8",
    )
    assert first.at == when(T0) and first.send_date == "2023-11-14 22:13:20.000"
    segment = env.paths()[0].split("/")[-3]
    assert base64.urlsafe_b64decode(segment) == b"order=asc"


SEARCHES = [
    ({"from": ["584121234501", "584121234503"]}, ["reply 1", "reply 3"]),
    ({"keyword": "^REPLY [0-2]$"}, ["reply 0", "reply 1", "reply 2"]),
    ({"keyword": ["^stop.*", "reply 6"], "order": "desc"}, ["reply 6"]),
    ({"to": "2020", "order": "desc"}, [f"reply {i}" for i in range(6, -1, -1)]),
    ({"carrier": "movistar", "from": "584121234505"}, ["reply 5"]),
    ({"carrier": "Digitel"}, []),
    ({}, [f"reply {i}" for i in range(7)]),
]


@pytest.mark.parametrize(("search", "texts"), SEARCHES)
def test_incoming_search_filters(
    env: Env, search: dict[str, Any], texts: list[str]
) -> None:
    _fill(env.emu, 7)
    total, items = env.provider().incoming(search, 1, 100)
    assert total == len(texts) and [m.text for m in items] == texts


def test_incoming_plain_search_and_zero_based_pages(sandbox: Sandbox) -> None:
    opts = {"mo_search_encoding": "plain", "mo_first_page": 0}
    with make_env(sandbox, opts) as env:
        _fill(env.emu, 4)
        total, items = env.provider(**opts).incoming({"keyword": "reply [13]"}, 0, 1)
        assert (total, [m.text for m in items]) == (2, ["reply 1"])
        assert "/keyword=reply%2520%255B13%255D/" in env.paths()[0]


def test_incoming_refusals(env: Env, httpserver: HTTPServer) -> None:
    with pytest.raises(ProviderCallError) as info:
        env.provider().incoming({}, 0, 10)  # pages start at 1
    assert (info.value.error.code, info.value.error.may_have_acted) == ("ERROR", False)
    with pytest.raises(ValueError):
        env.provider().incoming({}, 1, 5000)
    httpserver.expect_request(re.compile("/rest/api/.*")).respond_with_response(
        _xml(_answer("OK", "Completed", "<result><MOMessageList/></result>"))
    )
    with pytest.raises(ProviderCallError) as info:
        build(httpserver.url_for("")).incoming({}, 1, 10)
    assert info.value.error.kind is ErrorKind.PROTOCOL and "records" in str(info.value)


# -- report: the replies ---------------------------------------------------------------


def sent_to(numbers: list[str], t: float = T0) -> list[SentRecord]:
    return [SentRecord(n, None, when(t)) for n in numbers]


def poll_until_final(p: Ogangi, query: ReportQuery) -> tuple[int, Any]:
    """Poll like the engine: again at once while ``more``."""
    cursor: Any = None
    for polls in range(1, 30):
        report = p.report(query, cursor)
        if report.final:
            return polls, report
        assert report.more and isinstance(report.cursor, ReportCursor)
        cursor = report.cursor
    raise AssertionError("the report never became final")


def test_report_counts_replies_and_optouts_over_several_polls(env: Env) -> None:
    ours = [f"+5841212345{i:02d}" for i in range(12)]
    env.emu.add_mo("584121234500", "2020", "STOP", at=T0 - 86_400)  # an earlier campaign
    replies = [
        (ours[0], "STOP"),
        (ours[1], "ok, gracias"),
        (ours[2], "  baja por favor"),
        (ours[2], "BAJA"),
        ("+584169999999", "STOP"),  # not one of our recipients
        (ours[3], "Unsubscribe."),
        (ours[4], "stopped by, thanks"),  # STOP must be a whole word
        (ours[5], "cancel"),
        (ours[6], "stop"),
    ]
    for i, (number, text) in enumerate(replies):
        env.emu.add_mo(number, "2020", text, at=T0 + 60 + i)
    p = env.provider(mo_page_size=2, mo_pages_per_poll=2)
    query = ReportQuery(since=when(T0), until=when(T0 + 3600), sent=sent_to(ours))
    polls, report = poll_until_final(p, query)
    assert polls == 3  # 10 MOs, 2 per page, 2 pages per poll
    assert dict(report.counts) == {"replies": 8, "repliers": 7, "optouts": 4}
    assert report.deliveries == () and report.details["pages_read"] == 5
    assert report.details["mo_read"] == 9  # the day-old STOP is outside the window
    listing = [p for p in env.paths() if "/getMOMessages/" in p]
    assert [p.split("/")[6] for p in listing] == ["1", "2", "3", "4", "5"]


def test_report_partial_counts_grow_and_the_cursor_resumes(env: Env) -> None:
    for i in range(5):
        env.emu.add_mo(f"58412123450{i}", "2020", "STOP", at=T0 + i)
    p = env.provider(mo_page_size=2, mo_pages_per_poll=1)
    query = ReportQuery(
        since=when(T0),
        until=when(T0 + 60),
        sent=sent_to([f"+58412123450{i}" for i in range(5)]),
    )
    first = p.report(query)
    assert not first.final and first.more and first.counts["optouts"] == 2
    assert first.cursor == ReportCursor(
        2, 2, first.cursor.repliers, first.cursor.optouts, 2
    )
    second = p.report(query, first.cursor)
    assert second.counts["optouts"] == 4
    third = p.report(query, second.cursor)
    assert third.final and third.counts == {"replies": 5, "repliers": 5, "optouts": 5}


def test_report_with_the_mo_timezone_or_with_slack(sandbox: Sandbox) -> None:
    zone = {"mo_timezone": "America/Caracas"}  # sendDate written as local time, no offset
    with make_env(sandbox, zone) as env:
        env.emu.add_mo(TO, "2020", "STOP", at=T0 - 3600)  # an hour before the send
        env.emu.add_mo("584121234502", "2020", "STOP", at=T0 + 30)
        query = ReportQuery(
            since=when(T0), until=when(T0 + 60), sent=sent_to([TO, "+584121234502"])
        )
        exact = env.provider(**zone).report(query)
        assert exact.final and exact.counts["optouts"] == 1
        # no timezone configured: 14 hours of slack keep the local time in the window
        slack = env.provider().report(query)
        assert slack.counts["optouts"] == 2


def test_report_without_recipients_reads_nothing(env: Env) -> None:
    report = env.provider().report(ReportQuery(since=when(T0), until=when(T0)))
    assert report.final and report.counts == {"replies": 0, "repliers": 0, "optouts": 0}
    assert env.paths() == []


def test_report_failure_raises_a_classified_error(env: Env) -> None:
    p = env.provider(private_key=Secret("wrong-key-3"))
    with pytest.raises(ProviderCallError) as info:
        p.report(ReportQuery(since=when(T0), until=when(T0), sent=sent_to([TO])))
    assert info.value.error.kind is ErrorKind.AUTH
    assert_clean(str(info.value))


def test_custom_opt_out_keyword(env: Env) -> None:
    env.emu.add_mo(TO, "2020", "Cancelar cita", at=T0 + 1)
    env.emu.add_mo("584121234502", "2020", "STOP", at=T0 + 2)
    query = ReportQuery(
        since=when(T0), until=when(T0 + 9), sent=sent_to([TO, "+584121234502"])
    )
    report = env.provider(mo_keyword="^(CANCELAR).*").report(query)
    assert report.counts["optouts"] == 1
    both = dataclasses.replace(query, options={"mo_keyword": "^(CANCELAR|STOP).*"})
    assert env.provider().report(both).counts["optouts"] == 2  # the step's own
    with pytest.raises(ProviderError, match="mo_keyword"):
        env.provider().report(dataclasses.replace(query, options={"mo_keyword": "(x"}))


# -- the emulator on its own -----------------------------------------------------------


def _signed_get(env: Env, method: str, params: list[str]) -> str:
    import requests

    joined = "/".join(params)
    url = f"{env.urls['base_url']}/rest/api/{method}/{joined}/{PUBLIC}/{by_hand(joined)}"
    resp = requests.get(url, timeout=5)
    return f"{resp.status_code} {resp.text}"


@pytest.mark.parametrize(
    ("method", "params", "expected"),
    [
        ("tools/sendSMS", ["8", "null", "2020", "+584121234501", "SG9sYQ=="],
         "not valid Base64"),  # the number must be Base64 for sendSMS
        ("tools/sendSMS", ["8", "null", "2020", "584121234501", "SG9sYQ=="],
         "BAD_TO"),  # valid Base64, but of no number
        ("tools/sendSMS", ["8", "null", "2020", TO_B64, "SG9sYQ"], "not valid Base64"),
        ("tools/sendSMS", ["8", "null", "2020", TO_B64, "SG9+YQ=="], "not valid Base64"),
        ("sendMT", ["8", "2020", "null", "584121234501", "Hola mundo"],
         "not valid Base64"),
        ("tools/getMOMessages", ["8", "x", "10", "null"], "numbers"),
        ("tools/getMOMessages", ["8", "1", "10", "dGV4dD14"], "invalid search"),
        ("tools/sendSMS", ["8", "null", "2020", TO_B64], "404 not found"),
        ("tools/sendSMSPinMobileNumberConfirm", ["8", "null", "2020", "584121234501",
         "SG9sYQ==", "99"], "invalid PIN length"),
    ],
)  # fmt: skip
def test_emulator_validates_the_parameters(
    env: Env, method: str, params: list[str], expected: str
) -> None:
    answer = _signed_get(env, method, params)
    assert expected in answer
    assert env.emu.messages == []


def test_emulator_answers_with_the_documented_parts(env: Env) -> None:
    answer = _signed_get(env, "tools/sendSMS", ["8", "null", "2020", TO_B64, "SG9sYQ=="])
    for part in (
        "<input>sendSMS</input>",
        "<status>OK</status>",
        "<description>Completed</description>",
        f"<id>{FIRST_ID + 1}</id>",
        "<statusDescription>Sent to Carrier</statusDescription>",
    ):
        assert part in answer
    assert re.search(r"<date>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00</date>", answer)


# -- registry, schema, configuration ---------------------------------------------------


def test_registered_with_its_capabilities() -> None:
    assert PROVIDERS["ogangi"] is Ogangi and EMULATORS["ogangi"] is OgangiEmulator
    assert Capability.SEND in Ogangi.capabilities
    assert Capability.CREDITS not in Ogangi.capabilities


def test_the_schema_documents_every_default() -> None:
    props = provider_fragment("ogangi")["properties"]
    for name, value in DEFAULTS.items():
        assert name in props, name
        if value is not None:
            assert props[name]["default"] == value, name
    for name in ("public_key", "private_key"):
        assert props[name]["writeOnly"] is True


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"signature_encoding": "HEX"}, "signature_encoding must be one of"),
        ({"mo_keyword": "(STOP"}, "mo_keyword is not a valid regular expression"),
        ({"mo_timezone": "Mars/Olympus"}, "unknown timezone"),
    ],
)
def test_bad_options_raise_configuration_errors(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ProviderError, match=message):
        build("http://127.0.0.1:9", **options)


def test_missing_configuration_raises(env: Env) -> None:
    with pytest.raises(ProviderError, match="sender"):
        env.provider(sender=None).send(msg())
    with pytest.raises(ProviderError, match="base_url"):
        build("").send(msg())


def test_delivery_status_mapping_keeps_unknown_values_open() -> None:
    assert delivery_status("DELIVRD") is DeliveryStatus.DELIVERED
    assert delivery_status("bad  address") is DeliveryStatus.FAILED
    assert delivery_status("BAD_CARRIER/FROM") is DeliveryStatus.FAILED
    assert delivery_status("SENT_TO_CARRIER") is DeliveryStatus.PENDING
    assert delivery_status("SOMETHING_NEW") is DeliveryStatus.UNKNOWN


def test_unicode_text_round_trips(env: Env) -> None:
    text = "Recordatorio: cita mañana 😀 — responda BAJA"
    assert env.provider().send(msg(text=text)).accepted
    assert env.emu.messages[0].text == text
