"""Tatango emulator: transactional messages and MOMT reports behind HTTP Basic.

Built from shared/provider-docs/tatango-momt-reports.txt and NOTES.md: the paths,
the ``momt_report`` object (every field of the documents' example), the send
answer and the 160-character limit are the documents' own. Where they are silent
(the bodies of 401/422/429 answers, the list endpoint's defaults) the emulator
answers as a Rails API would: ``HTTP Basic: Access denied.``, an ``errors`` object.
A report created with a ``webhook_callback_url`` completes on its own ``settle``
seconds later and the emulator POSTs it there, in the shape ``GET
/momt_reports/{id}`` answers (the callback's body is not in the documents).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from runner.sandbox.server import Emulator, Handler, Request, Response, SentMessage

API = "/api/v2"
MAX_CONTENT = 160
MAX_PER_PAGE = 1000
_NUMBER = re.compile(r"1?[0-9]{10}")
_ACCOUNT_ID = 21  # the documents' example account

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MoReply:
    """An inbound (MO) message, for the MOMT report's ``mo_count``."""

    from_number: str  # digits, as the emulator records numbers (1 + 10 digits)
    text: str
    at: float


class TatangoEmulator(Emulator):
    """Checks HTTP Basic (login email : API key) on every call and the send body
    field by field; MOMT reports move through ``report_steps`` (percent complete
    after each GET) and complete with counts of the messages and MO replies in
    their date range. ``rate_limit`` ``(calls, seconds)`` turns on the 429
    limiter (Tatango's is ``(1200, 3600)``); off by default.
    """

    type = "tatango"

    def __init__(
        self,
        credentials: Mapping[str, Any] | None = None,
        *,
        credits: float = 10_000.0,
        settle: float = 1.0,
        clock: Callable[[], float] = time.time,
        report_steps: Sequence[int] = (30, 70, 100),
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        if not report_steps or any(not 0 <= s <= 100 for s in report_steps):
            raise ValueError("report_steps: percentages between 0 and 100")
        self.report_steps = tuple(report_steps)
        self.rate_limit = rate_limit
        super().__init__(credentials, credits=credits, settle=settle, clock=clock)

    def setup(self) -> None:
        self.replies: list[MoReply] = []
        self.reports: dict[int, dict[str, Any]] = {}
        self._rows: dict[int, list[tuple[str, str, str, float]]] = {}
        self._polls: dict[int, int] = {}
        self._window: deque[float] = deque()
        self._root = ""
        api = re.escape(API)
        self.route("POST", api + "/transactional_messages", self._api(self._send))
        self.route("POST", api + "/momt_reports", self._api(self._create))
        self.route("GET", api + "/momt_reports", self._api(self._list))
        self.route("GET", api + r"/momt_reports/([0-9]+)", self._api(self._status))
        self.route("GET", r"/s3/momt_reports/([0-9]+)\.csv", self._csv)

    def urls(self, root: str) -> dict[str, str]:
        self._root = root
        return {"base_url": root + API}

    def new_id(self, n: int) -> str:
        return str(1000 + n)

    def reply(self, msg: SentMessage, text: str) -> None:
        self.add_mo(msg.to, text, at=msg.at + 1)

    def add_mo(
        self, from_number: str, text: str = "STOP", at: float | None = None
    ) -> None:
        """An MO reply received at ``at`` (the emulator clock; default now)."""
        digits = re.sub(r"\D", "", from_number)
        with self.lock:
            self.replies.append(MoReply(digits, text, self.clock() if at is None else at))

    def break_report(
        self, report_id: int, run_errors: str | None = None, cancelled: bool = False
    ) -> None:
        """Make a report fail (``run_errors``) or be ``cancelled``, for tests."""
        with self.lock:
            rep = self.reports[report_id]
            rep["run_errors"] = run_errors
            rep["cancelled"] = True if cancelled else None

    # -- auth and the hourly limit ------------------------------------------------

    def _api(self, handler: Handler) -> Handler:
        def guarded(req: Request, m: re.Match[str]) -> Response:
            if not self._authorized(req):
                return Response(
                    401,
                    b"HTTP Basic: Access denied.\n",
                    "text/html; charset=utf-8",
                    {"WWW-Authenticate": 'Basic realm="Application"'},
                )
            wait = self._throttle()
            if wait is not None:
                return Response.json(
                    {"status": "error", "error": "Rate limit exceeded"},
                    429,
                    **{"Retry-After": str(wait)},
                )
            return handler(req, m)

        return guarded

    def _authorized(self, req: Request) -> bool:
        scheme, _, value = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, key = (
                base64.b64decode(value, validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        email = str(self.credentials.get("email", ""))
        api_key = str(self.credentials.get("api_key", ""))
        return bool(sep) and _same(user, email) and _same(key, api_key)

    def _throttle(self) -> int | None:
        """Seconds to wait when the sliding window is full, else None (counted)."""
        if self.rate_limit is None:
            return None
        limit, window = self.rate_limit
        with self.lock:
            now = self.clock()
            while self._window and self._window[0] <= now - window:
                self._window.popleft()
            if len(self._window) >= limit:
                oldest = self._window[0] if self._window else now
                return max(1, math.ceil(oldest + window - now))
            self._window.append(now)
        return None

    # -- transactional messages -------------------------------------------------------

    def _send(self, req: Request, _m: re.Match[str]) -> Response:
        body, error = _json_body(req)
        if error is not None:
            return error
        errors: dict[str, list[str]] = {}
        number = body.get("phone_number")
        content = body.get("content")
        if not isinstance(number, str) or not _NUMBER.fullmatch(number):
            errors["phone_number"] = ["must be 10 digits"]
        if not isinstance(content, str) or not content:
            errors["content"] = ["can't be blank"]
        elif len(content) > MAX_CONTENT:
            errors["content"] = [f"is too long (maximum is {MAX_CONTENT} characters)"]
        if errors:
            return Response.json({"status": "error", "errors": errors}, 422)
        assert isinstance(number, str) and isinstance(content, str)
        msg = self.accept(number if len(number) == 11 else "1" + number, content)
        if msg is None:
            return Response.json(
                {"status": "error", "error": "Not enough message credits"}, 403
            )
        return Response.json(
            {
                "status": "Message successfully sent.",
                "transactional_message": {
                    "id": int(msg.id),
                    "number": number,
                    "content": content,
                    "status": "pending",
                },
            }
        )

    # -- MOMT reports ------------------------------------------------------------------

    def _create(self, req: Request, _m: re.Match[str]) -> Response:
        body, error = _json_body(req)
        if error is not None:
            return error
        errors: dict[str, list[str]] = {}
        when: dict[str, datetime] = {}
        for key in ("date_from", "date_to"):
            value = body.get(key)
            parsed = _parse_iso(value) if isinstance(value, str) else None
            if parsed is None:
                errors[key] = [
                    "is missing" if value is None else "is not an ISO 8601 date"
                ]
            else:
                when[key] = parsed
        if not errors and when["date_from"] > when["date_to"]:
            errors["date_to"] = ["must be after date_from"]
        hook = body.get("webhook_callback_url")
        if hook is not None and (not isinstance(hook, str) or not urlsplit(hook).netloc):
            errors["webhook_callback_url"] = ["is not a URL"]
        if errors:
            return Response.json({"status": "error", "errors": errors}, 422)
        start, end = when["date_from"].timestamp(), when["date_to"].timestamp()
        with self.lock:
            rows = [("MT", m.to, m.text, m.at) for m in self.messages]
            rows += [("MO", r.from_number, r.text, r.at) for r in self.replies]
            rows = [r for r in rows if start <= r[3] <= end]
            ident = len(self.reports) + 1
            now = _stamp(self.clock())
            self.reports[ident] = {
                "id": ident,
                "account_id": _ACCOUNT_ID,
                "s3_url": None,
                "import_started_at": None,
                "import_completed_at": None,
                "total_rows": None,
                "processed_rows": 0,
                "percent_complete": 0,
                "mo_count": 0,
                "mt_count": 0,
                "shortcode": None,
                "date_range": "json",
                "date_from": body["date_from"],
                "date_to": body["date_to"],
                "campaign": None,
                "carrier": None,
                "phone_number": None,
                "direction": None,
                "status_array": None,
                "created_at": now,
                "updated_at": now,
                "counts_calculated": False,
                "type": None,
                "is_csv": False,
                "webhook_callback_url": hook,
                "run_errors": None,
                "message_type": None,
                "cancelled": None,
            }
            self._rows[ident] = sorted(rows, key=lambda r: r[3])
            self._polls[ident] = 0
            answer = {"status": "OK", "momt_report": dict(self.reports[ident])}
        if hook:
            timer = threading.Timer(self.settle, self._call_back, (ident, hook))
            timer.daemon = True
            timer.start()
        return Response.json(answer)

    def _call_back(self, ident: int, hook: str) -> None:
        """The report is done: complete it, and POST it to its webhook once."""
        with self.lock:
            rep = self.reports[ident]
            if not (rep["import_completed_at"] or rep["run_errors"] or rep["cancelled"]):
                self._finish(ident, rep)
            body = {"status": "OK", "momt_report": dict(rep)}
        try:
            requests.post(hook, json=body, timeout=5)
        except requests.RequestException as e:
            log.warning("tatango sandbox: webhook of report %s failed: %s", ident, e)

    def _status(self, req: Request, m: re.Match[str]) -> Response:
        ident = int(m.group(1))
        with self.lock:
            rep = self.reports.get(ident)
            if rep is None:
                return Response.json({"status": "error", "error": "Not found"}, 404)
            if not (rep["import_completed_at"] or rep["run_errors"] or rep["cancelled"]):
                self._advance(ident, rep)
            return Response.json({"status": "OK", "momt_report": dict(rep)})

    def _advance(self, ident: int, rep: dict[str, Any]) -> None:
        self._polls[ident] += 1
        steps = self.report_steps
        percent = steps[min(self._polls[ident], len(steps)) - 1]
        rows = self._rows[ident]
        now = _stamp(self.clock())
        rep["import_started_at"] = rep["import_started_at"] or now
        rep["total_rows"] = len(rows)
        rep["processed_rows"] = len(rows) * percent // 100
        rep["percent_complete"] = percent
        rep["updated_at"] = now
        if percent == 100:
            self._finish(ident, rep)

    def _finish(self, ident: int, rep: dict[str, Any]) -> None:
        rows = self._rows[ident]
        now = _stamp(self.clock())
        rep["import_started_at"] = rep["import_started_at"] or now
        rep["total_rows"] = rep["processed_rows"] = len(rows)
        rep["percent_complete"] = 100
        rep["updated_at"] = now
        rep["import_completed_at"] = now
        rep["s3_url"] = f"{self._root}/s3/momt_reports/{ident}.csv"
        rep["mo_count"] = sum(1 for r in rows if r[0] == "MO")
        rep["mt_count"] = sum(1 for r in rows if r[0] == "MT")
        rep["counts_calculated"] = True

    def _list(self, req: Request, _m: re.Match[str]) -> Response:
        """The account's MOMT reports, ``page`` (from 1) and ``per_page`` (max 1000)."""
        try:
            page = int(req.arg("page") or 1)
            per_page = min(int(req.arg("per_page") or 25), MAX_PER_PAGE)
        except ValueError:
            page = per_page = 0
        if page < 1 or per_page < 1:
            errors = {"page": ["page and per_page must be positive integers"]}
            return Response.json({"status": "error", "errors": errors}, 422)
        with self.lock:
            items = [dict(self.reports[i]) for i in sorted(self.reports)]
        chunk = items[(page - 1) * per_page : page * per_page]
        return Response.json({"status": "OK", "momt_reports": chunk})

    def _csv(self, req: Request, m: re.Match[str]) -> Response:
        """The completed report's file, as its (pre-signed) ``s3_url`` serves it."""
        ident = int(m.group(1))
        with self.lock:
            rep = self.reports.get(ident)
            if rep is None or not rep["import_completed_at"]:
                return Response.text("NoSuchKey", 404)
            lines = ["direction,phone_number,content,created_at"]
            for kind, number, text, at in self._rows[ident]:
                quoted = '"' + text.replace('"', '""') + '"'
                lines.append(f"{kind},{number},{quoted},{_stamp(at)}")
        return Response(
            200, ("\n".join(lines) + "\n").encode(), "text/csv; charset=utf-8"
        )


def _json_body(req: Request) -> tuple[dict[str, Any], Response | None]:
    if not req.headers.get("content-type", "").startswith("application/json"):
        return {}, Response.json({"status": "error", "error": "JSON body expected"}, 415)
    try:
        body = req.json()
    except (UnicodeDecodeError, ValueError):
        return {}, Response.json({"status": "error", "error": "Invalid JSON"}, 400)
    if not isinstance(body, dict):
        return {}, Response.json(
            {"status": "error", "error": "JSON object expected"}, 400
        )
    return body, None


def _parse_iso(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _same(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
