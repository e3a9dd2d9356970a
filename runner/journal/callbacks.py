"""Report callbacks: single-use URL tokens a provider calls when a report is done.

A ``check_report`` step with ``callback: true`` gives its provider a webhook URL
holding an unguessable token; whichever daemon of the journal receives the call
marks it here, and the step, waiting between polls, reads its report at once.
Only a hash of each token is stored, so a copy of the journal cannot forge one.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from runner.journal.store import Store, now_iso
from runner.journal.tables import callbacks


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class CallbackRecords(Store):
    def issue_callback(self, token: str, run_id: str, step_id: str) -> None:
        with self.connect() as conn:
            conn.execute(
                callbacks.insert().values(
                    token_hash=token_hash(token),
                    run_id=run_id,
                    step_id=step_id,
                    issued_at=now_iso(),
                )
            )

    def receive_callback(self, token: str, size: int) -> tuple[str, str] | None:
        """Mark the token's callback received, once: its (run id, step id), or
        None for a token never issued or already used (nothing is recorded)."""
        digest = token_hash(token)
        with self.connect() as conn:
            done = conn.execute(
                callbacks.update()
                .where(
                    callbacks.c.token_hash == digest, callbacks.c.received_at.is_(None)
                )
                .values(received_at=now_iso(), size=size)
            )
            if done.rowcount != 1:
                return None
            row = conn.execute(
                sa.select(callbacks.c.run_id, callbacks.c.step_id).where(
                    callbacks.c.token_hash == digest
                )
            ).first()
        return (str(row[0]), str(row[1])) if row else None

    def callback_received(self, token: str) -> bool:
        with self.connect() as conn:
            return (
                conn.scalar(
                    sa.select(callbacks.c.received_at).where(
                        callbacks.c.token_hash == token_hash(token)
                    )
                )
                is not None
            )
