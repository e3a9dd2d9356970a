"""Each distinct message text once (``texts``), found by its digest: the plan
writes a text the first time it meets it and gives its messages its number.

The digest is SHA-256's first 128 bits in hex, the same in Python and in SQL
(PostgreSQL's ``sha256``; a function registered on SQLite), so a migration can
fill the table in the database."""

from __future__ import annotations

import hashlib
from collections.abc import Collection

from sqlalchemy.engine import Connection

# PostgreSQL computes it itself; on SQLite the migration registers text_digest
PG_DIGEST = "left(encode(sha256(convert_to({col}, 'UTF8')), 'hex'), 32)"

_INSERT = "INSERT INTO texts (digest, text) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING"
_CHUNK = 500  # digests per SELECT: under any driver's limit on parameters
_KEEP = 50_000  # texts remembered by a writer before it starts over


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class TextIds:
    """A writer's text -> id, remembered across its batches (a text's id never
    changes), written to the journal for the texts it has not met."""

    def __init__(self, style: str) -> None:
        self._known: dict[str, int] = {}
        self._insert = _INSERT if style == "qmark" else _INSERT.replace("?", "%s")
        self._mark = "?" if style == "qmark" else "%s"

    def ids(self, conn: Connection, texts: Collection[str]) -> dict[str, int]:
        """The id of each of ``texts``, inserting those new to the journal in
        ``conn``'s transaction; ``remember`` them once it has committed."""
        known = self._known
        found = {t: known[t] for t in texts if t in known}
        new = {text_digest(t): t for t in texts if t not in found}
        if not new:
            return found
        conn.exec_driver_sql(self._insert, list(new.items()))
        digests = list(new)
        for i in range(0, len(digests), _CHUNK):
            part = digests[i : i + _CHUNK]
            marks = ", ".join([self._mark] * len(part))
            rows = conn.exec_driver_sql(
                f"SELECT digest, id FROM texts WHERE digest IN ({marks})", tuple(part)
            )
            found.update((new[d], int(n)) for d, n in rows)
        return found

    def remember(self, ids: dict[str, int]) -> None:
        if len(self._known) + len(ids) > _KEEP:
            self._known.clear()
        self._known.update(ids)
