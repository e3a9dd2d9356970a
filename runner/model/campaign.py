"""The typed, immutable campaign model that everything after the loader uses.

``loader.py`` is the only code that reads raw YAML dicts; it builds these objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from runner.model.timeparse import Rate

OnFailure = Literal["abort", "continue"]
OnInvalid = Literal["skip", "fail"]


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for calls that certainly did not reach the provider, or that it refused."""

    attempts: int = 5  # total tries, the first included
    base_delay: float = 0.5  # seconds; doubled per attempt, with full jitter
    max_delay: float = 30.0
    max_total: float = 300.0  # give up on a recipient after this long in retries


@dataclass(frozen=True)
class ProviderConfig:
    """One entry of ``providers:``. ``options`` are the provider-specific settings,
    validated by that provider's schema fragment; ``${VAR}`` values are still
    unresolved here (see secrets.resolve at run time)."""

    name: str
    type: str
    base_url: str | None
    options: Mapping[str, Any]
    concurrency: int | None = None  # None: the provider's default
    rate: Rate | None = None  # None: the provider's default
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: tuple[float, float] = (5.0, 30.0)  # connect, read
    ca_bundle: str | None = None
    line: int = 0


@dataclass(frozen=True)
class RecipientSource:
    """Where recipients come from: ``inline`` rows or one CSV/JSONL ``file``."""

    inline: tuple[Mapping[str, Any], ...] | None = None
    file: Path | None = None
    format: Literal["csv", "jsonl"] | None = None  # None: from the file suffix
    phone_field: str = "phone"
    delimiter: str | None = None  # None: sniffed
    encoding: str | None = None  # None: UTF-8 (BOM tolerated)
    on_invalid: OnInvalid = "skip"
    exclude: tuple[Path, ...] = ()
    where: str | None = None  # Jinja expression over the recipient's fields
    line: int = 0


@dataclass(frozen=True)
class Template:
    """A message template: one Jinja ``text``, or ``variants`` picked per recipient
    by the value of the field ``variant_by`` (``default`` when nothing matches)."""

    name: str
    text: str | None = None
    variants: Mapping[str, str] | None = None
    variant_by: str | None = None
    default: str | None = None
    source: Path | None = None  # the file it came from, when ``{file: ...}``
    line: int = 0


@dataclass(frozen=True)
class Window:
    """Sending is allowed only between ``start`` and ``end`` on ``days`` (0 = Monday)."""

    start: time
    end: time
    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    # each recipient's own clock (timezone: recipient), from this field or the number
    per_recipient: bool = False
    zone_field: str | None = None
    several_zones: str = "campaign"  # campaign | first


@dataclass(frozen=True)
class Timing:
    at: datetime | None = None  # absolute, timezone-aware
    after: timedelta | None = None  # after the previous step ended
    window: Window | None = None


@dataclass(frozen=True)
class Tolerance:
    """How many of a step's messages may fail with the step still ok: a ``count``
    or a ``ratio`` of its messages (``max_failed: 10``, ``0.02`` or ``2%``)."""

    count: int | None = 0
    ratio: float | None = None

    def allows(self, failed: int, total: int) -> bool:
        if self.ratio is not None:
            return failed <= self.ratio * total
        return failed <= (self.count or 0)

    def __str__(self) -> str:
        if self.ratio is None:
            return str(self.count)
        return f"{self.ratio * 100:g}%"


# what a follow-up sees of the earlier step's message: ``previous`` in its
# template, and the names its ``where`` may use
PREVIOUS_FIELDS = (
    "status",
    "provider",
    "provider_message_id",
    "delivery_status",
    "delivery_code",
    "error_kind",
    "error_code",
    "text",
    "sent_at",
)


@dataclass(frozen=True)
class FollowUp:
    """A send step's recipients taken from an earlier send step's outcomes."""

    step: str  # the earlier send step
    statuses: tuple[str, ...] = ()  # its message status among these (any if empty)
    where: str | None = None  # a Jinja expression over its message's fields


# the environment variable that holds the key of the PINs' keyed hashes when a
# step's ``pin:`` names none
PIN_KEY_VAR = "CAMPAIGN_RUNNER_PIN_KEY"


@dataclass(frozen=True)
class PinRequest:
    """``send: {pin: {length: 6}}``: the provider generates a PIN per recipient and
    texts it; the journal keeps only a keyed hash, its key in ``key_var``."""

    length: int
    key_var: str = PIN_KEY_VAR


# What each planned message becomes on the wire: a plain ``send``, a PIN request
# (``send: {pin: ...}``) or an incoming message injected as if the recipient had
# texted it (a ``fire`` step).
CallKind = Literal["send", "pin", "fire"]


@dataclass(frozen=True)
class SendAction:
    providers: tuple[str, ...]  # the first is primary; the rest are failover
    template: str
    sender: str | None = None  # the "from" short/long code or alphanumeric sender
    options: Mapping[str, Any] = field(default_factory=dict)
    max_failed: Tolerance = field(default_factory=Tolerance)
    follow: FollowUp | None = None  # recipients: {from: ..., status/where: ...}
    pin: PinRequest | None = None
    fire: bool = False  # a fire step: each message is an MO injected for its number
    descriptor: Mapping[str, Any] | None = None  # fire: the POST form's JSON fields

    @property
    def call(self) -> CallKind:
        return "fire" if self.fire else "pin" if self.pin is not None else "send"


def fire_template(step_id: str) -> str:
    """The name of a fire step's own ``text`` among the templates (not a slug, so
    no template of the file can have it)."""
    return f"fire:{step_id}"


@dataclass(frozen=True)
class CheckCreditsAction:
    provider: str
    min: float | None = None
    min_expr: str | None = None  # e.g. "segments('blast') * 1.1"


@dataclass(frozen=True)
class Expect:
    delivered_ratio: float | None = None
    max_failed: int | None = None
    max_failed_ratio: float | None = None
    max_optout_ratio: float | None = None
    min_sent: int | None = None


@dataclass(frozen=True)
class CheckReportAction:
    provider: str
    for_step: str
    every: timedelta = timedelta(minutes=1)
    timeout: timedelta = timedelta(hours=1)
    expect: Expect = field(default_factory=Expect)
    options: Mapping[str, Any] = field(default_factory=dict)
    callback: bool = False  # the provider calls the daemon back when it is ready


@dataclass(frozen=True)
class WaitAction:
    duration: timedelta


Action = SendAction | CheckCreditsAction | CheckReportAction | WaitAction


@dataclass(frozen=True)
class Step:
    id: str
    action: Action
    timing: Timing = field(default_factory=Timing)
    on_failure: OnFailure = "abort"
    when: str | None = None  # Jinja condition over earlier steps' outcomes
    line: int = 0

    @property
    def kind(self) -> str:
        if isinstance(self.action, SendAction) and self.action.fire:
            return "fire"
        return {
            SendAction: "send",
            CheckCreditsAction: "check_credits",
            CheckReportAction: "check_report",
            WaitAction: "wait",
        }[type(self.action)]


@dataclass(frozen=True)
class Schedule:
    """When the daemon starts a run: a ``cron`` expression or a one-off ``at``."""

    cron: str | None = None
    at: datetime | None = None
    misfire_grace_time: timedelta | None = None  # None: the daemon's default
    coalesce: bool = True


@dataclass(frozen=True)
class SandboxOptions:
    """Fault injection and behaviour of the built-in emulators for this campaign."""

    latency: float = 0.0  # seconds added to every request
    faults: Mapping[str, float] = field(default_factory=dict)  # kind -> rate 0..1
    credits: float | None = None
    seed: int | None = None
    # E.164 -> what that recipient answers to any message (a STOP, a question)
    replies: Mapping[str, str] = field(default_factory=dict)
    opted_out: tuple[str, ...] = ()  # refused by the provider as opted out


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``count`` messages to one number in any ``window``, across
    campaigns (``limits: {per_recipient: "1/24h"}``)."""

    count: int
    window: timedelta
    defer: bool = False  # over the cap: send when it allows, rather than skip

    def __str__(self) -> str:
        hours = self.window.total_seconds() / 3600
        return f"{self.count}/{hours:g}h"


@dataclass(frozen=True)
class Campaign:
    path: Path
    name: str
    providers: Mapping[str, ProviderConfig]
    recipients: RecipientSource
    templates: Mapping[str, Template]
    steps: tuple[Step, ...]
    version: int = 1
    description: str = ""
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    default_region: str | None = None  # ISO 3166 alpha-2, for national numbers
    max_segments: int = 3
    vars: Mapping[str, Any] = field(default_factory=dict)
    schedule: Schedule | None = None
    sandbox: SandboxOptions = field(default_factory=SandboxOptions)
    test_recipients: tuple[str, ...] = ()  # E.164; ``campaign-runner test`` sends here
    # transactional (a PIN, an order update) skips only numbers suppressed for all
    kind: str = "marketing"
    per_recipient: FrequencyCap | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)
