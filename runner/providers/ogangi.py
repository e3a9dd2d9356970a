"""Ogangi / Messangi Mobile Engagement: XML over REST, Base64 path parameters,
HMAC-SHA256 signatures (shared/provider-docs/ogangi-mobile-engagement-rest.txt)."""

from __future__ import annotations

from runner.providers.base import Capability, Provider


class Ogangi(Provider):
    type = "ogangi"
    service_name = "Ogangi Mobile Engagement"
    capabilities = frozenset(
        {
            Capability.SEND,
            Capability.REPORT,  # from incoming (MO) messages: replies such as STOP
            Capability.PIN,
            Capability.FIRE_MESSAGE,
            Capability.INCOMING,
        }
    )
    schema = "providers/ogangi.schema.json"
    # The documents give no public host ({base_url} is per workspace): required.
    default_base_url = ""
    secret_options = ("public_key", "private_key")
