"""MailUp: transactional SMS send, OAuth2 console API for report details and credits
(shared/provider-docs/mailup-sms-reports-credits.txt and NOTES.md).

Two hosts: the send API authenticates each call with the list's GUID and secret;
the console API (reports, credits) with an OAuth2 bearer token from the password
grant, cached and shared by every sender thread (``mailup_token``). Tokens,
secrets and passwords never reach a log line or an error: bodies of token answers
are never quoted, and every other quoted excerpt goes through a redactor of the
known secret values. The report pages are read in ``mailup_report``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from runner.model.campaign import ProviderConfig
from runner.model.secrets import Redactor
from runner.providers.base import (
    Balance,
    CallError,
    Capability,
    Delivery,
    ErrorKind,
    OutboundMessage,
    Provider,
    ProviderCallError,
    Report,
    ReportQuery,
    SendResult,
    excerpt,
    http_error,
    json_object,
    protocol_error,
)
from runner.providers.http import Response, taken
from runner.providers.mailup_report import Reports, shape
from runner.providers.mailup_token import TokenCache

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
    optout_codes = frozenset({"206"})  # "Recipient opted out"
    report_lag = 300.0

    def __init__(self, config: ProviderConfig, options: Mapping[str, Any]) -> None:
        super().__init__(config, options)
        self.send_url = str(self.option("send_url")).rstrip("/")
        self._secrets = [str(options[k]) for k in self.secret_options if options.get(k)]
        # replaced whole, never mutated: other threads may be redacting meanwhile
        self._redact = Redactor(self._secrets)
        self.tokens = TokenCache(
            name=config.name,
            token_url=str(self.option("token_url")),
            request=self.request,
            require=self.require,
            margin=float(self.option("token_refresh_margin")),
            clean=self._clean,
            learned=self._learned,
        )
        self.reports = Reports(self)

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
            if taken(resp):  # the request was taken, the answer is garbage: may have sent
                return SendResult(
                    error=self._protocol("send answer is not JSON", resp.text, acted=True)
                )
            return SendResult(error=self._http_error(resp, acted=True))
        code = str(data.get("Code", "")).strip()
        desc = excerpt(self._redact(str(data.get("Description") or "")))
        payload: dict[str, Any] = (
            data["Data"] if isinstance(data.get("Data"), dict) else {}
        )
        if code in ("0", _SENT_NO_ID) and (taken(resp) or code == _SENT_NO_ID):
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
        if taken(resp):
            return SendResult(
                error=self._protocol("unexpected send answer", resp.text, acted=True)
            )
        return SendResult(error=self._http_error(resp, acted=True))

    def max_text_length(self, unicode: bool) -> int | None:
        return int(self.option("max_length_unicode" if unicode else "max_length"))

    # -- credits ----------------------------------------------------------------

    def balance(self) -> Balance:
        """TotalCredits from Console/Authentication/Details (+ CreditsByList)."""
        data = self.console("/Console/Authentication/Details")
        total = data.get("TotalCredits") if isinstance(data, dict) else None
        if _number(total) is None:
            raise ProviderCallError(shape("Authentication/Details", data))
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

    # -- report (mailup_report) -------------------------------------------------

    def report(self, query: ReportQuery, cursor: Any = None) -> Report:
        """One poll of ReportDetails for the query's CampaignCode (Reports.report)."""
        return self.reports.report(query, cursor)

    def lookup(
        self, to: str, since: datetime, *, campaign_code: str | None = None
    ) -> list[Delivery]:
        """Did a message to ``to`` (E.164) go out after ``since``? For reconciling
        unknown sends: the ReportDetails rows of that receiver, newest first.

        Searches the SMS message of ``campaign_code`` (default: the option). An
        empty list means MailUp lists no such send; mind its report lag.
        """
        return self.reports.lookup(to, since, campaign_code=campaign_code)

    def message_id(self, campaign_code: str) -> str | None:
        """The console's idMessage of the SMS message whose Subject is the code."""
        return self.reports.message_id(campaign_code)

    # -- console API (bearer token from mailup_token) ---------------------------

    def console(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """The JSON of a console GET with the bearer token; raises ProviderCallError."""
        resp = self.tokens.get(self.base_url + path, params)
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

    def redact(self, text: str) -> str:
        """``text`` without the credentials and the tokens learned so far."""
        return self._redact(text)

    def _learned(self, tokens: list[str]) -> None:
        self._redact = Redactor(self._secrets + tokens)

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


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
