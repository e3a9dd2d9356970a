"""The URL of an Ogangi call: Base64 parameters, path segments, the HMAC-SHA256
signature, and the masking of the key segments wherever a URL may be quoted
(shared/provider-docs/ogangi-mobile-engagement-rest.txt, NOTES.md).

``{base_url}/rest/api/{method}/{params...}/{publicKey}/{signature}``: the signature
is keyed with the private key (never sent) over the path parameters joined with
``/``. Its encoding, the Base64 alphabet and which form of a value is signed are
CONVENTIONs, passed in from the provider's options.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Sequence
from urllib.parse import quote

# ``/rest/api/.../{publicKey}/{signature}``: the last two segments of our URLs
_URL_KEYS = re.compile(r"(/rest/api/[^\s\"'?#]*)/[^/\s\"'?#]+/[^/\s\"'?#]+")


def b64(text: str, alphabet: str) -> str:
    """A Base64 path parameter; ``urlsafe`` (``-``, ``_``) or ``standard``."""
    raw = text.encode("utf-8")
    if alphabet == "urlsafe":
        return base64.urlsafe_b64encode(raw).decode("ascii")
    return base64.b64encode(raw).decode("ascii")


def segment(value: str) -> str:
    # "=" (Base64 padding) is allowed in a path segment; "/" and "+" are not kept
    return quote(value, safe="=")


def signature(
    private_key: str, params: Sequence[str], *, signed_form: str, encoding: str
) -> str:
    """The signature of a call whose path parameters are ``params`` (as sent:
    Base64 values already encoded, None as ``null``). ``signed_form`` "encoded"
    signs the percent-encoded URL text of each value instead of the value."""
    signed = "/".join(params if signed_form == "decoded" else map(segment, params))
    digest = hmac.new(
        private_key.encode("utf-8"), signed.encode("utf-8"), hashlib.sha256
    ).digest()
    if encoding == "hex":
        return digest.hex()
    if encoding == "base64":
        return base64.b64encode(digest).decode("ascii")
    return base64.urlsafe_b64encode(digest).decode("ascii")


def call_url(
    base_url: str, path: str, params: Sequence[str], public_key: str, sig: str
) -> str:
    """The full URL of a call; every segment percent-encoded on its own."""
    segments = [*map(segment, params), segment(public_key), segment(sig)]
    return f"{base_url}/rest/api/{path}/" + "/".join(segments)


def mask_keys(text: str, *secrets: str) -> str:
    """``text`` without the ``secrets`` and anything shaped like our URLs' key
    segments (the public key and a signature)."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return _URL_KEYS.sub(r"\1/***/***", text)


class _MaskUrlKeys(logging.Filter):
    """Masks ``.../{publicKey}/{signature}`` in urllib3's DEBUG request lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _URL_KEYS.sub(r"\1/***/***", a)
                if isinstance(a, str) and "/rest/api/" in a
                else a
                for a in record.args
            )
        return True


def install_log_mask(name: str = "urllib3.connectionpool") -> None:
    """Mask the key segments of Ogangi URLs in the records of logger ``name``."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _MaskUrlKeys) for f in logger.filters):
        logger.addFilter(_MaskUrlKeys())
