"""Ogangi / Messangi Mobile Engagement: XML over REST, Base64 path parameters,
HMAC-SHA256 signatures (shared/provider-docs/ogangi-mobile-engagement-rest.txt and
NOTES.md, whose CONVENTIONs are options here with the documented defaults).

Every call is ``GET {base_url}/rest/api/{method}/{params...}/{publicKey}/{signature}``
(``fireMessage`` also has a POST form with a JSON body). The signature is the
HMAC-SHA256, keyed with the private key, of the path parameters joined with ``/``.
The public key travels in every URL, so URLs are masked in error details and in
urllib3's debug log lines; the private key and the signatures never leave here.

Ogangi documents no delivery report and no balance: ``report`` reads the replies
(MO messages, ``getMOMessages``) from the recipients of a send step and counts the
opt-outs among them. This module makes the calls (URLs and signatures from
``ogangi_url``); their XML answers are read in ``ogangi_answers``, the MO messages
and the replies report in ``ogangi_mo``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lxml import etree

from runner.errors import ProviderError
from runner.model.campaign import ProviderConfig
from runner.providers.base import (
    CallError,
    Capability,
    ErrorKind,
    OutboundMessage,
    Provider,
    ProviderCallError,
    Report,
    ReportQuery,
    SendResult,
    excerpt,
)
from runner.providers.ogangi_answers import masked, pin, read_answer, send_result
from runner.providers.ogangi_mo import (
    MOMessage,
    digits,
    mo_list,
    replies_report,
    search_string,
)
from runner.providers.ogangi_url import (
    b64,
    call_url,
    install_log_mask,
    mask_keys,
    segment,
    signature,
)

# Option defaults (schemas/providers/ogangi.schema.json says the same).
DEFAULTS: Mapping[str, Any] = {
    "method": "send_sms",
    "carrier": None,  # written as the literal ``null``
    "signature_encoding": "hex",  # CONVENTION: lowercase hex digest
    "base64_alphabet": "urlsafe",  # CONVENTION: - and _ with padding
    # Which form of a value is signed when the URL must percent-encode it (only a
    # standard-alphabet Base64 value, a sender with spaces, a "+" number): the value
    # itself, as a server hands a decoded path parameter to the method ("decoded"),
    # or its percent-encoded URL text ("encoded"). Identical for the defaults.
    "signed_form": "decoded",
    # CONVENTION (ours, the documents are silent): E.164 digits without "+"
    # ("e164_digits"); alternatives "e164" (with +) and "intl_00" (00 prefix).
    "number_format": "e164_digits",
    "mo_search_encoding": "base64",  # CONVENTION: the search string as one Base64 value
    "mo_first_page": 1,  # CONVENTION (ours): "the actual page" numbered from 1
    "mo_page_size": 100,
    "mo_pages_per_poll": 5,
    # An opt-out reply: Java String.matches semantics (the whole text, stripped),
    # case-insensitive. STOP/UNSUBSCRIBE plus BAJA for the provider's Spanish markets.
    "mo_keyword": r"^(STOP|BAJA|UNSUBSCRIBE)\b.*",
    # Timezone of MO sendDate values written without an offset; unset, such dates
    # are compared with the send window with 14 hours of slack either way.
    "mo_timezone": None,
}
_ENUMS: Mapping[str, tuple[str, ...]] = {
    "method": ("send_sms", "send_mt"),
    "signature_encoding": ("hex", "base64", "base64url"),
    "base64_alphabet": ("urlsafe", "standard"),
    "signed_form": ("decoded", "encoded"),
    "number_format": ("e164_digits", "e164", "intl_00"),
    "mo_search_encoding": ("base64", "plain"),
}


class Ogangi(Provider):
    type = "ogangi"
    defaults = DEFAULTS
    service_name = "Ogangi Mobile Engagement"
    optout_counts = True  # STOP replies among the incoming messages
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

    def __init__(self, config: ProviderConfig, options: Mapping[str, Any]) -> None:
        super().__init__(config, options)
        for name, allowed in _ENUMS.items():
            if self.option(name) not in allowed:
                raise ProviderError(
                    f"provider {config.name!r}: option {name} must be one of "
                    + ", ".join(allowed)
                )
        self.keyword = self._regex(str(self.option("mo_keyword")))
        self.mo_zone = self._zone()
        self._public = str(self.options.get("public_key") or "")
        self._private = str(self.options.get("private_key") or "")
        install_log_mask()

    # -- send ---------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        """tools/sendSMS (number and text Base64) or sendMT (text Base64 only)."""
        number = self._target(message)
        if isinstance(number, SendResult):
            return number
        sender = self._sender(message.sender)
        carrier = self._carrier()
        if self.option("method") == "send_sms":
            path = "tools/sendSMS"
            params = [self._instance(), carrier, sender, self._b64(number)]
        else:
            path = "sendMT"
            params = [self._instance(), sender, carrier, number]
        params.append(self._b64(message.text))
        if path == "sendMT" and self.options.get("flags"):
            params.append(str(self.options["flags"]))  # "Send SMS With Flags"
        root = self._call(path, params, acted=True)
        if isinstance(root, CallError):
            return SendResult(error=root)
        return send_result(root, self._mask)

    # -- extras ---------------------------------------------------------------------

    def send_pin(self, message: OutboundMessage, length: int) -> SendResult:
        """tools/sendSMSPinMobileNumberConfirm: Ogangi texts a PIN it generates;
        the PIN (PinSMSConfirmation.pin) comes back as ``secret``."""
        if (
            not isinstance(length, int)
            or isinstance(length, bool)
            or not 1 <= length <= 32
        ):
            raise ValueError("PIN length must be an integer from 1 to 32")
        number = self._target(message)
        if isinstance(number, SendResult):
            return number
        params = [
            self._instance(),
            self._carrier(),
            self._sender(message.sender),
            number,  # plain here: only the text is documented as Base64
            self._b64(message.text),
            str(length),
        ]
        root = self._call("tools/sendSMSPinMobileNumberConfirm", params, acted=True)
        if isinstance(root, CallError):
            return SendResult(error=root)
        found = pin(root, self._mask)
        if isinstance(found, CallError):
            return SendResult(error=found)
        return SendResult(status="OK", secret=found)

    def fire(
        self, message: OutboundMessage, descriptor: Mapping[str, Any] | None = None
    ) -> SendResult:
        """fireMessage: inject an MO from ``message.to`` as if they had texted.
        GET with the number and the text (Base64) in the path, or with a
        ``descriptor`` the POST form: the JSON "Fire message Descriptor" as the
        body, ``mobileNumber`` and ``text`` set from the message, and only the
        instance id signed (it is the one path parameter)."""
        number = self._target(message)
        if isinstance(number, SendResult):
            return number
        if descriptor is None:
            params = [self._instance(), number, self._b64(message.text)]
            root = self._call("fireMessage", params, acted=True)
        else:
            body = {**descriptor, "mobileNumber": number, "text": message.text}
            root = self._call("fireMessage", [self._instance()], acted=True, json=body)
        if isinstance(root, CallError):
            return SendResult(error=root)
        return SendResult(status="OK")

    def incoming(
        self, search: Mapping[str, str | list[str]], page: int, per_page: int
    ) -> tuple[int, list[MOMessage]]:
        """tools/getMOMessages: (MOMessageList.records, this page's messages).

        ``search`` holds the inline search filters (from, to, keyword as a Java
        regex, carrier, order asc|desc); ``page`` is numbered as the API numbers
        it (option mo_first_page). Raises ProviderCallError.
        """
        if page < 0 or not 1 <= per_page <= 1000:
            raise ValueError("page must be >= 0 and per_page from 1 to 1000")
        text = search_string(search)
        if self.option("mo_search_encoding") == "base64":
            value = self._b64(text) if text else "null"
        else:
            value = text or "null"
        params = [self._instance(), str(page), str(per_page), value]
        root = self._checked("tools/getMOMessages", params, acted=False)
        return mo_list(root, self.mo_zone, self._mask)

    # -- report -----------------------------------------------------------------------

    def report(self, query: ReportQuery, cursor: Any = None) -> Report:
        """The replies to a send step: every page of MO messages (oldest first),
        at most ``mo_pages_per_poll`` per poll, counted by the recipient they came
        from. Counts: ``replies`` (messages), ``repliers`` and ``optouts``
        (distinct recipients; an opt-out matches mo_keyword, which the step's
        ``options`` may override). Final once the last page is read; no
        per-recipient delivery statuses (Ogangi has none).
        """
        keyword = self.keyword
        if query.options.get("mo_keyword"):
            keyword = self._regex(str(query.options["mo_keyword"]))
        return replies_report(
            self.incoming,
            query,
            cursor,
            keyword=keyword,
            first_page=int(self.option("mo_first_page")),
            page_size=int(self.option("mo_page_size")),
            pages_per_poll=int(self.option("mo_pages_per_poll")),
            exact_dates=self.mo_zone is not None,
        )

    # -- the wire -----------------------------------------------------------------------

    def signature(self, params: Sequence[str]) -> str:
        """The signature of a call whose path parameters are ``params`` (as sent)."""
        return signature(
            self._private,
            params,
            signed_form=str(self.option("signed_form")),
            encoding=str(self.option("signature_encoding")),
        )

    def url(self, path: str, params: Sequence[str]) -> str:
        """The full URL of a call; every segment percent-encoded on its own."""
        if not self._public or not self._private:
            raise ProviderError(
                f"provider {self.config.name!r}: options public_key and private_key "
                "are required"
            )
        return call_url(self.base_url, path, params, self._public, self.signature(params))

    def _call(
        self,
        path: str,
        params: Sequence[str],
        *,
        acted: bool,
        json: Mapping[str, Any] | None = None,
    ) -> etree._Element | CallError:
        """One call: the parsed answer when its status is OK, else a CallError.

        ``acted``: the call does something (send, PIN, fireMessage), so an answer
        that may come after the work was done counts as ``may_have_acted``.
        """
        if not self.base_url.startswith(("http://", "https://")):
            raise ProviderError(f"provider {self.config.name!r}: base_url is required")
        url = self.url(path, params)
        headers = {"Accept": "application/xml, text/xml"}
        if json is not None:
            resp = self.request("POST", url, json=dict(json), headers=headers)
        else:
            resp = self.request("GET", url, headers=headers)
        if isinstance(resp, CallError):
            return masked(resp, self._mask)
        return read_answer(resp, path.rsplit("/", 1)[-1], acted, self._mask)

    def _checked(
        self,
        path: str,
        params: Sequence[str],
        *,
        acted: bool,
        json: Mapping[str, Any] | None = None,
    ) -> etree._Element:
        root = self._call(path, params, acted=acted, json=json)
        if isinstance(root, CallError):
            raise ProviderCallError(root)
        return root

    # -- helpers ------------------------------------------------------------------------

    def _b64(self, text: str) -> str:
        return b64(text, str(self.option("base64_alphabet")))

    def _number(self, e164: str) -> str | None:
        found = digits(e164)
        if not 6 <= len(found) <= 15:
            return None
        return {"e164_digits": found, "e164": "+" + found, "intl_00": "00" + found}[
            self.option("number_format")
        ]

    def _target(self, message: OutboundMessage) -> str | SendResult:
        """The number as the API takes it, or the refusal of a message that
        cannot be called (an empty path segment would shift every parameter)."""
        number = self._number(message.to)
        if number is None:
            return SendResult(
                error=CallError(ErrorKind.REJECTED, "bad-number", "not a phone number")
            )
        if not message.text:
            return SendResult(
                error=CallError(ErrorKind.REJECTED, "empty-text", "the text is empty")
            )
        return number

    def _instance(self) -> str:
        value = self.options.get("instance_id")
        if value is None or value == "":
            raise ProviderError(
                f"provider {self.config.name!r}: option instance_id is required"
            )
        return str(value)

    def _sender(self, sender: str | None) -> str:
        value = sender or self.options.get("sender")
        if value is None or value == "":
            raise ProviderError(
                f"provider {self.config.name!r}: a sender (option sender) is required"
            )
        return str(value)

    def _carrier(self) -> str:
        carrier = self.options.get("carrier")
        return "null" if carrier is None or carrier == "" else str(carrier)

    def _regex(self, pattern: str) -> re.Pattern[str]:
        try:
            return re.compile(pattern, re.I | re.S)
        except re.error as e:
            raise ProviderError(
                f"provider {self.config.name!r}: option mo_keyword is not a valid "
                f"regular expression ({e})"
            ) from None

    def _zone(self) -> ZoneInfo | None:
        name = self.option("mo_timezone")
        if name is None:
            return None
        try:
            return ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            raise ProviderError(
                f"provider {self.config.name!r}: option mo_timezone: unknown "
                f"timezone {excerpt(str(name), 40)!r}"
            ) from None

    def _mask(self, text: str) -> str:
        """Masks the credentials and anything shaped like our URLs' key segments."""
        return mask_keys(text, self._private, self._public, segment(self._public))
