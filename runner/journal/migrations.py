"""Ordered, named schema migrations; each runs once and is recorded.

A journal created by any release upgrades in place: a migration is appended,
never edited once released, and states its own DDL (the first one is the first
release's tables, frozen here) so that a new journal and an upgraded one end
with the same schema (``tables.py``, checked by a test). Portable DDL where it
can be: ``ADD COLUMN``, ``CREATE TABLE``, ``CREATE INDEX`` read the same on SQLite
and PostgreSQL; what is dropped is dropped in each one's way (SQLite builds the
table again, 0010).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runner.journal.tallies import create_tallies, create_tally_triggers
from runner.journal.texts import PG_DIGEST, text_digest

Migration = Callable[[Connection], None]


def _initial(conn: Connection) -> None:
    """The first release's runs, steps and messages."""
    v1 = sa.MetaData()
    sa.Table(
        "runs",
        v1,
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("campaign", sa.String, nullable=False, index=True),
        sa.Column("campaign_path", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("started_at", sa.String, nullable=False),
        sa.Column("finished_at", sa.String),
        sa.Column("exit_code", sa.Integer),
        sa.Column("options", sa.Text, nullable=False),
    )
    sa.Table(
        "steps",
        v1,
        sa.Column("run_id", sa.String, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("step_id", sa.String, primary_key=True),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("started_at", sa.String),
        sa.Column("finished_at", sa.String),
        sa.Column("detail", sa.Text, nullable=False),
    )
    messages = sa.Table(
        "messages",
        v1,
        sa.Column("run_id", sa.String, primary_key=True),
        sa.Column("step_id", sa.String, primary_key=True),
        sa.Column("phone", sa.String, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("idem_key", sa.String, nullable=False, unique=True),
        sa.Column("provider", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("provider_message_id", sa.String),
        sa.Column("provider_status", sa.String),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error_kind", sa.String),
        sa.Column("error_code", sa.String),
        sa.Column("error_detail", sa.String),
        sa.Column("segments", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("source_row", sa.Integer),
        sa.Column("created_at", sa.String, nullable=False),
        sa.Column("sent_at", sa.String),
        sa.Column("delivery_status", sa.String),
        sa.Column("delivery_code", sa.String),
        sa.Column("delivery_at", sa.String),
    )
    sa.Index("ix_messages_seq", messages.c.run_id, messages.c.step_id, messages.c.seq)
    v1.create_all(conn)


def _modes_order_history(conn: Connection) -> None:
    """Rehearsal or real, the file a run started from, step order, and the earlier
    outcomes of messages that were sent again."""
    for ddl in (
        "ALTER TABLE runs ADD COLUMN mode VARCHAR DEFAULT 'real' NOT NULL",
        "ALTER TABLE runs ADD COLUMN sandbox VARCHAR",
        "ALTER TABLE runs ADD COLUMN fingerprint TEXT",
        "ALTER TABLE steps ADD COLUMN position INTEGER",
    ):
        conn.exec_driver_sql(ddl)
    history = sa.Table(
        "message_history",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String, nullable=False),
        sa.Column("step_id", sa.String, nullable=False),
        sa.Column("phone", sa.String, nullable=False),
        sa.Column("at", sa.String, nullable=False),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("provider", sa.String),
        sa.Column("attempts", sa.Integer),
        sa.Column("provider_message_id", sa.String),
        sa.Column("error_kind", sa.String),
        sa.Column("error_code", sa.String),
        sa.Column("error_detail", sa.String),
        sa.Column("sent_at", sa.String),
    )
    sa.Index(
        "ix_message_history_message",
        history.c.run_id,
        history.c.step_id,
        history.c.phone,
    )
    history.create(conn)


def _control_leases(conn: Connection) -> None:
    """Pause/cancel requests on runs, each run's occurrence (one real run per
    occurrence), who is sending each campaign now, and the daemons alive."""
    for ddl in (
        "ALTER TABLE runs ADD COLUMN control VARCHAR",
        "ALTER TABLE runs ADD COLUMN control_by VARCHAR",
        "ALTER TABLE runs ADD COLUMN control_at VARCHAR",
        "ALTER TABLE runs ADD COLUMN occurrence VARCHAR",
        "CREATE UNIQUE INDEX ux_runs_occurrence ON runs (campaign, occurrence) "
        "WHERE mode = 'real'",
    ):
        conn.exec_driver_sql(ddl)
    sa.Table(
        "daemons",
        sa.MetaData(),
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("host", sa.String, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("role", sa.String, nullable=False),
        sa.Column("started_at", sa.String, nullable=False),
        sa.Column("heartbeat_at", sa.String, nullable=False),
        sa.Column("active_runs", sa.Integer, nullable=False),
    ).create(conn)
    sa.Table(
        "leases",
        sa.MetaData(),
        sa.Column("campaign", sa.String, primary_key=True),
        sa.Column("run_id", sa.String),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("host", sa.String, nullable=False),
        sa.Column("since", sa.String, nullable=False),
        sa.Column("expires_at", sa.String, nullable=False),
    ).create(conn)


def _shared_sending(conn: Connection) -> None:
    """Several processes sending one step: who claimed each pending message, the
    processes alive (each claim's lease), who shares each step with how many
    calls, and a rate shared by all of them."""
    for ddl in (
        "ALTER TABLE messages ADD COLUMN claimed_by VARCHAR",
        "CREATE INDEX ix_messages_queued ON messages (run_id, step_id, seq) "
        "WHERE status = 'queued'",
    ):
        conn.exec_driver_sql(ddl)
    sa.Table(
        "workers",
        sa.MetaData(),
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("host", sa.String, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.String, nullable=False),
        sa.Column("expires_at", sa.String, nullable=False),
    ).create(conn)
    sa.Table(
        "shares",
        sa.MetaData(),
        sa.Column("run_id", sa.String, primary_key=True),
        sa.Column("step_id", sa.String, primary_key=True),
        sa.Column("provider", sa.String, primary_key=True),
        sa.Column("claimer", sa.String, primary_key=True),
        sa.Column("worker", sa.String, nullable=False),
        sa.Column("role", sa.String, nullable=False),
        sa.Column("campaign", sa.String, nullable=False),
        sa.Column("joined_at", sa.String, nullable=False),
        sa.Column("expires_at", sa.String, nullable=False),
        sa.Column("in_flight", sa.Integer, nullable=False),
    ).create(conn)
    sa.Table(
        "rate_slots",
        sa.MetaData(),
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("next_at", sa.Float, nullable=False),
    ).create(conn)


def _recipients(conn: Connection) -> None:
    """Recipients across campaigns: the suppression list, an index to count what
    each number got lately (frequency caps), and each message's recipient zone."""
    conn.exec_driver_sql("CREATE INDEX ix_messages_phone ON messages (phone, sent_at)")
    conn.exec_driver_sql("ALTER TABLE messages ADD COLUMN zone VARCHAR")
    sa.Table(
        "suppressions",
        sa.MetaData(),
        sa.Column("phone", sa.String, primary_key=True),
        sa.Column("mode", sa.String, primary_key=True),
        sa.Column("scope", sa.String, nullable=False),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("added_at", sa.String, nullable=False),
    ).create(conn)


def _pins(conn: Connection) -> None:
    """PIN campaigns: the keyed hash of the PIN each message carried."""
    conn.exec_driver_sql("ALTER TABLE messages ADD COLUMN secret_digest VARCHAR")


def _callbacks(conn: Connection) -> None:
    """Report callbacks: the single-use tokens of the webhook URLs handed out."""
    sa.Table(
        "callbacks",
        sa.MetaData(),
        sa.Column("token_hash", sa.String, primary_key=True),
        sa.Column("run_id", sa.String, nullable=False),
        sa.Column("step_id", sa.String, nullable=False),
        sa.Column("issued_at", sa.String, nullable=False),
        sa.Column("received_at", sa.String),
        sa.Column("size", sa.Integer),
    ).create(conn)


def _skipped_rows(conn: Connection) -> None:
    """Why a recipient got nothing: the rows a send step's plan left out (invalid,
    duplicate, excluded, filtered out), and which template variant each message is."""
    conn.exec_driver_sql("ALTER TABLE messages ADD COLUMN variant VARCHAR")
    skipped = sa.Table(
        "skipped_rows",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String, nullable=False),
        sa.Column("step_id", sa.String),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("source_row", sa.Integer),
        sa.Column("line", sa.Integer),
        sa.Column("given", sa.String),
        sa.Column("phone", sa.String),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("detail", sa.String),
        sa.Column("created_at", sa.String, nullable=False),
    )
    sa.Index("ix_skipped_rows_step", skipped.c.run_id, skipped.c.step_id)
    sa.Index("ix_skipped_rows_phone", skipped.c.phone)
    skipped.create(conn)


def _tallies(conn: Connection) -> None:
    """Message counts the database keeps as messages change (runner.journal.tallies),
    and an index of the messages that did not go as planned, for their causes."""
    create_tallies(conn)
    conn.exec_driver_sql(
        "CREATE INDEX ix_messages_outcomes ON messages (run_id, step_id, status) "
        "WHERE status IN "
        "('failed', 'unknown', 'deferred', 'cancelled', 'suppressed', 'capped')"
    )


def _compact_messages(conn: Connection) -> None:
    """A smaller message row: each distinct text once in ``texts``, a message
    holding its number; no ``idem_key`` (its primary key says the same, and the
    key's unique index was a second copy of it); ``claimed_by`` only while a
    message is claimed (pending or reserved)."""
    sa.Table(
        "texts",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("digest", sa.String, nullable=False, unique=True),
        sa.Column("text", sa.Text, nullable=False),
    ).create(conn)
    claimed = "CASE WHEN status IN ('pending', 'reserved') THEN claimed_by ELSE NULL END"
    if conn.dialect.name == "postgresql":
        digest = PG_DIGEST.format(col="text")
        for ddl in (
            f"INSERT INTO texts (digest, text) SELECT {digest}, text FROM messages "
            "GROUP BY text ORDER BY min(created_at)",
            "ALTER TABLE messages ADD COLUMN text_id INTEGER",
            f"UPDATE messages AS m SET text_id = t.id, claimed_by = {claimed} "
            "FROM texts AS t WHERE t.text = m.text",
            "ALTER TABLE messages ALTER COLUMN text_id SET NOT NULL",
            "ALTER TABLE messages DROP COLUMN text",
            "ALTER TABLE messages DROP COLUMN idem_key",
        ):
            conn.exec_driver_sql(ddl)
        return
    # SQLite drops neither a unique column nor, here, a column in place: the
    # table is built again, its indexes and the counts' triggers with it
    conn.connection.driver_connection.create_function(  # type: ignore[union-attr]
        "text_digest", 1, text_digest, deterministic=True
    )
    conn.exec_driver_sql(
        "INSERT INTO texts (digest, text) SELECT text_digest(text), text "
        "FROM messages GROUP BY text ORDER BY min(rowid)"
    )
    compact = sa.Table(
        "messages_compact",
        sa.MetaData(),
        sa.Column("run_id", sa.String, primary_key=True),
        sa.Column("step_id", sa.String, primary_key=True),
        sa.Column("phone", sa.String, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("provider", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("provider_message_id", sa.String),
        sa.Column("provider_status", sa.String),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error_kind", sa.String),
        sa.Column("error_code", sa.String),
        sa.Column("error_detail", sa.String),
        sa.Column("segments", sa.Integer, nullable=False),
        sa.Column("text_id", sa.Integer, nullable=False),
        sa.Column("source_row", sa.Integer),
        sa.Column("created_at", sa.String, nullable=False),
        sa.Column("sent_at", sa.String),
        sa.Column("delivery_status", sa.String),
        sa.Column("delivery_code", sa.String),
        sa.Column("delivery_at", sa.String),
        sa.Column("claimed_by", sa.String),
        sa.Column("zone", sa.String),
        sa.Column("secret_digest", sa.String),
        sa.Column("variant", sa.String),
    )
    compact.create(conn)
    kept = [c.name for c in compact.columns if c.name not in ("text_id", "claimed_by")]
    names = ", ".join(kept)
    conn.exec_driver_sql(
        f"INSERT INTO messages_compact ({names}, text_id, claimed_by) "
        f"SELECT {', '.join('m.' + n for n in kept)}, t.id, {claimed} "
        "FROM messages AS m JOIN texts AS t ON t.digest = text_digest(m.text) "
        "ORDER BY m.rowid"
    )
    for ddl in (
        "DROP TABLE messages",  # its indexes and triggers with it
        "ALTER TABLE messages_compact RENAME TO messages",
        "CREATE INDEX ix_messages_seq ON messages (run_id, step_id, seq)",
        "CREATE INDEX ix_messages_queued ON messages (run_id, step_id, seq) "
        "WHERE status = 'queued'",
        "CREATE INDEX ix_messages_phone ON messages (phone, sent_at)",
        "CREATE INDEX ix_messages_outcomes ON messages (run_id, step_id, status) "
        "WHERE status IN "
        "('failed', 'unknown', 'deferred', 'cancelled', 'suppressed', 'capped')",
    ):
        conn.exec_driver_sql(ddl)
    create_tally_triggers(conn)


def _iso_ms(value: str | None) -> int | None:
    """An ISO time as integer milliseconds (frozen here, as the migration is)."""
    if value is None:
        return None
    at = datetime.fromisoformat(value)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


# the times of a message, and of a message superseded, as integer milliseconds
_MESSAGE_TIMES = ("created_at", "sent_at", "delivery_at")


def _unique_seqs(conn: Connection, key: str, as_key: str) -> None:
    """Number again, in their order, the messages of any step where two share a
    ``seq`` (none should: a step's plan numbers its rows), so it can be a key."""
    twice = conn.exec_driver_sql(
        "SELECT DISTINCT run_id, step_id FROM messages "
        "GROUP BY run_id, step_id, seq HAVING count(*) > 1"
    ).all()
    for run_id, step_id in twice:
        keys = conn.execute(
            sa.text(
                f"SELECT {key} FROM messages WHERE run_id = :r AND step_id = :s "
                f"ORDER BY seq, {key}"
            ),
            {"r": run_id, "s": step_id},
        ).scalars()
        conn.execute(
            sa.text(f"UPDATE messages SET seq = :n WHERE {key} = {as_key}"),
            [{"n": n, "k": str(k)} for n, k in enumerate(list(keys), 1)],
        )


def _message_times(conn: Connection) -> None:
    """Smaller messages at size (bytes a message at a million, issue 18): its times
    as integer milliseconds (6 bytes, not 29 of ISO text); its primary key the
    plan's order (run, step, seq), on SQLite the table itself, in place of an
    index of it; the number's own index (number, sent_at), a third copy of every
    number and a fourth of every time, gone: the unique (number, run, step),
    led by the number, finds a number's messages."""
    if conn.dialect.name == "postgresql":
        _unique_seqs(conn, "ctid", "CAST(:k AS tid)")
        conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")  # times without a zone
        ms = "round(extract(epoch FROM {c}::timestamptz) * 1000)::bigint"
        pkey = conn.exec_driver_sql(
            "SELECT conname FROM pg_constraint "
            "WHERE conrelid = 'messages'::regclass AND contype = 'p'"
        ).scalar_one()
        changes = ", ".join(
            f"ALTER COLUMN {c} TYPE bigint USING {ms.format(c=c)}" for c in _MESSAGE_TIMES
        )
        for ddl in (
            f"ALTER TABLE messages {changes}, DROP CONSTRAINT {pkey}, "
            "ADD PRIMARY KEY (run_id, step_id, seq)",
            "CREATE UNIQUE INDEX ux_messages_phone ON messages (phone, run_id, step_id)",
            "DROP INDEX ix_messages_phone",
            "DROP INDEX ix_messages_seq",
            "ALTER TABLE message_history ALTER COLUMN sent_at TYPE bigint "
            f"USING {ms.format(c='sent_at')}",
        ):
            conn.exec_driver_sql(ddl)
        return
    # SQLite changes neither a column's type nor a table's key in place: both
    # tables are built again (an integer in a text column would be text)
    _unique_seqs(conn, "rowid", ":k")
    conn.connection.driver_connection.create_function(  # type: ignore[union-attr]
        "iso_ms", 1, _iso_ms, deterministic=True
    )
    shape = sa.MetaData()
    sa.Table(
        "messages_next",
        shape,
        sa.Column("run_id", sa.String, nullable=False),
        sa.Column("step_id", sa.String, nullable=False),
        sa.Column("phone", sa.String, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("provider", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("provider_message_id", sa.String),
        sa.Column("provider_status", sa.String),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error_kind", sa.String),
        sa.Column("error_code", sa.String),
        sa.Column("error_detail", sa.String),
        sa.Column("segments", sa.Integer, nullable=False),
        sa.Column("text_id", sa.Integer, nullable=False),
        sa.Column("source_row", sa.Integer),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("sent_at", sa.BigInteger),
        sa.Column("delivery_status", sa.String),
        sa.Column("delivery_code", sa.String),
        sa.Column("delivery_at", sa.BigInteger),
        sa.Column("claimed_by", sa.String),
        sa.Column("zone", sa.String),
        sa.Column("secret_digest", sa.String),
        sa.Column("variant", sa.String),
        sa.PrimaryKeyConstraint("run_id", "step_id", "seq"),
        sqlite_with_rowid=False,
    )
    sa.Table(
        "message_history_next",
        shape,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String, nullable=False),
        sa.Column("step_id", sa.String, nullable=False),
        sa.Column("phone", sa.String, nullable=False),
        sa.Column("at", sa.String, nullable=False),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("provider", sa.String),
        sa.Column("attempts", sa.Integer),
        sa.Column("provider_message_id", sa.String),
        sa.Column("error_kind", sa.String),
        sa.Column("error_code", sa.String),
        sa.Column("error_detail", sa.String),
        sa.Column("sent_at", sa.BigInteger),
    )
    shape.create_all(conn)
    order = {"messages": "run_id, step_id, seq", "message_history": "id"}
    for table, times in (
        ("messages", _MESSAGE_TIMES),
        ("message_history", ("sent_at",)),
    ):
        names = [str(r[1]) for r in conn.exec_driver_sql(f"PRAGMA table_info({table})")]
        values = [f"iso_ms({n})" if n in times else n for n in names]
        conn.exec_driver_sql(
            f"INSERT INTO {table}_next ({', '.join(names)}) "
            f"SELECT {', '.join(values)} FROM {table} ORDER BY {order[table]}"
        )
        conn.exec_driver_sql(f"DROP TABLE {table}")  # its indexes and triggers
        conn.exec_driver_sql(f"ALTER TABLE {table}_next RENAME TO {table}")
    for ddl in (
        "CREATE UNIQUE INDEX ux_messages_phone ON messages (phone, run_id, step_id)",
        "CREATE INDEX ix_messages_queued ON messages (run_id, step_id, seq) "
        "WHERE status = 'queued'",
        "CREATE INDEX ix_messages_outcomes ON messages (run_id, step_id, status) "
        "WHERE status IN "
        "('failed', 'unknown', 'deferred', 'cancelled', 'suppressed', 'capped')",
        "CREATE INDEX ix_message_history_message "
        "ON message_history (run_id, step_id, phone)",
    ):
        conn.exec_driver_sql(ddl)
    create_tally_triggers(conn)
    _planner_shape(conn)


# What SQLite's planner is told of the messages table's shape, in place of
# statistics it has not gathered (and which ``ANALYZE`` replaces with its own):
# a step has many messages, a number few, few are still queued or went wrong.
# Without them it takes every equality to leave ten rows, and reads a whole
# step by its key (run, step) to find a few numbers (a claim, an outcome, a
# cap) or the queued rows among the sent.
_SHAPE = {
    "sqlite_autoindex_messages_1": "1000000 100000 100000 1",
    "ux_messages_phone": "1000000 2 1 1",
    "ix_messages_queued": "10000 10000 10000 1",
    "ix_messages_outcomes": "10000 10000 10000 2000",
}


def _planner_shape(conn: Connection) -> None:
    conn.exec_driver_sql("ANALYZE sqlite_schema")  # creates sqlite_stat1
    conn.exec_driver_sql("DELETE FROM sqlite_stat1 WHERE tbl = 'messages'")
    for index, stat in _SHAPE.items():
        conn.exec_driver_sql(
            "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('messages', ?, ?)",
            (index, stat),
        )
    conn.exec_driver_sql("ANALYZE sqlite_schema")  # read again


MIGRATIONS: list[tuple[str, Migration]] = [
    ("0001_initial", _initial),
    ("0002_modes_order_history", _modes_order_history),
    ("0003_control_leases", _control_leases),
    ("0004_shared_sending", _shared_sending),
    ("0005_recipients", _recipients),
    ("0006_skipped_rows", _skipped_rows),
    ("0007_pins", _pins),
    ("0008_callbacks", _callbacks),
    ("0009_tallies", _tallies),
    ("0010_compact_messages", _compact_messages),
    ("0011_message_times", _message_times),
]
