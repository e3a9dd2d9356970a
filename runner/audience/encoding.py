"""SMS encoding and segment counting, the way carriers bill.

GSM 03.38 7-bit default alphabet (extension-table characters take two septets),
otherwise UCS-2 (UTF-16 code units: an emoji outside the BMP takes two).
Single message: 160 septets / 70 units; concatenated: 153 / 67 per segment.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7 = "GSM-7"
UCS2 = "UCS-2"


@dataclass(frozen=True)
class Segmentation:
    encoding: str  # GSM-7 or UCS-2
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int
    non_gsm: tuple[str, ...] = ()  # the characters that forced UCS-2, in order seen

    @property
    def unicode(self) -> bool:
        return self.encoding == UCS2


_GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION


def needs_ucs2(text: str) -> bool:
    """True when ``text`` has a character outside GSM-7 (cheaper than segment())."""
    return not _GSM7_ALL.issuperset(text)


def segment(text: str) -> Segmentation:
    """Encoding, length in units and billed segments of one message text."""
    non_gsm: list[str] = []
    extended = 0
    for ch in text:
        if ch in GSM7_BASIC:
            continue
        if ch in GSM7_EXTENSION:
            extended += 1
        elif ch not in non_gsm:
            non_gsm.append(ch)
    if not non_gsm:
        septets = len(text) + extended
        if septets <= 160:
            return Segmentation(GSM7, septets, 1)
        if not extended:
            return Segmentation(GSM7, septets, -(-septets // 153))
        # an escape pair is never split across two segments
        widths = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return Segmentation(GSM7, septets, _pack(widths, 153))
    widths = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    units = sum(widths)
    if units <= 70:
        return Segmentation(UCS2, units, 1, tuple(non_gsm))
    # nor is a UTF-16 surrogate pair
    return Segmentation(UCS2, units, _pack(widths, 67), tuple(non_gsm))


def _pack(widths: list[int], per_segment: int) -> int:
    segments, used = 1, 0
    for w in widths:
        if used + w > per_segment:
            segments += 1
            used = 0
        used += w
    return segments
