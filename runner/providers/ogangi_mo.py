"""Ogangi's incoming (MO) messages: the getMOMessages search string, its answer read
into ``MOMessage`` items, and the replies report of a send step built from them
(shared/provider-docs/ogangi-mobile-engagement-rest.txt, NOTES.md).

Ogangi documents no delivery report: the report of a send step is every page of MO
messages (oldest first) counted by the recipient they came from, with the opt-outs
among them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from lxml import etree

from runner.providers.base import ProviderCallError, Report, ReportQuery
from runner.providers.ogangi_answers import Mask, shape
from runner.providers.xmlparse import child_text, find_all, find_top

SEARCH_KEYS = ("from", "to", "keyword", "carrier", "order")
_MAX_PAGES = 100_000  # a guard against a server that never says "last page"
_CLOCK_SKEW = timedelta(minutes=2)
_NO_TZ_SLACK = timedelta(hours=14)  # the widest UTC offset


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


# incoming(search, page, per_page) -> (MOMessageList.records, this page's messages)
Incoming = Callable[[Mapping[str, str], int, int], tuple[int, list[MOMessage]]]


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


def mo_list(
    root: etree._Element, zone: ZoneInfo | None, mask: Mask
) -> tuple[int, list[MOMessage]]:
    """An MOMessageList answer: (records, its MOMessage items); raises
    ProviderCallError when ``records`` is missing."""
    records = find_top(root, "records")
    try:
        total = int((records.text or "").strip()) if records is not None else -1
    except ValueError:
        total = -1
    if total < 0:
        raise ProviderCallError(shape("MO list without records", root, False, mask))
    return total, [_mo(el, zone) for el in find_all(root, "MOMessage")]


def replies_report(
    incoming: Incoming,
    query: ReportQuery,
    cursor: Any,
    *,
    keyword: re.Pattern[str],
    first_page: int,
    page_size: int,
    pages_per_poll: int,
    exact_dates: bool,
) -> Report:
    """One poll of the replies to a send step: at most ``pages_per_poll`` pages.

    Counts ``replies`` (messages), ``repliers`` and ``optouts`` (distinct
    recipients; an opt-out's whole stripped text matches ``keyword``). MOs dated
    before the send step are an earlier campaign's; without ``exact_dates`` (no
    mo_timezone) the dates get 14 hours of slack. Final once the last page is read.
    """
    ours = {digits(s.to) for s in query.sent}
    ours.discard("")
    state = cursor if isinstance(cursor, ReportCursor) else ReportCursor(first_page)
    if not ours:  # nobody to hear from
        return Report(final=True, counts=_counts(state), details={"pages_read": 0})
    since = query.since - _CLOCK_SKEW - (timedelta(0) if exact_dates else _NO_TZ_SLACK)
    page = state.page
    replies, read = state.replies, state.read
    repliers, optouts = set(state.repliers), set(state.optouts)
    last = False
    for _ in range(max(1, pages_per_poll)):
        total, items = incoming({"order": "asc"}, page, page_size)
        for mo in items:
            if mo.at is not None and mo.at < since:
                continue  # before the send step: an earlier campaign's replies
            read += 1
            who = digits(mo.from_)
            if who not in ours:
                continue
            replies += 1
            repliers.add(who)
            if keyword.fullmatch(mo.text.strip()):
                optouts.add(who)
        done = (page - first_page + 1) * page_size
        page += 1
        last = not items or len(items) < page_size or done >= total
        if last or page > _MAX_PAGES:
            last = True
            break
    state = ReportCursor(page, replies, frozenset(repliers), frozenset(optouts), read)
    details = {"pages_read": page - first_page, "mo_read": read}
    stops = tuple(sorted("+" + who for who in state.optouts))
    if last:
        return Report(final=True, counts=_counts(state), details=details, optouts=stops)
    return Report(
        final=False,
        more=True,
        counts=_counts(state),
        details=details,
        cursor=state,
        optouts=stops,
    )


def digits(number: str) -> str:
    """International digits of a number written with +, 00 or neither."""
    found = re.sub(r"\D", "", number)
    return found[2:] if number.lstrip().startswith("00") else found


def _counts(state: ReportCursor) -> dict[str, float]:
    return {
        "replies": state.replies,
        "repliers": len(state.repliers),
        "optouts": len(state.optouts),
    }


def _mo(el: etree._Element, zone: ZoneInfo | None) -> MOMessage:
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
        at=_parse_date(send_date, zone),
    )


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
