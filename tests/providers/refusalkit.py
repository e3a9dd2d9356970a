"""One runner for the provider tests' refusal tables, in the spirit of Apprise's
AppriseURLTester: a table of cases, each saying what to get wrong (provider
options, emulator state, the message) and how the refusal must come back, run by
one helper against the provider's emulator on 127.0.0.1.

Every case checks the same things: the classification (kind, code), that the
refusal is final (not "may have acted", not retryable), that the provider did
nothing (no message sent, no session opened...), how many calls reached the
server where the case says, and that no secret (the module's own, and every
``Secret`` among the case's options) appears in the error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import pytest

from runner.model.secrets import Secret
from runner.providers.base import CallError, ErrorKind, OutboundMessage, ProviderCallError
from runner.sandbox.server import Sandbox


@dataclass(frozen=True)
class Refusal:
    """One row of a refusal table."""

    name: str
    kind: ErrorKind
    code: str  # the provider's own code, or "HTTP 401", "bad-number", ...
    options: Mapping[str, Any] = field(default_factory=dict)  # over the defaults
    emulator: Mapping[str, Any] = field(default_factory=dict)  # emulator kwargs
    message: Mapping[str, Any] = field(default_factory=dict)  # msg() kwargs (sends)
    calls: int | None = None  # calls the server received, where the case checks it


def table(cases: Sequence[Refusal]) -> pytest.MarkDecorator:
    """``@table(REFUSALS)``: one test per case, named by the case."""
    return pytest.mark.parametrize("case", cases, ids=[c.name for c in cases])


# the refused call: makes it with the case's options, returns its classified error
Attempt = Callable[[Any, Refusal], CallError]


def send(msg: Callable[..., OutboundMessage]) -> Attempt:
    """The refused call is a send of ``msg(**case.message)``."""

    def attempt(env: Any, case: Refusal) -> CallError:
        result = env.provider(**case.options).send(msg(**case.message))
        assert result.error is not None and not result.accepted
        assert result.error is not None  # for mypy
        return result.error

    return attempt


def raises(method: str) -> Attempt:
    """The refused call is ``provider.<method>()``, raising ProviderCallError."""

    def attempt(env: Any, case: Refusal) -> CallError:
        with pytest.raises(ProviderCallError) as info:
            getattr(env.provider(**case.options), method)()
        assert str(info.value) == str(info.value.error)
        return info.value.error

    return attempt


@dataclass(frozen=True)
class Refusals:
    """How a provider's test module runs its refusal table.

    ``make_env(sandbox, **case.emulator)`` mounts a fresh emulator and yields the
    module's Env (with ``.provider(**options)``); ``effects(env)`` is what the
    provider caused (messages sent, logins...), which must equal ``untouched``;
    ``calls(env)`` counts the calls a case's ``calls`` is checked against.
    """

    make_env: Callable[..., AbstractContextManager[Any]]
    attempt: Attempt
    secrets: Sequence[str]
    effects: Callable[[Any], object]
    untouched: object = field(default_factory=list)
    calls: Callable[[Any], int] | None = None

    def run(self, sandbox: Sandbox, case: Refusal) -> None:
        with self.make_env(sandbox, **case.emulator) as env:
            error = self.attempt(env, case)
            assert (error.kind, error.code) == (case.kind, case.code)
            assert not error.may_have_acted and not error.retryable
            assert self.effects(env) == self.untouched
            if case.calls is not None:
                assert self.calls is not None, "this table counts no calls"
                assert self.calls(env) == case.calls
            text = str(error)
            for secret in (*self.secrets, *_secrets(case.options)):
                assert secret not in text, f"{case.name}: a secret is quoted"


def _secrets(options: Mapping[str, Any]) -> Iterator[str]:
    return (str(v) for v in options.values() if isinstance(v, Secret))
