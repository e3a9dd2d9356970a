"""MailUp's delivery report: the ReportDetails pages of the SMS message that a
CampaignCode names, read into per-recipient deliveries, and the lookup of one
receiver's sends for reconciliation (shared/provider-docs/
mailup-sms-reports-credits.txt, NOTES.md).

``Status`` 0 is delivered, 1 queued, 2 error; ``ErrorCode`` says why; ``Receiver``
is written without ``+``/``00``; ``SentDate`` is UTC like ``2015-01-29 14:11:10Z``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

from runner.errors import ProviderError
from runner.model.campaign import ProviderConfig
from runner.providers.base import (
    CallError,
    Delivery,
    DeliveryStatus,
    ErrorKind,
    ProviderCallError,
    Report,
    ReportQuery,
    SentRecord,
    protocol_error,
)

_STATUS = {
    0: DeliveryStatus.DELIVERED,
    1: DeliveryStatus.PENDING,
    2: DeliveryStatus.FAILED,
}
_FINAL = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED)
_MAX_PAGES = 1000  # a guard against a server that never says "last page"


class Console(Protocol):
    """What the report needs of the provider: its options and the console API."""

    @property
    def config(self) -> ProviderConfig: ...

    @property
    def options(self) -> Mapping[str, Any]: ...

    @property
    def defaults(self) -> Mapping[str, Any]: ...

    def option(self, name: str) -> Any: ...

    def require(self, name: str) -> Any: ...

    def console(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """The JSON of a console GET; raises ProviderCallError."""
        ...

    def redact(self, text: str) -> str: ...


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


class Reports:
    """The report side of one MailUp provider (message ids cached per code)."""

    def __init__(self, api: Console) -> None:
        self.api = api
        self._message_ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def report(self, query: ReportQuery, cursor: Any = None) -> Report:
        """One poll: at most ``report_pages_per_poll`` pages of ReportDetails.

        A page that fails after others were read ends the poll early with what
        was read and a cursor at that page, so a retry resumes there instead of
        reading the first pages again.

        Final at the end of a pass over every page when each sent message with a
        DeliveryId is listed with a final status and no listed send of ours is
        still queued (a send without an id, an unknown outcome, may be absent).
        A single send with a DeliveryId is looked up directly.
        """
        api = self.api
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
            items, _ = self.page(path, {"DeliveryId": query.sent[0].message_id})
            found = tuple(self._delivery(i, match) for i in items)
            final = bool(found) and all(d.status in _FINAL for d in found)
            return Report(final, found, details=details)

        state = state or ReportCursor(msg_id)
        settled, unsettled = set(state.settled), set(state.unsettled)
        since = query.since - timedelta(seconds=float(api.option("report_clock_skew")))
        deliveries: list[Delivery] = []
        page, last = state.page, False
        for _ in range(max(1, int(api.option("report_pages_per_poll")))):
            try:
                items, last = self.page(path, self._report_params(query, page))
            except ProviderCallError:
                if page == state.page:
                    raise  # nothing read yet: the caller retries this page
                # keep what was read; the next poll starts at the page that failed
                details["pages_read"] = page
                nxt = ReportCursor(msg_id, page, frozenset(settled), frozenset(unsettled))
                return Report(
                    False, tuple(deliveries), more=True, details=details, cursor=nxt
                )
            for item in items:
                d = self._delivery(item, match)
                if d.at is not None and d.at < since:
                    continue  # an earlier run with the same CampaignCode
                deliveries.append(d)
                key = digits(d.to)
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
        required = {digits(s.to) for s in query.sent if s.message_id}
        ours = {digits(s.to) for s in query.sent} if query.sent else unsettled
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
        """The ReportDetails rows of receiver ``to`` (E.164) sent after ``since``,
        newest first, in the SMS message of ``campaign_code`` (default: the option)."""
        code = campaign_code or self.api.options.get("campaign_code")
        if not code:
            raise ProviderCallError(
                CallError(
                    ErrorKind.PROTOCOL, "no-campaign-code", "lookup needs a CampaignCode"
                )
            )
        number = digits(to)
        if not number:
            raise ValueError(f"not a phone number: {to!r}")
        msg_id = self.message_id(str(code))
        if msg_id is None:
            return []
        path = f"/Console/Sms/{quote(msg_id, safe='')}/Sendings/ReportDetails"
        match = {number: (to, None)}
        found: list[Delivery] = []
        for page in range(_MAX_PAGES):
            params = {
                "filterby": f"\"Receiver.Contains('{number}')\"",
                "orderby": '"SentDate desc"',
                "pageSize": 50,
                "pageNumber": page,
            }
            items, last = self.page(path, params)
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
        list_id = quote(str(self.api.require("list_id")), safe="")
        best: int | None = None
        for page in range(_MAX_PAGES):
            items, last = self.page(
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

    def page(
        self, path: str, params: Mapping[str, Any]
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of a console list: its items and whether it was the last."""
        data = self.api.console(path, params)
        items = data.get("Items") if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ProviderCallError(shape(path.rsplit("/", 1)[-1], data))
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

    def _report_params(self, query: ReportQuery, page: int) -> dict[str, Any]:
        api = self.api
        params: dict[str, Any] = {
            "pageSize": int(api.option("report_page_size")),
            "pageNumber": page,
        }
        for name in ("filterby", "orderby"):
            key = f"report_{name}"
            expr = query.options.get(name) or api.options.get(key, api.defaults.get(key))
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
            redact = self.api.redact
            error = protocol_error("ReportDetails item", redact(json.dumps(item)))
            raise ProviderCallError(replace(error, detail=redact(error.detail)))
        to, message_id = match.get(digits(str(receiver)), (str(receiver), None))
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
            or self.api.options.get("campaign_code")
            or query.campaign_code
        )
        if not code:
            raise ProviderError(
                f"provider {self.api.config.name!r}: the report needs a campaign_code"
            )
        return str(code)


def shape(what: str, data: Any) -> CallError:
    keys = sorted(data) if isinstance(data, dict) else type(data).__name__
    return CallError(ErrorKind.PROTOCOL, "protocol", f"{what}: unexpected shape ({keys})")


def digits(number: str) -> str:
    """International digits of a number written with +, 00 or neither."""
    found = re.sub(r"\D", "", number)
    return found[2:] if number.lstrip().startswith("00") else found


def _matcher(sent: Sequence[SentRecord]) -> dict[str, tuple[str, str | None]]:
    """Receiver digits -> (E.164 as we sent it, DeliveryId) for the sent records."""
    return {digits(s.to): (s.to, s.message_id) for s in sent}


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
