"""Ogangi emulator: the Mobile Engagement REST calls the provider uses, with the
documented URL shapes, HMAC-SHA256 signatures, Base64 parameters and XML answers.

Built from shared/provider-docs/ogangi-mobile-engagement-rest.txt and NOTES.md:
answers carry the documented ``input``/``status``/``description``/``result`` parts
and the examples' values (message ids count up from the example's negative
-8174720676710228700, ``SENT_TO_CARRIER``/"Sent to Carrier", MO ``sendDate`` written
like the example's ``2014-10-13 10:30:51.922``). The root element is not documented;
it is ``<response>`` here and a client must not depend on it.

Where the documents are silent the emulator follows the provider's CONVENTION
options found in its credentials (signature_encoding, base64_alphabet,
signed_form, number_format, mo_search_encoding, mo_first_page, mo_timezone), and:
- a wrong public key, instance id or signature: ``BAD_SIGNATURE``; a parameter that
  is not valid Base64 or not a number where one is expected: ``ERROR`` (the only
  other documented answer); a bad recipient, sender or text: status OK with the
  message's failure status (``BAD_TO``, ``BAD_FROM``, ``BAD_ENCODING``), and no
  credits left: ``NOT_ENOUGH_FUNDS``.
- MO search: ``from``/``to`` compare digits, ``keyword`` must match the whole text
  (Java ``matches``, case-insensitive), ``carrier`` ignores case.
- the POST fireMessage descriptor holds ``mobileNumber`` and ``text`` (plain): the
  descriptor format itself is not in our documents.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from lxml import etree

from runner.providers.ogangi import DEFAULTS
from runner.providers.ogangi_url import install_log_mask
from runner.sandbox.ogangi_xml import NOT_XML, answer, digits, message
from runner.sandbox.server import Emulator, Request, Response, SentMessage

FIRST_ID = -8174720676710228700  # the documents' example message id
_PARAMS = {  # method path -> its number of path parameters (sendMT: +1 with flags)
    "tools/sendSMS": (5,),
    "sendMT": (5, 6),
    "tools/sendSMSPinMobileNumberConfirm": (6,),
    "fireMessage": (3,),
    "tools/getMOMessages": (4,),
}
_SEARCH_KEYS = ("from", "to", "keyword", "carrier", "order")
_CODE = re.compile(r"[0-9]{3,15}")


@dataclass
class MO:
    """One incoming message the emulator holds."""

    from_: str
    to: str
    text: str
    carrier: str
    at: float
    keyword: str = ""


class _Fail(Exception):
    """Stop handling: answer this (status, description)."""

    def __init__(self, status: str, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description


class OgangiEmulator(Emulator):
    """Checks the instance id, public key and signature of every call, the Base64
    parameters of each method, and keeps sent messages, MO messages and PINs.

    ``pins`` records (number, PIN) for each PIN sent; ``add_mo`` stores a reply.
    """

    type = "ogangi"

    def __init__(
        self,
        credentials: Mapping[str, Any] | None = None,
        *,
        credits: float = 10_000.0,
        settle: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(credentials, credits=credits, settle=settle, clock=clock)
        zone = self._opt("mo_timezone")
        self.zone = ZoneInfo(str(zone)) if zone else ZoneInfo("UTC")
        install_log_mask("runner.sandbox.server")  # its request lines hold our keys

    def setup(self) -> None:
        self.mo: list[MO] = []
        self.pins: list[tuple[str, str]] = []
        methods = "|".join(re.escape(m) for m in _PARAMS)
        self.route("GET", rf"/rest/api/({methods})/(.+)", self._get)
        self.route("POST", r"/rest/api/(fireMessage)/([^/]+/[^/]+/[^/]+)", self._post)

    def new_id(self, n: int) -> str:
        return str(FIRST_ID + n)

    def add_mo(
        self,
        from_: str,
        to: str,
        text: str,
        *,
        carrier: str = "Movistar",
        at: float | None = None,
    ) -> MO:
        """Store an incoming message (a user's reply) as getMOMessages will list it."""
        keyword = str(self._opt("mo_keyword"))
        mo = MO(
            digits(from_),
            digits(to) or to,
            text,
            carrier,
            self.clock() if at is None else at,
            keyword if re.fullmatch(keyword, text.strip(), re.I | re.S) else "",
        )
        with self.lock:
            self.mo.append(mo)
        return mo

    def reply(self, msg: SentMessage, text: str) -> None:
        self.add_mo(msg.to, msg.sender or "", text, at=msg.at + 1)

    # -- dispatch -----------------------------------------------------------------

    def _get(self, req: Request, m: re.Match[str]) -> Response:
        method = m.group(1)
        raw = m.group(2).split("/")
        if len(raw) - 2 not in _PARAMS[method]:
            return Response.text("not found", 404)
        return self._handle(method, raw, None)

    def _post(self, req: Request, m: re.Match[str]) -> Response:
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        return self._handle("fireMessage", m.group(2).split("/"), body)

    def _handle(self, method: str, raw: list[str], body: Any) -> Response:
        name = method.rsplit("/", 1)[-1]
        params = [unquote(s) for s in raw[:-2]]
        if not self._authentic(raw, params):
            return answer(name, "BAD_SIGNATURE", "Invalid signature, access denied")
        try:
            if method == "tools/sendSMS":
                return self._send(name, params[2], params[1], params[3], params[4], True)
            if method == "sendMT":
                return self._send(name, params[1], params[2], params[3], params[4], False)
            if method == "tools/sendSMSPinMobileNumberConfirm":
                return self._pin(params)
            if method == "tools/getMOMessages":
                return self._list(params)
            if len(params) == 1:
                return self._fire_json(body)
            return self._fire(params)
        except _Fail as e:
            return answer(name, e.status, e.description)

    def _authentic(self, raw: list[str], params: list[str]) -> bool:
        creds = self.credentials
        if unquote(raw[-2]) != str(creds.get("public_key")):
            return False
        if params[0] != str(creds.get("instance_id")):
            return False
        signed = "/".join(params if self._opt("signed_form") == "decoded" else raw[:-2])
        digest = hmac.new(
            str(creds.get("private_key")).encode("utf-8"),
            signed.encode("utf-8"),
            hashlib.sha256,
        ).digest()
        encoding = self._opt("signature_encoding")
        expected = (
            digest.hex()
            if encoding == "hex"
            else base64.b64encode(digest).decode()
            if encoding == "base64"
            else base64.urlsafe_b64encode(digest).decode()
        )
        return hmac.compare_digest(unquote(raw[-1]), expected)

    # -- sending ----------------------------------------------------------------------

    def _send(
        self, name: str, sender: str, carrier: str, number: str, text: str, b64: bool
    ) -> Response:
        to = self._b64(number, "mobileNumber") if b64 else number.encode("utf-8")
        body = self._b64(text, "text")
        result = etree.Element("result")
        messages = etree.SubElement(result, "messages")
        status, msg = self._accept(to, body, sender, carrier=carrier, method=name)
        message(messages, msg, sender, to, body, status, carrier, self._zone_name())
        # sendMT documents no result: only a refusal comes with the message's status
        quiet = name == "sendMT" and msg is not None
        return answer(name, "OK", "Completed", None if quiet else result)

    def _accept(
        self, to: bytes, body: bytes, sender: str, **extra: Any
    ) -> tuple[str, SentMessage | None]:
        number = self._number(to)
        if number is None:
            return "BAD_TO", None
        if not _CODE.fullmatch(sender):
            return "BAD_FROM", None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return "BAD_ENCODING", None
        if not text or NOT_XML.search(text):
            return "BAD_ENCODING", None
        msg = self.accept(number, text, sender, **extra)
        return ("NOT_ENOUGH_FUNDS", None) if msg is None else ("SENT_TO_CARRIER", msg)

    def _pin(self, params: list[str]) -> Response:
        _instance, carrier, sender, number, text, length = params
        body = self._b64(text, "text")
        if not length.isdigit() or not 1 <= int(length) <= 32:
            raise _Fail("ERROR", "Internal error: invalid PIN length")
        pin = "".join(str(secrets.randbelow(10)) for _ in range(int(length)))
        status, msg = self._accept(
            number.encode(), body, sender, carrier=carrier, pin=pin, method="pin"
        )
        if msg is None:
            raise _Fail("ERROR", f"Internal error: {status}")
        with self.lock:
            self.pins.append((msg.to, pin))
        result = etree.Element("result")
        confirmation = etree.SubElement(result, "PinSMSConfirmation")
        etree.SubElement(confirmation, "pin").text = pin
        return answer("sendSMSPinMobileNumberConfirm", "OK", "Completed", result)

    # -- incoming ----------------------------------------------------------------------

    def _fire(self, params: list[str]) -> Response:
        number, text = params[1], self._b64(params[2], "text")
        self._fire_mo(number, text)
        return answer("activateCampaign", "OK", "Completed")  # the documented input

    def _fire_json(self, body: Any) -> Response:
        if not isinstance(body, dict):
            raise _Fail("ERROR", "Internal error: a JSON descriptor is required")
        number, text = body.get("mobileNumber"), body.get("text")
        if not isinstance(number, str | int) or not isinstance(text, str) or not text:
            raise _Fail("ERROR", "Internal error: mobileNumber and text are required")
        mo = self._fire_mo(str(number), text.encode("utf-8"))
        result = etree.Element("result")
        for tag, value in (("id", len(self.mo)), ("mobileNumber", mo.from_)):
            etree.SubElement(result, tag).text = str(value)
        etree.SubElement(result, "text").text = mo.text
        return answer("fireMessage", "OK", "Completed", result)

    def _fire_mo(self, number: str, body: bytes) -> MO:
        digits = self._number(number.encode())
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        if digits is None or not text or NOT_XML.search(text):
            raise _Fail("ERROR", "Internal error: invalid mobile number or text")
        return self.add_mo(digits, str(self.credentials.get("sender") or "0"), text)

    def _list(self, params: list[str]) -> Response:
        _instance, page_arg, size_arg, search = params
        first = int(self._opt("mo_first_page"))
        if not page_arg.isdigit() or not size_arg.isdigit():
            raise _Fail("ERROR", "Internal error: page and resultsPerPage are numbers")
        page, size = int(page_arg), int(size_arg)
        if page < first or not 1 <= size <= 1000:
            raise _Fail("ERROR", "Internal error: page or resultsPerPage out of range")
        keep, desc = self._search(search)
        with self.lock:
            found = [mo for mo in self.mo if keep(mo)]
        found.sort(key=lambda mo: mo.at, reverse=desc)
        start = (page - first) * size
        result = etree.Element("result")
        listing = etree.SubElement(result, "MOMessageList")
        etree.SubElement(listing, "records").text = str(len(found))
        for mo in found[start : start + size]:
            item = etree.SubElement(listing, "MOMessage")
            when = datetime.fromtimestamp(mo.at, self.zone)
            for tag, value in (
                ("text", mo.text),
                ("from", mo.from_),
                ("to", mo.to),
                ("encoding", "UTF-8"),
                ("keyword", mo.keyword),
                ("carrier", mo.carrier),
                ("sendDate", when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]),
            ):
                etree.SubElement(item, tag).text = value
        return answer("getMOMessages", "OK", "Completed", result)

    def _search(self, value: str) -> tuple[Callable[[MO], bool], bool]:
        """The inline search string: ``from=..&to=..&keyword=..&carrier=..&order=..``."""
        if value == "null":
            text = ""
        elif self._opt("mo_search_encoding") == "base64":
            text = self._b64(value, "parameters").decode("utf-8", "replace")
        else:
            text = value
        filters: dict[str, list[str]] = {}
        for part in filter(None, text.split("&")):
            key, eq, values = part.partition("=")
            if key not in _SEARCH_KEYS or not eq or key in filters:
                raise _Fail("ERROR", "Internal error: invalid search parameters")
            filters[key] = [unquote(v) for v in values.split(",")]
        order = filters.pop("order", ["asc"])
        if order not in (["asc"], ["desc"]):
            raise _Fail("ERROR", "Internal error: order must be asc or desc")
        try:
            patterns = [re.compile(p, re.I | re.S) for p in filters.get("keyword", [])]
        except re.error:
            raise _Fail("ERROR", "Internal error: invalid keyword expression") from None
        senders = {digits(v) for v in filters.get("from", [])}
        receivers = {digits(v) for v in filters.get("to", [])}
        carriers = {c.lower() for c in filters.get("carrier", [])}

        def keep(mo: MO) -> bool:
            text = mo.text.strip()
            return (
                (not senders or mo.from_ in senders)
                and (not receivers or mo.to in receivers)
                and (not patterns or any(p.fullmatch(text) for p in patterns))
                and (not carriers or mo.carrier.lower() in carriers)
            )

        return keep, order == ["desc"]

    # -- helpers ------------------------------------------------------------------------

    def _b64(self, value: str, what: str) -> bytes:
        """A strictly valid, padded Base64 value in the configured alphabet."""
        urlsafe = self._opt("base64_alphabet") == "urlsafe"
        chars = "A-Za-z0-9_-" if urlsafe else "A-Za-z0-9+/"
        if not re.fullmatch(f"[{chars}]*={{0,2}}", value) or len(value) % 4:
            raise _Fail("ERROR", f"Internal error: {what} is not valid Base64")
        try:
            return base64.b64decode(value, altchars=b"-_" if urlsafe else None)
        except (binascii.Error, ValueError):
            raise _Fail("ERROR", f"Internal error: {what} is not valid Base64") from None

    def _number(self, raw: bytes) -> str | None:
        """International digits of a mobile number written per number_format."""
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            return None
        prefix = {"e164_digits": "", "e164": "+", "intl_00": "00"}[
            str(self._opt("number_format"))
        ]
        if not text.startswith(prefix):
            return None
        digits = text[len(prefix) :]
        return digits if re.fullmatch(r"[1-9][0-9]{5,14}", digits) else None

    def _opt(self, name: str) -> Any:
        value = self.credentials.get(name)
        return DEFAULTS.get(name) if value is None or value == "" else value

    def _zone_name(self) -> str:
        return str(self.zone)
