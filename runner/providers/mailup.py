"""MailUp: transactional SMS send, OAuth2 console API for report details and credits
(shared/provider-docs/mailup-sms-reports-credits.txt)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from runner.providers.base import Capability, Provider


class MailUp(Provider):
    type = "mailup"
    service_name = "MailUp"
    capabilities = frozenset({Capability.SEND, Capability.REPORT, Capability.CREDITS})
    schema = "providers/mailup.schema.json"
    default_base_url = "https://services.mailup.com/API/v1.1/Rest/ConsoleService.svc"
    extra_urls: ClassVar[Mapping[str, str]] = {
        "send_url": "https://sendsms.mailup.com/api/v2.0",
        "token_url": "https://services.mailup.com/Authorization/OAuth/Token",
    }
    secret_options = ("client_id", "client_secret", "password", "list_secret")
