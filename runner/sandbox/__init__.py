"""Built-in emulators of every provider, served on 127.0.0.1 (see server.py).

The registry mirrors ``runner.providers.PROVIDERS``: YAML ``type:`` -> emulator class.
"""

from __future__ import annotations

from runner.sandbox.mailup import MailUpEmulator
from runner.sandbox.ogangi import OgangiEmulator
from runner.sandbox.server import Emulator, Sandbox
from runner.sandbox.tatango import TatangoEmulator
from runner.sandbox.tellody import TellodyEmulator

EMULATORS: dict[str, type[Emulator]] = {
    "mailup": MailUpEmulator,
    "ogangi": OgangiEmulator,
    "tatango": TatangoEmulator,
    "tellody": TellodyEmulator,
}

__all__ = ["EMULATORS", "Emulator", "Sandbox"]
