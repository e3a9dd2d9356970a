"""Ordered, named schema migrations; each runs once and is recorded.

A journal created by any release upgrades in place: a migration is added at
the end, never edited once released.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Connection

from runner.journal.tables import metadata

MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("0001_initial", lambda conn: metadata.create_all(conn)),
]
