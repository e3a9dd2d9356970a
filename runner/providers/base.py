"""The provider contract: what the engine may ask of any SMS API, and the common types.

The engine sees providers only through this module: capabilities, ``send``,
``report``, ``balance``. Expected remote outcomes (a rejected number, a 5xx, a
timeout) come back as typed values; programming and configuration mistakes raise.
"""

from __future__ import annotations

import enum
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import requests
import urllib3.exceptions as ue

from runner import __version__
from runner.errors import ProviderError
from runner.model.campaign import ProviderConfig
from runner.model.timeparse import Rate
from runner.providers.http import Response, Transport

log = logging.getLogger(__name__)

USER_AGENT = f"campaign-runner/{__version__} (+https://github.com/campaign-runner)"


class Capability(enum.StrEnum):
    SEND = "send"  # one message to one number
    REPORT = "report"  # delivery/engagement report for what a send step sent
    CREDITS = "credits"  # account balance
    PIN = "pin"  # provider-generated PIN by SMS (Ogangi)
    FIRE_MESSAGE = "fire_message"  # inject an MO (Ogangi)
    INCOMING = "incoming"  # list MO replies (Ogangi)


class ErrorKind(enum.StrEnum):
    # credentials or account refused (bad key, signature, no credits, uncertified
    # sender): permanent for the provider, the step stops at once
    AUTH = "auth"
    RATE_LIMITED = "rate_limited"  # provider refused for load (429): retry after
    TRANSIENT = "transient"  # outage, 5xx, connection failure: may retry if not acted
    REJECTED = "rejected"  # permanent for this recipient (bad number, text, opt-out)
    PROTOCOL = "protocol"  # the answer could not be understood


@dataclass(frozen=True)
class CallError:
    """A classified failure of one provider call.

    ``may_have_acted`` is the exactly-once bit: True when the provider may have
    carried the call out (read timeout after sending, garbled answer to a send).
    Such a send is recorded ``unknown`` and is never retried blindly.
    """

    kind: ErrorKind
    code: str  # the provider's own code, or "HTTP 503", "timeout", ...
    detail: str = ""  # short and secret-free: safe for logs and the journal
    retry_after: float | None = None  # seconds, from Retry-After or the provider
    may_have_acted: bool = False

    @property
    def retryable(self) -> bool:
        return (
            self.kind in (ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED)
            and not self.may_have_acted
        )

    def __str__(self) -> str:
        return f"{self.kind.value} [{self.code}] {self.detail}".strip()


class ProviderCallError(ProviderError):
    """Raised by the read-only calls (report, balance) with a classified error."""

    def __init__(self, error: CallError) -> None:
        self.error = error
        super().__init__(str(error))


@dataclass(frozen=True)
class OutboundMessage:
    """One rendered message to one recipient."""

    to: str  # E.164, with the leading +
    text: str
    key: str  # idempotency key: run/step/recipient, stable across resumes
    sender: str | None = None
    segments: int = 1
    unicode: bool = False  # True when the text needs UCS-2


@dataclass(frozen=True)
class SendResult:
    """What happened to one send. ``error is None`` means the provider accepted it."""

    message_id: str | None = None  # always a string (Ogangi ids are negative int64)
    status: str = ""  # the provider's raw status, e.g. SENT_TO_CARRIER, pending
    cost: float | None = None
    error: CallError | None = None
    # what the provider generated for the recipient (a PIN): never shown, logged
    # or stored; the engine keeps only a keyed hash
    secret: str | None = field(default=None, repr=False)

    @property
    def accepted(self) -> bool:
        return self.error is None


class DeliveryStatus(enum.StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    PENDING = "pending"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SentRecord:
    """What the journal knows about one accepted send, given to ``report``."""

    to: str  # E.164
    message_id: str | None
    sent_at: datetime


@dataclass(frozen=True)
class ReportQuery:
    """What a check_report step asks: the report for messages sent in a window."""

    since: datetime  # when the send step started (timezone-aware)
    until: datetime  # now, or when the send step ended
    sent: Sequence[SentRecord] = ()
    campaign_code: str | None = None  # what the send step tagged its messages with
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    to: str  # E.164 when it could be matched, else as the provider wrote it
    status: DeliveryStatus
    raw_code: str = ""
    message_id: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class Report:
    """One poll of a report. ``final`` says whether polling may stop.

    ``cursor`` is opaque provider state handed back on the next poll (e.g. the
    id of a Tatango MOMT report job); ``counts`` holds aggregate figures
    (Tellody SMS_SENT/OPTOUT..., Tatango mo_count/mt_count), ``deliveries`` the
    per-recipient statuses where the provider has them.
    """

    final: bool
    deliveries: tuple[Delivery, ...] = ()
    more: bool = False  # more pages are ready now: the engine polls again at once
    counts: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    cursor: Any = None
    # E.164 numbers that asked to stop (a STOP reply), so far: they join the
    # journal's suppression list
    optouts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Balance:
    credits: float
    unit: str = "credits"
    details: Mapping[str, Any] = field(default_factory=dict)


class Provider:
    """Base class of every provider plug-in (one module per API, see registry).

    Subclasses set the class attributes and implement the methods of the
    capabilities they declare. ``options`` arrive with ``${VAR}`` already resolved.
    """

    type: ClassVar[str]  # the YAML ``type:`` value, equal to the module name
    service_name: ClassVar[str]  # for people: "MailUp"
    capabilities: ClassVar[frozenset[Capability]]
    schema: ClassVar[str]  # the options schema fragment, under schemas/providers/
    default_base_url: ClassVar[str]
    default_rate: ClassVar[Rate | None] = None  # the provider's documented limit
    default_concurrency: ClassVar[int] = 8
    secret_options: ClassVar[tuple[str, ...]] = ()  # option names holding credentials
    # options naming other endpoints that --sandbox must repoint, with defaults
    extra_urls: ClassVar[Mapping[str, str]] = {}
    # option defaults (the schema fragment says the same)
    defaults: ClassVar[Mapping[str, Any]] = {}
    keeps_cookies: ClassVar[bool] = False  # a cookie session (Tellody's login)
    # what a report can tell, so that validation refuses an ``expect:`` the
    # provider could never evaluate: a status per recipient (delivered_ratio),
    # an opt-out count (max_optout_ratio)
    per_recipient_report: ClassVar[bool] = False
    optout_counts: ClassVar[bool] = False
    # ``report`` honours ``webhook_callback_url``: the provider calls it once the
    # report is ready (check_report ``callback: true``)
    report_callbacks: ClassVar[bool] = False
    # the provider's refusal codes for a recipient who opted out: such a number
    # joins the journal's suppression list, for every later campaign
    optout_codes: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: ProviderConfig, options: Mapping[str, Any]) -> None:
        self.config = config
        self.options = options
        self.base_url = (config.base_url or self.default_base_url).rstrip("/")
        self.concurrency = config.concurrency or self.default_concurrency
        self.timeout = config.timeout
        self.http = Transport(
            pool_size=max(self.concurrency, 4),
            timeout=self.timeout,
            user_agent=USER_AGENT,
            ca_bundle=config.ca_bundle,
            cookies=self.keeps_cookies,
        )
        self._lock = threading.Lock()

    # -- capabilities -------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        """Send one message. Never raises for a remote outcome."""
        raise NotImplementedError

    def send_pin(self, message: OutboundMessage, length: int) -> SendResult:
        """Have the provider generate a PIN of ``length`` characters and text it
        with ``message.text``; the PIN comes back as ``secret``. Never raises for
        a remote outcome (capability PIN)."""
        raise NotImplementedError

    def fire(
        self, message: OutboundMessage, descriptor: Mapping[str, Any] | None = None
    ) -> SendResult:
        """Inject ``message.text`` as an incoming message from ``message.to``, as
        if they had texted it (capability FIRE_MESSAGE); with ``descriptor``, the
        POST form with those JSON fields. Never raises for a remote outcome."""
        raise NotImplementedError

    def report(self, query: ReportQuery, cursor: Any = None) -> Report:
        """One poll of the report for ``query``; raises ProviderCallError."""
        raise NotImplementedError

    def balance(self) -> Balance:
        """The account's credits; raises ProviderCallError."""
        raise NotImplementedError

    def option(self, name: str) -> Any:
        """An option's value, or its default when unset or empty."""
        value = self.options.get(name)
        if value is None or value == "":
            return self.defaults.get(name, self.extra_urls.get(name))
        return value

    def require(self, name: str) -> Any:
        """An option that must be set (the schema requires it; this says so clearly)."""
        value = self.options.get(name)
        if value is None or value == "":
            raise ProviderError(
                f"provider {self.config.name!r}: option {name} is required"
            )
        return value

    def max_text_length(self, unicode: bool) -> int | None:
        """Longest text the API accepts in one call (None: no documented limit)."""
        return None

    def close(self) -> None:
        self.http.close()

    # -- shared HTTP behaviour ----------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> Response | CallError:
        """One HTTP call with explicit timeouts, classified on failure.

        Returns the response (whatever its status) or a CallError for failures
        below HTTP. Connection errors before the request was written cannot have
        reached the provider; a read timeout or a dropped connection after it may.
        """
        try:
            return self.http.request(method, url, **kwargs)
        except (requests.RequestException, ue.HTTPError, OSError) as e:
            return _classified(e)
        except ValueError as e:  # a malformed URL or body
            return CallError(ErrorKind.PROTOCOL, "request", _short(str(e)))


def _classified(error: BaseException) -> CallError:
    """A failure below HTTP, by the urllib3 error (under requests' wrapping, if
    any): only what certainly happened before the request was written is safe
    to repeat."""
    e = _underlying(error)
    # NewConnectionError subclasses ConnectTimeoutError: it goes first
    if isinstance(e, ue.NewConnectionError | ue.NameResolutionError):
        # refused, unknown host, unreachable: nothing was written
        return CallError(ErrorKind.TRANSIENT, "connection", _short(_root_cause(e)))
    if isinstance(e, ue.ConnectTimeoutError):
        return CallError(ErrorKind.TRANSIENT, "connect-timeout", "connect timed out")
    if isinstance(e, ue.ReadTimeoutError):
        return CallError(
            ErrorKind.TRANSIENT, "timeout", "no answer in time", may_have_acted=True
        )
    if isinstance(e, ue.SSLError):
        return CallError(ErrorKind.TRANSIENT, "tls", _short(str(e)))
    if isinstance(e, ue.ProxyError):
        return CallError(ErrorKind.TRANSIENT, "proxy", _short(_root_cause(e)))
    if isinstance(e, ue.ProtocolError) or (
        isinstance(e, OSError) and not isinstance(e, requests.RequestException)
    ):
        # dropped or cut short after the request went out
        return CallError(
            ErrorKind.TRANSIENT, "connection", _short(_root_cause(e)), may_have_acted=True
        )
    # undecodable body, malformed URL, a scheme requests cannot send
    return CallError(ErrorKind.PROTOCOL, "request", _short(str(e)))


def _underlying(e: BaseException) -> BaseException:
    """The urllib3 (or OS) error requests wrapped, through any MaxRetryError."""
    for _ in range(6):
        if isinstance(e, requests.RequestException) and e.args:
            inner = e.args[0]
            if isinstance(inner, BaseException):
                e = inner
                continue
        if isinstance(e, ue.MaxRetryError) and e.reason is not None:
            e = e.reason
            continue
        break
    return e


def http_error(resp: Response, *, acted: bool = False) -> CallError:
    """The default classification of an HTTP status the provider did not explain."""
    code = f"HTTP {resp.status_code}"
    text = excerpt(resp.text)
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    if resp.status_code in (401, 403):
        return CallError(ErrorKind.AUTH, code, text)
    if resp.status_code == 429:
        return CallError(ErrorKind.RATE_LIMITED, code, text, retry_after)
    if resp.status_code in (502, 503, 504):
        # the gateway or the service said it did not process the request
        return CallError(ErrorKind.TRANSIENT, code, text, retry_after)
    if resp.status_code >= 500:
        return CallError(
            ErrorKind.TRANSIENT, code, text, retry_after, may_have_acted=acted
        )
    return CallError(ErrorKind.REJECTED, code, text)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(when.tzinfo)).total_seconds())


def json_object(resp: Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None (HTML page, truncated, wrong shape)."""
    if "html" in resp.headers.get("Content-Type", ""):
        return None
    try:
        data = resp.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


_WS = re.compile(r"\s+")


def excerpt(text: str, limit: int = 120) -> str:
    """A short one-line quote of a response body for errors and logs."""
    text = _WS.sub(" ", text or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def protocol_error(what: str, body: str, *, acted: bool = False) -> CallError:
    return CallError(
        ErrorKind.PROTOCOL,
        "protocol",
        f"{what}: {excerpt(body, 80)!r}",
        may_have_acted=acted,
    )


def _short(text: str) -> str:
    return excerpt(text, 160)


def _root_cause(e: BaseException) -> str:
    while e.__cause__ is not None or e.__context__ is not None:
        nxt = e.__cause__ or e.__context__
        assert nxt is not None
        e = nxt
    return f"{type(e).__name__}: {e}"
