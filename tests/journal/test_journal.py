from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from runner.errors import JournalError
from runner.journal.instants import to_ms
from runner.journal.journal import Journal
from runner.journal.migrations import MIGRATIONS
from runner.journal.tables import metadata, migrations_table
from runner.journal.where import Where, locate
from runner.journal.workers import ShareRow
from runner.journal.writer import Outcome, Planned, driver_sql


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    """The journal on each backend: a SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return Where(path=tmp_path / "j.db")
    return locate(request.getfixturevalue("pg_url"))


def planned(run: str, step: str, n: int) -> list[Planned]:
    return [
        Planned(run, step, f"+3460000{i:04d}", i + 1, "main", f"text {i}", 1, i + 1)
        for i in range(n)
    ]


def test_created_owner_only_with_migrations(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.db"
    j = Journal(path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with j.connect() as conn:
            names = list(conn.scalars(sa.select(migrations_table.c.name)))
        assert names == [name for name, _ in MIGRATIONS]
    finally:
        j.close()
    # reopening applies nothing twice
    j = Journal(path)
    with j.connect() as conn:
        applied = conn.scalar(sa.select(sa.func.count()).select_from(migrations_table))
        assert applied == len(MIGRATIONS)
    j.close()


def test_plan_claim_outcome_and_crash_leftovers(where: Where) -> None:
    j = Journal(where)
    run = j.start_run("c", "c.yaml", {})
    w = j.writer
    w.plan(planned(run, "s", 10))
    claimer = j.worker.claimer()
    rows = w.claim(run, "s", "main", claimer, 0, 4)
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert j.message_counts(run, "s") == {"pending": 4, "queued": 6}
    w.record_outcome(Outcome(run, "s", rows[0][1], "sent", "main", 1, message_id="-81"))
    w.record_outcome(
        Outcome(run, "s", rows[1][1], "failed", "main", 1, error_kind="rejected")
    )
    w.flush()
    # while the send that claimed them goes on, its calls are under way
    assert j.settle_interrupted(run, "s") == 0
    # two claimed calls never got an outcome: once their send is gone, unknown
    j.worker.done(claimer)
    assert j.settle_interrupted(run, "s") == 2
    counts = j.message_counts(run, "s")
    assert counts == {"queued": 6, "sent": 1, "failed": 1, "unknown": 2}
    sent = j.messages_for(run, "s", ["sent"])
    assert sent[0]["provider_message_id"] == "-81"
    assert sent[0]["text"] == rows[0][2] == "text 0"  # the claim gave the exact text
    # who claimed a message matters while it is claimed, not after its outcome
    settled = j.messages_for(run, "s", ["sent", "failed", "unknown"])
    assert len(settled) == 4 and all(m["claimed_by"] is None for m in settled)
    # the queue continues after the last claimed seq; only never-called rows come back
    assert [r[0] for r in j.queued(run, "s", 0, 100)] == [5, 6, 7, 8, 9, 10]
    j.close()


def test_reserved_claims_tell_the_calls_under_way_from_those_never_made(
    where: Where,
) -> None:
    """A PIN step's claims: only a message made pending just before its call may
    have gone out; after a crash the rest are queued again, not unknown."""
    j = Journal(where)
    run = j.start_run("c", "c.yaml", {})
    w = j.writer
    w.plan(planned(run, "s", 6))
    claimer = j.worker.claimer()
    rows = w.claim(run, "s", "main", claimer, 0, 4, status="reserved")
    assert j.message_counts(run, "s") == {"reserved": 4, "queued": 2}
    w.calling(run, "s", rows[0][1])
    w.calling(run, "s", rows[1][1])
    digest = "hmac-sha256:ab12"
    w.record_outcome(
        Outcome(run, "s", rows[0][1], "sent", "main", 1, secret_digest=digest)
    )
    w.flush()
    assert j.message_counts(run, "s") == {
        "sent": 1,
        "pending": 1,
        "reserved": 2,
        "queued": 2,
    }
    j.worker.done(claimer)  # the send is gone (a kill -9)
    assert j.settle_interrupted(run, "s") == 1  # the one call under way
    assert j.message_counts(run, "s") == {"sent": 1, "unknown": 1, "queued": 4}
    [pin] = j.pins_sent(run, rows[0][1])
    assert (pin["step_id"], pin["secret_digest"]) == ("s", digest)
    assert j.pins_sent(run, rows[1][1]) == []  # unknown: no PIN known to match
    j.close()


def test_the_kept_counts_follow_every_change_of_a_message(where: Where) -> None:
    """The triggers' counts equal a COUNT over the messages after plans, claims,
    outcomes, retries, a failover, a cancel, a suppression and a delete."""
    from runner.journal.suppressions import Suppression
    from runner.journal.tables import message_tallies, messages

    j = Journal(where)
    try:
        run = j.start_run("c", "c.yaml", {})
        w = j.writer
        w.plan(planned(run, "s", 40))
        w.plan(planned(run, "t", 5))
        rows = w.claim(run, "s", "main", "me#1", 0, 10)
        for i, r in enumerate(rows):
            status = ("sent", "failed", "unknown")[i % 3]
            w.record_outcome(Outcome(run, "s", r[1], status, "backup", 1 + i % 4))
        w.flush()
        w.claim(run, "s", "main", "me#1", 10, 5, status="reserved")
        j.cancel(run, "s", None, "cancelled by a test")
        j.suppress([Suppression("+34600000001", "real", "all", "stop", "t", "")])
        j.apply_suppressions(run, "t", "real", transactional=False)
        with j.connect() as conn:
            conn.execute(
                messages.delete().where(messages.c.step_id == "t", messages.c.seq == 5)
            )
        for step in ("s", "t", None):
            q = sa.select(messages.c.status, sa.func.count()).where(
                messages.c.run_id == run
            )
            if step:
                q = q.where(messages.c.step_id == step)
            with j.connect() as conn:
                counted = dict(conn.execute(q.group_by(messages.c.status)).all())
            assert j.message_counts(run, step) == counted
        with j.connect() as conn:
            kept = {
                (p, s): (n, r)
                for p, s, n, r in conn.execute(
                    sa.select(
                        message_tallies.c.provider,
                        message_tallies.c.status,
                        sa.func.sum(message_tallies.c.n),
                        sa.func.sum(message_tallies.c.retries),
                    )
                    .group_by(message_tallies.c.provider, message_tallies.c.status)
                    .having(sa.func.sum(message_tallies.c.n) != 0)
                )
            }
            direct = {
                (p, s): (n, r or 0)
                for p, s, n, r in conn.execute(
                    sa.select(
                        messages.c.provider,
                        messages.c.status,
                        sa.func.count(),
                        sa.func.sum(
                            sa.case(
                                (messages.c.attempts > 1, messages.c.attempts - 1),
                                else_=0,
                            )
                        ),
                    ).group_by(messages.c.provider, messages.c.status)
                )
            }
        assert kept == direct
        assert kept[("backup", "sent")] == (4, 6)  # attempts 1, 4, 3, 2: 0+3+2+1
    finally:
        j.close()


def test_outcomes_are_committed_in_batches_and_on_flush(where: Where) -> None:
    j = Journal(where)
    run = j.start_run("c", "c.yaml", {})
    j.writer.plan(planned(run, "s", 3))
    assert len(j.writer.claim(run, "s", "main", "me#1", 0, 3)) == 3
    for i in range(3):
        j.writer.record_outcome(Outcome(run, "s", f"+3460000{i:04d}", "sent", "main", 1))
    j.writer.flush()
    assert j.message_counts(run, "s") == {"sent": 3}
    j.close()


def test_a_plan_written_in_the_background_fails_loudly_at_the_flush(
    tmp_path: Path,
) -> None:
    """plan(wait=False) overlaps inserting with rendering; a failed insert must
    still stop the step before any call (the flush raises), not vanish."""
    j = Journal(tmp_path / "j.db")
    run = j.start_run("c", "c.yaml", {})
    rows = planned(run, "s", 5)
    j.writer.plan(rows[:3], wait=False)
    j.writer.plan(rows[2:], wait=False)  # row 3 again: the primary key refuses it
    with pytest.raises(JournalError) as e:
        j.writer.flush()
    assert str(e.value) == (
        "journal write failed: IntegrityError: UNIQUE constraint failed: "
        "messages.phone, messages.run_id, messages.step_id"
    )  # one line, no SQL, no phone numbers
    assert j.message_counts(run, "s") == {"queued": 3}  # the first batch stands
    j.close()


def test_runs_listing_and_resume_candidates(where: Where) -> None:
    j = Journal(where)
    a = j.start_run("promo", "p.yaml", {})
    j.finish_run(a, "succeeded", 0)
    b = j.start_run("promo", "p.yaml", {})
    j.finish_run(b, "interrupted", 130)
    assert j.last_unfinished_run("promo") == b
    assert j.last_unfinished_run("other") is None
    assert [r["id"] for r in j.list_runs("promo")] == [b, a]
    j.close()


def test_hot_statements_follow_the_driver_paramstyle() -> None:
    sql = "UPDATE messages SET status = ? WHERE phone IN (?, ?)"
    assert driver_sql(sql, "qmark") == sql  # SQLite
    assert driver_sql(sql, "pyformat") == (  # psycopg
        "UPDATE messages SET status = %s WHERE phone IN (%s, %s)"
    )
    with pytest.raises(JournalError, match="paramstyle 'numeric'"):
        driver_sql(sql, "numeric")


def test_migrations_build_the_schema_the_queries_read(where: Where) -> None:
    """A journal migrated from nothing has exactly the tables and columns of
    ``tables.py``, with the same nullability."""
    j = Journal(where)
    try:
        inspector = sa.inspect(j.engine)
        assert set(inspector.get_table_names()) == set(metadata.tables)
        for name, table in metadata.tables.items():
            found = {c["name"]: c["nullable"] for c in inspector.get_columns(name)}
            wanted = {c.name: c.nullable and not c.primary_key for c in table.columns}
            if name in (
                "message_history",
                "skipped_rows",
            ):  # an autoincrement key reads as nullable
                found["id"] = False
            assert {k: bool(v) for k, v in found.items()} == wanted, name
    finally:
        j.close()


def test_a_first_release_journal_upgrades_in_place(where: Where) -> None:
    engine = sa.create_engine(where.url or f"sqlite:///{where.path}")
    with engine.begin() as conn:
        MIGRATIONS[0][1](conn)  # the first release's tables, as it created them
        migrations_table.create(conn)
        conn.execute(
            migrations_table.insert().values(name="0001_initial", applied_at="x")
        )
        conn.exec_driver_sql(
            "INSERT INTO runs (id, campaign, campaign_path, status, started_at, options)"
            " VALUES ('r1', 'promo', 'promo.yaml', 'succeeded', '2026-01-01', '{}')"
        )
        conn.exec_driver_sql(
            "INSERT INTO steps (run_id, step_id, kind, status, detail)"
            " VALUES ('r1', 'blast', 'send', 'succeeded', '{}')"
        )
        conn.exec_driver_sql(
            "INSERT INTO messages (run_id, step_id, phone, seq, idem_key, provider,"
            " status, attempts, segments, text, created_at) VALUES ('r1', 'blast',"
            " '+34600000001', 1, 'r1/blast/+34600000001', 'sms', 'sent', 1, 1, 'hi',"
            " '2026-01-01')"
        )
    engine.dispose()
    j = Journal(where)
    try:
        run = j.get_run("r1")
        assert run is not None and run["status"] == "succeeded" and run["mode"] == "real"
        assert j.message_counts("r1") == {"sent": 1}
        assert set(j.step_status("r1")) == {"blast"}
    finally:
        j.close()


def test_one_real_run_per_occurrence(where: Where) -> None:
    from runner.errors import UsageError

    j = Journal(where)
    try:
        j.start_run("c", "c.yaml", {}, occurrence="once")
        with pytest.raises(UsageError, match="occurrence 'once' already has a run"):
            j.start_run("c", "c.yaml", {}, occurrence="once")
        j.start_run("c", "c.yaml", {}, occurrence="2026-12-03T08:00+01:00")
        j.start_run("d", "d.yaml", {}, occurrence="once")  # another campaign
        j.start_run("c", "c.yaml", {}, occurrence="once", sandbox="http://x")  # rehearsal
        j.start_run("c", "c.yaml", {}, occurrence="once", sandbox="http://x")
    finally:
        j.close()


def test_claims_of_a_gone_worker_settle_and_status_counts_each_daemons_flight(
    where: Where,
) -> None:
    """A helper on another machine that stops renewing loses its claims (they
    become unknown, never queued again); a live one keeps them; each daemon's
    messages in calls are summed from its sends' shares."""
    j = Journal(where)
    try:
        run = j.start_run("c", "c.yaml", {})
        j.writer.plan(planned(run, "s", 6))
        peer, ghost = "peer:41:2026-12-03T10:00:00.000+00:00", "ghost:42:x"
        j.worker_up(peer)
        j.worker_up(ghost)
        assert len(j.writer.claim(run, "s", "main", f"{peer}#1", 0, 2)) == 2
        assert len(j.writer.claim(run, "s", "main", f"{ghost}#1", 2, 2)) == 2
        j.worker_down(ghost)  # as if its lease ran out
        assert j.settle_interrupted(run, "s") == 2
        assert j.message_counts(run, "s") == {"pending": 2, "unknown": 2, "queued": 2}

        assert j.heartbeat("leader", 1)
        mine = j.worker.claimer()
        row = ShareRow(run, "s", "main", mine, j.worker.id, "driver", "c", "now", 0)
        j.join_share(row)
        theirs = ShareRow(run, "s", "main", f"{peer}#1", peer, "helper", "c", "now", 0)
        j.join_share(theirs)
        assert {s.claimer for s in j.renew_share(row, 3)} == {mine, f"{peer}#1"}
        j.renew_share(theirs, 5)
        (me,) = j.daemons_now()  # the peer is a worker here, not a daemon
        assert (me.id, me.in_flight, me.active_runs) == (j.daemon_id(), 3, 1)
        assert j.in_flight_by_worker() == {j.worker.id: 3, peer: 5}
    finally:
        j.close()


def test_of_two_claims_racing_for_a_capped_number_the_first_goes(where: Where) -> None:
    from datetime import UTC, datetime, timedelta

    from runner.model.campaign import FrequencyCap

    j = Journal(where)
    try:
        a = j.start_run("a", "a.yaml", {})
        b = j.start_run("b", "b.yaml", {})
        j.writer.plan(planned(a, "s", 2))
        j.writer.plan(planned(b, "s", 2))
        phones = [f"+3460000{i:04d}" for i in range(2)]
        # both planned; a claims first, then b: each sees the other's claim
        j.writer.claim(a, "s", "main", "x#1", 0, 2)
        # claims in one millisecond (sent_at's grain) are ordered by run id: b's
        # must come later for a to be the first whatever the two runs' ids
        time.sleep(0.002)
        j.writer.claim(b, "s", "main", "y#1", 0, 2)
        cap = FrequencyCap(1, timedelta(hours=24))
        now = datetime.now(UTC)
        assert j.over_cap(a, "s", "real", cap, phones, now) == set()
        assert j.over_cap(b, "s", "real", cap, phones, now) == set(phones)
        # a's call failed for phone 0: it no longer counts against b
        j.writer.record_outcome(Outcome(a, "s", phones[0], "failed", "main", 1))
        j.writer.flush()
        assert j.over_cap(b, "s", "real", cap, phones, now) == {phones[1]}
        assert (
            j.over_cap(b, "s", "real", FrequencyCap(2, cap.window), phones, now) == set()
        )
        assert j.over_cap(b, "s", "sandbox", cap, phones, now) == set()  # other mode
    finally:
        j.close()


def test_suppressions_and_caps_act_on_queued_rows_only(where: Where) -> None:
    """Listed numbers' queued rows become suppressed (and queued again once off
    the list); a number over its cap in the window is capped or deferred, from
    the messages other steps of the same mode sent it; rehearsals keep theirs."""
    from datetime import UTC, datetime, timedelta

    from runner.journal.suppressions import Suppression
    from runner.model.campaign import FrequencyCap

    j = Journal(where)
    try:
        earlier = j.start_run("a", "a.yaml", {})
        j.writer.plan(planned(earlier, "s", 3))
        for r in j.writer.claim(earlier, "s", "main", j.worker.claimer(), 0, 3)[:2]:
            j.writer.record_outcome(
                Outcome(
                    earlier,
                    "s",
                    r[1],
                    "sent",
                    "main",
                    1,
                    at=to_ms(datetime.now(UTC)),
                )
            )
        j.writer.flush()
        run = j.start_run("b", "b.yaml", {})
        j.writer.plan(planned(run, "s", 4))
        phones = [f"+3460000{i:04d}" for i in range(4)]
        entries = [
            Suppression(phones[3], "real", "marketing", "stop", "test", ""),
            Suppression(phones[2], "sandbox", "all", "stop", "rehearsal", ""),
        ]
        assert j.suppress(entries) == 2 and j.suppress(entries) == 0
        assert j.apply_suppressions(run, "s", "real", transactional=False) == (1, 0)
        # a transactional step is spared a marketing-only entry: queued again
        assert j.apply_suppressions(run, "s", "real", transactional=True) == (0, 1)
        assert j.apply_suppressions(run, "s", "real", transactional=False) == (1, 0)
        cap = FrequencyCap(1, timedelta(hours=24), defer=True)
        now = datetime.now(UTC)
        # phones 0 and 1 got one each from run a; phone 2 is pending there: counted
        assert j.apply_caps(run, "s", "real", cap, now) == (3, 0)
        assert j.message_counts(run, "s") == {"deferred": 3, "suppressed": 1}
        # a rehearsal counts rehearsals only: nothing against them, released
        assert j.apply_caps(run, "s", "sandbox", cap, now) == (0, 3)
        assert j.apply_caps(run, "s", "real", cap, now) == (3, 0)
        release = j.next_cap_release(run, "s", "real", cap, now)
        assert (
            release is not None
            and now + timedelta(hours=23) < release <= now + cap.window
        )
        tomorrow = now + timedelta(hours=25)
        assert j.apply_caps(run, "s", "real", cap, tomorrow) == (0, 3)
        assert j.unsuppress([phones[3]]) == 1
        assert j.apply_suppressions(run, "s", "real", transactional=False) == (0, 1)
        assert j.message_counts(run, "s") == {"queued": 4}
        assert [s.phone for s in j.suppressions("sandbox")] == [phones[2]]
    finally:
        j.close()


def test_a_batch_hold_holds_the_rows_of_its_insert_in_its_transaction(
    where: Where,
) -> None:
    """A plan going on while its step sends holds each batch as it inserts it:
    listed numbers suppressed, numbers at their cap capped; rows of other
    batches untouched (``hold_back`` holds those)."""
    from datetime import UTC, datetime, timedelta

    from runner.journal.suppressions import BatchHold, Suppression
    from runner.model.campaign import FrequencyCap

    j = Journal(where)
    try:
        earlier = j.start_run("a", "a.yaml", {})
        j.writer.plan(planned(earlier, "s", 1))
        (row,) = j.writer.claim(earlier, "s", "main", j.worker.claimer(), 0, 1)
        at = to_ms(datetime.now(UTC))
        j.writer.record_outcome(Outcome(earlier, "s", row[1], "sent", "main", 1, at=at))
        j.writer.flush()
        rows = planned(j.start_run("b", "b.yaml", {}), "s", 6)
        listed = [rows[3].phone, rows[5].phone]
        j.suppress([Suppression(p, "real", "all", "stop", "test", "") for p in listed])
        cap = FrequencyCap(1, timedelta(hours=24))
        hold = BatchHold(
            rows[0].run_id, "s", "real", False, cap, lambda: datetime.now(UTC)
        )
        j.writer.plan(rows[:4], hold=hold)
        j.writer.plan(rows[4:])  # (the sample: held by hold_back instead)
        statuses = {m["phone"]: m["status"] for m in j.messages_for(rows[0].run_id)}
        assert [statuses[r.phone] for r in rows] == [
            "capped",
            "queued",
            "queued",
            "suppressed",
            "queued",
            "queued",
        ]
        assert (hold.suppressed, hold.capped) == (1, 1)
    finally:
        j.close()


def test_rows_left_out_are_written_with_the_plan_and_found_by_number(
    where: Where,
) -> None:
    from runner.audience.recipient import Skipped
    from runner.journal.writer import LeftOut

    j = Journal(where)
    try:
        run = j.start_run("c", "c.yaml", {})
        bad = Skipped("invalid", "c.csv", 3, 4, "12345", None, "too short")
        dup = Skipped("duplicate", "c.csv", 5, 6, "600000001", "+34600000001", "again")
        j.writer.plan(planned(run, "s", 2), left_out=[LeftOut(run, "s", bad)])
        j.writer.plan([], left_out=[LeftOut(run, "s", dup)])
        rows = j.skipped_for(run, "s")
        assert [(r["reason"], r["source_row"], r["line"]) for r in rows] == [
            ("invalid", 3, 4),
            ("duplicate", 5, 6),
        ]
        assert [r["reason"] for r in j.skipped_of("+34600000001", "x")] == ["duplicate"]
        assert [r["reason"] for r in j.skipped_of(None, "12345")] == ["invalid"]
        assert j.skipped_for(run, "s", ["invalid"])[0]["given"] == "12345"
        j.forget_skipped(run, "s")
        assert j.skipped_for(run) == []
    finally:
        j.close()


def test_a_numbers_trail_is_every_message_left_out_row_and_entry(where: Where) -> None:
    from runner.audience.recipient import Skipped
    from runner.journal.suppressions import Suppression
    from runner.journal.trail import trail_of
    from runner.journal.writer import LeftOut

    j = Journal(where)
    try:
        first = j.start_run("a", "a.yaml", {})
        j.start_step(first, "s", "send", 0)
        j.writer.plan(planned(first, "s", 1))
        j.resend(first, "s", ["queued"], "tried again")
        time.sleep(0.01)  # runs started in one millisecond would tie
        second = j.start_run("b", "b.yaml", {})
        j.start_step(second, "s", "send", 0)
        dup = Skipped("duplicate", "b.csv", 2, 3, "600000000", "+34600000000", "again")
        j.writer.plan(planned(second, "s", 1), left_out=[LeftOut(second, "s", dup)])
        j.suppress([Suppression("+34600000000", "real", "all", "manual", "by hand", "")])
        trail = trail_of(j, "+34600000000", "+34600000000")
        assert [(o.run["id"], o.kind, o.status) for o in trail.outcomes] == [
            (second, "message", "queued"),
            (second, "left out", "duplicate"),
            (first, "message", "queued"),
        ]
        assert trail.outcomes[2].message is not None
        assert [h["reason"] for h in trail.outcomes[2].message["history"]] == [
            "tried again"
        ]
        assert [s.scope for s in trail.suppressions] == ["all"]
        only_a = trail_of(j, "+34600000000", "+34600000000", "a")
        assert [o.run["id"] for o in only_a.outcomes] == [first]
        assert trail_of(j, "+34699999999", "+34699999999").empty
    finally:
        j.close()


def _migrated_with_a_run(conn: sa.Connection, migrations: int) -> None:
    """The first ``migrations`` applied, as a release that stopped there left
    them, and one running run ``r1`` to hang messages on."""
    migrations_table.create(conn)
    for name, apply in MIGRATIONS[:migrations]:
        apply(conn)
        conn.execute(migrations_table.insert().values(name=name, applied_at="x"))
    conn.exec_driver_sql(
        "INSERT INTO runs (id, campaign, campaign_path, status, started_at,"
        " options) VALUES ('r1', 'promo', 'promo.yaml', 'running', '2026-01-01',"
        " '{}')"
    )


def test_a_journal_with_texts_in_its_messages_keeps_them_exactly_once_compacted(
    where: Where,
) -> None:
    """0010 on a journal with messages: each distinct text is kept once and every
    message still reads its own, exactly; idem_key goes; a settled message's
    claim is cleared, a pending one's kept (a crash's leftovers still settle);
    the kept counts survive the rebuilt table and still follow changes."""
    engine = sa.create_engine(where.url or f"sqlite:///{where.path}")
    with engine.begin() as conn:
        _migrated_with_a_run(conn, 9)
        texts = ["Hola Ana, ¿vienes? 🎉", "Hi Bo", "Hola Ana, ¿vienes? 🎉", "x " * 200]
        for i, (text, status, claim) in enumerate(
            zip(
                texts,
                ["sent", "failed", "pending", "queued"],
                ["w:1:t#1", "w:1:t#1", "gone:2:t#1", None],
                strict=True,
            )
        ):
            phone = f"+3460000000{i}"
            conn.exec_driver_sql(
                "INSERT INTO messages (run_id, step_id, phone, seq, idem_key, provider,"
                " status, attempts, segments, text, created_at, claimed_by) VALUES"
                f" ('r1', 'blast', '{phone}', {i + 1}, 'r1/blast/{phone}', 'sms',"
                f" '{status}', 1, 1, ?, '2026-01-01', ?)".replace(
                    "?", "%s" if where.url else "?"
                ),
                (text, claim),
            )
    engine.dispose()
    j = Journal(where)
    try:
        got = j.messages_for("r1")
        assert [m["text"] for m in got] == texts
        assert [m["claimed_by"] for m in got] == [None, None, "gone:2:t#1", None]
        assert all("idem_key" not in m and "text_id" not in m for m in got)
        with j.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM texts")) == 3
        assert j.message_counts("r1") == {
            "sent": 1,
            "failed": 1,
            "pending": 1,
            "queued": 1,
        }
        assert j.settle_interrupted("r1", "blast") == 1  # its claimer is gone
        assert [r[2] for r in j.queued("r1", "blast", 0, 10)] == [texts[3]]
        # new plans find the texts already there and add only the new one
        j.writer.plan(
            [
                Planned("r1", "again", "+34600000009", 1, "sms", texts[0], 1, 1),
                Planned("r1", "again", "+34600000008", 2, "sms", "new", 1, 2),
            ]
        )
        with j.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM texts")) == 4
        rows = j.writer.claim("r1", "again", "sms", "me#1", 0, 5)
        assert [r[2] for r in rows] == [texts[0], "new"]
        assert j.message_counts("r1") == {
            "sent": 1,
            "failed": 1,
            "unknown": 1,
            "queued": 1,
            "pending": 2,
        }
    finally:
        j.close()


def test_message_times_become_milliseconds_and_read_back_as_they_were(
    where: Where,
) -> None:
    """0011 on a journal with messages: every time (ISO text in any of the forms
    earlier releases wrote) is kept as integer milliseconds, read back as ISO
    text in UTC; the key is the plan's order (two rows of a step sharing a seq
    are numbered again in their order), the number's index is the unique one,
    and a query by time still compares times."""
    engine = sa.create_engine(where.url or f"sqlite:///{where.path}")
    q = "%s" if where.url else "?"
    with engine.begin() as conn:
        _migrated_with_a_run(conn, 10)
        conn.exec_driver_sql("INSERT INTO texts (digest, text) VALUES ('d', 'hi')")
        times = [
            ("2026-03-01T10:00:00.123+00:00", "2026-03-01T10:00:01.5+01:00", None),
            ("2026-03-01", None, "2026-03-02T08:00:00.250+00:00"),
            ("2026-03-01T10:00:00.123456", "2026-03-01T09:00:00.999+00:00", None),
        ]
        for i, (created, sent, delivered) in enumerate(times):
            conn.exec_driver_sql(
                "INSERT INTO messages (run_id, step_id, phone, seq, provider, status,"
                " attempts, segments, text_id, created_at, sent_at, delivery_at)"
                f" VALUES ('r1', 'blast', '+3460000000{i}', {min(i, 1) + 1}, 'sms',"
                " 'sent',"
                f" 1, 1, 1, {q}, {q}, {q})",
                (created, sent, delivered),
            )
        conn.exec_driver_sql(
            "INSERT INTO message_history (run_id, step_id, phone, at, reason, status,"
            " sent_at) VALUES ('r1', 'blast', '+34600000000', '2026-03-01', 'again',"
            f" 'failed', {q})",
            ("2026-02-28T23:59:59.001+00:00",),
        )
    engine.dispose()
    j = Journal(where)
    try:
        got = {m["phone"]: m for m in j.messages_for("r1")}
        assert [
            (m["created_at"], m["sent_at"], m["delivery_at"])
            for _, m in sorted(got.items())
        ] == [
            ("2026-03-01T10:00:00.123+00:00", "2026-03-01T09:00:01.500+00:00", None),
            ("2026-03-01T00:00:00.000+00:00", None, "2026-03-02T08:00:00.250+00:00"),
            ("2026-03-01T10:00:00.123+00:00", "2026-03-01T09:00:00.999+00:00", None),
        ]
        assert [h["sent_at"] for h in j.history_of("r1", "blast", "+34600000000")] == [
            "2026-02-28T23:59:59.001+00:00"
        ]
        with j.connect() as conn:
            raw = conn.exec_driver_sql(
                "SELECT sent_at FROM messages WHERE phone = '+34600000000'"
            ).scalar()
            assert raw == 1772355601500  # milliseconds, not text
            key = sa.inspect(conn).get_pk_constraint("messages")["constrained_columns"]
            assert key == ["run_id", "step_id", "seq"]
            indexes = {i["name"]: i for i in sa.inspect(conn).get_indexes("messages")}
            assert "ix_messages_phone" not in indexes
            assert "ix_messages_seq" not in indexes
            assert indexes["ux_messages_phone"]["unique"]
            seqs = conn.exec_driver_sql(
                "SELECT phone, seq FROM messages ORDER BY phone"
            ).all()
            assert [tuple(r) for r in seqs] == [
                ("+34600000000", 1),
                ("+34600000001", 2),
                ("+34600000002", 3),
            ]
        # a time compared in a query is compared as a time: the later of the two
        # sent messages, by its ISO text in another offset
        with j.connect() as conn:
            from runner.journal.tables import messages

            later = conn.scalars(
                sa.select(messages.c.phone).where(
                    messages.c.sent_at > "2026-03-01T10:00:01.000+01:00"
                )
            ).all()
        assert later == ["+34600000000"]
        assert j.message_counts("r1") == {"sent": 3}
    finally:
        j.close()


def test_sqlite_reads_a_claim_and_a_number_by_their_indexes(tmp_path: Path) -> None:
    """Told the table's shape (a step has many messages, a number few), SQLite
    plans a claim through the queued rows and a batch's outcomes through the
    number, not a scan of the step by its key."""
    from runner.journal.writer import _CLAIM, _UPDATE_OUTCOME

    j = Journal(Where(path=tmp_path / "j.db"))
    try:
        with j.connect() as conn:

            def plan(sql: str, n: int) -> str:
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, (1,) * n)
                return " | ".join(str(r[-1]) for r in rows)

            claim = plan(_CLAIM, 10)
            assert "ix_messages_queued (run_id=? AND step_id=? AND seq>?)" in claim
            outcome = plan(_UPDATE_OUTCOME, 13)
            assert "ux_messages_phone (phone=? AND run_id=? AND step_id=?)" in outcome
            q = sa.select(sa.column("status")).select_from(sa.table("messages"))
            numbers = plan(
                str(q) + " WHERE run_id = ? AND step_id = ? AND phone IN (?, ?)", 4
            )
            assert "ux_messages_phone" in numbers
    finally:
        j.close()
