"""The journal's tables as they are after every migration (``migrations.py``), as
SQLAlchemy Core metadata for the queries; a test checks the two agree."""

from __future__ import annotations

import sqlalchemy as sa

from runner.journal.instants import Instant

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
    # running | paused | succeeded | failed | unsettled | interrupted | cancelled
    sa.Column("status", sa.String, nullable=False),
    sa.Column("started_at", sa.String, nullable=False),
    sa.Column("finished_at", sa.String),
    sa.Column("exit_code", sa.Integer),
    sa.Column("options", sa.Text, nullable=False, default="{}"),
    sa.Column("mode", sa.String, nullable=False, default="real"),  # real | sandbox
    sa.Column("sandbox", sa.String),  # a rehearsal: where its emulators were
    # what the messages were rendered from: a digest per template, recipients, vars
    sa.Column("fingerprint", sa.Text),
    # what someone asked of the run from any terminal: paused | cancelled | NULL
    sa.Column("control", sa.String),
    sa.Column("control_by", sa.String),  # who asked: user@host (pid), or http client
    sa.Column("control_at", sa.String),
    # which sending of the campaign this run is: ``once`` for a one-off, the fire
    # time of a cron period, a label (``run --occurrence``); NULL before 0003
    sa.Column("occurrence", sa.String),
)
# one real run per occurrence: two processes racing to start the same sending
# cannot both insert it (rehearsals and tests are repeated freely)
sa.Index(
    "ux_runs_occurrence",
    runs.c.campaign,
    runs.c.occurrence,
    unique=True,
    sqlite_where=runs.c.mode == "real",
    postgresql_where=runs.c.mode == "real",
)

# The daemons on this journal, each renewing its row while it lives (``status``).
daemons = sa.Table(
    "daemons",
    metadata,
    sa.Column("id", sa.String, primary_key=True),  # host:pid:start
    sa.Column("host", sa.String, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("role", sa.String, nullable=False),  # leader | standby
    sa.Column("started_at", sa.String, nullable=False),
    sa.Column("heartbeat_at", sa.String, nullable=False),
    sa.Column("active_runs", sa.Integer, nullable=False),
)

# Who is sending a campaign now: one row per campaign, taken before a process
# decides what to send and renewed while it runs; a dead owner's row expires
# (at once when it was a process of this host that no longer exists).
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("campaign", sa.String, primary_key=True),
    sa.Column("run_id", sa.String),
    sa.Column("owner", sa.String, nullable=False),  # run | retry | daemon
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("host", sa.String, nullable=False),
    sa.Column("since", sa.String, nullable=False),
    sa.Column("expires_at", sa.String, nullable=False),
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
    sa.Column("position", sa.Integer),  # the step's place in the campaign
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("step_id", sa.String, nullable=False),
    sa.Column("phone", sa.String, nullable=False),  # E.164
    sa.Column("seq", sa.Integer, nullable=False),  # the recipient's order in the plan
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
    sa.Column("text_id", sa.Integer, nullable=False),  # texts.id: the exact text
    sa.Column("source_row", sa.Integer),
    sa.Column("created_at", Instant, nullable=False),
    sa.Column("sent_at", Instant),
    sa.Column("delivery_status", sa.String),
    sa.Column("delivery_code", sa.String),
    sa.Column("delivery_at", Instant),
    # the process (and which of its sends) whose intent a pending row is: when
    # that process is gone, the row's outcome is unknown; cleared with the outcome
    sa.Column("claimed_by", sa.String),
    # the recipient's IANA zone, for a sending window on their own clock
    sa.Column("zone", sa.String),
    sa.Column("secret_digest", sa.String),  # a PIN step's keyed hash of the PIN
    # which of the template's variants the text is (``by: lang``); NULL without
    sa.Column("variant", sa.String),
    # the rows in the plan's order (claims, a step's pages), on SQLite as the
    # table itself (no rowid, no second copy of the key in an index of its own)
    sa.PrimaryKeyConstraint("run_id", "step_id", "seq"),
    sqlite_with_rowid=False,
)
# one message a number, run and step; led by the number, so it is also how a
# number's messages across campaigns are found (frequency caps, ``why``, a
# report's lines, the outcomes of a batch on PostgreSQL)
sa.Index(
    "ux_messages_phone",
    messages.c.phone,
    messages.c.run_id,
    messages.c.step_id,
    unique=True,
)
# Each distinct text once: a campaign's messages share few texts (a template's
# variants, a field with few values), so a message holds the number of its text.
# Found by its digest (blake2b-128, hex) when a plan writes it.
texts = sa.Table(
    "texts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String, nullable=False, unique=True),
    sa.Column("text", sa.Text, nullable=False),
)
# a message's columns as the readers want them: its text in place of text_id
messages_with_text = messages.join(texts, texts.c.id == messages.c.text_id)
MESSAGE_COLUMNS = (*(c for c in messages.c if c.name != "text_id"), texts.c.text)

# what is left to claim, found without reading what was sent
sa.Index(
    "ix_messages_queued",
    messages.c.run_id,
    messages.c.step_id,
    messages.c.seq,
    sqlite_where=messages.c.status == "queued",
    postgresql_where=messages.c.status == "queued",
)

# The processes that send, each renewing its row while it lives: a pending
# message's claim lasts as long as its claimer's row.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String, primary_key=True),  # host:pid:start
    sa.Column("host", sa.String, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.String, nullable=False),
    sa.Column("expires_at", sa.String, nullable=False),
)

# Who sends a step's messages through a provider now: the run's own process
# (driver) and the daemons helping it; each takes its part of the provider's
# concurrency, renewing its row.
shares = sa.Table(
    "shares",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("step_id", sa.String, primary_key=True),
    sa.Column("provider", sa.String, primary_key=True),
    sa.Column("claimer", sa.String, primary_key=True),  # worker#n
    sa.Column("worker", sa.String, nullable=False),
    sa.Column("role", sa.String, nullable=False),  # driver | helper
    sa.Column("campaign", sa.String, nullable=False),
    sa.Column("joined_at", sa.String, nullable=False),
    sa.Column("expires_at", sa.String, nullable=False),
    sa.Column("in_flight", sa.Integer, nullable=False),
)

# A provider's rate shared by every process sending through it: the time of its
# next free slot, reserved a block of slots at a time.
rate_slots = sa.Table(
    "rate_slots",
    metadata,
    sa.Column("key", sa.String, primary_key=True),  # run/provider
    sa.Column("next_at", sa.Float, nullable=False),  # seconds since the epoch
)

# A message's earlier outcome, kept when it is sent again (a retry, a resend of
# an unknown outcome, a reconciliation that found it never sent).
message_history = sa.Table(
    "message_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("step_id", sa.String, nullable=False),
    sa.Column("phone", sa.String, nullable=False),
    sa.Column("at", sa.String, nullable=False),  # when it was superseded
    sa.Column("reason", sa.String, nullable=False),  # why it is sent again
    sa.Column("status", sa.String, nullable=False),
    sa.Column("provider", sa.String),
    sa.Column("attempts", sa.Integer),
    sa.Column("provider_message_id", sa.String),
    sa.Column("error_kind", sa.String),
    sa.Column("error_code", sa.String),
    sa.Column("error_detail", sa.String),
    sa.Column("sent_at", Instant),
)
sa.Index(
    "ix_message_history_message",
    message_history.c.run_id,
    message_history.c.step_id,
    message_history.c.phone,
)

# A message not sent by choice: cancelled by a person, or skipped because its
# number is on the suppression list or over its frequency cap. Never counted in
# a step's total (the ratios of max_failed and reports are over what was meant
# to go). ``deferred`` is different: over its cap now, sent when the cap allows.
NOT_SENT_BY_CHOICE = ("cancelled", "suppressed", "capped")
# every status a message row can have; those still to settle
MESSAGE_STATUSES = (
    "queued",
    "reserved",  # claimed by a PIN step's send, not called yet
    "pending",
    "deferred",
    "sent",
    "failed",
    "unknown",
    *NOT_SENT_BY_CHOICE,
)
UNSETTLED = ("queued", "reserved", "pending", "deferred")
# what did not go as planned, read by cause (show, a step's verdict): indexed
# apart, so reading them at ten million messages does not read the sent ones
OUTCOME_STATUSES = ("failed", "unknown", "deferred", *NOT_SENT_BY_CHOICE)
sa.Index(
    "ix_messages_outcomes",
    messages.c.run_id,
    messages.c.step_id,
    messages.c.status,
    sqlite_where=messages.c.status.in_(OUTCOME_STATUSES),
    postgresql_where=messages.c.status.in_(OUTCOME_STATUSES),
)

# Message counts by run, step, provider and status, kept by triggers as
# messages change (runner.journal.tallies)
message_tallies = sa.Table(
    "message_tallies",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("step_id", sa.String, primary_key=True),
    sa.Column("provider", sa.String, primary_key=True),
    sa.Column("status", sa.String, primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Column("retries", sa.BigInteger, nullable=False),  # attempts beyond the first
)


# Numbers no campaign may send to (a STOP reply, a provider's opt-out refusal, a
# hand-made entry): ``scope`` marketing spares transactional campaigns (a PIN
# the person asked for), all spares nothing. ``mode`` keeps a rehearsal's STOPs
# (from the sandbox) out of real sending; a real entry holds in rehearsals too.
suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("phone", sa.String, primary_key=True),  # E.164
    sa.Column("mode", sa.String, primary_key=True),  # real | sandbox
    sa.Column("scope", sa.String, nullable=False),  # marketing | all
    sa.Column("reason", sa.String, nullable=False),  # stop | optout | manual
    sa.Column("source", sa.String, nullable=False),  # where it came from, in words
    sa.Column("added_at", sa.String, nullable=False),
)

callbacks = sa.Table(
    "callbacks",
    metadata,
    sa.Column("token_hash", sa.String, primary_key=True),  # sha256 of the URL token
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("step_id", sa.String, nullable=False),
    sa.Column("issued_at", sa.String, nullable=False),
    sa.Column("received_at", sa.String),
    sa.Column("size", sa.Integer),  # the callback's body, in bytes
)
# A recipient row a send step's plan left out, and why: ``invalid`` (no number
# to send to: ``given`` is what the row had), ``duplicate`` (an earlier row has
# the number), ``excluded`` (an opt-out file lists it), ``filtered_out`` (the
# recipients' ``where``, or a follow-up's ``from`` condition, said no). Written
# with the plan's batches, so "why didn't X get it?" has an answer (``why``).
SKIPPED_REASONS = ("invalid", "duplicate", "excluded", "filtered_out")

skipped_rows = sa.Table(
    "skipped_rows",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("step_id", sa.String),  # NULL: not one step's (none yet)
    sa.Column("source", sa.String, nullable=False),  # the file, or "inline"
    sa.Column("source_row", sa.Integer),  # 1-based data row
    sa.Column("line", sa.Integer),  # the file line (0 or NULL inline)
    sa.Column("given", sa.String),  # the phone as the row gave it
    sa.Column("phone", sa.String),  # E.164, when it could be read
    sa.Column("reason", sa.String, nullable=False),  # one of SKIPPED_REASONS
    sa.Column("detail", sa.String),  # in words: the parse error, the file, ...
    sa.Column("created_at", sa.String, nullable=False),
)
sa.Index("ix_skipped_rows_step", skipped_rows.c.run_id, skipped_rows.c.step_id)
sa.Index("ix_skipped_rows_phone", skipped_rows.c.phone)
