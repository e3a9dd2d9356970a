"""Tellody: one session with an XSRF token; messaging/code statistics and credits
(shared/provider-docs/tellody-report-uniquecode.txt).

Sending is not offered: ``CampaignCloud/Config`` sends to contact ids and groups,
not to numbers, and its response format is undocumented, so a per-recipient send
could not be made honest. Tellody is a report and credits provider.
"""

from __future__ import annotations

from runner.providers.base import Capability, Provider


class Tellody(Provider):
    type = "tellody"
    service_name = "Tellody"
    capabilities = frozenset({Capability.REPORT, Capability.CREDITS})
    schema = "providers/tellody.schema.json"
    default_base_url = "https://app.tellody.com"
    secret_options = ("password",)
