"""Ogangi's XML answers read into results: the answer's own status, a send's message
status, a PIN (shared/provider-docs/ogangi-mobile-engagement-rest.txt, NOTES.md).

The documented parts are ``<input>``, ``<status>``, ``<description>`` and a
method-specific ``<result>``; the root element is not documented, so elements are
found by local name at any depth. Every quoted excerpt goes through the caller's
``mask``, which hides the keys and the signatures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from lxml import etree

from runner.providers.base import (
    CallError,
    DeliveryStatus,
    ErrorKind,
    SendResult,
    excerpt,
    http_error,
    parse_retry_after,
)
from runner.providers.http import Response
from runner.providers.xmlparse import XMLError, child_text, find_all, find_top, parse_xml

Mask = Callable[[str], str]

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


def read_answer(
    resp: Response, method: str, acted: bool, mask: Mask
) -> etree._Element | CallError:
    """The parsed answer when its status is OK, else a CallError.

    ``acted``: the call does something (send, PIN, fireMessage), so an answer that
    may come after the work was done counts as ``may_have_acted``.
    """
    root, why = _parse(resp)
    top = find_top(root, "status") if root is not None else None
    status = norm(top.text or "") if top is not None else None
    ok = 200 <= resp.status_code < 300
    if not ok and status not in ("BAD_SIGNATURE", "ERROR"):
        error = http_error(resp, acted=acted)
        return masked(dataclasses.replace(error, detail=excerpt(resp.text)), mask)
    if root is None:
        return protocol(f"{method} answer {why}", resp.text, acted, mask)
    if status is None:
        return protocol(f"{method} answer without status", resp.text, acted, mask)
    if status == "OK":
        return root
    # (read only for an answer that is not OK: every send pays for the OK path)
    desc = mask(excerpt(child_text(root, "description") or "", 100))
    if status == "BAD_SIGNATURE":
        return CallError(
            ErrorKind.AUTH, "BAD_SIGNATURE", desc or "invalid signature, access denied"
        )
    if status == "ERROR":
        # "Internal error...": the documents do not say at which point it failed,
        # so a send (or PIN, fireMessage) may have been carried out before it:
        # never retried blindly, recorded unknown.
        return CallError(
            ErrorKind.TRANSIENT,
            "ERROR",
            desc or "internal error",
            retry_after=parse_retry_after(resp.headers.get("Retry-After")),
            may_have_acted=acted,
        )
    return protocol(f"{method} answer with status {status[:40]}", "", acted, mask)


def send_result(root: etree._Element, mask: Mask) -> SendResult:
    """A send's ``<message>``: its id (a negative int64, kept as text) and status."""
    msg = next(find_all(root, "message"), None)
    if msg is None:  # sendMT documents only "OK Completed": no id to keep
        return SendResult(status="OK")
    ident = child_text(msg, "id") or None
    raw = child_text(msg, "status") or ""
    status = norm(raw)
    if status in FAILED:
        kind = ErrorKind.AUTH if status in ACCOUNT_FAILURES else ErrorKind.REJECTED
        detail = child_text(msg, "statusDescription") or status
        return SendResult(
            message_id=ident,
            status=raw,
            error=CallError(kind, raw, mask(excerpt(detail))),
        )
    # in progress, delivered, or a status we do not know: accepted, not final
    return SendResult(message_id=ident, status=raw or "OK")


def pin(root: etree._Element, mask: Mask) -> str | CallError:
    """PinSMSConfirmation.pin, or (the PIN was sent) a may-have-acted error."""
    found = find_top(root, "pin")
    if found is None or not (found.text or "").strip():
        return shape("PIN answer without pin", root, True, mask)
    return (found.text or "").strip()


def delivery_status(raw: str) -> DeliveryStatus:
    """The common status of an Ogangi message status; unknown values are not final."""
    status = norm(raw)
    if status in DELIVERED:
        return DeliveryStatus.DELIVERED
    if status in FAILED:
        return DeliveryStatus.FAILED
    return DeliveryStatus.PENDING if status in IN_PROGRESS else DeliveryStatus.UNKNOWN


def protocol(what: str, body: str, acted: bool, mask: Mask) -> CallError:
    detail = f"{what}: {excerpt(mask(body), 80)!r}" if body else what
    return CallError(ErrorKind.PROTOCOL, "protocol", detail, may_have_acted=acted)


def shape(what: str, root: etree._Element, acted: bool, mask: Mask) -> CallError:
    return protocol(what, etree.tostring(root, encoding="unicode"), acted, mask)


def masked(error: CallError, mask: Mask) -> CallError:
    detail = mask(error.detail)
    return error if detail == error.detail else dataclasses.replace(error, detail=detail)


def norm(status: str) -> str:
    return " ".join(status.split()).upper()


def _parse(resp: Response) -> tuple[etree._Element | None, str]:
    ctype = resp.headers.get("Content-Type", "").lower()
    if "html" in ctype or "json" in ctype:
        return None, f"has the wrong content type ({excerpt(ctype, 40)})"
    try:
        return parse_xml(resp.content), ""
    except XMLError as e:
        return None, f"is not usable XML ({excerpt(str(e), 50)})"
