"""``${VAR}`` references: resolved from the environment at run time, never printed."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterator, Mapping

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Secret(str):
    """A resolved credential. ``str()`` gives the value; ``repr()`` never does.

    A subclass of str so that it can be used wherever the value is needed (an HTTP
    header, an HMAC key) while accidental ``%r``/f-string-debug logging stays safe.
    """

    def __repr__(self) -> str:
        return "Secret('***')"


def references(value: object) -> Iterator[str]:
    """Every environment variable name referenced in a (nested) config value."""
    if isinstance(value, str):
        yield from _REF.findall(value)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from references(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from references(v)


def stand_in(var: str) -> str:
    """What a rehearsal uses for a variable that is not set (the emulators accept
    exactly this), so trying a campaign on the sandbox needs no account."""
    return f"sandbox-{var.lower().replace('_', '-')}"


def has_reference(value: str) -> bool:
    return bool(_REF.search(value))


def resolve(value: str, env: Mapping[str, str] | None = None) -> Secret:
    """Substitute every ``${VAR}``; raises KeyError(name) for a missing variable."""
    env = os.environ if env is None else env

    def sub(m: re.Match[str]) -> str:
        return env[m.group(1)]

    return Secret(_REF.sub(sub, value))


class Redactor:
    """Replaces known secret values in text that is about to be shown or stored."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self._secrets: list[str] = []
        for s in secrets or []:
            self.add(s)

    def add(self, secret: str) -> None:
        if len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, "***")
        return text


def pin_digest(key: str, where: str, pin: str) -> str:
    """A PIN's keyed hash (HMAC-SHA256), over where it went (run/step/phone) as
    well, so the same PIN of two recipients hashes differently; without the key,
    the few million PINs of a length cannot be tried against it."""
    mac = hmac.new(key.encode(), f"{where}\0{pin}".encode(), hashlib.sha256)
    return "hmac-sha256:" + mac.hexdigest()


def pin_matches(key: str, where: str, pin: str, digest: str) -> bool:
    """Whether ``pin`` is the one hashed into ``digest`` (in constant time)."""
    return hmac.compare_digest(pin_digest(key, where, pin), digest)
