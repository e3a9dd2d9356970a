"""Dispatching a send step's planned messages exactly once.

Plan: stream recipients, render, and record each message ``queued`` (nothing is
called yet). Dispatch: claim a small batch (``pending``, committed: the intent),
then hand each message to a bounded worker pool that calls the provider through
its rate limiter, retries only what certainly did not reach the provider, and
records the outcome. A message that was never called goes back to ``queued``, so
a resume, a failover or a window pause simply picks up the queued rows.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from runner.audience.encoding import needs_ucs2
from runner.engine.backoff import Breaker, backoff
from runner.engine.calls import Call
from runner.engine.holds import ClaimGuard
from runner.engine.pins import PinKeeper
from runner.engine.ratelimit import Limiter
from runner.engine.sharing import Gate
from runner.engine.tally import Tally
from runner.journal.eventlog import EventLog
from runner.journal.instants import now_ms
from runner.journal.journal import Journal
from runner.journal.writer import Outcome
from runner.model.campaign import RetryPolicy
from runner.providers.base import CallError, ErrorKind, OutboundMessage, Provider

WAIT_FOR_PLAN = 0.05  # seconds: nothing to claim yet, the plan is still going on


class Claim(NamedTuple):
    rows: Callable[[], list[tuple[Any, ...]]]  # waits for the claim's commit
    over: bool  # the plan was over before it: no rows means nothing left


@dataclass
class DispatchResult:
    tally: Tally
    provider_down: CallError | None = None  # the provider failed as a whole
    stopped: bool = False  # interrupted (Ctrl-C / SIGTERM) or the window closed


class Dispatcher:
    """Sends a step's queued messages through one provider."""

    def __init__(
        self,
        *,
        journal: Journal,
        log: EventLog,
        run_id: str,
        step_id: str,
        provider_name: str,
        provider: Provider,
        limiter: Limiter,
        policy: RetryPolicy,
        sender: str | None,
        stop: threading.Event,
        claimer: str,
        keep_going: Callable[[], bool] = lambda: True,
        tally: Tally | None = None,
        gate: Gate | None = None,
        probe: bool = True,
        call: Call | None = None,
        pins: PinKeeper | None = None,
        one_by_one: bool = False,
        guard: ClaimGuard | None = None,
        planned: threading.Event | None = None,
    ) -> None:
        self.journal = journal
        self.log = log
        self.run_id = run_id
        self.step_id = step_id
        self.name = provider_name
        self.provider = provider
        self.limiter = limiter
        self.policy = policy
        self.sender = sender
        self.stop = stop
        self.keep_going = keep_going  # False when a sending window closes
        self.tally = tally or Tally()
        self.claimer = claimer  # the name this send's claims carry
        self.gate = gate  # this process's part of a shared concurrency
        self.probe = probe  # the first call alone (not for a helper joining)
        self.call = call or provider.send  # a send, a PIN request or a fired MO
        self.pins = pins  # a PIN step's: the hashes, the export file
        # each message's intent committed on its own, just before its call: after
        # a crash only the calls under way are unknown, not a whole claimed batch
        # (a PIN step: a second PIN would void the first)
        self.one_by_one = one_by_one
        self.guard = guard  # the frequency cap, checked again on each claim
        # set once the plan is over, when it goes on while this sends (``Ahead``):
        # until then, nothing left to claim means "not yet", not "done"
        self.planned = planned
        self.breaker = Breaker()
        self.down: CallError | None = None
        self._halt = threading.Event()  # provider down, stop, or window closed

    def run(self) -> DispatchResult:
        workers = self.provider.concurrency
        slots = threading.BoundedSemaphore(workers * 2)
        writer = self.journal.writer
        last_seq = 0

        status = "reserved" if self.one_by_one else "pending"

        def claim(after: int, n: int) -> Claim:
            # whether the plan was over before this claim went to the writer,
            # which commits in order: then an empty claim means the end
            over = self.planned is None or self.planned.is_set()
            rows = writer.claim_ahead(
                self.run_id, self.step_id, self.name, self.claimer, after, n, status
            )
            return Claim(rows, over)

        # The first call goes alone: refused credentials then cost one call, not
        # one per worker, and the step stops after that first answer. (A
        # helper joining a step another process started skips it.)
        if self.probe and not self._halted():
            first = claim(0, 1).rows()
            if first:
                last_seq = first[0][0]
                first = self._guarded(first)
            if first:
                slots.acquire()
                self._send_one(first[0], slots)
        # Long-lived workers fed through a queue: no thread, future or connection
        # per message (the pool's connections are reused by whichever worker).
        work: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        threads = [
            threading.Thread(
                target=self._work, args=(work, slots), name=f"send-{self.name}-{i}"
            )
            for i in range(workers)
        ]
        for t in threads:
            t.start()
        ahead: Claim | None = None
        try:
            while not self._halted():
                # claim what can be called now: a claim is a promise to call soon
                n = workers if self.gate is None else min(workers, self.gate.size)
                if n == 0:  # no part of the concurrency yet (a newcomer)
                    self.stop.wait(0.2)
                    continue
                got = ahead if ahead is not None else claim(last_seq, n)
                ahead = None
                rows = got.rows()
                if not rows:
                    if got.over:
                        break
                    self.planned.wait(WAIT_FOR_PLAN)  # type: ignore[union-attr]
                    continue
                last_seq = rows[-1][0]
                # the next batch is claimed while this one is called
                ahead = claim(last_seq, n)
                rows = self._guarded(rows)
                for i, row in enumerate(rows):
                    while not slots.acquire(timeout=0.2):
                        if self._halted():
                            break
                    else:
                        work.put(row)
                        continue
                    # halted while waiting for a slot: the rest were never called
                    for r in rows[i:]:
                        self._record(r[1], "queued", 0, None, None)
                    break
        finally:
            if ahead is not None:  # claimed ahead, never called: back to queued
                for r in ahead.rows():
                    self._record(r[1], "queued", 0, None, None)
            for _ in threads:
                work.put(None)
            for t in threads:
                t.join()
        writer.flush()
        stopped = self.stop.is_set() or not self.keep_going()
        return DispatchResult(self.tally, self.down, stopped)

    def _guarded(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The claimed rows the frequency cap still allows; the others held."""
        if self.guard is None or not rows:
            return rows
        held = self.guard([r[1] for r in rows])
        if not held:
            return rows
        for phone in held:
            self.journal.writer.record_outcome(
                Outcome(
                    run_id=self.run_id,
                    step_id=self.step_id,
                    phone=phone,
                    status=self.guard.status,
                    provider=self.name,
                    attempts=0,
                    error_kind=self.guard.status,
                    error_detail=self.guard.why,
                )
            )
        self.tally.add(held=len(held))
        self.log.emit(
            "step.held",
            self.run_id,
            self.step_id,
            at="claim",
            **{self.guard.status: len(held)},
            cap=str(self.guard.cap),
        )
        return [r for r in rows if r[1] not in held]

    def _halted(self) -> bool:
        if self.stop.is_set() or self.down is not None or not self.keep_going():
            self._halt.set()
        return self._halt.is_set()

    def _work(
        self,
        work: queue.SimpleQueue[tuple[Any, ...] | None],
        slots: threading.BoundedSemaphore,
    ) -> None:
        while (row := work.get()) is not None:
            self._send_one(row, slots)

    def _send_one(self, row: tuple[Any, ...], slots: threading.BoundedSemaphore) -> None:
        gate = self.gate
        try:
            if gate is not None and not gate.acquire(self._halted):
                self._record(row[1], "queued", 0, None, None)
                return
            try:
                self._attempt(row)
            finally:
                if gate is not None:
                    gate.release()
        except Exception as e:  # a bug must not leave the row pending silently
            self._record(
                row[1],
                "unknown",
                0,
                None,
                CallError(
                    ErrorKind.PROTOCOL, "internal", type(e).__name__, may_have_acted=True
                ),
            )
        finally:
            slots.release()

    def _attempt(self, row: tuple[Any, ...]) -> None:
        _seq, phone, text, segments, _src = row
        msg = OutboundMessage(
            to=phone,
            text=text,
            key=f"{self.run_id}/{self.step_id}/{phone}",
            sender=self.sender,
            segments=segments,
            unicode=needs_ucs2(text) if segments else False,
        )
        started = time.monotonic()
        attempts = 0
        while True:
            # _halted(), not the flag alone: the feeding loop may have ended, and a
            # pause or a closing window must still stop calls not yet started
            if self._halted() or not self.limiter.acquire(self.stop) or self._halted():
                self._record(phone, "queued", attempts, None, None)
                return
            if self.one_by_one and attempts == 0:
                self.journal.writer.calling(self.run_id, self.step_id, phone)
            attempts += 1
            result = self.call(msg)
            err = result.error
            if err is None:
                self.breaker.success()
                self.tally.add(sent=1, segments=segments)
                self._record(phone, "sent", attempts, result, None)
                return
            if err.kind == ErrorKind.AUTH:
                self._provider_down(err)
                self._record(phone, "queued", attempts, result, err)
                return
            if err.retryable:
                pause, is_down = self.breaker.failure()
                if pause:
                    self.limiter.pause(pause)
                    self.log.emit(
                        "provider.paused",
                        self.run_id,
                        self.step_id,
                        provider=self.name,
                        seconds=pause,
                        reason=str(err),
                    )
                if is_down:
                    self._provider_down(err)
                    self._record(phone, "queued", attempts, result, err)
                    return
                if err.kind == ErrorKind.RATE_LIMITED and err.retry_after:
                    self.limiter.pause(err.retry_after)
                delay = backoff(attempts, self.policy, err.retry_after)
                elapsed = time.monotonic() - started
                if (
                    attempts < self.policy.attempts
                    and elapsed + delay <= self.policy.max_total
                ):
                    self.tally.add(retries=1)
                    self.log.emit(
                        "message.retry",
                        self.run_id,
                        self.step_id,
                        to=self.log.phone(phone),
                        provider=self.name,
                        attempt=attempts,
                        delay=round(delay, 3),
                        reason=err.kind.value,
                        code=err.code,
                    )
                    if self.stop.wait(delay):
                        self._record(phone, "queued", attempts, result, err)
                        return
                    continue
                self._fail(phone, attempts, result, err, exhausted=True)
                return
            if err.may_have_acted:
                self.tally.add(unknown=1)
                self._record(phone, "unknown", attempts, result, err)
                return
            self._fail(phone, attempts, result, err)
            return

    def _fail(
        self,
        phone: str,
        attempts: int,
        result: Any,
        err: CallError,
        exhausted: bool = False,
    ) -> None:
        reason = f"{err.kind.value}:{err.code}"
        self.tally.fail(reason)
        detail = (
            f"gave up after {attempts} attempts: {err.detail}"
            if exhausted
            else err.detail
        )
        self._record(
            phone, "failed", attempts, result, CallError(err.kind, err.code, detail)
        )

    def _provider_down(self, err: CallError) -> None:
        with self.tally.lock:
            first = self.down is None
            if first:
                self.down = err
        self._halt.set()
        if first:
            self.log.emit(
                "provider.down",
                self.run_id,
                self.step_id,
                provider=self.name,
                reason=err.kind.value,
                code=err.code,
                detail=err.detail,
            )

    def _record(
        self, phone: str, status: str, attempts: int, result: Any, err: CallError | None
    ) -> None:
        if status == "queued":
            self.tally.add(requeued=1)
        digest = None
        secret = getattr(result, "secret", None)
        if status == "sent" and secret and self.pins is not None:
            where = f"{self.run_id}/{self.step_id}/{phone}"
            digest = self.pins.keep(where, phone, secret)
        self.journal.writer.record_outcome(
            Outcome(
                run_id=self.run_id,
                step_id=self.step_id,
                phone=phone,
                status=status,
                provider=self.name,
                attempts=attempts,
                message_id=getattr(result, "message_id", None),
                provider_status=getattr(result, "status", None) or None,
                error_kind=err.kind.value if err else None,
                error_code=err.code if err else None,
                error_detail=err.detail if err else None,
                at=now_ms() if status == "sent" else None,
                secret_digest=digest,
            )
        )
        if status == "sent":
            self.log.emit(
                "message.sent",
                self.run_id,
                self.step_id,
                to=self.log.phone(phone),
                provider=self.name,
                message_id=result.message_id,
                status=result.status,
                attempts=attempts,
            )
        elif status in ("failed", "unknown") and err is not None:
            self.log.emit(
                f"message.{status}",
                self.run_id,
                self.step_id,
                to=self.log.phone(phone),
                provider=self.name,
                reason=err.kind.value,
                code=err.code,
                detail=err.detail,
                attempts=attempts,
            )
