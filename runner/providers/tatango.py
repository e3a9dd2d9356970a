"""Tatango: transactional messages and MOMT reports, HTTP Basic + JSON
(shared/provider-docs/tatango-momt-reports.txt). 1,200 calls per hour."""

from __future__ import annotations

from runner.providers.base import Capability, Provider
from runner.timeparse import Rate


class Tatango(Provider):
    type = "tatango"
    service_name = "Tatango"
    capabilities = frozenset({Capability.SEND, Capability.REPORT})
    schema = "providers/tatango.schema.json"
    default_base_url = "https://app.tatango.com/api/v2"
    default_rate = Rate(1200, 3600)
    secret_options = ("api_key",)
