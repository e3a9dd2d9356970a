"""Phone numbers to E.164 with ``phonenumbers``, fast for the common shapes.

``phonenumbers.parse`` plus ``is_valid_number`` cost ~30 µs a number, most of it
generic input handling (letters, extensions, ``tel:`` URIs) and one regex per
number type. For a number written as digits with optional ``+`` and simple
separators, :class:`PhoneNormalizer` takes the library's own steps directly
(country code, national prefix, region for shared codes) and validates against
the same metadata with one combined pattern per region and length (~3 µs).
Anything it is not sure about, and every number it would reject, goes through
the full library path, which also words the reason.
tests/test_phones.py checks the two paths agree.
"""

from __future__ import annotations

import re
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, ValidationResult
from phonenumbers import phonenumberutil as pnu

_E164_FORMAT = phonenumbers.PhoneNumberFormat.E164
_NON_GEO = "001"  # the library's region code for non-geographic numbers
_CC_REGIONS: dict[int, tuple[str, ...]] = {
    cc: tuple(regions) for cc, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
}
# Digits, an optional leading +, and single spaces, dots or dashes between groups.
_SIMPLE = re.compile(r"(\+)?[0-9]+(?:[ .\-][0-9]+)*")
_SEPARATORS = str.maketrans("", "", " .-")
_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)
_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "invalid country code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}
_LENGTH_REASONS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_COUNTRY_CODE: "invalid country code",
}


class InvalidPhone(ValueError):
    """A phone number that cannot be sent to; ``str()`` is the reason."""


class _Rules:
    """One region's metadata, precompiled for the fast path."""

    def __init__(self, md: Any) -> None:
        self.md = md
        self.cc = int(md.country_code)
        self.cc_str = str(md.country_code)
        self.general = self._desc(md.general_desc)
        self.types = [d for d in (self._desc(getattr(md, t)) for t in _TYPES) if d]
        self.by_length: dict[int, re.Pattern[str] | None] = {}
        self.leading = re.compile(md.leading_digits) if md.leading_digits else None
        npfp = md.national_prefix_for_parsing
        self.national_prefix = re.compile(npfp) if npfp else None
        self.idd = (
            re.compile(md.international_prefix) if md.international_prefix else None
        )

    @staticmethod
    def _desc(desc: Any) -> tuple[frozenset[int], re.Pattern[str]] | None:
        if desc is None or not desc.national_number_pattern:
            return None
        return frozenset(desc.possible_length), re.compile(desc.national_number_pattern)

    def valid(self, nsn: str) -> bool:
        """Same answer as the library's ``_number_type_helper(...) != UNKNOWN``."""
        n = len(nsn)
        if n not in self.by_length:
            alternatives = [
                f"(?:{p.pattern})"
                for lengths, p in self.types
                if not lengths or n in lengths
            ]
            self.by_length[n] = (
                re.compile("|".join(alternatives)) if alternatives else None
            )
        combined = self.by_length[n]
        if combined is None or self.general is None:
            return False
        lengths, general = self.general
        if lengths and n not in lengths:
            return False
        return bool(general.fullmatch(nsn)) and bool(combined.fullmatch(nsn))


class PhoneNormalizer:
    """Normalises raw phone text to E.164 (``+34612345678``) or raises InvalidPhone.

    ``default_region`` (ISO 3166 alpha-2) reads numbers written without ``+``.
    """

    def __init__(self, default_region: str | None = None) -> None:
        region = default_region.upper() if default_region else None
        md = PhoneMetadata.metadata_for_region(region, None) if region else None
        self._region = region if md else None
        self._home = _Rules(md) if md else None
        self._rules: dict[str, _Rules] = {}

    def __call__(self, raw: str) -> str:
        return self.fast(raw) or self.slow(raw)

    def fast(self, raw: str) -> str | None:
        """E.164 for a plainly written valid number; None when not sure (or invalid)."""
        text = raw.strip()
        if len(text) > 64 or not text.isascii():
            return None
        if text[1:].isdigit():  # the usual shapes: +34612345678, 612345678
            plus, digits = text[0] == "+", text.lstrip("+")
            if not (plus or text[0].isdigit()):
                return None
        else:
            m = _SIMPLE.fullmatch(text)
            if m is None:
                return None
            plus, digits = bool(m.group(1)), text.translate(_SEPARATORS).lstrip("+")
        home = self._home
        if not plus and home is not None and home.idd is not None:
            idd = home.idd.match(digits)  # 0034..., 01134...: international
            if idd is not None:
                digits = digits[idd.end() :]
                if not digits or digits[0] == "0":
                    return None
                plus = True
        if plus:  # +CC...
            if len(digits) < 3 or digits[0] == "0":
                return None
            for n in (1, 2, 3):
                cc = int(digits[:n])
                if cc in _CC_REGIONS:
                    break
            else:
                return None
            nsn = digits[n:]
            regions = _CC_REGIONS[cc]
            if home is not None and regions[0] == self._region:
                rules = home
            else:
                rules = self._rules_for(cc, regions[0])
        else:
            if home is None or digits.startswith(home.cc_str):
                return None
            rules = home
            cc, nsn = rules.cc, digits
            regions = _CC_REGIONS.get(cc, ())
        if rules.national_prefix is not None and rules.national_prefix.match(nsn):
            nsn = self._strip_national_prefix(nsn, rules.md)
        if not 2 <= len(nsn) <= 17 or nsn[0] == "0":
            return None
        if len(regions) > 1:
            shared = self._region_of(cc, nsn, regions)
            if shared is None:
                return None
            rules = shared
        return f"+{cc}{nsn}" if rules.valid(nsn) else None

    def slow(self, raw: str) -> str:
        """The full library path: E.164, or InvalidPhone with a readable reason."""
        text = raw.strip()
        if not text:
            raise InvalidPhone("no phone number")
        try:
            number = phonenumbers.parse(text, self._region)
        except NumberParseException as e:
            if e.error_type == NumberParseException.INVALID_COUNTRY_CODE and (
                not text.startswith("+") and self._region is None
            ):
                raise InvalidPhone(
                    "no country code (+...) and no default_region"
                ) from None
            raise InvalidPhone(_PARSE_REASONS.get(e.error_type, str(e))) from None
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, _E164_FORMAT)
        possible = phonenumbers.is_possible_number_with_reason(number)
        if possible in _LENGTH_REASONS:
            raise InvalidPhone(_LENGTH_REASONS[possible])
        region = phonenumbers.region_code_for_country_code(number.country_code or 0)
        if possible == ValidationResult.INVALID_LENGTH:
            raise InvalidPhone(f"wrong length for region {region}")
        raise InvalidPhone(f"not a valid number for region {region}")

    def _rules_for(self, cc: int, region: str) -> _Rules:
        rules = self._rules
        key = f"{region}:{cc}"
        found = rules.get(key)
        if found is None:
            if region == _NON_GEO:
                md = PhoneMetadata.metadata_for_nongeo_region(cc, None)
            else:
                md = PhoneMetadata.metadata_for_region(region, None)
            found = rules[key] = _Rules(md)
        return found

    def _region_of(self, cc: int, nsn: str, regions: tuple[str, ...]) -> _Rules | None:
        """The library's region choice for a shared country code (+1, +44, +7...)."""
        for region in regions:
            rules = self._rules_for(cc, region)
            if rules.leading is not None:
                if rules.leading.match(nsn):
                    return rules
            elif rules.valid(nsn):
                return rules
        return None

    @staticmethod
    def _strip_national_prefix(nsn: str, md: Any) -> str:
        # the library's own steps, as in phonenumbers.parse
        _, stripped, _ = pnu._maybe_strip_national_prefix_carrier_code(nsn, md)
        result = pnu._test_number_length(stripped, md)
        if result in (
            ValidationResult.TOO_SHORT,
            ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
            ValidationResult.INVALID_LENGTH,
        ):
            return nsn
        return str(stripped)


_CC1 = frozenset(f"+{cc}" for cc in _CC_REGIONS if cc < 10)
_CC2 = frozenset(f"+{cc}" for cc in _CC_REGIONS if 10 <= cc < 100)


def mask_phone(phone: str) -> str:
    """``+34612344567`` -> ``+34*****4567``: the country code and the last four kept."""
    n = len(phone)
    if n <= 6:
        return "*" * n
    if phone[0] != "+":
        keep = 0
    elif phone[:2] in _CC1:
        keep = 2
    elif phone[:3] in _CC2:
        keep = 3
    else:
        keep = 4
    keep = min(keep, n - 5)
    return phone[:keep] + "*" * (n - keep - 4) + phone[-4:]
