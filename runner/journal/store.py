"""The journal: who got what, when, and what happened. SQLAlchemy Core over SQLite.

Exactly-once rests here: a message row is committed as ``pending`` (the intent)
before its provider call is made, and its outcome (``sent``, ``failed``,
``unknown``) is written after. A crash can only lose outcomes, never intents, so
a resumed run knows every call that may have been made. Writes go through one
writer thread (``Journal.writer``) that batches commits; reads use short
connections.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from runner.errors import JournalError

if TYPE_CHECKING:
    from runner.journal.writer import JournalWriter

metadata = sa.MetaData()

migrations_table = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("applied_at", sa.String, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("campaign", sa.String, nullable=False, index=True),
    sa.Column("campaign_path", sa.String, nullable=False),
    sa.Column(
        "status", sa.String, nullable=False
    ),  # running|succeeded|failed|interrupted
    sa.Column("started_at", sa.String, nullable=False),
    sa.Column("finished_at", sa.String),
    sa.Column("exit_code", sa.Integer),
    sa.Column("options", sa.Text, nullable=False, default="{}"),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("run_id", sa.String, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("step_id", sa.String, primary_key=True),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),  # running|succeeded|failed|skipped
    sa.Column("started_at", sa.String),
    sa.Column("finished_at", sa.String),
    sa.Column("detail", sa.Text, nullable=False, default="{}"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("step_id", sa.String, primary_key=True),
    sa.Column("phone", sa.String, primary_key=True),  # E.164
    sa.Column("seq", sa.Integer, nullable=False),  # the recipient's order in the plan
    sa.Column("idem_key", sa.String, nullable=False, unique=True),
    sa.Column("provider", sa.String, nullable=False),
    # queued: planned, never called | pending: intent committed, call may be under way
    # sent | failed | unknown: the call may have reached the provider, outcome unknown
    sa.Column("status", sa.String, nullable=False),
    sa.Column("provider_message_id", sa.String),
    sa.Column("provider_status", sa.String),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("error_kind", sa.String),
    sa.Column("error_code", sa.String),
    sa.Column("error_detail", sa.String),
    sa.Column("segments", sa.Integer, nullable=False, default=1),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("source_row", sa.Integer),
    sa.Column("created_at", sa.String, nullable=False),
    sa.Column("sent_at", sa.String),
    sa.Column("delivery_status", sa.String),
    sa.Column("delivery_code", sa.String),
    sa.Column("delivery_at", sa.String),
)
sa.Index("ix_messages_seq", messages.c.run_id, messages.c.step_id, messages.c.seq)

# Ordered, named migrations; each runs once and is recorded in schema_migrations.
MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("0001_initial", lambda conn: metadata.create_all(conn)),
]

TERMINAL = frozenset({"sent", "failed"})


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def default_path() -> Path:
    """``$CAMPAIGN_RUNNER_STATE`` or ``$XDG_STATE_HOME/campaign-runner/journal.db``."""
    env = os.environ.get("CAMPAIGN_RUNNER_STATE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "campaign-runner" / "journal.db"


def _create_private(path: Path) -> None:
    """Create the file owner-only before SQLite opens it (no window of 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except FileExistsError:
        pass
    for suffix in ("-wal", "-shm"):
        side = Path(str(path) + suffix)
        if not side.exists():
            fd = os.open(side, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)


class Journal:
    """One journal database. ``url`` may be any SQLAlchemy URL; default SQLite file."""

    def __init__(self, path: Path | None = None, url: str | None = None) -> None:
        self.path = path
        if url is None:
            assert path is not None
            _create_private(path)
            url = f"sqlite:///{path}"
        try:
            # hide_parameters: errors and logs never carry phones or texts
            self.engine: Engine = sa.create_engine(url, future=True, hide_parameters=True)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            self.migrate()
        except sa.exc.SQLAlchemyError as e:
            raise JournalError(
                f"cannot open journal {path or url}: {e.__class__.__name__}"
            ) from e
        if path is not None:
            os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        self._writer: JournalWriter | None = None

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A short transaction: committed on success, rolled back on error."""
        with self.engine.begin() as conn:
            yield conn

    def migrate(self) -> None:
        with self.connect() as conn:
            migrations_table.create(conn, checkfirst=True)
            done = set(conn.scalars(sa.select(migrations_table.c.name)))
            for name, apply in MIGRATIONS:
                if name not in done:
                    apply(conn)
                    conn.execute(
                        migrations_table.insert().values(name=name, applied_at=now_iso())
                    )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.engine.dispose()

    # -- runs and steps -----------------------------------------------------------

    def start_run(
        self, campaign: str, campaign_path: str, options: Mapping[str, Any]
    ) -> str:
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        with self.connect() as conn:
            conn.execute(
                runs.insert().values(
                    id=run_id,
                    campaign=campaign,
                    campaign_path=campaign_path,
                    status="running",
                    started_at=now_iso(),
                    options=json.dumps(dict(options)),
                )
            )
        return run_id

    def finish_run(self, run_id: str, status: str, exit_code: int) -> None:
        with self.connect() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(status=status, finished_at=now_iso(), exit_code=exit_code)
            )

    def reopen_run(self, run_id: str) -> None:
        with self.connect() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(status="running", finished_at=None, exit_code=None)
            )

    def get_run(self, run_id: str) -> Mapping[str, Any] | None:
        with self.connect() as conn:
            row = (
                conn.execute(sa.select(runs).where(runs.c.id == run_id))
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def last_unfinished_run(self, campaign: str) -> str | None:
        with self.connect() as conn:
            return conn.scalar(
                sa.select(runs.c.id)
                .where(
                    runs.c.campaign == campaign,
                    runs.c.status.in_(["running", "interrupted", "failed"]),
                )
                .order_by(runs.c.started_at.desc())
                .limit(1)
            )

    def list_runs(
        self, campaign: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        q = sa.select(runs).order_by(runs.c.started_at.desc()).limit(limit)
        if campaign:
            q = q.where(runs.c.campaign == campaign)
        with self.connect() as conn:
            rows = [dict(r) for r in conn.execute(q).mappings()]
            for r in rows:
                r["counts"] = self.message_counts(r["id"], conn=conn)
        return rows

    def step_status(self, run_id: str) -> dict[str, dict[str, Any]]:
        with self.connect() as conn:
            rows = conn.execute(
                sa.select(steps).where(steps.c.run_id == run_id)
            ).mappings()
            return {
                r["step_id"]: {**dict(r), "detail": json.loads(r["detail"])} for r in rows
            }

    def start_step(self, run_id: str, step_id: str, kind: str) -> None:
        with self.connect() as conn:
            existing = conn.scalar(
                sa.select(steps.c.status).where(
                    steps.c.run_id == run_id, steps.c.step_id == step_id
                )
            )
            values = {"status": "running", "started_at": now_iso(), "finished_at": None}
            if existing is None:
                conn.execute(
                    steps.insert().values(
                        run_id=run_id, step_id=step_id, kind=kind, **values
                    )
                )
            else:
                conn.execute(
                    steps.update()
                    .where(steps.c.run_id == run_id, steps.c.step_id == step_id)
                    .values(**values)
                )

    def finish_step(
        self,
        run_id: str,
        step_id: str,
        status: str,
        detail: Mapping[str, Any],
        kind: str = "",
    ) -> None:
        with self.connect() as conn:
            res = conn.execute(
                steps.update()
                .where(steps.c.run_id == run_id, steps.c.step_id == step_id)
                .values(
                    status=status,
                    finished_at=now_iso(),
                    detail=json.dumps(dict(detail), default=str),
                )
            )
            if res.rowcount == 0:
                conn.execute(
                    steps.insert().values(
                        run_id=run_id,
                        step_id=step_id,
                        kind=kind,
                        status=status,
                        started_at=now_iso(),
                        finished_at=now_iso(),
                        detail=json.dumps(dict(detail), default=str),
                    )
                )

    # -- messages -----------------------------------------------------------------

    def message_states(self, run_id: str, step_id: str) -> dict[str, str]:
        """phone -> status for a step: what a resumed send must not redo."""
        with self.connect() as conn:
            rows = conn.execute(
                sa.select(messages.c.phone, messages.c.status).where(
                    messages.c.run_id == run_id, messages.c.step_id == step_id
                )
            )
            return {str(phone): str(status) for phone, status in rows}

    def queued(
        self, run_id: str, step_id: str, after_seq: int, limit: int
    ) -> list[tuple[Any, ...]]:
        """The next planned, never-called messages: (seq, phone, text, segments, row)."""
        q = (
            sa.select(
                messages.c.seq,
                messages.c.phone,
                messages.c.text,
                messages.c.segments,
                messages.c.source_row,
            )
            .where(
                messages.c.run_id == run_id,
                messages.c.step_id == step_id,
                messages.c.seq > after_seq,
                messages.c.status == "queued",
            )
            .order_by(messages.c.seq)
            .limit(limit)
        )
        with self.connect() as conn:
            return [tuple(r) for r in conn.execute(q)]

    def requeue(self, run_id: str, step_id: str, statuses: Sequence[str]) -> int:
        """Put messages back to ``queued`` (``--resend-unknown``: the user's choice)."""
        with self.connect() as conn:
            res = conn.execute(
                messages.update()
                .where(
                    messages.c.run_id == run_id,
                    messages.c.step_id == step_id,
                    messages.c.status.in_(list(statuses)),
                )
                .values(status="queued")
            )
            return int(res.rowcount)

    def max_seq(self, run_id: str, step_id: str) -> int:
        with self.connect() as conn:
            return int(
                conn.scalar(  # type: ignore[arg-type]
                    sa.select(sa.func.coalesce(sa.func.max(messages.c.seq), 0)).where(
                        messages.c.run_id == run_id, messages.c.step_id == step_id
                    )
                )
            )

    def mark_interrupted(self, run_id: str, step_id: str) -> int:
        """Intents with no outcome become ``unknown``: the call may have gone out."""
        with self.connect() as conn:
            res = conn.execute(
                messages.update()
                .where(
                    messages.c.run_id == run_id,
                    messages.c.step_id == step_id,
                    messages.c.status == "pending",
                )
                .values(
                    status="unknown",
                    error_kind="interrupted",
                    error_code="interrupted",
                    error_detail="the run stopped before the outcome was recorded",
                )
            )
            return int(res.rowcount)

    def message_counts(
        self, run_id: str, step_id: str | None = None, *, conn: Connection | None = None
    ) -> dict[str, int]:
        q = sa.select(messages.c.status, sa.func.count()).where(
            messages.c.run_id == run_id
        )
        if step_id is not None:
            q = q.where(messages.c.step_id == step_id)
        q = q.group_by(messages.c.status)
        if conn is None:
            with self.connect() as c:
                return {s: int(n) for s, n in c.execute(q)}
        return {s: int(n) for s, n in conn.execute(q)}

    def messages_for(
        self, run_id: str, step_id: str | None = None, status: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        q = sa.select(messages).where(messages.c.run_id == run_id)
        if step_id is not None:
            q = q.where(messages.c.step_id == step_id)
        if status:
            q = q.where(messages.c.status.in_(list(status)))
        q = q.order_by(messages.c.step_id, messages.c.created_at, messages.c.phone)
        with self.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def record_deliveries(
        self,
        run_id: str,
        step_id: str,
        updates: Sequence[tuple[str, str, str, str | None]],
    ) -> None:
        """(phone, delivery_status, raw_code, at) from a report."""
        if not updates:
            return
        stmt = (
            messages.update()
            .where(
                messages.c.run_id == run_id,
                messages.c.step_id == step_id,
                messages.c.phone == sa.bindparam("p_phone"),
            )
            .values(
                delivery_status=sa.bindparam("p_status"),
                delivery_code=sa.bindparam("p_code"),
                delivery_at=sa.bindparam("p_at"),
            )
        )
        with self.connect() as conn:
            conn.execute(
                stmt,
                [
                    {"p_phone": p, "p_status": s, "p_code": c, "p_at": a}
                    for p, s, c, a in updates
                ],
            )

    def reconcile(
        self,
        run_id: str,
        step_id: str,
        phone: str,
        status: str,
        message_id: str | None,
        detail: str,
    ) -> None:
        """Settle an ``unknown`` message from the provider's own record."""
        with self.connect() as conn:
            conn.execute(
                messages.update()
                .where(
                    messages.c.run_id == run_id,
                    messages.c.step_id == step_id,
                    messages.c.phone == phone,
                )
                .values(
                    status=status,
                    provider_message_id=message_id,
                    error_kind=None if status == "sent" else "reconciled",
                    error_code=None,
                    error_detail=detail,
                )
            )

    # -- the batched writer -------------------------------------------------------

    @property
    def writer(self) -> JournalWriter:
        """The batched writer thread of this journal (started on first use)."""
        if self._writer is None:
            from runner.journal.writer import JournalWriter

            self._writer = JournalWriter(self)
        return self._writer


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a committed transaction survives a process crash (kill -9);
    # only an OS crash or power loss can lose the last commits.
    # (bench/throughput.py measures the cost of that against OFF on tmpfs)
    sync = os.environ.get("CAMPAIGN_RUNNER_JOURNAL_SYNC", "NORMAL").upper()
    cur.execute(
        f"PRAGMA synchronous={sync if sync in ('OFF', 'NORMAL', 'FULL') else 'NORMAL'}"
    )
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
