"""Ogangi / Messangi Mobile Engagement: XML over REST, Base64 path parameters,
HMAC-SHA256 signatures (shared/provider-docs/ogangi-mobile-engagement-rest.txt and
NOTES.md, whose CONVENTIONs are options here with the documented defaults).

Every call is ``GET {base_url}/rest/api/{method}/{params...}/{publicKey}/{signature}``
(``fireMessage`` also has a POST form with a JSON body). The signature is the
HMAC-SHA256, keyed with the private key, of the path parameters joined with ``/``.
The public key travels in every URL, so URLs are masked in error details and in
urllib3's debug log lines; the private key and the signatures never leave here.

Ogangi documents no delivery report and no balance: ``report`` reads the replies
(MO messages, ``getMOMessages``) from the recipients of a send step and counts the
opt-outs among them.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lxml import etree

from runner.errors import ProviderError
from runner.model.campaign import ProviderConfig
from runner.providers.base import (
    CallError,
    Capability,
    DeliveryStatus,
    ErrorKind,
    OutboundMessage,
    Provider,
    ProviderCallError,
    Report,
    ReportQuery,
    SendResult,
    excerpt,
    http_error,
    parse_retry_after,
)
from runner.providers.http import Response
from runner.providers.xmlparse import XMLError, child_text, find_all, find_top, parse_xml

log = logging.getLogger(__name__)

# Option defaults (schemas/providers/ogangi.schema.json says the same).
DEFAULTS: Mapping[str, Any] = {
    "method": "send_sms",
    "carrier": None,  # written as the literal ``null``
    "signature_encoding": "hex",  # CONVENTION: lowercase hex digest
    "base64_alphabet": "urlsafe",  # CONVENTION: - and _ with padding
    # Which form of a value is signed when the URL must percent-encode it (only a
    # standard-alphabet Base64 value, a sender with spaces, a "+" number): the value
    # itself, as a server hands a decoded path parameter to the method ("decoded"),
    # or its percent-encoded URL text ("encoded"). Identical for the defaults.
    "signed_form": "decoded",
    # CONVENTION (ours, the documents are silent): E.164 digits without "+"
    # ("e164_digits"); alternatives "e164" (with +) and "intl_00" (00 prefix).
    "number_format": "e164_digits",
    "mo_search_encoding": "base64",  # CONVENTION: the search string as one Base64 value
    "mo_first_page": 1,  # CONVENTION (ours): "the actual page" numbered from 1
    "mo_page_size": 100,
    "mo_pages_per_poll": 5,
    # An opt-out reply: Java String.matches semantics (the whole text, stripped),
    # case-insensitive. STOP/UNSUBSCRIBE plus BAJA for the provider's Spanish markets.
    "mo_keyword": r"^(STOP|BAJA|UNSUBSCRIBE)\b.*",
    # Timezone of MO sendDate values written without an offset; unset, such dates
    # are compared with the send window with 14 hours of slack either way.
    "mo_timezone": None,
}
_ENUMS: Mapping[str, tuple[str, ...]] = {
    "method": ("send_sms", "send_mt"),
    "signature_encoding": ("hex", "base64", "base64url"),
    "base64_alphabet": ("urlsafe", "standard"),
    "signed_form": ("decoded", "encoded"),
    "number_format": ("e164_digits", "e164", "intl_00"),
    "mo_search_encoding": ("base64", "plain"),
}

# Message statuses (NOTES.md). Normalised: upper case, single spaces.
# fmt: off
IN_PROGRESS = frozenset({
    "SENT", "SENT_TO_CARRIER", "DELIVERED_TO_CARRIER", "SENT_TO_DEVICE", "SENDING",
    "PENDING", "BUFFRED", "ACCEPTD",
})
DELIVERED = frozenset({"DELIVERED_TO_DEVICE", "DELIVRD", "READ"})
FAILED = frozenset({
    "EXPIRED", "UNREACHABLE", "NOT_SENT", "BAD_FROM", "BAD_TO", "BAD_ENCODING",
    "BAD_CARRIER/FROM", "UNDELIVERED", "UNDELIV", "REJECTD", "NOT_ENOUGH_FUNDS",
    "BAD_TIMEZONE", "DELETED", "BAD ADDRESS", "CARRIER GATEWAY ERROR", "INTERNAL ERROR",
    "INVALID ROUTING",
})
# fmt: on
# Account-level: every later send would fail the same way (base.ErrorKind.AUTH).
ACCOUNT_FAILURES = frozenset({"NOT_ENOUGH_FUNDS"})

SEARCH_KEYS = ("from", "to", "keyword", "carrier", "order")
_MAX_PAGES = 100_000  # a guard against a server that never says "last page"
_CLOCK_SKEW = timedelta(minutes=2)
_NO_TZ_SLACK = timedelta(hours=14)  # the widest UTC offset
_URL_KEYS = re.compile(r"(/rest/api/[^\s\"'?#]*)/[^/\s\"'?#]+/[^/\s\"'?#]+")


@dataclass(frozen=True)
class MOMessage:
    """One incoming message (getMOMessages ``MOMessage``); ``from_`` is the user."""

    text: str
    from_: str
    to: str
    keyword: str = ""
    carrier: str = ""
    encoding: str = ""
    send_date: str = ""  # as the service wrote it
    at: datetime | None = None  # send_date in UTC when it could be read


@dataclass(frozen=True)
class ReportCursor:
    """Where a pass over the MO pages stands, with the running counts."""

    page: int  # the API's number of the next page to read
    replies: int = 0  # MO messages from recipients
    repliers: frozenset[str] = frozenset()  # their numbers (digits)
    optouts: frozenset[str] = frozenset()
    read: int = 0  # MO messages read in the window, ours or not


class Ogangi(Provider):
    type = "ogangi"
    defaults = DEFAULTS
    service_name = "Ogangi Mobile Engagement"
    capabilities = frozenset(
        {
            Capability.SEND,
            Capability.REPORT,  # from incoming (MO) messages: replies such as STOP
            Capability.PIN,
            Capability.FIRE_MESSAGE,
            Capability.INCOMING,
        }
    )
    schema = "providers/ogangi.schema.json"
    # The documents give no public host ({base_url} is per workspace): required.
    default_base_url = ""
    secret_options = ("public_key", "private_key")

    def __init__(self, config: ProviderConfig, options: Mapping[str, Any]) -> None:
        super().__init__(config, options)
        for name, allowed in _ENUMS.items():
            if self.option(name) not in allowed:
                raise ProviderError(
                    f"provider {config.name!r}: option {name} must be one of "
                    + ", ".join(allowed)
                )
        self.keyword = self._regex(str(self.option("mo_keyword")))
        self.mo_zone = self._zone()
        self._public = str(self.options.get("public_key") or "")
        self._private = str(self.options.get("private_key") or "")
        install_log_mask()

    # -- send ---------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        """tools/sendSMS (number and text Base64) or sendMT (text Base64 only)."""
        number = self._number(message.to)
        if number is None:
            return SendResult(
                error=CallError(ErrorKind.REJECTED, "bad-number", "not a phone number")
            )
        if not message.text:  # an empty path segment would shift every parameter
            return SendResult(
                error=CallError(ErrorKind.REJECTED, "empty-text", "the text is empty")
            )
        sender = self._sender(message.sender)
        carrier = self._carrier()
        if self.option("method") == "send_sms":
            path = "tools/sendSMS"
            params = [self._instance(), carrier, sender, self._b64(number)]
        else:
            path = "sendMT"
            params = [self._instance(), sender, carrier, number]
        params.append(self._b64(message.text))
        if path == "sendMT" and self.options.get("flags"):
            params.append(str(self.options["flags"]))  # "Send SMS With Flags"
        root = self._call(path, params, acted=True)
        if isinstance(root, CallError):
            return SendResult(error=root)
        return self._send_result(root)

    def _send_result(self, root: etree._Element) -> SendResult:
        msg = next(find_all(root, "message"), None)
        if msg is None:  # sendMT documents only "OK Completed": no id to keep
            return SendResult(status="OK")
        ident = child_text(msg, "id") or None  # a negative int64: kept as text
        raw = child_text(msg, "status") or ""
        status = _norm(raw)
        if status in FAILED:
            kind = ErrorKind.AUTH if status in ACCOUNT_FAILURES else ErrorKind.REJECTED
            detail = child_text(msg, "statusDescription") or status
            return SendResult(
                message_id=ident,
                status=raw,
                error=CallError(kind, raw, self._mask(excerpt(detail))),
            )
        # in progress, delivered, or a status we do not know: accepted, not final
        return SendResult(message_id=ident, status=raw or "OK")

    # -- extras ---------------------------------------------------------------------

    def send_pin(self, to: str, text: str, length: int, sender: str | None = None) -> str:
        """tools/sendSMSPinMobileNumberConfirm: Ogangi texts a PIN it generates;
        returns that PIN (PinSMSConfirmation.pin). Raises ProviderCallError."""
        if (
            not isinstance(length, int)
            or isinstance(length, bool)
            or not 1 <= length <= 32
        ):
            raise ValueError("PIN length must be an integer from 1 to 32")
        number = self._need_number(to)
        params = [
            self._instance(),
            self._carrier(),
            self._sender(sender),
            number,  # plain here: only the text is documented as Base64
            self._b64(text),
            str(length),
        ]
        root = self._checked("tools/sendSMSPinMobileNumberConfirm", params, acted=True)
        pin = find_top(root, "pin")
        if pin is None or not (pin.text or "").strip():
            raise ProviderCallError(self._shape("PIN answer without pin", root, True))
        return (pin.text or "").strip()

    def fire_message(self, to: str, text: str) -> None:
        """fireMessage (GET): inject an MO from ``to`` as if the user had texted."""
        params = [self._instance(), self._need_number(to), self._b64(text)]
        self._checked("fireMessage", params, acted=True)

    def fire_message_json(self, descriptor: Mapping[str, Any]) -> None:
        """fireMessage (POST) with the JSON "Fire message Descriptor" as the body;
        only the instance id is a path parameter, so only it is signed."""
        if not isinstance(descriptor, Mapping):
            raise TypeError("the fire message descriptor must be a mapping")
        self._checked(
            "fireMessage", [self._instance()], acted=True, json=dict(descriptor)
        )

    def incoming(
        self, search: Mapping[str, str | list[str]], page: int, per_page: int
    ) -> tuple[int, list[MOMessage]]:
        """tools/getMOMessages: (MOMessageList.records, this page's messages).

        ``search`` holds the inline search filters (from, to, keyword as a Java
        regex, carrier, order asc|desc); ``page`` is numbered as the API numbers
        it (option mo_first_page). Raises ProviderCallError.
        """
        if page < 0 or not 1 <= per_page <= 1000:
            raise ValueError("page must be >= 0 and per_page from 1 to 1000")
        text = search_string(search)
        if self.option("mo_search_encoding") == "base64":
            value = self._b64(text) if text else "null"
        else:
            value = text or "null"
        params = [self._instance(), str(page), str(per_page), value]
        root = self._checked("tools/getMOMessages", params, acted=False)
        records = find_top(root, "records")
        try:
            total = int((records.text or "").strip()) if records is not None else -1
        except ValueError:
            total = -1
        if total < 0:
            raise ProviderCallError(self._shape("MO list without records", root))
        return total, [self._mo(el) for el in find_all(root, "MOMessage")]

    # -- report -----------------------------------------------------------------------

    def report(self, query: ReportQuery, cursor: Any = None) -> Report:
        """The replies to a send step: every page of MO messages (oldest first),
        at most ``mo_pages_per_poll`` per poll, counted by the recipient they came
        from. Counts: ``replies`` (messages), ``repliers`` and ``optouts``
        (distinct recipients; an opt-out matches mo_keyword, which the step's
        ``options`` may override). Final once the last page is read; no
        per-recipient delivery statuses (Ogangi has none).
        """
        keyword = self.keyword
        if query.options.get("mo_keyword"):
            keyword = self._regex(str(query.options["mo_keyword"]))
        ours = {_digits(s.to) for s in query.sent}
        ours.discard("")
        state = (
            cursor
            if isinstance(cursor, ReportCursor)
            else ReportCursor(int(self.option("mo_first_page")))
        )
        if not ours:  # nobody to hear from
            return Report(final=True, counts=_counts(state), details={"pages_read": 0})
        slack = _CLOCK_SKEW + (_NO_TZ_SLACK if self.mo_zone is None else timedelta(0))
        since = query.since - slack
        per_page = int(self.option("mo_page_size"))
        page = state.page
        replies, read = state.replies, state.read
        repliers, optouts = set(state.repliers), set(state.optouts)
        last = False
        for _ in range(max(1, int(self.option("mo_pages_per_poll")))):
            total, items = self.incoming({"order": "asc"}, page, per_page)
            for mo in items:
                if mo.at is not None and mo.at < since:
                    continue  # before the send step: an earlier campaign's replies
                read += 1
                who = _digits(mo.from_)
                if who not in ours:
                    continue
                replies += 1
                repliers.add(who)
                if keyword.fullmatch(mo.text.strip()):
                    optouts.add(who)
            done = (page - int(self.option("mo_first_page")) + 1) * per_page
            page += 1
            last = not items or len(items) < per_page or done >= total
            if last or page > _MAX_PAGES:
                last = True
                break
        state = ReportCursor(page, replies, frozenset(repliers), frozenset(optouts), read)
        details = {
            "pages_read": page - int(self.option("mo_first_page")),
            "mo_read": read,
        }
        if last:
            return Report(final=True, counts=_counts(state), details=details)
        return Report(
            final=False, more=True, counts=_counts(state), details=details, cursor=state
        )

    # -- the wire -----------------------------------------------------------------------

    def signature(self, params: Sequence[str]) -> str:
        """The signature of a call whose path parameters are ``params`` (as sent:
        Base64 values already encoded, None as ``null``)."""
        signed = "/".join(
            params if self.option("signed_form") == "decoded" else map(_segment, params)
        )
        digest = hmac.new(
            self._private.encode("utf-8"), signed.encode("utf-8"), hashlib.sha256
        ).digest()
        encoding = self.option("signature_encoding")
        if encoding == "hex":
            return digest.hex()
        if encoding == "base64":
            return base64.b64encode(digest).decode("ascii")
        return base64.urlsafe_b64encode(digest).decode("ascii")

    def url(self, path: str, params: Sequence[str]) -> str:
        """The full URL of a call; every segment percent-encoded on its own."""
        if not self._public or not self._private:
            raise ProviderError(
                f"provider {self.config.name!r}: options public_key and private_key "
                "are required"
            )
        segments = [*map(_segment, params), _segment(self._public)]
        segments.append(_segment(self.signature(params)))
        return f"{self.base_url}/rest/api/{path}/" + "/".join(segments)

    def _call(
        self,
        path: str,
        params: Sequence[str],
        *,
        acted: bool,
        json: Mapping[str, Any] | None = None,
    ) -> etree._Element | CallError:
        """One call: the parsed answer when its status is OK, else a CallError.

        ``acted``: the call does something (send, PIN, fireMessage), so an answer
        that may come after the work was done counts as ``may_have_acted``.
        """
        if not self.base_url.startswith(("http://", "https://")):
            raise ProviderError(f"provider {self.config.name!r}: base_url is required")
        url = self.url(path, params)
        headers = {"Accept": "application/xml, text/xml"}
        if json is not None:
            resp = self.request("POST", url, json=dict(json), headers=headers)
        else:
            resp = self.request("GET", url, headers=headers)
        if isinstance(resp, CallError):
            return self._clean(resp)
        return self._answer(resp, path.rsplit("/", 1)[-1], acted)

    def _answer(
        self, resp: Response, method: str, acted: bool
    ) -> etree._Element | CallError:
        root, why = _parse(resp)
        top = find_top(root, "status") if root is not None else None
        status = _norm(top.text or "") if top is not None else None
        ok = 200 <= resp.status_code < 300
        if not ok and status not in ("BAD_SIGNATURE", "ERROR"):
            error = http_error(resp, acted=acted)
            return self._clean(dataclasses.replace(error, detail=excerpt(resp.text)))
        if root is None:
            return self._protocol(f"{method} answer {why}", resp.text, acted)
        if status is None:
            return self._protocol(f"{method} answer without status", resp.text, acted)
        desc = self._mask(excerpt(child_text(root, "description") or "", 100))
        if status == "OK":
            return root
        if status == "BAD_SIGNATURE":
            return CallError(
                ErrorKind.AUTH,
                "BAD_SIGNATURE",
                desc or "invalid signature, access denied",
            )
        if status == "ERROR":
            # "Internal error...": the documents do not say at which point it
            # failed, so a send (or PIN, fireMessage) may have been carried out
            # before it: never retried blindly, recorded unknown.
            return CallError(
                ErrorKind.TRANSIENT,
                "ERROR",
                desc or "internal error",
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                may_have_acted=acted,
            )
        return self._protocol(f"{method} answer with status {status[:40]}", "", acted)

    def _checked(
        self,
        path: str,
        params: Sequence[str],
        *,
        acted: bool,
        json: Mapping[str, Any] | None = None,
    ) -> etree._Element:
        root = self._call(path, params, acted=acted, json=json)
        if isinstance(root, CallError):
            raise ProviderCallError(root)
        return root

    # -- helpers ------------------------------------------------------------------------

    def _mo(self, el: etree._Element) -> MOMessage:
        def get(name: str) -> str:
            return child_text(el, name) or ""

        send_date = get("sendDate")
        return MOMessage(
            text=get("text"),
            from_=get("from"),
            to=get("to"),
            keyword=get("keyword"),
            carrier=get("carrier"),
            encoding=get("encoding"),
            send_date=send_date,
            at=_parse_date(send_date, self.mo_zone),
        )

    def _b64(self, text: str) -> str:
        raw = text.encode("utf-8")
        if self.option("base64_alphabet") == "urlsafe":
            return base64.urlsafe_b64encode(raw).decode("ascii")
        return base64.b64encode(raw).decode("ascii")

    def _number(self, e164: str) -> str | None:
        digits = _digits(e164)
        if not 6 <= len(digits) <= 15:
            return None
        return {"e164_digits": digits, "e164": "+" + digits, "intl_00": "00" + digits}[
            self.option("number_format")
        ]

    def _need_number(self, to: str) -> str:
        number = self._number(to)
        if number is None:
            raise ValueError(f"not a phone number: {excerpt(to, 30)!r}")
        return number

    def _instance(self) -> str:
        value = self.options.get("instance_id")
        if value is None or value == "":
            raise ProviderError(
                f"provider {self.config.name!r}: option instance_id is required"
            )
        return str(value)

    def _sender(self, sender: str | None) -> str:
        value = sender or self.options.get("sender")
        if value is None or value == "":
            raise ProviderError(
                f"provider {self.config.name!r}: a sender (option sender) is required"
            )
        return str(value)

    def _carrier(self) -> str:
        carrier = self.options.get("carrier")
        return "null" if carrier is None or carrier == "" else str(carrier)

    def _regex(self, pattern: str) -> re.Pattern[str]:
        try:
            return re.compile(pattern, re.I | re.S)
        except re.error as e:
            raise ProviderError(
                f"provider {self.config.name!r}: option mo_keyword is not a valid "
                f"regular expression ({e})"
            ) from None

    def _zone(self) -> ZoneInfo | None:
        name = self.option("mo_timezone")
        if name is None:
            return None
        try:
            return ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            raise ProviderError(
                f"provider {self.config.name!r}: option mo_timezone: unknown "
                f"timezone {excerpt(str(name), 40)!r}"
            ) from None

    def _mask(self, text: str) -> str:
        """Masks the credentials and anything shaped like our URLs' key segments."""
        for secret in (self._private, self._public, _segment(self._public)):
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return _URL_KEYS.sub(r"\1/***/***", text)

    def _clean(self, error: CallError) -> CallError:
        detail = self._mask(error.detail)
        return (
            error if detail == error.detail else dataclasses.replace(error, detail=detail)
        )

    def _protocol(self, what: str, body: str, acted: bool) -> CallError:
        detail = f"{what}: {excerpt(self._mask(body), 80)!r}" if body else what
        return CallError(ErrorKind.PROTOCOL, "protocol", detail, may_have_acted=acted)

    def _shape(self, what: str, root: etree._Element, acted: bool = False) -> CallError:
        text = etree.tostring(root, encoding="unicode")
        return self._protocol(what, text, acted)


def search_string(search: Mapping[str, str | list[str]]) -> str:
    """The MO inline search string: ``from=..&to=..&keyword=..&carrier=..&order=..``.

    Several values are comma-separated; every value is URL-encoded (the keyword
    regex as documented; a comma inside a value so it cannot split it).
    """
    parts = []
    for key in SEARCH_KEYS:
        if key not in search:
            continue
        raw = search[key]
        values = [raw] if isinstance(raw, str) else list(raw)
        if not values or not all(isinstance(v, str) and v for v in values):
            raise ValueError(f"search {key}: expected a non-empty string or list")
        if key == "order" and (len(values) != 1 or values[0] not in ("asc", "desc")):
            raise ValueError("search order: expected asc or desc")
        parts.append(f"{key}=" + ",".join(quote(v, safe="") for v in values))
    unknown = set(search) - set(SEARCH_KEYS)
    if unknown:
        raise ValueError(
            f"unknown search key(s) {sorted(unknown)}; expected {', '.join(SEARCH_KEYS)}"
        )
    return "&".join(parts)


def delivery_status(raw: str) -> DeliveryStatus:
    """The common status of an Ogangi message status; unknown values are not final."""
    status = _norm(raw)
    if status in DELIVERED:
        return DeliveryStatus.DELIVERED
    if status in FAILED:
        return DeliveryStatus.FAILED
    return DeliveryStatus.PENDING if status in IN_PROGRESS else DeliveryStatus.UNKNOWN


def _parse(resp: Response) -> tuple[etree._Element | None, str]:
    ctype = resp.headers.get("Content-Type", "").lower()
    if "html" in ctype or "json" in ctype:
        return None, f"has the wrong content type ({excerpt(ctype, 40)})"
    try:
        return parse_xml(resp.content), ""
    except XMLError as e:
        return None, f"is not usable XML ({excerpt(str(e), 50)})"


def _segment(value: str) -> str:
    # "=" (Base64 padding) is allowed in a path segment; "/" and "+" are not kept
    return quote(value, safe="=")


def _norm(status: str) -> str:
    return " ".join(status.split()).upper()


def _digits(number: str) -> str:
    digits = re.sub(r"\D", "", number)
    return digits[2:] if number.lstrip().startswith("00") else digits


def _counts(state: ReportCursor) -> dict[str, float]:
    return {
        "replies": state.replies,
        "repliers": len(state.repliers),
        "optouts": len(state.optouts),
    }


def _parse_date(value: str, zone: ZoneInfo | None) -> datetime | None:
    """``yyyy-MM-dd'T'HH:mm:ss.SSSZZ`` (documented) or the example's
    ``2014-10-13 10:30:51.922`` (no offset: ``zone``, else UTC with slack)."""
    text = value.strip().replace(" ", "T", 1)
    if not text:
        return None
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone or UTC)
    return when.astimezone(UTC)


class _MaskUrlKeys(logging.Filter):
    """Masks ``.../{publicKey}/{signature}`` in urllib3's DEBUG request lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _URL_KEYS.sub(r"\1/***/***", a)
                if isinstance(a, str) and "/rest/api/" in a
                else a
                for a in record.args
            )
        return True


def install_log_mask(name: str = "urllib3.connectionpool") -> None:
    """Mask the key segments of Ogangi URLs in the records of logger ``name``."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _MaskUrlKeys) for f in logger.filters):
        logger.addFilter(_MaskUrlKeys())
