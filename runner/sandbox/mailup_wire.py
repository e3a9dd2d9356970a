"""MailUp's documented wire formats, as the emulator reads and answers them:
send bodies, console list pages and filters, and the three error shapes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from runner.sandbox.server import Request, Response

SENDER = re.compile(r"[A-Za-z0-9]{1,11}")
FILTER_TERM = re.compile(r"Receiver\.(Contains|StartsWith|EndsWith)\('([0-9]*)'\)")
STATUS_TERM = re.compile(r"Status\s*==\s*([0-9])")

Item = dict[str, Any]


def bad_fields(body: Item) -> str | None:
    """The send body's field types (documented: Content, CampaignCode,
    DynamicFields [{N, V}], isUnicode 0/1, Sender max 11 alphanumerics)."""
    if not isinstance(body.get("Content"), str) or not body["Content"]:
        return "Content is required"
    if "CampaignCode" in body and not isinstance(body["CampaignCode"], str):
        return "Invalid CampaignCode"
    if body.get("isUnicode", 0) not in (0, 1) or isinstance(body.get("isUnicode"), bool):
        return "isUnicode must be 0 or 1"
    fields = body.get("DynamicFields")
    if fields is not None and not (
        isinstance(fields, list)
        and all(isinstance(f, dict) and isinstance(f.get("N"), str) for f in fields)
    ):
        return "Invalid DynamicFields"
    sender = body.get("Sender")
    if sender is not None and not (isinstance(sender, str) and SENDER.fullmatch(sender)):
        return "Invalid Sender"
    return None


def fill(content: str, fields: list[Item]) -> str:
    """DynamicFields replace their ``[N]`` placeholders in the content."""
    for f in fields:
        content = content.replace(f"[{f['N']}]", str(f.get("V", "")))
    return content


def paged(items: list[Item], req: Request | None) -> Response:
    """The console's list answer; unpaged (no pageSize/pageNumber) as in the doc."""
    size_arg = req.arg("pageSize") if req else None
    number_arg = req.arg("pageNumber") if req else None
    if size_arg is None and number_arg is None:
        return Response.json(
            {
                "IsPaginated": False,
                "Items": items,
                "PageNumber": 0,
                "PageSize": 0,
                "Skipped": 0,
                "TotalElementsCount": 0,
            }
        )
    size, number = as_int(size_arg or "20"), as_int(number_arg or "0")
    if not isinstance(size, int) or not isinstance(number, int) or size < 1 or number < 0:
        return console_error(400, "Invalid paging parameters")
    return Response.json(
        {
            "IsPaginated": True,
            "Items": items[number * size : (number + 1) * size],
            "PageNumber": number,
            "PageSize": size,
            "Skipped": number * size,
            "TotalElementsCount": len(items),
        }
    )


def parse_filter(expr: str) -> Callable[[Item], bool] | None:
    """``"Receiver.Contains('39...')"``, StartsWith/EndsWith, ``Status==N``,
    joined with ``&&``; the expression in double quotes as documented."""
    if not quoted(expr):
        return None
    terms: list[tuple[str, str]] = []
    for term in re.split(r"\s*&&\s*|\s+and\s+", expr[1:-1].strip(), flags=re.I):
        r = FILTER_TERM.fullmatch(term)
        s = STATUS_TERM.fullmatch(term)
        if r is not None:
            terms.append((r.group(1), r.group(2)))
        elif s is not None:
            terms.append(("Status", s.group(1)))
        else:
            return None

    def keep(item: Item) -> bool:
        receiver = str(item["Receiver"])
        checks = {
            "Contains": lambda v: v in receiver,
            "StartsWith": receiver.startswith,
            "EndsWith": receiver.endswith,
            "Status": lambda v: str(item["Status"]) == v,
        }
        return all(checks[op](value) for op, value in terms)

    return keep


def quoted(expr: str) -> bool:
    return len(expr) >= 2 and expr[0] == expr[-1] == '"'


def as_int(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def console_error(status: int, description: str) -> Response:
    return Response.json(
        {
            "ErrorCode": str(status),
            "ErrorDescription": description,
            "ErrorName": "Unauthorized" if status == 401 else "Error",
            "ErrorStack": None,
        },
        status,
    )


def send_error(status: int, code: str, description: str) -> Response:
    return Response.json(
        {"Data": None, "Code": code, "Description": description, "State": "ERROR"}, status
    )


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    return Response.json({"error": error, "error_description": description}, status)
