"""Tatango: transactional messages and MOMT reports, HTTP Basic + JSON
(shared/provider-docs/tatango-momt-reports.txt and NOTES.md). 1,200 calls per hour.

Numbers: Tatango is a US service whose ``phone_number`` is digits only, the
documents' example being the 10 national digits ``2141234567``. With the default
``phone_format: national`` a +1 number is sent as its 10 national digits and any
other country is refused before a call is made (it could not be written without
changing its meaning); ``international`` sends every E.164 number's digits
without the ``+``.

The report is a MOMT report job: the first poll creates it for the send step's
window, later polls read its progress by id (the cursor) until
``import_completed_at`` is set. Every poll is a call out of the hourly budget,
hence ``min_poll_interval``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from runner.errors import ProviderError
from runner.model.campaign import ProviderConfig
from runner.model.secrets import Redactor
from runner.model.timeparse import Rate
from runner.providers.base import (
    CallError,
    Capability,
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

# Option defaults (schemas/providers/tatango.schema.json says the same).
DEFAULTS: Mapping[str, Any] = {
    "phone_format": "national",  # CONVENTION: +1 numbers as their 10 national digits
    "max_length": 160,  # documented: longer SMS content is refused with HTTP 422
}
_JSON = {"Accept": "application/json", "Content-Type": "application/json"}
_DETAIL_KEYS = ("errors", "error", "message", "status")
_MOMT_DETAILS = (
    "s3_url",
    "date_from",
    "date_to",
    "total_rows",
    "processed_rows",
    "import_started_at",
    "import_completed_at",
    "counts_calculated",
)


@dataclass(frozen=True)
class MomtCursor:
    """The MOMT report job a check_report step is polling (its Tatango id)."""

    report_id: str


class Tatango(Provider):
    type = "tatango"
    defaults = DEFAULTS
    service_name = "Tatango"
    capabilities = frozenset({Capability.SEND, Capability.REPORT})
    report_callbacks = True  # webhook_callback_url of POST /momt_reports
    schema = "providers/tatango.schema.json"
    default_base_url = "https://app.tatango.com/api/v2"
    default_rate = Rate(1200, 3600)
    secret_options = ("api_key",)
    # 1,200 calls per hour is one every 3 s on average: report polls never go faster
    # (steps.check_report takes the larger of this and the step's ``every``).
    min_poll_interval: ClassVar[float] = 3.0

    def __init__(self, config: ProviderConfig, options: Mapping[str, Any]) -> None:
        super().__init__(config, options)
        fmt = self.option("phone_format")
        if fmt not in ("national", "international"):
            raise ProviderError(
                f"provider {config.name!r}: phone_format must be national or "
                f"international, not {excerpt(str(fmt), 30)!r}"
            )
        self.phone_format = str(fmt)
        self._redact = Redactor(
            [str(options[k]) for k in self.secret_options if options.get(k)]
        )

    # -- send -------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        """POST /transactional_messages; refusals Tatango would give are made here
        first when they need no call (wrong country, text too long)."""
        number = self.phone_number(message.to)
        if number is None:
            return SendResult(
                error=CallError(
                    ErrorKind.REJECTED,
                    "not-us-number",
                    "Tatango sends to +1 numbers (phone_format: national)",
                )
            )
        limit = self.max_text_length(message.unicode)
        if len(message.text) > limit:
            return SendResult(
                error=CallError(
                    ErrorKind.REJECTED,
                    "too-long",
                    f"content is {len(message.text)} characters, at most {limit}",
                )
            )
        resp = self.request(
            "POST",
            f"{self.base_url}/transactional_messages",
            json={"phone_number": number, "content": message.text},
            headers=_JSON,
            auth=self._auth(),
        )
        if isinstance(resp, CallError):
            return SendResult(error=self._clean(resp))
        if not taken(resp):
            # 401 auth, 422 content/number refused, 429 rate limited (Retry-After);
            # a 500 may come after the message went out.
            return SendResult(error=self._http_error(resp, acted=True))
        data = json_object(resp)
        sent = data.get("transactional_message") if data is not None else None
        ident = sent.get("id") if isinstance(sent, dict) else None
        if isinstance(ident, bool) or not isinstance(ident, int | str) or ident == "":
            return SendResult(
                error=self._protocol("send answer without a message id", resp.text, True)
            )
        assert isinstance(sent, dict)
        return SendResult(message_id=str(ident), status=str(sent.get("status") or ""))

    def phone_number(self, to: str) -> str | None:
        """The digits-only ``phone_number`` for an E.164 number (see the module
        docstring); None when ``phone_format: national`` cannot write it."""
        digits = re.sub(r"\D", "", to)
        if self.phone_format == "international":
            return digits or None
        if to.lstrip().startswith("+") and digits.startswith("1") and len(digits) == 11:
            return digits[1:]
        return None

    def max_text_length(self, unicode: bool = False) -> int:
        """Tatango counts characters, whatever the encoding: 160 by default."""
        return int(self.option("max_length"))

    # -- report -----------------------------------------------------------------

    def report(self, query: ReportQuery, cursor: Any = None) -> Report:
        """One poll of a MOMT report: created on the first poll, then read by id.

        Final when ``import_completed_at`` is set, with ``mo_count``, ``mt_count``
        and ``percent_complete`` as counts and ``s3_url`` in the details. A report
        Tatango marks with ``run_errors`` or ``cancelled`` raises ProviderCallError.
        """
        if isinstance(cursor, MomtCursor):
            path = f"/momt_reports/{quote(cursor.report_id, safe='')}"
            data = self._call("GET", path)
        else:
            # whole seconds, as the documents write them, widened to cover the window
            body = {"date_from": _iso(query.since), "date_to": _iso(query.until, up=True)}
            hook = query.options.get("webhook_callback_url") or self.options.get(
                "webhook_callback_url"
            )
            if hook:
                body["webhook_callback_url"] = str(hook)
            data = self._call("POST", "/momt_reports", body)
        return self._momt(data)

    def _momt(self, data: dict[str, Any]) -> Report:
        rep = data.get("momt_report")
        ident = rep.get("id") if isinstance(rep, dict) else None
        if not isinstance(rep, dict) or isinstance(ident, bool) or ident in (None, ""):
            raise ProviderCallError(_shape("momt_report", data))
        if rep.get("run_errors"):
            raise ProviderCallError(
                CallError(
                    ErrorKind.REJECTED,
                    "run_errors",
                    f"MOMT report {ident} failed: "
                    + excerpt(self._redact(str(rep["run_errors"])), 100),
                )
            )
        if rep.get("cancelled"):
            raise ProviderCallError(
                CallError(
                    ErrorKind.REJECTED, "cancelled", f"MOMT report {ident} cancelled"
                )
            )
        done = bool(rep.get("import_completed_at"))
        counts: dict[str, float] = {"percent_complete": _num(rep, "percent_complete")}
        if done:
            counts["mo_count"] = _num(rep, "mo_count")
            counts["mt_count"] = _num(rep, "mt_count")
            counts["percent_complete"] = 100.0
        details: dict[str, Any] = {"report_id": str(ident)}
        details.update({k: rep[k] for k in _MOMT_DETAILS if rep.get(k) is not None})
        return Report(
            final=done,
            counts=counts,
            details=details,
            cursor=None if done else MomtCursor(str(ident)),
        )

    # -- helpers ----------------------------------------------------------------

    def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """A report call: its JSON object, or ProviderCallError. Repeating one is
        harmless (at worst a second report job), so no error says it may have acted."""
        resp = self.request(
            method, self.base_url + path, json=body, headers=_JSON, auth=self._auth()
        )
        if isinstance(resp, CallError):
            raise ProviderCallError(
                dataclasses.replace(self._clean(resp), may_have_acted=False)
            )
        if not taken(resp):
            raise ProviderCallError(self._http_error(resp))
        data = json_object(resp)
        if data is None:
            raise ProviderCallError(
                self._protocol(f"{path} answer is not JSON", resp.text)
            )
        return data

    def _auth(self) -> tuple[str, str]:
        return str(self.require("email")), str(self.require("api_key"))

    def _http_error(self, resp: Response, *, acted: bool = False) -> CallError:
        """base.http_error, quoting Tatango's own message with secrets masked."""
        error = http_error(resp, acted=acted)
        data = json_object(resp)
        said = next((data[k] for k in _DETAIL_KEYS if data and data.get(k)), None)
        text = resp.text if said is None else str(said)
        return dataclasses.replace(error, detail=excerpt(self._redact(text)))

    def _protocol(self, what: str, body: str, acted: bool = False) -> CallError:
        return protocol_error(what, self._redact(body), acted=acted)

    def _clean(self, error: CallError) -> CallError:
        detail = self._redact(error.detail)
        return (
            error if detail == error.detail else dataclasses.replace(error, detail=detail)
        )


def _num(rep: Mapping[str, Any], key: str) -> float:
    value = rep.get(key)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProviderCallError(_shape(f"momt_report.{key}", rep))
    return float(value)


def _shape(what: str, data: Any) -> CallError:
    keys = sorted(data) if isinstance(data, dict) else type(data).__name__
    return CallError(ErrorKind.PROTOCOL, "protocol", f"{what}: unexpected shape ({keys})")


def _iso(when: datetime, *, up: bool = False) -> str:
    """ISO 8601 in whole seconds with the offset (naive datetimes are UTC); ``up``
    rounds a fraction up, so an end bound still covers its last second."""
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if up and when.microsecond:
        when += timedelta(seconds=1)
    return when.replace(microsecond=0).isoformat()
