"""E.164 normalisation: the fast path must agree with phonenumbers' own."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from runner.audience.phones import InvalidPhone, PhoneNormalizer, mask_phone

REGIONS = ["ES", "GB", "FR", "DE", "IT", "US", "CA", "BR", "IN", "RU", "KZ", "GG", None]


def library(raw: str, region: str | None) -> str | None:
    """What phonenumbers itself says: E.164 of a valid number, else None."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def samples(rng: random.Random, n: int) -> list[str]:
    """International, national, IDD and separated shapes; many invalid."""
    ccs = list(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    out = []
    for _ in range(n):
        k = rng.random()
        digits = str(rng.randrange(10 ** rng.randint(5, 12)))
        if k < 0.3:
            out.append(f"+{rng.choice(ccs)}{digits}")
        elif k < 0.5:
            region = rng.choice(REGIONS[:-1])
            kind = rng.choice(
                [
                    phonenumbers.PhoneNumberType.MOBILE,
                    phonenumbers.PhoneNumberType.FIXED_LINE,
                ]
            )
            example = phonenumbers.example_number_for_type(region, kind)
            text = list(phonenumbers.format_number(example, rng.choice([0, 1, 2])))
            i = rng.randrange(len(text))
            if text[i].isdigit() and rng.random() < 0.5:
                text[i] = str(rng.randrange(10))  # often still valid, sometimes not
            out.append("".join(text))
        elif k < 0.75:
            out.append("0" * rng.randint(0, 2) + digits)
        else:
            sep = rng.choice([" ", "-", "."])
            groups = sep.join(digits[i : i + 3] for i in range(0, len(digits), 3))
            out.append(rng.choice(["", "+", "00", "+34 "]) + groups)
    return out


@pytest.mark.parametrize("region", REGIONS)
def test_fast_path_agrees_with_the_library(region: str | None) -> None:
    rng = random.Random(f"phones-{region}")
    normalise = PhoneNormalizer(region)
    fast_hits = 0
    for raw in samples(rng, 500):
        expected = library(raw, region)
        fast = normalise.fast(raw)
        if fast is not None:
            fast_hits += 1
            assert fast == expected, (raw, region)
        try:
            got: str | None = normalise(raw)
        except InvalidPhone:
            got = None
        assert got == expected, (raw, region)
    assert fast_hits > 30  # the fast path is actually taken


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+34612345678", "ES", "+34612345678"),
        ("612 345 678", "ES", "+34612345678"),
        ("0034 612-345-678", "ES", "+34612345678"),
        ("07911 123456", "GB", "+447911123456"),  # national prefix 0 dropped
        ("+44 (0)7911 123456", None, "+447911123456"),
        ("(202) 555-0143", "US", "+12025550143"),
        ("+1 416 555 0199", "US", "+14165550199"),  # Canada under +1
        ("+39 06 1234 5678", None, "+390612345678"),  # Italian leading zero kept
    ],
)
def test_normalises(raw: str, region: str | None, e164: str) -> None:
    assert PhoneNormalizer(region)(raw) == e164


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("", "ES", "no phone number"),
        ("12345", "ES", "too short"),
        ("+3461234567890123456", "ES", "too long"),
        ("hello", "ES", "not a phone number"),
        ("+999 1234 5678", "ES", "invalid country code"),
        ("612345678", None, "no country code (+...) and no default_region"),
        ("+44 7700 900123", "ES", "not a valid number for region GB"),
        ("+34 112 345 678", None, "not a valid number for region ES"),
    ],
)
def test_reasons(raw: str, region: str | None, reason: str) -> None:
    with pytest.raises(InvalidPhone) as e:
        PhoneNormalizer(region)(raw)
    assert str(e.value) == reason


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+34612345678", "+34*****5678"),
        ("+12025550143", "+1******0143"),
        ("+351912345678", "+351*****5678"),
        ("+447911123456", "+44******3456"),
        ("12345", "*****"),
        ("call me", "***l me"),
    ],
)
def test_mask_phone(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked
    assert len(mask_phone(phone)) == len(phone)
