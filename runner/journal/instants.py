"""A message's times as integer milliseconds since the epoch (UTC).

A message row holds two or three times (and before migration 0011 its number's
index held one); as ISO text each took 29 bytes, as an integer 6: the times
were about a third of a message's journal bytes. The readers still see ISO
text: ``Instant`` turns text or a datetime bound in a query into milliseconds,
and milliseconds read back into ``2026-12-06T21:14:08.471+00:00``, the form
``now_iso`` writes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(value: str | datetime) -> int:
    """Milliseconds of an ISO time (a time without a zone is UTC)."""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - EPOCH) // _MS


def from_ms(ms: int) -> str:
    return (EPOCH + ms * _MS).isoformat(timespec="milliseconds")


def now_ms() -> int:
    return time.time_ns() // 1_000_000  # (a datetime costs a few µs a message)


class Instant(sa.types.TypeDecorator[str]):
    """A time stored as integer milliseconds, read and compared as ISO text."""

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> int | None:
        if value is None or isinstance(value, int):
            return value
        return to_ms(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return from_ms(int(value))
