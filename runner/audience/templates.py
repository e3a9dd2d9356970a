"""Message templates: a sandboxed Jinja environment, its filters, and rendering.

Templates are written by campaign authors, so they run in Jinja's immutable
sandbox (no attribute walks to Python internals, no mutation of the data) with
``StrictUndefined`` (a missing variable is an error for that recipient, never an
empty string in 100,000 texts) and no autoescaping (SMS is plain text).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from types import MappingProxyType
from typing import Any

import jinja2
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from runner.audience.encoding import (
    GSM7,
    GSM7_BASIC,
    GSM7_EXTENSION,
    UCS2,
    Segmentation,
    needs_ucs2,
    segment,
)
from runner.audience.phones import mask_phone
from runner.audience.recipient import Recipient
from runner.errors import TemplateError
from runner.model.campaign import Campaign, Template

DEFAULT_DATETIME = "%d/%m/%Y %H:%M"
DEFAULT_DATE = "%d/%m/%Y"

# Typographic characters that word processors put in copy and that would turn a
# whole message into UCS-2 (70 characters a segment instead of 160).
_GSM_SAFE = str.maketrans(
    {
        "‘": "'",
        "’": "'",
        "‚": "'",
        "′": "'",
        "“": '"',
        "”": '"',
        "„": '"',
        "″": '"',
        "«": '"',
        "»": '"',
        "–": "-",
        "—": "-",
        "‐": "-",
        "‑": "-",
        "−": "-",
        "…": "...",
        "\u00a0": " ",
        "\u2009": " ",
        "\u202f": " ",
        "\u200b": "",
        "•": "-",
    }
)


def first_name(value: object) -> str:
    """First word of a full name, whitespace trimmed: ``"  Ana María López"`` -> ``Ana``.

    Empty when the name is empty, so ``{{ name | first_name or 'there' }}`` works.
    """
    words = str(value).split()
    return words[0] if words else ""


_GSM_SAFE_KEYS = frozenset(chr(c) for c in _GSM_SAFE)


def gsm(value: object) -> str:
    """Replace typographic quotes, dashes, ellipses and odd spaces with GSM-7 ones.

    One curly apostrophe makes a message UCS-2 and can double its segments.
    """
    return str(value).translate(_GSM_SAFE)


def translit(value: object) -> str:
    """``gsm``, and Latin letters outside GSM-7 to their plain letter (``á`` ->
    ``a``, ``ç`` -> ``c``, ``ł`` stays): accents traded for 160 characters a
    segment. Letters GSM-7 has (``é``, ``ñ``, ``ü``, ``à``) are kept."""
    text = str(value).translate(_GSM_SAFE)
    if not needs_ucs2(text):
        return text
    return "".join(_plain(ch) for ch in text)


def _plain(ch: str) -> str:
    if ch in GSM7_BASIC or ch in GSM7_EXTENSION:
        return ch
    base = "".join(
        c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c)
    )
    if base and all(c in GSM7_BASIC for c in base):
        return base
    return ch


def filter_hint(chars: Iterable[str]) -> str:
    """The filter that would make these characters GSM-7, in words ("" when
    none would: an emoji, a Greek name)."""
    chars = list(chars)
    if any(ch in _GSM_SAFE_KEYS for ch in chars):
        return "the gsm filter replaces typographic quotes and dashes in a value"
    accents = [ch for ch in chars if _plain(ch) != ch]
    if accents:
        shown = ", ".join(f"{ch} -> {_plain(ch)}" for ch in accents[:3])
        return f"the translit filter trades accents for GSM-7 letters: {shown}"
    return ""


def _as_datetime(value: object, tz: tzinfo) -> datetime | date:
    """A datetime in the campaign timezone (naive ones are taken to be in it)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an ISO date or datetime: {text[:40]!r}") from None
        if len(text) == 10:  # YYYY-MM-DD: a calendar date, no timezone shift
            return value.date()
    if isinstance(value, datetime):
        return value.replace(tzinfo=tz) if value.tzinfo is None else value.astimezone(tz)
    if isinstance(value, date):
        return value
    raise ValueError(f"not a date or datetime: {type(value).__name__}")


_MAPPINGS = (dict, MappingProxyType)
_MAPPING_ATTRIBUTES = frozenset(dir(dict)) | frozenset(dir(MappingProxyType))


class _Environment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with ``vars.code`` on a plain mapping looked up
    directly: the sandbox first tries the attribute and catches AttributeError,
    which costs more than the rest of a short message. Same result (a key that
    shadows a dict method still goes the sandbox's way)."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) in _MAPPINGS and attribute not in _MAPPING_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def make_environment(tz: tzinfo) -> SandboxedEnvironment:
    """The one Jinja environment for templates, ``where`` and ``when`` expressions.

    Filters (besides Jinja's built-ins):

    - ``first_name``: first word of a full name.
    - ``datetime(fmt="%d/%m/%Y %H:%M")``: a datetime, date or ISO string formatted
      in the campaign timezone (strftime codes).
    - ``date(fmt="%d/%m/%Y")``: the same, with a date-only default format.
    - ``gsm``: typographic quotes/dashes/ellipsis replaced by GSM-7 characters.
    """
    env = _Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        auto_reload=False,
    )

    env.filters.update(
        first_name=first_name,
        datetime=_formatter(tz, DEFAULT_DATETIME),
        date=_formatter(tz, DEFAULT_DATE),
        gsm=gsm,
        translit=translit,
    )
    return env


def _formatter(tz: tzinfo, default: str) -> Callable[..., str]:
    """A date formatting filter; results are memoised, as most messages format
    the same few values (``now``, a campaign deadline)."""
    cache: dict[tuple[object, str], str] = {}

    def format_date(value: object, fmt: str = default) -> str:
        key = (value, fmt)
        try:
            return cache[key]
        except KeyError:
            pass
        except TypeError:  # unhashable: not a date anyway, let it fail below
            return _as_datetime(value, tz).strftime(fmt)
        text = _as_datetime(value, tz).strftime(fmt)
        if len(cache) >= 4096:
            cache.clear()
        cache[key] = text
        return text

    return format_date


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    segmentation: Segmentation
    variant: str | None = None  # which of the template's variants, if it has them


_UNDEFINED = re.compile(r"^'([^']+)' is undefined$")
_NO_ATTRIBUTE = re.compile(r"^'[^']+' has no attribute '([^']+)'$")
# Errors a filter or an operation can raise on a recipient's data.
_DATA_ERRORS = (ValueError, TypeError, ArithmeticError, LookupError)


def describe(error: Exception) -> str:
    """One line for a Jinja failure, saying which variable or attribute."""
    if isinstance(error, jinja2.exceptions.SecurityError):
        return f"tried to access an unsafe attribute ({error})"
    if isinstance(error, jinja2.UndefinedError):
        m = _UNDEFINED.match(str(error))
        if m:
            return f"undefined variable '{m.group(1)}'"
        # "'dict object' has no attribute 'nmae'": Jinja's words for a missing key
        m = _NO_ATTRIBUTE.match(str(error))
        return f"undefined attribute '{m.group(1)}'" if m else str(error)
    if isinstance(error, jinja2.TemplateSyntaxError):
        return f"line {error.lineno}: {error.message}"
    return f"{type(error).__name__}: {error}"


class Renderer:
    """Renders a campaign's templates for recipients; compiles each one once.

    ``now`` is fixed when the renderer is made, so every message of a run (and its
    preview) sees the same time.
    """

    def __init__(self, campaign: Campaign, now: datetime | None = None) -> None:
        self.campaign = campaign
        self.env = make_environment(campaign.timezone)
        tz = campaign.timezone
        self.now = datetime.now(tz) if now is None else _to_tz(now, tz)
        self._globals = dict(self.env.globals)  # range, dict, namespace...
        self._context_class: type[Context] = self.env.context_class
        self._base: dict[str, Any] = {
            "vars": campaign.vars,
            "campaign": campaign.name,
            "now": self.now,
        }
        self._compiled: dict[str, _Compiled] = {
            name: _Compiled(self.env, t) for name, t in campaign.templates.items()
        }
        self._expressions: dict[str, Callable[..., Any]] = {}
        self._max_segments = campaign.max_segments

    def context(self, recipient: Recipient) -> dict[str, Any]:
        """Template variables: the recipient's fields, then ``vars``, ``campaign``,
        ``now`` and ``recipient`` (those names win over a field of the same name)."""
        fields = recipient.fields
        return {**self._globals, **fields, **self._base, "recipient": fields}

    def render(self, template: str, recipient: Recipient) -> Rendered:
        """The text of ``template`` for ``recipient``, with its encoding and segments."""
        compiled = self._compiled.get(template)
        if compiled is None:
            raise TemplateError(f"no template named {template!r}")
        variant, t = compiled.pick(recipient)
        name = f"template {template!r}" + (f" variant {variant!r}" if variant else "")
        try:
            # Template.render() copies the environment globals (a ChainMap) into
            # every context, a third of the time of a short text; ours has them
            # (what Template.new_context(vars, shared=True) does, one call less).
            ctx = self._context_class(self.env, self.context(recipient), t.name, t.blocks)
            text = "".join(t.root_render_func(ctx))
        except (jinja2.TemplateError, *_DATA_ERRORS) as e:
            problem = describe(e)
            raise TemplateError(
                f"{name} {problem} for {where(recipient)}",
                f"{name}: {problem}",
                issue=problem,
                variant=variant,
                where=recipient.location,
            ) from e
        seg = count_segments(text)
        if seg.segments > self._max_segments:
            chars = f", because of {_quote(seg.non_gsm)}" if seg.non_gsm else ""
            over = f"over max_segments {self._max_segments}"
            raise TemplateError(
                f"{name} is {seg.segments} segments ({seg.encoding}"
                f"{chars}) for {where(recipient)}, {over}",
                f"{name}: {over}",
                issue=over,
                variant=variant,
                where=recipient.location,
            )
        return Rendered(text, seg, variant)

    def variant(self, template: str, recipient: Recipient) -> str | None:
        """Which variant of ``template`` the recipient gets (None: it has none,
        or none fits)."""
        compiled = self._compiled.get(template)
        try:
            return compiled.pick(recipient)[0] if compiled is not None else None
        except TemplateError:
            return None

    def evaluate(self, expression: str, context: Mapping[str, Any]) -> Any:
        """The value of a Jinja expression (``where``, ``when``, ``min``), cached."""
        fn = self._expressions.get(expression)
        if fn is None:
            try:
                fn = self.env.compile_expression(expression, undefined_to_none=False)
            except jinja2.TemplateSyntaxError as e:
                raise TemplateError(f"expression {expression!r}: {describe(e)}") from e
            self._expressions[expression] = fn
        try:
            value = fn(**context)
            if isinstance(value, jinja2.Undefined):
                value._fail_with_undefined_error()
            return value
        except (jinja2.TemplateError, *_DATA_ERRORS) as e:
            raise TemplateError(f"expression {expression!r}: {describe(e)}") from e


class _Compiled:
    """A template's compiled text, or its variants and the field that picks one."""

    def __init__(self, env: SandboxedEnvironment, template: Template) -> None:
        self.name = template.name
        self.by = template.variant_by
        self.variants: dict[str, jinja2.Template] = {}
        self.text: jinja2.Template | None = None
        self.default: jinja2.Template | None = None
        self.default_key: str | None = None
        current = ""
        try:
            if template.variants:
                for key, text in template.variants.items():
                    current = key
                    self.variants[key] = env.from_string(text)
                if template.default is not None:
                    self.default_key = template.default
                    self.default = self.variants.get(template.default)
                    if self.default is None:
                        raise TemplateError(
                            f"template {self.name!r}: default {template.default!r} "
                            "is not one of its variants"
                        )
            else:
                self.text = env.from_string(template.text or "")
        except jinja2.TemplateSyntaxError as e:
            variant = f" variant {current!r}" if current else ""
            raise TemplateError(f"template {self.name!r}{variant} {describe(e)}") from e

    def pick(self, recipient: Recipient) -> tuple[str | None, jinja2.Template]:
        """The variant's key (None without variants) and its compiled text."""
        if self.text is not None:
            return None, self.text
        assert self.by is not None
        value = recipient.fields.get(self.by)
        key = value.strip() if type(value) is str else "" if value is None else str(value)
        chosen = self.variants.get(key)
        if chosen is not None:
            return key, chosen
        if self.default is None:
            problem = f"no variant for {self.by}={key!r} and no default"
            raise TemplateError(
                f"template {self.name!r} has {problem}, for {where(recipient)}",
                f"template {self.name!r}: {problem}",
                issue=problem,
                where=recipient.location,
            )
        return self.default_key, self.default


_EXTENSION = "".join(sorted(GSM7_EXTENSION))
_NOT_GSM = re.compile(f"[^{re.escape(''.join(sorted(GSM7_BASIC)) + _EXTENSION)}]")
_IN_EXTENSION = re.compile(f"[{re.escape(_EXTENSION)}]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def count_segments(text: str) -> Segmentation:
    """``smsenc.segment`` with the single-segment cases done by C-level regex scans.

    Same result (tests/test_templating.py compares them); ~4x faster per message.
    """
    found = _NOT_GSM.findall(text)
    if not found:
        septets = len(text) + len(_IN_EXTENSION.findall(text))
        if septets <= 160:
            return _one_segment(GSM7, septets, ())
    else:
        units = len(text) + len(_ASTRAL.findall(text))
        if units <= 70:
            return _one_segment(UCS2, units, tuple(dict.fromkeys(found)))
    return segment(text)


_SEGMENTATIONS: dict[tuple[str, int, tuple[str, ...]], Segmentation] = {}


def _one_segment(encoding: str, units: int, non_gsm: tuple[str, ...]) -> Segmentation:
    # immutable and few distinct values: shared instead of built per message
    key = (encoding, units, non_gsm)
    seg = _SEGMENTATIONS.get(key)
    if seg is None:
        if len(_SEGMENTATIONS) >= 4096:
            _SEGMENTATIONS.clear()
        seg = _SEGMENTATIONS[key] = Segmentation(encoding, units, 1, non_gsm)
    return seg


def where(recipient: Recipient) -> str:
    """``recipients.csv:12 (+34*****4567)``: where a recipient came from, masked."""
    return f"{recipient.location} ({mask_phone(recipient.phone)})"


def _to_tz(now: datetime, tz: tzinfo) -> datetime:
    return now.replace(tzinfo=tz) if now.tzinfo is None else now.astimezone(tz)


def _quote(chars: tuple[str, ...]) -> str:
    return ", ".join(repr(c) for c in chars[:5])
