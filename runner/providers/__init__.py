"""The provider registry: YAML ``type:`` -> plug-in class, one explicit sorted dict.

Adding a provider: a new module ``runner/providers/<type>.py``, its schema fragment
``schemas/providers/<type>.schema.json``, and one line here.
"""

from __future__ import annotations

from runner.providers.base import Capability, Provider
from runner.providers.mailup import MailUp
from runner.providers.ogangi import Ogangi
from runner.providers.tatango import Tatango
from runner.providers.tellody import Tellody

PROVIDERS: dict[str, type[Provider]] = {
    "mailup": MailUp,
    "ogangi": Ogangi,
    "tatango": Tatango,
    "tellody": Tellody,
}


def get(type_name: str) -> type[Provider]:
    return PROVIDERS[type_name]


def capabilities(type_name: str) -> frozenset[Capability]:
    return PROVIDERS[type_name].capabilities
