"""MailUp emulator: the OAuth2 token endpoint, the console API (SMS messages of a
list, ReportDetails, account details) and the transactional SMS send API.

Built from shared/provider-docs/mailup-sms-reports-credits.txt and NOTES.md: the
paths, field names, codes and answer shapes are the documents' own (the first
DeliveryId is the example's 1648; an unpaged ReportDetails answer carries the
example's zero PageSize/TotalElementsCount). Where the documents are silent the
emulator follows the provider's options (``max_length``, ``max_length_unicode``)
and OAuth2 (RFC 6749) error answers.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from runner.providers.mailup import DEFAULTS
from runner.sandbox.mailup_wire import (
    Item,
    as_int,
    bad_fields,
    console_error,
    fill,
    oauth_error,
    paged,
    parse_filter,
    quoted,
    send_error,
)
from runner.sandbox.server import Emulator, Request, Response, SentMessage

TOKEN_PATH = "/Authorization/OAuth/Token"
CONSOLE_PATH = "/API/v1.1/Rest/ConsoleService.svc"
SEND_PATH = "/api/v2.0"

_RECIPIENT = re.compile(r"(?:\+|00)([1-9][0-9]{6,14})")
_ORDER = re.compile(r"(SentDate|Receiver|Status)(?:\s+(asc|desc))?", re.I)
_STATUS = {"delivered": 0, "queued": 1, "failed": 2}


class MailUpEmulator(Emulator):
    """Checks OAuth2 client + password, bearer tokens (401 once expired), the send
    body field by field, and answers with the documented codes.

    ``token_lifetime`` (seconds) is short in tests so refresh can be seen;
    ``certified_senders`` (plus the configured ``sender``) may send, others get
    207; numbers in ``opted_out`` get 206. ``grants`` records each token grant
    type issued, for tests.
    """

    type = "mailup"

    def __init__(
        self,
        credentials: Mapping[str, Any] | None = None,
        *,
        credits: float = 10_000.0,
        settle: float = 1.0,
        clock: Callable[[], float] = time.time,
        token_lifetime: float = 3600.0,
        certified_senders: Iterable[str] = (),
        opted_out: Iterable[str] = (),
    ) -> None:
        self.token_lifetime = token_lifetime
        self.certified = set(certified_senders)
        super().__init__(credentials, credits=credits, settle=settle, clock=clock)
        self.opted_out.update(n.lstrip("+") for n in opted_out)
        if self.credentials.get("sender"):
            self.certified.add(str(self.credentials["sender"]))

    def setup(self) -> None:
        self.grants: list[str] = []
        self._access: dict[str, float] = {}  # access token -> expiry (clock)
        self._refresh: set[str] = set()  # single use: each refresh issues a new one
        self._sms: dict[str, int] = {}  # SMS message Subject (CampaignCode) -> id
        console = re.escape(CONSOLE_PATH)
        self.route("POST", re.escape(TOKEN_PATH), self._token)
        self.route("GET", console + r"/Console/Sms/List/([^/]+)/Messages", self._messages)
        self.route(
            "GET", console + r"/Console/Sms/([^/]+)/Sendings/ReportDetails", self._report
        )
        self.route("GET", console + r"/Console/Authentication/Details", self._details)
        self.route("POST", re.escape(SEND_PATH) + r"/sms/([^/]+)/([^/]+)", self._send)

    def urls(self, root: str) -> dict[str, str]:
        return {
            "base_url": root + CONSOLE_PATH,
            "send_url": root + SEND_PATH,
            "token_url": root + TOKEN_PATH,
        }

    def new_id(self, n: int) -> str:
        return str(1647 + n)  # the documents' example DeliveryId is 1648

    def expire_tokens(self) -> None:
        """Every access token issued so far is expired from now on."""
        with self.lock:
            now = self.clock()
            self._access = {t: min(e, now) for t, e in self._access.items()}

    def revoke_refresh_tokens(self) -> None:
        with self.lock:
            self._refresh.clear()

    # -- OAuth2 -----------------------------------------------------------------

    def _token(self, req: Request, _m: re.Match[str]) -> Response:
        ctype = req.headers.get("content-type", "")
        if not ctype.startswith("application/x-www-form-urlencoded"):
            return oauth_error("invalid_request", "form-encoded body expected")
        form = req.form()
        creds = self.credentials
        if form.get("client_id") != str(creds.get("client_id")) or form.get(
            "client_secret"
        ) != str(creds.get("client_secret")):
            return oauth_error("invalid_client", "client authentication failed", 401)
        grant = form.get("grant_type")
        with self.lock:
            if grant == "password":
                if form.get("username") != str(creds.get("username")) or form.get(
                    "password"
                ) != str(creds.get("password")):
                    return oauth_error("invalid_grant", "wrong username or password")
            elif grant == "refresh_token":
                if form.get("refresh_token") not in self._refresh:
                    return oauth_error("invalid_grant", "invalid refresh token")
                self._refresh.discard(form["refresh_token"])
            else:
                return oauth_error("unsupported_grant_type", "password or refresh_token")
            access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            self._access[access] = self.clock() + self.token_lifetime
            self._refresh.add(refresh)
            self.grants.append(grant)
        return Response.json(
            {
                "access_token": access,
                "expires_in": max(1, round(self.token_lifetime)),
                "refresh_token": refresh,
            }
        )

    def _unauthorized(self, req: Request) -> Response | None:
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return console_error(401, "Unauthorized: bearer token required")
        with self.lock:
            expiry = self._access.get(token.strip())
            if expiry is None:
                return console_error(401, "Unauthorized: invalid access token")
            if self.clock() >= expiry:
                return console_error(401, "Unauthorized: access token expired")
        return None

    # -- console ----------------------------------------------------------------

    def _messages(self, req: Request, m: re.Match[str]) -> Response:
        denied = self._unauthorized(req)
        if denied is not None:
            return denied
        if m.group(1) != str(self.credentials.get("list_id")):
            return console_error(404, "List not found")
        with self.lock:
            items = [
                {"idList": as_int(m.group(1)), "idMessage": ident, "Subject": subject}
                for subject, ident in sorted(self._sms.items(), key=lambda kv: kv[1])
            ]
        return paged(items, req)

    def _report(self, req: Request, m: re.Match[str]) -> Response:
        denied = self._unauthorized(req)
        if denied is not None:
            return denied
        with self.lock:
            if not m.group(1).isdigit() or int(m.group(1)) not in self._sms.values():
                return console_error(404, f"SMS message {m.group(1)[:20]} not found")
            sent = [x for x in self.messages if x.extra.get("sms_id") == int(m.group(1))]
            items = [(x, self._item(x)) for x in sent]
        delivery_id = req.arg("DeliveryId")
        if delivery_id is not None:  # at most one result: no paging, no filter
            if not delivery_id.isdigit():
                return console_error(400, "DeliveryId must be a number")
            return paged([i for x, i in items if x.id == delivery_id], None)
        filterby, orderby = req.arg("filterby"), req.arg("orderby")
        if filterby is not None:
            keep = parse_filter(filterby)
            if keep is None:
                return console_error(400, "Invalid filterby expression")
            items = [(x, i) for x, i in items if keep(i)]
        if orderby is not None:
            order = _ORDER.fullmatch(orderby[1:-1].strip()) if quoted(orderby) else None
            if order is None:
                return console_error(400, "Invalid orderby expression")
            desc = (order.group(2) or "asc").lower() == "desc"
            items.sort(key=lambda xi: xi[1][order.group(1)], reverse=desc)
        return paged([i for _x, i in items], req)

    def _item(self, msg: SentMessage) -> Item:
        status = _STATUS[self.status_of(msg)]
        return {
            "ErrorCode": "FAILED_AT_004" if status == 2 else "",
            "Receiver": msg.to,
            "SentDate": datetime.fromtimestamp(msg.at, UTC).strftime(
                "%Y-%m-%d %H:%M:%SZ"
            ),
            "Status": status,
        }

    def _details(self, req: Request, _m: re.Match[str]) -> Response:
        denied = self._unauthorized(req)
        if denied is not None:
            return denied
        with self.lock:
            credits = round(self.credits, 2)
        return Response.json(
            {
                "Company": "Sandbox",
                "IsTrial": True,
                "UID": "sandbox",
                "Username": str(self.credentials.get("username", "")),
                "Version": "sandbox",
                "Email": "sandbox@example.invalid",
                "TotalCredits": credits,
                "CreditsByList": [
                    {
                        "ListId": as_int(str(self.credentials.get("list_id"))),
                        "Credit": credits,
                    }
                ],
                "Plan": 1,
                "ExpiryDate": "2099-12-31 00:00:00.000",
                "AutoRenewal": 1,
                "Lang": "en",
            }
        )

    # -- transactional send -------------------------------------------------------

    def _send(self, req: Request, m: re.Match[str]) -> Response:
        creds = self.credentials
        if m.group(1) != str(creds.get("account_id")):
            return send_error(403, "250", "Access denied")
        if m.group(2) != str(creds.get("list_id")):
            return send_error(400, "104", "List not found")
        try:
            body = req.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return send_error(400, "100", "Invalid request")
        if not body.get("ListGuid"):
            return send_error(400, "101", "ListGuid is required")
        if body["ListGuid"] != str(creds.get("list_guid")):
            return send_error(400, "102", "Invalid ListGuid")
        if body.get("ListSecret") != str(creds.get("list_secret")):
            return send_error(400, "103", "Invalid ListSecret")
        problem = bad_fields(body)
        if problem:
            return send_error(400, "100", problem)
        if not body.get("Recipient"):
            return send_error(400, "105", "Recipient is required")
        number = _RECIPIENT.fullmatch(str(body["Recipient"]))
        if number is None:
            return send_error(400, "106", "Invalid Recipient")
        text = fill(body["Content"], body.get("DynamicFields") or [])
        unicode = body.get("isUnicode", 0) == 1
        limit = self.credentials.get("max_length_unicode" if unicode else "max_length")
        if len(text) > int(
            limit or DEFAULTS["max_length_unicode" if unicode else "max_length"]
        ):
            return send_error(400, "107", "Content too long")
        sender = body.get("Sender")
        if sender is not None and sender not in self.certified:
            return send_error(403, "207", "Sender not certified")
        if number.group(1) in self.opted_out:
            return send_error(403, "206", "Recipient opted out")
        return self._accept(number.group(1), text, sender, body, unicode)

    def _accept(
        self, to: str, text: str, sender: str | None, body: Item, unicode: bool
    ) -> Response:
        code = body.get("CampaignCode") or "SMS " + datetime.fromtimestamp(
            self.clock(), UTC
        ).strftime("%Y-%m-%d")
        with self.lock:
            sms_id = self._sms.get(code, 24 + len(self._sms))  # docs' example ID is 24
            msg = self.accept(
                to, text, sender, campaign_code=code, sms_id=sms_id, unicode=unicode
            )
            if msg is None:
                return send_error(403, "205", "NO CREDITS")
            self._sms.setdefault(code, sms_id)
        return Response.json(
            {
                "Data": {"DeliveryId": int(msg.id), "Cost": float(msg.segments)},
                "Code": "0",
                "Description": "",
                "State": "DONE",
            }
        )
