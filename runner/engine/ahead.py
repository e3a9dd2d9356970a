"""Planning ahead of sending: a large step's first messages go out within
seconds, while the rest are still being rendered and recorded.

The first ``SAMPLE`` messages are planned, and their render failures judged
against the step's ``max_failed``, before any call: a template that fails for
everyone still stops the step with nothing sent. Planning then goes on in its
own thread and the dispatcher claims each batch once it is committed. A batch
planned while the step sends is held (suppression list, frequency cap) in the
transaction that inserts it (``BatchHold``), so no claim sees it unheld; a
message that fails to render later is recorded ``failed``, never sent, and the
step's verdict counts it as any other failure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from runner.audience.failures import Failures
from runner.journal.suppressions import BatchHold

SAMPLE = 10_000  # messages planned before the first call
# messages recorded and not yet sent beyond which planning waits: rendering is
# pure Python, and a thread rendering flat out holds the GIL the sending threads
# need for each call (20 messages/s sent while planning, measured, against 1,450)
LEAD = 20_000
WAIT = 0.2  # seconds between looks at what is left to send, while waiting


class Ahead:
    """What a step's planning thread and its sending share."""

    def __init__(
        self, hold: BatchHold, queued: Callable[[], int], sample: int | None = None
    ) -> None:
        self.hold = hold  # run on each batch after the sample, as it is inserted
        self.queued = queued  # the step's messages recorded and not yet claimed
        self.sample = SAMPLE if sample is None else sample
        self.sampled = threading.Event()  # the sample is committed (or planning ended)
        self.complete = threading.Event()  # planning ended: done, stopped or failed
        self.stopping = threading.Event()  # asked to stop (a refusal, Ctrl-C, cancel)
        self._unleashed = threading.Event()  # the sending is over: plan flat out
        self.added = 0  # messages committed so far
        self._failures = Failures()  # their render failures (the plan's, growing)
        self.sample_size = 0  # messages in the sample (whole batches: >= sample)
        self.sample_failures = Failures()  # the sample's render failures
        self.error: BaseException | None = None
        # held while a batch is handed to the writer and counted: whoever holds
        # it and flushes the writer sees the journal and ``added`` agree
        self.lock = threading.Lock()
        self._detail: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None

    def start(self, work: Callable[[], dict[str, Any] | None]) -> None:
        """Plan in a thread: ``work`` returns the step's plan detail (None when
        stopped before the end)."""

        def run() -> None:
            try:
                self._detail = work()
            except BaseException as e:  # raised again by ``join``
                self.error = e
            finally:
                self.sampled.set()
                self.complete.set()

        self._thread = threading.Thread(target=run, name="plan-ahead", daemon=True)
        self._thread.start()

    def count(self, added: int, failures: Failures) -> None:
        """The messages handed to the writer so far (by ``plan``, under ``lock``)."""
        self.added, self._failures = added, failures

    def planned(self, flush: Callable[[], None]) -> None:
        """A batch went to the journal (called by ``plan``): once the sample is
        in, it is committed and its failures kept, and sending may start."""
        added, failures = self.added, self._failures
        if not self.sampled.is_set():
            if added >= self.sample:
                flush()
                self.sample_size = added
                self.sample_failures = Failures.from_json(failures.as_json())
                self.sampled.set()
            return
        while (
            not self.stopping.is_set()
            and self.queued() >= LEAD
            and not self._unleashed.wait(WAIT)
        ):
            pass  # far enough ahead: let the sending threads have the time

    @property
    def to_send(self) -> int:
        """The messages committed so far that are to be sent: not those that
        cannot be rendered, nor those held (for the progress line's total)."""
        held = self.hold.suppressed + self.hold.capped
        return self.added - self._failures.total - held

    @property
    def failed(self) -> bool:
        """Planning raised (an unreadable row with ``on_invalid: fail``...): the
        step stops sending, and ``join`` raises it."""
        return self.error is not None

    def join(self) -> dict[str, Any] | None:
        """Wait for planning to end, no longer kept to ``LEAD`` (the step has
        stopped sending: a window closed, say); its detail, or its error raised."""
        self._unleashed.set()
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise self.error
        return self._detail

    def stop(self) -> dict[str, Any] | None:
        """Stop planning at the next recipient, and wait for it (``join``)."""
        self.stopping.set()
        return self.join()
