"""Built-in emulators of every provider's documented API, served on 127.0.0.1.

``server`` is the threaded HTTP server and the emulator contract, ``faults``
the injected failures, ``launch`` starts what one campaign needs; one module
per provider, in a registry that mirrors ``runner.providers.PROVIDERS``. It may
import the model, the audience and the providers' documented defaults; only
the sandbox command (``runner.commands.sandbox``) and tests import it.
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
