"""The hardened XML parser: documented answers parse; anything unsafe or broken is
refused quickly, without expanding entities or opening what they point at
(issue 6). The answers from a server are in test_ogangi.py."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.providers import xmlparse
from runner.providers.xmlparse import XMLError, child_text, find_all, find_top, parse_xml

SEND_ANSWER = b"""<?xml version="1.0" encoding="UTF-8"?>
<response><input>sendSMS</input><status>OK</status><description>Completed</description>
<result><messages><message><id>-8174720676710228700</id><status>SENT_TO_CARRIER</status>
<statusDescription>Sent to Carrier</statusDescription></message></messages></result>
</response>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<response><status>&lol9;</status></response>"""


def external(url: str) -> bytes:
    return (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "{url}">]>'
        "<response><status>&x;</status></response>"
    ).encode()


def parameter_entity(url: str) -> bytes:
    return (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % x SYSTEM "{url}"> %x;]>'
        "<response><status>OK</status></response>"
    ).encode()


def external_dtd(url: str) -> bytes:
    return f'<?xml version="1.0"?><!DOCTYPE r SYSTEM "{url}"><r/>'.encode()


def test_a_documented_answer_parses_and_is_found_by_local_name() -> None:
    root = parse_xml(SEND_ANSWER)
    status = find_top(root, "status")
    assert status is not None and status.text == "OK"  # not the message's status
    (message,) = find_all(root, "message")
    assert child_text(message, "status") == "SENT_TO_CARRIER"
    assert child_text(message, "id") == "-8174720676710228700"
    assert child_text(message, "missing") is None


def test_namespaced_and_unknown_roots_are_read_leniently() -> None:
    root = parse_xml(b'<a:envelope xmlns:a="urn:x"><a:body><a:status>OK</a:status>'
                     b"</a:body></a:envelope>")  # fmt: skip
    status = find_top(root, "status")
    assert status is not None and status.text == "OK"


REFUSED = [
    ("empty", b"   ", "empty"),
    ("truncated", SEND_ANSWER[: len(SEND_ANSWER) // 2], "not well-formed"),
    (
        "html",
        b"<html><body><h1>502 Bad Gateway<br></h1></body></html>",
        "not well-formed",
    ),
    ("billion laughs", BILLION_LAUGHS, "refused"),
    ("external entity", external("file:///etc/passwd"), "refused"),
    ("parameter entity", parameter_entity("file:///etc/passwd"), "refused"),
    ("external dtd", external_dtd("http://127.0.0.1:9/evil.dtd"), "refused"),
    ("undefined entity", b"<r>&passwd;</r>", "not well-formed"),
    ("utf-16", '<?xml version="1.0" encoding="UTF-16"?><r/>'.encode("utf-16"), "UTF-8"),
    ("too deep", b"<a>" * 1000 + b"</a>" * 1000, "not well-formed"),
    ("not bytes", "<r/>", "bytes"),
]


@pytest.mark.parametrize(
    ("body", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_unsafe_or_broken_documents_are_refused(body: bytes, message: str) -> None:
    started = time.monotonic()
    with pytest.raises(XMLError, match=message) as info:
        parse_xml(body)
    assert time.monotonic() - started < 1.0
    assert isinstance(info.value, ValueError)
    assert "root:" not in str(info.value)


def test_size_is_bounded_before_parsing() -> None:
    body = b"<r>" + b"x" * 2000 + b"</r>"
    assert parse_xml(body, max_bytes=4000).tag == "r"
    with pytest.raises(XMLError, match="too large"):
        parse_xml(body, max_bytes=1000)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A named pipe nobody writes to: opening it for reading blocks for ever, so a
    parser that tried to read what an entity points at would hang."""
    path = tmp_path / "secret.fifo"
    os.mkfifo(path)
    return path


def _finishes(call: Callable[[], object], seconds: float = 3.0) -> list[object]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(call())
        except XMLError as e:
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the parser blocked: it tried to open the entity's target"
    return out


@pytest.mark.parametrize("build", [external, parameter_entity, external_dtd])
def test_the_parser_settings_alone_never_open_an_entity_target(
    monkeypatch: pytest.MonkeyPatch, fifo: Path, build: Callable[[str], bytes]
) -> None:
    """With the declaration scan switched off, lxml itself (no entity resolution,
    no DTD loading, no network, a resolver that refuses) still reads nothing."""
    monkeypatch.setattr(xmlparse, "_refuse_declarations", lambda body: None)
    (result,) = _finishes(lambda: parse_xml(build(fifo.as_uri())))
    assert isinstance(result, XMLError)


def test_the_parser_settings_alone_never_expand_entities(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(xmlparse, "_refuse_declarations", lambda body: None)
    started = time.monotonic()
    (result,) = _finishes(lambda: parse_xml(BILLION_LAUGHS))
    assert isinstance(result, XMLError)
    assert time.monotonic() - started < 1.0


def test_external_entity_content_never_reaches_the_tree(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    with pytest.raises(XMLError) as info:
        parse_xml(external(secret.as_uri()))
    assert "TOP-SECRET" not in str(info.value)
