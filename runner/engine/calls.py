"""What one planned message becomes on the wire, by the step's kind of call.

A send step sends each message (``send``) or, with ``pin:``, asks the provider
to generate and text a PIN (``pin``); a fire step injects it as an incoming
message from its recipient (``fire``). The dispatcher is the same for all three
(intent before the call, unknown never repeated blindly): only the call differs.
"""

from __future__ import annotations

from collections.abc import Callable

from runner.model.campaign import CallKind, SendAction
from runner.providers.base import OutboundMessage, Provider, SendResult

Call = Callable[[OutboundMessage], SendResult]


def _send(provider: Provider, action: SendAction) -> Call:
    return provider.send


def _pin(provider: Provider, action: SendAction) -> Call:
    assert action.pin is not None
    length = action.pin.length
    return lambda message: provider.send_pin(message, length)


def _fire(provider: Provider, action: SendAction) -> Call:
    descriptor = action.descriptor
    return lambda message: provider.fire(message, descriptor)


CALLS: dict[CallKind, Callable[[Provider, SendAction], Call]] = {
    "fire": _fire,
    "pin": _pin,
    "send": _send,
}


def call_for(provider: Provider, action: SendAction) -> Call:
    """The provider call that carries out each of ``action``'s messages."""
    return CALLS[action.call](provider, action)
