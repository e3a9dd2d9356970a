"""Message counts kept as messages change: per run, step, provider and status.

``history``, ``status``, ``show RUN`` and every ``/metrics`` scrape read counts;
a COUNT over the messages table per read grows with the journal (seconds at
ten million rows). The database keeps them instead, in triggers, so no write
path (the writer's batches, a claim, a cancel, a suppression, a migration) can
forget one: row triggers on SQLite (one writer at a time anyway); statement
triggers over transition tables on PostgreSQL, one upsert per statement and key,
in key order (so two transactions take the counters' row locks in one order).
``retries`` sums each message's attempts beyond its first.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

KEY = "run_id, step_id, provider, status"

_SQLITE_ADD = """
INSERT INTO message_tallies (run_id, step_id, provider, status, n, retries)
VALUES ({r}.run_id, {r}.step_id, {r}.provider, {r}.status, {sign}1,
        {sign}max({r}.attempts - 1, 0))
ON CONFLICT (run_id, step_id, provider, status)
DO UPDATE SET n = n + excluded.n, retries = retries + excluded.retries;
"""
_SQLITE = [
    "CREATE TRIGGER tally_insert AFTER INSERT ON messages BEGIN "
    + _SQLITE_ADD.format(r="NEW", sign="")
    + " END",
    "CREATE TRIGGER tally_update AFTER UPDATE OF status, provider, attempts "
    "ON messages WHEN OLD.status IS NOT NEW.status "
    "OR OLD.provider IS NOT NEW.provider OR OLD.attempts IS NOT NEW.attempts BEGIN "
    + _SQLITE_ADD.format(r="OLD", sign="-")
    + _SQLITE_ADD.format(r="NEW", sign="")
    + " END",
    "CREATE TRIGGER tally_delete AFTER DELETE ON messages BEGIN "
    + _SQLITE_ADD.format(r="OLD", sign="-")
    + " END",
]


def _pg_function(name: str, new: str | None, old: str | None) -> str:
    """A trigger function adding the rows ``new`` (a transition table) and
    taking off the rows ``old``, one upsert per key."""
    parts = []
    if new:
        parts.append(f"SELECT {KEY}, 1 AS dn, greatest(attempts - 1, 0) AS dr FROM {new}")
    if old:
        parts.append(
            f"SELECT {KEY}, -1 AS dn, -greatest(attempts - 1, 0) AS dr FROM {old}"
        )
    rows = "\n    UNION ALL\n    ".join(parts)
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO message_tallies AS t ({KEY}, n, retries)
  SELECT {KEY}, sum(dn), sum(dr) FROM (
    {rows}
  ) d
  GROUP BY {KEY}
  HAVING sum(dn) <> 0 OR sum(dr) <> 0
  ORDER BY {KEY}
  ON CONFLICT ({KEY})
  DO UPDATE SET n = t.n + EXCLUDED.n, retries = t.retries + EXCLUDED.retries;
  RETURN NULL;
END $$
"""


_PG = [
    _pg_function("message_tallies_insert", "new_rows", None),
    _pg_function("message_tallies_update", "new_rows", "old_rows"),
    _pg_function("message_tallies_delete", None, "old_rows"),
    "CREATE TRIGGER tally_insert AFTER INSERT ON messages "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION message_tallies_insert()",
    "CREATE TRIGGER tally_update AFTER UPDATE ON messages "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION message_tallies_update()",
    "CREATE TRIGGER tally_delete AFTER DELETE ON messages "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION message_tallies_delete()",
]


def create_tallies(conn: Connection) -> None:
    """The table, its triggers, and the counts of the messages already there."""
    sa.Table(
        "message_tallies",
        sa.MetaData(),
        sa.Column("run_id", sa.String, primary_key=True),
        sa.Column("step_id", sa.String, primary_key=True),
        sa.Column("provider", sa.String, primary_key=True),
        sa.Column("status", sa.String, primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("retries", sa.BigInteger, nullable=False),
    ).create(conn)
    conn.exec_driver_sql(
        f"INSERT INTO message_tallies ({KEY}, n, retries) "
        f"SELECT {KEY}, count(*), "
        "sum(CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END) "
        f"FROM messages GROUP BY {KEY}"
    )
    create_tally_triggers(conn)


def create_tally_triggers(conn: Connection) -> None:
    """The triggers on ``messages`` that keep the counts (again, after the table
    is rebuilt)."""
    for ddl in _PG if conn.dialect.name == "postgresql" else _SQLITE:
        conn.exec_driver_sql(ddl)
