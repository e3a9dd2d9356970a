"""The XML answers the Ogangi emulator writes: the documented ``input``,
``status``, ``description`` and method-specific ``result`` parts."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from lxml import etree

from runner.sandbox.server import Response, SentMessage

NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def message(
    parent: etree._Element,
    msg: SentMessage | None,
    sender: str,
    to: bytes,
    body: bytes,
    status: str,
    carrier: str,
    zone: str,
) -> None:
    """The documented ``message`` object (ids only for accepted messages)."""
    item = etree.SubElement(parent, "message")
    fields: list[tuple[str, str]] = []
    if msg is not None:
        fields.append(("id", msg.id))
    when = datetime.fromtimestamp(msg.at if msg else time.time(), ZoneInfo(zone))
    fields += [
        ("carrierName", "carrierName" if carrier == "null" else carrier),
        ("from", sender),
        ("to", clean(to.decode("utf-8", "replace"))),
        ("text", clean(msg.text) if msg else ""),
        ("status", status),
        ("statusDescription", _DESCRIPTIONS.get(status, status)),
        ("encoding", "UTF-8"),
        ("date", java_date(when)),
        ("timezone", zone),
        ("clientId", "As223sdadq8d8287v5v"),  # the example's
    ]
    for tag, value in fields:
        etree.SubElement(item, tag).text = value


_DESCRIPTIONS = {
    "SENT_TO_CARRIER": "Sent to Carrier",
    "BAD_TO": "Invalid destination number",
    "BAD_FROM": "Invalid origination code",
    "BAD_ENCODING": "Invalid message encoding",
    "NOT_ENOUGH_FUNDS": "Not enough funds",
}


def answer(
    name: str, status: str, description: str, result: etree._Element | None = None
) -> Response:
    root = etree.Element("response")
    etree.SubElement(root, "input").text = name
    etree.SubElement(root, "status").text = status
    etree.SubElement(root, "description").text = description
    if result is not None:
        root.append(result)
    body = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return Response(200, body, "application/xml; charset=utf-8")


def java_date(when: datetime) -> str:
    """yyyy-MM-dd'T'HH:mm:ss.SSSZZ, e.g. 2013-09-17T10:13:59.176-04:30."""
    offset = when.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    return f"{stamp}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def clean(text: str) -> str:
    return NOT_XML.sub("\ufffd", text)


def digits(number: str) -> str:
    return re.sub(r"\D", "", number)
