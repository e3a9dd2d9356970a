"""Each recipient's own time zone, for a sending window on their clock.

From a field of the recipient when the campaign names one (an IANA zone), else
from the number with phonenumbers' time-zone data. A number whose prefix spans
several zones (Spain's mobiles: Madrid and the Canaries) gets the campaign's
zone when it is one of them, else (or with ``several_zones: first``) the one the
data names first; a number the data does not place gets the campaign's.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import phonenumbers
from phonenumbers import timezone as number_zones

from runner.model.campaign import Window


@lru_cache(maxsize=1)
def _known() -> frozenset[str]:
    return frozenset(available_timezones())


class ZoneFinder:
    def __init__(self, window: Window, campaign_zone: ZoneInfo) -> None:
        self.field = window.zone_field
        self.first = window.several_zones == "first"
        self.campaign = campaign_zone.key

    def __call__(self, phone: str, fields: Mapping[str, Any]) -> str:
        if self.field:
            value = fields.get(self.field)
            if isinstance(value, str) and value.strip() in _known():
                return value.strip()
        return self.of_number(phone)

    def of_number(self, phone: str) -> str:
        try:
            zones = number_zones.time_zones_for_number(phonenumbers.parse(phone))
        except phonenumbers.NumberParseException:
            return self.campaign
        zones = tuple(z for z in zones if z in _known())
        if not zones:
            return self.campaign
        if self.first or self.campaign not in zones:
            return str(zones[0])
        return self.campaign
