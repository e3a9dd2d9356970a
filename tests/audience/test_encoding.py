import pytest

from runner.audience.encoding import GSM7, UCS2, needs_ucs2, segment


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", GSM7, 0, 1),
        ("a" * 160, GSM7, 160, 1),
        ("a" * 161, GSM7, 161, 2),
        ("a" * 306, GSM7, 306, 2),
        ("a" * 307, GSM7, 307, 3),
        ("€" * 80, GSM7, 160, 1),  # extension characters count as two septets
        ("€" * 81, GSM7, 162, 2),
        ("{}[]~\\|^€", GSM7, 18, 1),
        ("a" * 152 + "€" + "a" * 8, GSM7, 162, 2),  # escape pair not split
        ("a" * 152 + "€" + "a" * 153, GSM7, 307, 3),
        ("ć" * 70, UCS2, 70, 1),
        ("ć" * 71, UCS2, 71, 2),
        ("ć" * 134, UCS2, 134, 2),
        ("ć" * 135, UCS2, 135, 3),
        ("😀" * 35, UCS2, 70, 1),  # astral characters are two UTF-16 units
        ("😀" * 36, UCS2, 72, 2),
        ("a" * 66 + "😀" + "a", UCS2, 69, 1),
        ("a" * 66 + "😀" + "a" * 3, UCS2, 71, 2),  # surrogate pair not split
    ],
)
def test_segments(text: str, encoding: str, units: int, segments: int) -> None:
    s = segment(text)
    assert (s.encoding, s.units, s.segments) == (encoding, units, segments)
    assert needs_ucs2(text) == s.unicode  # the sender's shortcut agrees


def test_non_gsm_characters_are_named() -> None:
    assert segment("It’s here ’").non_gsm == ("’",)
