"""MailUp: transactional SMS send, OAuth2 console API for report details and credits
(shared/provider-docs/mailup-sms-reports-credits.txt and NOTES.md).

Two hosts: the send API authenticates each call with the list's GUID and secret;
the console API (reports, credits) with an OAuth2 bearer token from the password
grant, cached and shared by every sender thread. Tokens, secrets and passwords
never reach a log line or an error: bodies of token answers are never quoted, and
every other quoted excerpt goes through a redactor of the known secret values.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from runner.errors import ProviderError
from runner.model.campaign import ProviderConfig
from runner.model.secrets import Redactor
from runner.providers.base import (
    Balance,
    CallError,
    Capability,
    Delivery,
    DeliveryStatus,
    ErrorKind,
    OutboundMessage,
    Provider,
    ProviderCallError,
    Report,
    ReportQuery,
    SendResult,
    SentRecord,
    excerpt,
    http_error,
    json_object,
    protocol_error,
)
from runner.providers.http import Response

log = logging.getLogger(__name__)

# Option defaults (schemas/providers/mailup.schema.json says the same).
DEFAULTS: Mapping[str, Any] = {
    "report_page_size": 500,
    "report_pages_per_poll": 5,
    "report_orderby": "SentDate asc",  # new sends land on the last page: stable paging
    "report_clock_skew": 120.0,
    "report_lag": 300.0,
    "token_refresh_margin": 60.0,
    "max_length": 459,  # CONVENTION: 3 concatenated GSM-7 parts (code 107 beyond)
    "max_length_unicode": 201,  # CONVENTION: 3 concatenated UCS-2 parts
}

# The send API's documented codes (HTTP 400: 100-107, 403: 201-207/250, 500: 300-302).
# 101-104 concern the list/account itself, so they would fail for every recipient.
_SEND_CODES: Mapping[str, tuple[ErrorKind, str]] = {
    "100": (ErrorKind.REJECTED, "bad request"),
    "101": (ErrorKind.AUTH, "list refused (ListGuid)"),
    "102": (ErrorKind.AUTH, "list refused (ListGuid)"),
    "103": (ErrorKind.AUTH, "list refused (ListSecret)"),
    "104": (ErrorKind.AUTH, "list refused"),
    "105": (ErrorKind.REJECTED, "bad recipient"),
    "106": (ErrorKind.REJECTED, "bad recipient"),
    "107": (ErrorKind.REJECTED, "content too long"),
    "201": (ErrorKind.AUTH, "list not usable"),
    "202": (ErrorKind.AUTH, "list not usable"),
    "203": (ErrorKind.AUTH, "list not usable"),
    "204": (ErrorKind.AUTH, "list not usable"),
    "205": (ErrorKind.AUTH, "no credits"),
    "206": (ErrorKind.REJECTED, "recipient opted out"),
    "207": (ErrorKind.AUTH, "sender not certified"),
    "250": (ErrorKind.AUTH, "access denied"),
    "300": (ErrorKind.TRANSIENT, "server error"),
    "302": (ErrorKind.TRANSIENT, "server error"),
}
_SENT_NO_ID = "301"  # sent and charged, but DeliveryId 0
# a 5xx description that says the message did not go out makes a retry safe
_NOT_SENT = re.compile(r"\bnot\s+(?:been\s+)?(?:sent|processed|queued)\b", re.I)

_STATUS = {
    0: DeliveryStatus.DELIVERED,
    1: DeliveryStatus.PENDING,
    2: DeliveryStatus.FAILED,
}
_FINAL = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED)
_MAX_PAGES = 1000  # a guard against a server that never says "last page"


@dataclass(frozen=True)
class _Token:
    access: str
    refresh: str | None
    refresh_at: float  # provider clock: renew from here on (before the real expiry)


@dataclass(frozen=True)
class ReportCursor:
    """Where a report pass stands: the SMS message and the next page to read.

    ``settled``/``unsettled`` hold the receivers (digits) whose latest status read
    in this pass is final / not final, so a pass split over polls can still say
    at its end whether every sent message is final.
    """

    message_id: str
    page: int = 0
    settled: frozenset[str] = frozenset()
    unsettled: frozenset[str] = frozenset()


class MailUp(Provider):
    type = "mailup"
    defaults = DEFAULTS
    service_name = "MailUp"
    capabilities = frozenset({Capability.SEND, Capability.REPORT, Capability.CREDITS})
    schema = "providers/mailup.schema.json"
    default_base_url = "https://services.mailup.com/API/v1.1/Rest/ConsoleService.svc"
    extra_urls: ClassVar[Mapping[str, str]] = {
        "send_url": "https://sendsms.mailup.com/api/v2.0",
        "token_url": "https://services.mailup.com/Authorization/OAuth/Token",
    }
    secret_options = ("client_id", "client_secret", "password", "list_secret")
    per_recipient_report = True  # ReportDetails lists every receiver (reconciliation)
    report_lag = 300.0

    def __init__(self, config: ProviderConfig, options: Mapping[str, Any]) -> None:
        super().__init__(config, options)
        self.send_url = str(self.option("send_url")).rstrip("/")
        self.token_url = str(self.option("token_url"))
        # seconds for token expiry; injectable (tests move it forward)
        self.clock: Callable[[], float] = time.monotonic
        self._token: _Token | None = None
        self._token_lock = threading.Lock()
        self._message_ids: dict[str, str] = {}
        self._secrets = [str(options[k]) for k in self.secret_options if options.get(k)]
        # replaced whole, never mutated: other threads may be redacting meanwhile
        self._redact = Redactor(self._secrets)

    # -- send -------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        """POST /sms/{AccountId}/{ListId}; the list GUID and secret authenticate it."""
        account = quote(str(self.require("account_id")), safe="")
        list_id = quote(str(self.require("list_id")), safe="")
        to = message.to if message.to.startswith(("+", "00")) else "+" + message.to
        body: dict[str, Any] = {
            "Content": message.text,
            "ListGuid": str(self.require("list_guid")),
            "ListSecret": str(self.require("list_secret")),
            "Recipient": to,
            "isUnicode": 1 if message.unicode else 0,
        }
        if self.options.get("campaign_code"):
            body["CampaignCode"] = str(self.options["campaign_code"])
        sender = message.sender or self.options.get("sender")
        if sender:
            body["Sender"] = str(sender)
        resp = self.request(
            "POST",
            f"{self.send_url}/sms/{account}/{list_id}",
            json=body,
            headers={"Accept": "application/json"},
        )
        if isinstance(resp, CallError):
            return SendResult(error=self._clean(resp))
        result = self._send_result(resp)
        if result.error is not None:
            result = dataclasses.replace(result, error=self._clean(result.error))
        return result

    def _send_result(self, resp: Response) -> SendResult:
        data = json_object(resp)
        if data is None:
            if resp.ok:  # the request was taken, the answer is garbage: may have sent
                return SendResult(
                    error=self._protocol("send answer is not JSON", resp.text, acted=True)
                )
            return SendResult(error=self._http_error(resp, acted=True))
        code = str(data.get("Code", "")).strip()
        desc = excerpt(self._redact(str(data.get("Description") or "")))
        payload: dict[str, Any] = (
            data["Data"] if isinstance(data.get("Data"), dict) else {}
        )
        if code in ("0", _SENT_NO_ID) and (resp.ok or code == _SENT_NO_ID):
            delivery_id = payload.get("DeliveryId")
            if code == "0" and (
                not isinstance(delivery_id, int) or isinstance(delivery_id, bool)
            ):
                return SendResult(
                    error=self._protocol(
                        "send answer without DeliveryId", resp.text, acted=True
                    )
                )
            return SendResult(
                message_id=str(delivery_id) if delivery_id else None,
                status=str(data.get("State") or "DONE") if code == "0" else code,
                cost=_number(payload.get("Cost")),
            )
        known = _SEND_CODES.get(code)
        if known is not None:
            kind, what = known
            acted = kind is ErrorKind.TRANSIENT and not _NOT_SENT.search(desc)
            error = CallError(kind, code, desc or what, may_have_acted=acted)
            return SendResult(status=code, error=error)
        if resp.ok:
            return SendResult(
                error=self._protocol("unexpected send answer", resp.text, acted=True)
            )
        return SendResult(error=self._http_error(resp, acted=True))

    def max_text_length(self, unicode: bool) -> int | None:
        return int(self.option("max_length_unicode" if unicode else "max_length"))

    # -- credits ----------------------------------------------------------------

    def balance(self) -> Balance:
        """TotalCredits from Console/Authentication/Details (+ CreditsByList)."""
        data = self._console("/Console/Authentication/Details")
        total = data.get("TotalCredits") if isinstance(data, dict) else None
        if _number(total) is None:
            raise ProviderCallError(self._shape("Authentication/Details", data))
        by_list: dict[str, float] = {}
        for entry in data.get("CreditsByList") or []:
            if isinstance(entry, dict) and _number(entry.get("Credit")) is not None:
                by_list[str(entry.get("ListId"))] = float(entry["Credit"])
        details: dict[str, Any] = {"credits_by_list": by_list}
        if "IsTrial" in data:
            details["is_trial"] = bool(data["IsTrial"])
        list_id = str(self.options.get("list_id", ""))
        if list_id in by_list:
            details["list_credits"] = by_list[list_id]
        return Balance(float(total), "credits", details)  # type: ignore[arg-type]

    # -- report -----------------------------------------------------------------

    def report(self, query: ReportQuery, cursor: Any = None) -> Report:
        """One poll: at most ``report_pages_per_poll`` pages of ReportDetails.

        Final at the end of a pass over every page when each sent message with a
        DeliveryId is listed with a final status and no listed send of ours is
        still queued (a send without an id, an unknown outcome, may be absent).
        A single send with a DeliveryId is looked up directly.
        """
        code = self._campaign_code(query)
        state = cursor if isinstance(cursor, ReportCursor) else None
        msg_id = state.message_id if state else self.message_id(code)
        details: dict[str, Any] = {"campaign_code": code, "message_id": msg_id}
        if msg_id is None:  # nothing was sent with this code (yet)
            return Report(
                final=not any(s.message_id for s in query.sent), details=details
            )
        match = _matcher(query.sent)
        path = f"/Console/Sms/{quote(msg_id, safe='')}/Sendings/ReportDetails"
        if len(query.sent) == 1 and query.sent[0].message_id:
            items, _ = self._page(path, {"DeliveryId": query.sent[0].message_id})
            found = tuple(self._delivery(i, match) for i in items)
            final = bool(found) and all(d.status in _FINAL for d in found)
            return Report(final, found, details=details)

        state = state or ReportCursor(msg_id)
        settled, unsettled = set(state.settled), set(state.unsettled)
        since = query.since - timedelta(seconds=float(self.option("report_clock_skew")))
        deliveries: list[Delivery] = []
        page, last = state.page, False
        for _ in range(max(1, int(self.option("report_pages_per_poll")))):
            items, last = self._page(path, self._report_params(query, page))
            for item in items:
                d = self._delivery(item, match)
                if d.at is not None and d.at < since:
                    continue  # an earlier run with the same CampaignCode
                deliveries.append(d)
                key = _digits(d.to)
                (settled if d.status in _FINAL else unsettled).add(key)
                (unsettled if d.status in _FINAL else settled).discard(key)
            if last or page >= _MAX_PAGES:
                last = True
                break
            page += 1
        details["pages_read"] = page + 1
        if not last:
            nxt = ReportCursor(msg_id, page, frozenset(settled), frozenset(unsettled))
            return Report(
                False, tuple(deliveries), more=True, details=details, cursor=nxt
            )
        required = {_digits(s.to) for s in query.sent if s.message_id}
        ours = {_digits(s.to) for s in query.sent} if query.sent else unsettled
        final = required <= settled and not (unsettled & ours)
        return Report(
            final,
            tuple(deliveries),
            details=details,
            cursor=None if final else ReportCursor(msg_id),
        )

    def lookup(
        self, to: str, since: datetime, *, campaign_code: str | None = None
    ) -> list[Delivery]:
        """Did a message to ``to`` (E.164) go out after ``since``? For reconciling
        unknown sends: the ReportDetails rows of that receiver, newest first.

        Searches the SMS message of ``campaign_code`` (default: the option). An
        empty list means MailUp lists no such send; mind its report lag.
        """
        code = campaign_code or self.options.get("campaign_code")
        if not code:
            raise ProviderCallError(
                CallError(
                    ErrorKind.PROTOCOL, "no-campaign-code", "lookup needs a CampaignCode"
                )
            )
        digits = _digits(to)
        if not digits:
            raise ValueError(f"not a phone number: {to!r}")
        msg_id = self.message_id(str(code))
        if msg_id is None:
            return []
        path = f"/Console/Sms/{quote(msg_id, safe='')}/Sendings/ReportDetails"
        match = {digits: (to, None)}
        found: list[Delivery] = []
        for page in range(_MAX_PAGES):
            params = {
                "filterby": f"\"Receiver.Contains('{digits}')\"",
                "orderby": '"SentDate desc"',
                "pageSize": 50,
                "pageNumber": page,
            }
            items, last = self._page(path, params)
            older = False
            for item in items:
                d = self._delivery(item, match)
                if d.to != to:
                    continue  # Contains also matches longer numbers
                if d.at is not None and d.at < since:
                    older = True  # newest first: the rest is older still
                    continue
                found.append(d)
            if last or older:
                break
        return found

    def message_id(self, campaign_code: str) -> str | None:
        """The console's idMessage of the SMS message whose Subject is the code."""
        with self._lock:
            if campaign_code in self._message_ids:
                return self._message_ids[campaign_code]
        list_id = quote(str(self.require("list_id")), safe="")
        best: int | None = None
        for page in range(_MAX_PAGES):
            items, last = self._page(
                f"/Console/Sms/List/{list_id}/Messages",
                {"pageSize": 100, "pageNumber": page},
            )
            for item in items:
                ident = item.get("idMessage")
                if str(item.get("Subject")) == campaign_code and isinstance(ident, int):
                    best = ident if best is None else max(best, ident)
            if last:
                break
        if best is None:
            return None
        with self._lock:
            self._message_ids[campaign_code] = str(best)
        return str(best)

    def _report_params(self, query: ReportQuery, page: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "pageSize": int(self.option("report_page_size")),
            "pageNumber": page,
        }
        for name in ("filterby", "orderby"):
            expr = query.options.get(name) or self.options.get(
                f"report_{name}", DEFAULTS.get(f"report_{name}")
            )
            if expr:
                expr = str(expr)
                params[name] = expr if expr.startswith('"') else f'"{expr}"'
        return params

    def _delivery(
        self, item: Mapping[str, Any], match: Mapping[str, tuple[str, str | None]]
    ) -> Delivery:
        receiver, status = item.get("Receiver"), item.get("Status")
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        if not isinstance(receiver, str | int) or not isinstance(status, int):
            raise ProviderCallError(
                self._clean(self._protocol("ReportDetails item", json.dumps(item)))
            )
        to, message_id = match.get(_digits(str(receiver)), (str(receiver), None))
        error_code = str(item.get("ErrorCode") or "")
        return Delivery(
            to=to,
            status=_STATUS.get(status, DeliveryStatus.UNKNOWN),
            raw_code=error_code or str(status),
            message_id=message_id,
            at=_parse_date(item.get("SentDate")),
        )

    def _campaign_code(self, query: ReportQuery) -> str:
        code = (
            query.options.get("campaign_code")
            or self.options.get("campaign_code")
            or query.campaign_code
        )
        if not code:
            raise ProviderError(
                f"provider {self.config.name!r}: the report needs a campaign_code"
            )
        return str(code)

    # -- console API with OAuth2 ------------------------------------------------

    def _page(
        self, path: str, params: Mapping[str, Any]
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of a console list: its items and whether it was the last."""
        data = self._console(path, params)
        items = data.get("Items") if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ProviderCallError(self._shape(path.rsplit("/", 1)[-1], data))
        size = int(params.get("pageSize") or 0)
        number = int(params.get("pageNumber") or 0)
        total = data.get("TotalElementsCount")
        last = (
            data.get("IsPaginated") is False
            or not items
            or not size
            or len(items) < size
            or (isinstance(total, int) and total > 0 and (number + 1) * size >= total)
        )
        return items, bool(last)

    def _console(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET a console resource with the bearer token; one retry after a 401."""
        url = self.base_url + path
        token = self._bearer()
        resp = self._get(url, params, token)
        if resp.status_code == 401:  # expired or revoked early: renew, retry once
            log.debug("mailup %s: token refused, renewing it", self.config.name)
            resp = self._get(url, params, self._bearer(stale=token))
        if resp.status_code != 200:
            error = self._http_error(resp)
            data = json_object(resp)
            if data is not None and data.get("ErrorDescription"):
                error = dataclasses.replace(
                    error, detail=excerpt(self._redact(str(data["ErrorDescription"])))
                )
            raise ProviderCallError(self._clean(error))
        try:
            return resp.json()
        except ValueError:
            raise ProviderCallError(
                self._clean(self._protocol(f"{path} answer is not JSON", resp.text))
            ) from None

    def _get(self, url: str, params: Mapping[str, Any] | None, token: str) -> Response:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        resp = self.request("GET", url, params=params, headers=headers)
        if isinstance(resp, CallError):
            raise ProviderCallError(self._clean(resp))
        return resp

    def _bearer(self, stale: str | None = None) -> str:
        """A valid access token: cached, renewed before expiry or when ``stale``
        (the one the server just refused) is still the current one."""
        with self._token_lock:
            tok = self._token
            if tok is not None and tok.access != stale and self.clock() < tok.refresh_at:
                return tok.access
            new: _Token | None = None
            if tok is not None and tok.refresh:
                try:
                    new = self._grant(
                        {"grant_type": "refresh_token", "refresh_token": tok.refresh}
                    )
                except ProviderCallError as e:  # refused or failed: log in again
                    log.debug("mailup %s: refresh failed (%s)", self.config.name, e)
            if new is None:
                new = self._grant(
                    {
                        "grant_type": "password",
                        "username": str(self.require("username")),
                        "password": str(self.require("password")),
                    }
                )
            self._token = new
            return new.access

    def _grant(self, form: dict[str, str]) -> _Token:
        form = {
            **form,
            "client_id": str(self.require("client_id")),
            "client_secret": str(self.require("client_secret")),
        }
        started = self.clock()
        resp = self.request(
            "POST", self.token_url, data=form, headers={"Accept": "application/json"}
        )
        if isinstance(resp, CallError):
            raise ProviderCallError(self._clean(resp))
        data = json_object(resp)
        if resp.status_code != 200:
            error = http_error(resp)  # its detail is replaced: never quoted
            if resp.status_code in (400, 401):  # invalid_grant / invalid_client
                code = str((data or {}).get("error") or f"HTTP {resp.status_code}")
                error = CallError(ErrorKind.AUTH, excerpt(code, 40), "token refused")
            else:
                error = dataclasses.replace(error, detail="token endpoint failed")
            raise ProviderCallError(self._clean(error))
        access = (data or {}).get("access_token")
        if not isinstance(access, str) or not access:
            # never quote a token answer: it may hold the tokens themselves
            what = f"keys {sorted(data)}" if data is not None else "not JSON"
            raise ProviderCallError(
                CallError(
                    ErrorKind.PROTOCOL,
                    "protocol",
                    f"token answer without access_token ({what})",
                )
            )
        assert data is not None
        refresh = data.get("refresh_token")
        lifetime = _number(data.get("expires_in")) or 3600.0
        margin = min(float(self.option("token_refresh_margin")), lifetime / 2)
        tokens = [access, refresh] if isinstance(refresh, str) else [access]
        self._redact = Redactor(self._secrets + tokens)
        log.debug("mailup %s: new access token, %.0fs", self.config.name, lifetime)
        return _Token(
            access,
            refresh if isinstance(refresh, str) and refresh else None,
            started + lifetime - margin,
        )

    # -- helpers ----------------------------------------------------------------

    def _http_error(self, resp: Response, *, acted: bool = False) -> CallError:
        """base.http_error quoting the body only after the secrets are masked
        (a cut excerpt could otherwise keep the start of one)."""
        error = http_error(resp, acted=acted)
        return dataclasses.replace(error, detail=excerpt(self._redact(resp.text)))

    def _protocol(self, what: str, body: str, *, acted: bool = False) -> CallError:
        return protocol_error(what, self._redact(body), acted=acted)

    def _clean(self, error: CallError) -> CallError:
        detail = self._redact(error.detail)
        return (
            error if detail == error.detail else dataclasses.replace(error, detail=detail)
        )

    def _shape(self, what: str, data: Any) -> CallError:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        return CallError(
            ErrorKind.PROTOCOL, "protocol", f"{what}: unexpected shape ({keys})"
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _digits(number: str) -> str:
    """International digits of a number written with +, 00 or neither."""
    digits = re.sub(r"\D", "", number)
    return digits[2:] if number.lstrip().startswith("00") else digits


def _matcher(sent: Sequence[SentRecord]) -> dict[str, tuple[str, str | None]]:
    """Receiver digits -> (E.164 as we sent it, DeliveryId) for the sent records."""
    return {_digits(s.to): (s.to, s.message_id) for s in sent}


def _parse_date(value: Any) -> datetime | None:
    """``2015-01-29 14:11:10Z`` (UTC) and ISO variants; None when absent or odd."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace(" ", "T", 1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
