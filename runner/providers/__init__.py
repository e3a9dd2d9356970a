"""The SMS providers: one module per API, and the registry of them.

``base`` is the contract the engine sees (capabilities, ``send``, ``report``,
``balance``, typed outcomes and errors), ``http`` the shared transport,
``setup`` turns a campaign's provider entries into working objects; the rest
are the plug-ins, one module per YAML ``type:``, registered in the sorted dict
below. Adding a provider: ``runner/providers/<type>.py``, its schema fragment
``schemas/providers/<type>.schema.json``, and one line here. Providers may
import the model only; never the engine, the journal, the daemon or the
scheduler.
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


def unmeasurable(type_name: str) -> dict[str, str]:
    """``expect:`` keys this provider's report cannot evaluate, and why."""
    cls = PROVIDERS[type_name]
    out = {}
    if not cls.per_recipient_report:
        out["delivered_ratio"] = "its report has no status per recipient"
    if not cls.optout_counts:
        out["max_optout_ratio"] = "its report has no opt-out count"
    return out
