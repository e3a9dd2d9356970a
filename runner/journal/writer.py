"""The journal's single writer thread, and the rows it writes.

Plans and claims (the intents) are committed before ``plan``/``claim`` return, so
no provider call is made before its intent is durable; outcomes are queued and
committed in batches.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from runner.audience.recipient import Skipped
from runner.errors import JournalError
from runner.journal.instants import now_ms
from runner.journal.store import Store, now_iso
from runner.journal.texts import TextIds

# run in a plan's transaction over the seq range it inserted (``BatchHold``)
Hold = Callable[[Connection, int, int], None]


@dataclass(frozen=True, slots=True)
class Planned:
    """A rendered message of a send step, recorded ``queued`` before any call."""

    run_id: str
    step_id: str
    phone: str
    seq: int
    provider: str
    text: str
    segments: int
    source_row: int | None
    status: str = "queued"  # or "failed" for a message that could not be rendered
    error_kind: str | None = None
    error_code: str | None = None  # the same for every recipient of one mistake
    error_detail: str | None = None
    zone: str | None = None  # the recipient's, for a window on their own clock
    variant: str | None = None  # the template's variant the text is of


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A recipient row a send step's plan left out (``skipped_rows``)."""

    run_id: str
    step_id: str | None
    row: Skipped


@dataclass(frozen=True, slots=True)
class Outcome:
    run_id: str
    step_id: str
    phone: str
    status: str  # sent|failed|unknown
    provider: str
    attempts: int
    message_id: str | None = None
    provider_status: str | None = None
    error_kind: str | None = None
    error_code: str | None = None
    error_detail: str | None = None
    at: int | None = None  # when it was sent, in milliseconds (``now_ms``)
    secret_digest: str | None = None  # a PIN's keyed hash, never the PIN


# The hot statement, run for every message: plain SQL with positional parameters,
# executed as one executemany per batch. Through a Core update() the per-row
# parameter processing cost a sixth of the sending threads' CPU (py-spy, issue 7).
_UPDATE_OUTCOME = """
UPDATE messages SET
  status = ?, provider = ?, attempts = ?, provider_message_id = ?,
  provider_status = ?, error_kind = ?, error_code = ?, error_detail = ?,
  secret_digest = coalesce(?, secret_digest), sent_at = coalesce(?, sent_at),
  claimed_by = NULL
WHERE run_id = ? AND step_id = ? AND phone = ?
"""
# (the claim wrote sent_at when the call started; a sent outcome gives the exact
# time; the claim is over: who claimed it only matters while it is pending)


# On PostgreSQL the batch goes as one statement over arrays: an executemany is a
# round trip per row, each a turn at the GIL among the busy sending threads
# (0.7 ms a row measured, most of a claim's time, issue 15). Each row is found
# by its number (ux_messages_phone: a number has few messages), its run and
# step written in a form no index can use, in a nested loop (_ONE_BY_ONE):
# planned freely, a table without statistics for a new run got a scan of the
# step's rows per row (by the step's own index, the phone a filter: 0.8 s a
# batch at 200k messages), or a sort of the whole table per batch.
_UPDATE_OUTCOMES_ARRAYS = """
UPDATE messages AS m SET
  status = v.status, provider = v.provider, attempts = v.attempts,
  provider_message_id = v.mid, provider_status = v.pstatus, error_kind = v.ekind,
  error_code = v.ecode, error_detail = v.edetail,
  secret_digest = coalesce(v.secret, m.secret_digest),
  sent_at = coalesce(v.at, m.sent_at), claimed_by = NULL
FROM unnest(%s::text[], %s::text[], %s::int[], %s::text[], %s::text[], %s::text[],
            %s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[],
            %s::text[])
  AS v(status, provider, attempts, mid, pstatus, ekind, ecode, edetail, secret, at,
       run_id, step_id, phone)
WHERE m.phone = v.phone
  AND m.run_id || '/' || m.step_id = v.run_id || '/' || v.step_id
"""


_ONE_BY_ONE = (
    "SELECT set_config('enable_hashjoin', %s, true),"
    " set_config('enable_mergejoin', %s, true)"
)


def _update_outcomes(conn: Connection, sql: str, arrays: bool, rows: list[Any]) -> None:
    """Write a batch of outcomes (rows as ``_outcome_row`` makes them)."""
    if not arrays:
        conn.exec_driver_sql(sql, rows)
        return
    # one row a message, the last outcome winning as in the per-row form
    last = {r[-3:]: r for r in rows}
    columns = [list(c) for c in zip(*last.values(), strict=True)]
    conn.exec_driver_sql(_ONE_BY_ONE, ("off", "off"))
    conn.exec_driver_sql(sql, tuple(columns))
    conn.exec_driver_sql(_ONE_BY_ONE, ("on", "on"))  # for the rest of the transaction


def _outcome_row(o: Outcome) -> tuple[Any, ...]:
    return (
        o.status,
        o.provider,
        o.attempts,
        o.message_id,
        o.provider_status,
        o.error_kind,
        o.error_code,
        o.error_detail,
        o.secret_digest,
        o.at,
        o.run_id,
        o.step_id,
        o.phone,
    )


# The intent: the next queued rows become pending, claimed by one send of one
# process. (Or ``reserved``: claimed, and each made pending on its own just
# before its call, for a step where even the calls under way at a crash must be
# told from those never made: a PIN step.)
_CLAIM = """
UPDATE messages SET status = ?, provider = ?, sent_at = ?, claimed_by = ?
WHERE run_id = ? AND step_id = ? AND status = 'queued' AND seq IN (
  SELECT seq FROM messages
  WHERE run_id = ? AND step_id = ? AND status = 'queued' AND seq > ?
  ORDER BY seq LIMIT ?)
RETURNING seq, phone, (SELECT text FROM texts WHERE texts.id = messages.text_id),
  segments, source_row
"""

# PostgreSQL: the rows are locked in a CTE, evaluated once, so the LIMIT holds
# and rows another process is claiming at the same moment are skipped, not
# waited for (SQLite has one writer at a time anyway).
# The locked rows are updated by their ctid (stable while locked): joined on the
# phone, a table without statistics yet (a fresh step) got a nested loop over all
# the step's rows, a claim costing O(step size) (18 ms at 3,200 rows, issue 15).
_CLAIM_LOCKED = """
WITH c AS (
  SELECT ctid FROM messages
  WHERE run_id = ? AND step_id = ? AND status = 'queued' AND seq > ?
  ORDER BY seq LIMIT ? FOR UPDATE SKIP LOCKED)
UPDATE messages SET status = ?, provider = ?, sent_at = ?, claimed_by = ?
WHERE messages.ctid = ANY(ARRAY(SELECT ctid FROM c))
RETURNING messages.seq, messages.phone,
  (SELECT texts.text FROM texts WHERE texts.id = messages.text_id), messages.segments,
  messages.source_row
"""

# A reserved message is about to be called: from now on it may have been.
_CALLING = """
UPDATE messages SET status = 'pending', sent_at = ?
WHERE run_id = ? AND step_id = ? AND phone = ? AND status = 'reserved'
"""

_INSERT_PLANNED = """
INSERT INTO messages (
  run_id, step_id, phone, seq, provider, status, attempts, segments,
  text_id, source_row, created_at, error_kind, error_code, error_detail, zone, variant
) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_INSERT_SKIPPED = """
INSERT INTO skipped_rows (
  run_id, step_id, source, source_row, line, given, phone, reason, detail, created_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

# A campaign file changed under an unfinished run: messages never called are
# rendered again (a text that failed to render may render now); a message that
# may have reached the provider is never touched. (Rows found as outcomes are
# on PostgreSQL: by their number, run and step in a form no index can use.)
_RERENDER = """
UPDATE messages SET
  text_id = ?, segments = ?, source_row = ?, status = ?, error_kind = ?,
  error_code = ?, error_detail = ?, variant = ?
WHERE phone = ? AND run_id || '/' || step_id = ?
  AND (status = 'queued' OR (status = 'failed' AND error_kind = 'template'))
"""


def driver_sql(sql: str, paramstyle: str) -> str:
    """The statements here are written with ``?`` (SQLite's qmark style); drivers
    such as psycopg take ``%s``. Other styles are refused rather than guessed."""
    if paramstyle == "qmark":
        return sql
    if paramstyle in ("format", "pyformat"):
        return sql.replace("?", "%s")
    raise JournalError(f"journal driver paramstyle {paramstyle!r} is not supported")


def _insert_planned(
    conn: Connection, sql: str, rows: Sequence[Planned], text_ids: dict[str, int]
) -> None:
    at = now_ms()
    conn.exec_driver_sql(
        sql,
        [
            (
                r.run_id,
                r.step_id,
                r.phone,
                r.seq,
                r.provider,
                r.status,
                r.segments,
                text_ids[r.text],
                r.source_row,
                at,
                r.error_kind,
                r.error_code,
                r.error_detail,
                r.zone,
                r.variant,
            )
            for r in rows
        ],
    )


def _insert_skipped(conn: Connection, sql: str, rows: Sequence[LeftOut]) -> None:
    at = now_iso()
    conn.exec_driver_sql(
        sql,
        [
            (
                r.run_id,
                r.step_id,
                r.row.source,
                r.row.row,
                r.row.line,
                r.row.given,
                r.row.phone,
                r.row.reason,
                r.row.detail,
                at,
            )
            for r in rows
        ],
    )


def _rerender(
    conn: Connection, sql: str, rows: Sequence[Planned], text_ids: dict[str, int]
) -> None:
    conn.exec_driver_sql(
        sql,
        [
            (
                text_ids[r.text],
                r.segments,
                r.source_row,
                r.status,
                r.error_kind,
                r.error_code,
                r.error_detail,
                r.variant,
                r.phone,
                f"{r.run_id}/{r.step_id}",
            )
            for r in rows
        ],
    )


class JournalWriter:
    """The single writer thread: plans and claims (intents) are committed before
    ``plan``/``claim`` return; outcomes are queued and committed in batches (every
    ``flush_every`` outcomes or ``flush_interval`` seconds, and always with the next
    claim)."""

    def __init__(
        self, journal: Store, flush_every: int = 500, flush_interval: float = 0.2
    ) -> None:
        self.journal = journal
        self.flush_every = flush_every
        self.flush_interval = flush_interval
        self._q: queue.SimpleQueue[tuple[str, Any, threading.Event | None]] = (
            queue.SimpleQueue()
        )
        self._error: BaseException | None = None  # sticky: later writes fail too
        self._reported = False
        self._plans_ahead = threading.Semaphore(2)
        # the statements in the driver's placeholder style, translated once
        style = journal.engine.dialect.paramstyle
        self._arrays = journal.engine.dialect.name == "postgresql"
        self._update_sql = driver_sql(_UPDATE_OUTCOME, style)
        if self._arrays:
            self._update_sql = _UPDATE_OUTCOMES_ARRAYS
        self._insert_sql = driver_sql(_INSERT_PLANNED, style)
        self._rerender_sql = driver_sql(_RERENDER, style)
        self._skipped_sql = driver_sql(_INSERT_SKIPPED, style)
        self._locking = journal.engine.dialect.name == "postgresql"
        self._claim_sql = driver_sql(_CLAIM_LOCKED if self._locking else _CLAIM, style)
        self._calling_sql = driver_sql(_CALLING, style)
        self._texts = TextIds(style)
        self._thread = threading.Thread(
            target=self._loop, name="journal-writer", daemon=True
        )
        self._thread.start()

    def plan(
        self,
        rows: Sequence[Planned],
        *,
        wait: bool = True,
        rerender: bool = False,
        left_out: Sequence[LeftOut] = (),
        hold: Hold | None = None,
    ) -> None:
        """Insert ``queued`` rows (rendered, never called), or with ``rerender``
        replace the text of rows never called, and the rows ``left_out`` of the
        plan, in one transaction; waits for the commit unless ``wait`` is False
        (then the next ``flush`` waits, and raises). ``hold`` runs in that
        transaction over the inserted rows' seq range (a plan that streams
        ahead of sending holds its rows before any claim can see them)."""
        kind = "rerender" if rerender else "plan"
        payload = (rows, left_out, hold)
        if wait:
            self._sync(kind, payload)
        else:
            # at most one batch waits behind the one being inserted: rendering
            # overlaps inserting without holding a whole file's rows in memory
            self._plans_ahead.acquire()
            self._raise()
            self._q.put((kind, payload, None))

    def claim(
        self,
        run_id: str,
        step_id: str,
        provider: str,
        claimer: str,
        after_seq: int,
        n: int,
        status: str = "pending",
    ) -> list[tuple[Any, ...]]:
        """The intent: the next ``n`` queued rows after ``after_seq`` become
        ``pending`` (or ``reserved``, see ``calling``) for ``claimer``; waits for
        the commit.

        Only the rows returned (seq, phone, text, segments, source_row; in plan
        order) may be called, and only after this returns. Outcomes queued
        before it are committed in the same transaction.
        """
        return self.claim_ahead(
            run_id, step_id, provider, claimer, after_seq, n, status
        )()

    def claim_ahead(
        self,
        run_id: str,
        step_id: str,
        provider: str,
        claimer: str,
        after_seq: int,
        n: int,
        status: str = "pending",
    ) -> Callable[[], list[tuple[Any, ...]]]:
        """``claim`` without waiting: the returned function waits for the commit
        and gives the rows. The sender claims its next batch while it still calls
        the current one, so the claim's round trip (a server's, or the writer's
        turn at the GIL among busy senders) is not a pause in sending."""
        box: list[tuple[Any, ...]] = []
        done = threading.Event()
        payload = (run_id, step_id, provider, claimer, after_seq, n, status, box)
        self._q.put(("claim", payload, done))

        def rows() -> list[tuple[Any, ...]]:
            done.wait()
            self._raise()
            return sorted(box)

        return rows

    def calling(self, run_id: str, step_id: str, phone: str) -> None:
        """A reserved message becomes ``pending`` (it may be called from now on);
        returns once committed, with the outcomes queued before it."""
        self._sync("calling", (now_ms(), run_id, step_id, phone))

    def _sync(self, kind: str, payload: Any) -> None:
        done = threading.Event()
        self._q.put((kind, payload, done))
        done.wait()
        self._raise()

    def record_outcome(self, outcome: Outcome) -> None:
        self._q.put(("outcome", outcome, None))

    def flush(self) -> None:
        done = threading.Event()
        self._q.put(("flush", None, done))
        done.wait()
        self._raise()

    def close(self) -> None:
        if self._thread.is_alive():
            if not self._reported:  # a failure already raised is not raised again
                self.flush()
            self._q.put(("stop", None, None))
            self._thread.join(timeout=30)

    def _raise(self) -> None:
        if self._error is not None:
            self._reported = True
            # one line, without the SQL or its parameters (phones, texts)
            cause = getattr(self._error, "orig", None) or self._error
            raise JournalError(
                f"journal write failed: {type(cause).__name__}: {cause}"
            ) from self._error

    def _loop(self) -> None:
        pending: list[tuple[Any, ...]] = []

        last = time.monotonic()
        while True:
            timeout = (
                max(0.0, self.flush_interval - (time.monotonic() - last))
                if pending
                else None
            )
            try:
                kind, payload, done = self._q.get(timeout=timeout)
            except queue.Empty:
                kind, payload, done = "flush", None, None
            try:
                if kind == "outcome":
                    pending.append(_outcome_row(payload))
                    if len(pending) < self.flush_every:
                        continue
                text_ids: dict[str, int] = {}
                with self.journal.connect() as conn:
                    if pending:
                        _update_outcomes(conn, self._update_sql, self._arrays, pending)
                    if kind in ("plan", "rerender"):
                        rows, left_out, hold = payload
                        if rows:
                            text_ids = self._texts.ids(conn, {r.text for r in rows})
                        if rows and kind == "plan":
                            _insert_planned(conn, self._insert_sql, rows, text_ids)
                            if hold is not None:
                                hold(conn, rows[0].seq, rows[-1].seq)
                        elif rows:
                            _rerender(conn, self._rerender_sql, rows, text_ids)
                        if left_out:
                            _insert_skipped(conn, self._skipped_sql, left_out)
                    elif kind == "claim":
                        run_id, step_id, provider, claimer, after, n, status, box = (
                            payload
                        )
                        sets = (status, provider, now_ms(), claimer)
                        pick = (run_id, step_id, after, n)
                        args = (
                            (*pick, *sets)
                            if self._locking
                            else (*sets, run_id, step_id, *pick)
                        )
                        box.extend(
                            tuple(r) for r in conn.exec_driver_sql(self._claim_sql, args)
                        )
                    elif kind == "calling":
                        conn.exec_driver_sql(self._calling_sql, payload)
                self._texts.remember(text_ids)  # committed
                pending.clear()
                last = time.monotonic()
            except BaseException as e:  # surfaced to the caller by _raise
                self._error = e
            finally:
                if kind in ("plan", "rerender") and done is None:
                    self._plans_ahead.release()
                if done is not None:
                    done.set()
            if kind == "stop":
                return
