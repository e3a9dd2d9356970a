"""The engine: carry out a validated campaign step by step and record every outcome.

``run_campaign`` is the one entry point shared by ``run`` and the daemon. It
knows providers only through their capabilities (runner.providers.base) and
timing only through runner.engine.scheduler.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from runner.audience.fingerprint import changes, fingerprint
from runner.engine.conditions import condition
from runner.engine.context import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNSETTLED,
    RunContext,
    RunOptions,
    RunResult,
    StepResult,
)
from runner.engine.control import RunControl
from runner.engine.occurrence import current
from runner.engine.ratelimit import Limiter, RateLimiter
from runner.engine.scheduler import StepScheduler, start_time
from runner.engine.sharing import SharedRate, rate_key
from runner.engine.steps import EXECUTORS
from runner.errors import RunnerError, UsageError, write_crash_log
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.journal.leases import Lease
from runner.model.campaign import Campaign, Step
from runner.providers.base import Provider


class CampaignRun:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.scheduler = StepScheduler()
        self.done = threading.Event()
        self.exit_code = EXIT_OK
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------

    def start(self, first: int, prev_end: datetime) -> None:
        self.scheduler.start()
        self._schedule(first, prev_end)

    def wait(self) -> int:
        try:
            while not self.done.wait(0.2):
                if self.ctx.stop.is_set() and not self._busy():
                    self._finish(EXIT_INTERRUPTED, "interrupted")
                elif self._cancelled() and not self._busy():
                    self.scheduler.cancel_all()  # the steps still to come
                    self._cancel()
        except KeyboardInterrupt:  # a second Ctrl-C: leave now, do not wait for calls
            self.ctx.stop.set()
            self.scheduler.shutdown(wait=False)
            raise
        self.scheduler.shutdown(wait=True)
        return self.exit_code

    def _busy(self) -> bool:
        with self._lock:
            return self._running

    _running = False
    _cancelling = False

    def _cancelled(self) -> bool:
        control = self.ctx.control
        return control is not None and control.cancelled()

    def _cancel(self) -> None:
        """End the run cancelled: every message still queued becomes ``cancelled``.

        Once: the step that saw the cancel and the waiting loop may both get here.
        """
        with self._lock:
            if self.done.is_set() or self._cancelling:
                return
            self._cancelling = True
        ctx = self.ctx
        by = ctx.control.state.by if ctx.control is not None else None
        ctx.journal.cancel(ctx.run_id, None, None, f"cancelled by {by or 'someone'}")
        n = ctx.journal.message_counts(ctx.run_id).get("cancelled", 0)
        ctx.log.emit("run.cancelled", ctx.run_id, by=by, cancelled=n)
        self._finish(EXIT_CANCELLED, "cancelled")

    def _finish(self, code: int, status: str) -> None:
        with self._lock:
            if self.done.is_set():
                return
            self.exit_code = code
            self.ctx.journal.finish_run(self.ctx.run_id, status, code)
            self.ctx.log.emit(
                "run.finished", self.ctx.run_id, status=status, exit_code=code
            )
            self.done.set()

    # -- steps ---------------------------------------------------------------------

    def _schedule(self, index: int, prev_end: datetime) -> None:
        steps = self.ctx.campaign.steps
        only = self.ctx.options.only_steps
        while only is not None and index < len(steps) and steps[index].id not in only:
            index += 1  # a retry: the other steps keep what they came to
        if index >= len(steps):
            self._finish(*outcome(self.ctx.results.values()))
            return
        step = steps[index]
        now = self.ctx.clock()
        when = start_time(
            step,
            prev_end=prev_end,
            now=now,
            tz=self.ctx.campaign.timezone,
            ignore_timing=self.ctx.options.now,
            ignore_windows=self.ctx.options.ignore_windows,
        )
        if when > now:
            self.ctx.log.emit(
                "step.scheduled", self.ctx.run_id, step.id, at=when.isoformat()
            )
        self._at(when, index)

    def _at(self, when: datetime, index: int) -> None:
        """Run step ``index`` at campaign time ``when``.

        The delay is measured on the run's clock and handed to APScheduler as real
        time, so an injected clock (tests, rehearsals) and the scheduler agree.
        """
        delay = when - self.ctx.clock()
        real = datetime.now(UTC) + max(delay, timedelta(0))
        step = self.ctx.campaign.steps[index]
        self.scheduler.at(real, self._run_step, index, job_id=f"step:{step.id}")

    def _run_step(self, index: int) -> None:
        ctx = self.ctx
        step = ctx.campaign.steps[index]
        with self._lock:
            self._running = True
        try:
            if ctx.control is not None:
                ctx.control.wait_while_paused(ctx.stop)  # nothing starts while paused
            if ctx.stop.is_set() or self._cancelled():
                return  # wait() ends the run: interrupted or cancelled
            result = self._execute(step)
        except RunnerError as e:  # bad input met at run time: one line, step failed
            result = StepResult("failed", str(e))
        except Exception as e:  # one step's bug must end the run cleanly
            path = write_crash_log()
            result = StepResult(
                "failed", f"internal error: {type(e).__name__}; details in {path}"
            )
        finally:
            with self._lock:
                self._running = False
        ctx.results[step.id] = result
        if (
            result.status == "paused"
            and result.resume_at is not None
            and not ctx.stop.is_set()
        ):
            ctx.log.emit(
                "step.paused",
                ctx.run_id,
                step.id,
                until=result.resume_at.isoformat(),
                reason=result.message,
            )
            self._at(result.resume_at, index)
            return
        if ctx.stop.is_set() and result.status in ("paused", "interrupted"):
            ctx.journal.finish_step(
                ctx.run_id, step.id, "interrupted", result.detail, step.kind, index
            )
            ctx.log.emit(
                "step.finished",
                ctx.run_id,
                step.id,
                status="interrupted",
                **result.detail,
            )
            self._finish(EXIT_INTERRUPTED, "interrupted")
            return
        ctx.journal.finish_step(
            ctx.run_id,
            step.id,
            result.status,
            {**result.detail, "message": result.message},
            step.kind,
            index,
        )
        ctx.log.emit(
            "step.finished",
            ctx.run_id,
            step.id,
            status=result.status,
            message=result.message,
            **result.detail,
        )
        if result.status == "cancelled":
            self._cancel()
            return
        if result.status == "failed" and step.on_failure == "abort":
            self._finish(EXIT_FAILED, "failed")
            return
        self._schedule(index + 1, ctx.clock())

    def _execute(self, step: Step) -> StepResult:
        ctx = self.ctx
        if step.when is not None and not condition(ctx, step.when):
            return StepResult("skipped", f"when: {step.when!r} is false")
        position = ctx.campaign.steps.index(step)
        ctx.journal.start_step(ctx.run_id, step.id, step.kind, position)
        ctx.log.emit("step.started", ctx.run_id, step.id, kind=step.kind)
        return EXECUTORS[step.kind](ctx, step)


def outcome(results: Iterable[StepResult]) -> tuple[int, str]:
    """A run's exit code and status from its steps' results: failed over
    unsettled over succeeded."""
    statuses = {r.status for r in results}
    if "failed" in statuses:
        return EXIT_FAILED, "failed"
    if "unsettled" in statuses:
        return EXIT_UNSETTLED, "unsettled"
    return EXIT_OK, "succeeded"


def build_limiters(
    providers: Mapping[str, Provider], journal: Journal, run_id: str
) -> dict[str, Limiter]:
    """Each provider's rate: in this process, or on a journal other processes
    share, one the daemons helping this run reserve their slots from too."""
    limiters: dict[str, Limiter] = {}
    for name, p in providers.items():
        rate = p.config.rate or type(p).default_rate
        if rate is not None and journal.shared:
            limiters[name] = SharedRate(journal, rate_key(run_id, name), rate)
        else:
            limiters[name] = RateLimiter(rate)
    return limiters


def check_mode(journal: Journal, run_id: str, sandbox: bool) -> None:
    """A rehearsal is never continued for real, nor a real run on the emulators."""
    run = journal.get_run(run_id) or {}
    if run.get("mode") == "test":
        raise UsageError(
            f"run {run_id} is a test send: it is not continued (send another test)"
        )
    if run.get("mode") == "sandbox" and not sandbox:
        raise UsageError(
            f"run {run_id} is a rehearsal on the sandbox (emulators at "
            f"{run.get('sandbox') or 'an address of its own'}): it cannot go on for "
            "real; add --sandbox, or start a new run"
        )
    if run.get("mode", "real") == "real" and sandbox:
        raise UsageError(
            f"run {run_id} sends to the real providers: --sandbox would send its "
            "remaining messages to emulators; go on without --sandbox"
        )


def run_campaign(
    campaign: Campaign,
    *,
    journal: Journal,
    log: EventLog,
    providers: Mapping[str, Provider],
    options: RunOptions,
    stop: threading.Event | None = None,
    clock: Callable[[], datetime] | None = None,
    sandbox: str | None = None,
    lease: Lease | None = None,
) -> RunResult:
    """Run (or resume) ``campaign``; blocks until it finishes, fails or is stopped.

    ``sandbox`` is the address of the emulators a rehearsal sends to: the run is
    recorded as one, and a resumed run must be of the same kind. ``lease`` (the
    campaign's, taken by the caller before it chose the run) is told the run id.
    """
    stop = stop or threading.Event()
    first, prev_end = 0, datetime.now(UTC)
    prints = fingerprint(campaign)
    changed: list[str] = []
    if options.resume:
        run_id = options.resume
        check_mode(journal, run_id, sandbox is not None)
        stored = journal.get_run(run_id) or {}
        changed = changes(json.loads(stored.get("fingerprint") or "{}"), prints)
        journal.reopen_run(run_id, sandbox)
        if changed:
            journal.set_fingerprint(run_id, prints)
            log.emit("run.changed", run_id, campaign=campaign.name, changed=changed)
        done = journal.step_status(run_id)
        for i, s in enumerate(campaign.steps):
            state = done.get(s.id)
            if (
                state
                and state["status"] in ("succeeded", "skipped")
                and not (options.only_steps and s.id in options.only_steps)
            ):
                first = i + 1
                if state["finished_at"]:
                    prev_end = datetime.fromisoformat(state["finished_at"])
                continue
            break
        log.emit(
            "run.resumed",
            run_id,
            campaign=campaign.name,
            from_step=campaign.steps[first].id if first < len(campaign.steps) else None,
        )
    else:
        occurrence = options.occurrence or current(campaign)
        run_id = journal.start_run(
            campaign.name,
            str(campaign.path),
            _recorded(options),
            sandbox=sandbox,
            fingerprint=prints,
            occurrence=occurrence,
        )
        log.emit(
            "run.started",
            run_id,
            campaign=campaign.name,
            path=str(campaign.path),
            dry_run=options.dry_run,
            mode="sandbox" if sandbox else "real",
            occurrence=occurrence,
        )
    if lease is not None:
        lease.bind(run_id)
    control = RunControl(journal, log, run_id).start()
    ctx = RunContext(
        campaign=campaign,
        run_id=run_id,
        journal=journal,
        log=log,
        providers=providers,
        limiters=build_limiters(providers, journal, run_id),
        options=options,
        stop=stop,
        clock=clock or (lambda: datetime.now(UTC)),
        rerender=bool(changed),
        control=control,
    )
    if options.resume:
        for sid, state in journal.step_status(run_id).items():
            ctx.results[sid] = StepResult(state["status"], detail=state["detail"])
    run = CampaignRun(ctx)
    try:
        run.start(first, prev_end)
        code = run.wait()
    finally:
        control.close()
    return RunResult(run_id, code, ctx.results)


def _recorded(options: RunOptions) -> dict[str, Any]:
    """The options a resumed run (the daemon's) starts from again."""
    kept = dataclasses.asdict(options)
    kept.pop("only_steps", None)
    kept.pop("provider", None)
    kept.pop("export_pins", None)
    kept.pop("callback_url", None)  # the process's, not the run's
    return kept
