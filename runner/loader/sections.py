"""Checks and typed objects for providers, recipients and templates."""

from __future__ import annotations

import codecs
import re
import warnings
from pathlib import Path
from typing import Any

from runner.audience.phones import InvalidPhone, PhoneNormalizer
from runner.audience.sources import codec, read_layout
from runner.errors import RecipientError
from runner.loader import schema
from runner.loader.checker import Checker
from runner.loader.jinjacheck import JinjaChecker
from runner.loader.yamlload import FieldPath
from runner.model.campaign import (
    FrequencyCap,
    ProviderConfig,
    RecipientSource,
    RetryPolicy,
    Template,
    fire_template,
)
from runner.model.secrets import has_reference, references
from runner.model.timeparse import parse_cap
from runner.providers import PROVIDERS

COMMON_PROVIDER_KEYS = frozenset(
    {"type", "base_url", "concurrency", "rate", "timeout", "retry", "ca_bundle"}
)
RECIPIENT_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl"}


def providers(c: Checker, value: Any) -> dict[str, ProviderConfig]:
    """Each ``providers:`` entry of a known type, as a ProviderConfig."""
    out: dict[str, ProviderConfig] = {}
    if not isinstance(value, dict):
        return out
    for name, cfg in value.items():
        kind = cfg.get("type") if isinstance(cfg, dict) else None
        if isinstance(kind, str) and kind in PROVIDERS:
            built = provider(c, ("providers", name), name, cfg)
            if built is not None:
                out[name] = built
    return out


def provider(
    c: Checker, path: FieldPath, name: str, cfg: dict[str, Any]
) -> ProviderConfig | None:
    """One provider: common settings parsed, the rest kept as ``options`` with
    ``${VAR}`` unresolved; literal secrets and unset variables reported."""
    type_name = cfg["type"]
    options = {k: v for k, v in cfg.items() if k not in COMMON_PROVIDER_KEYS}
    secret_fields = schema.credential_fields(type_name)
    for key, value in options.items():
        if key in secret_fields and not (isinstance(value, str) and has_reference(value)):
            c.warn(
                (*path, key),
                "a literal secret in a credential field: write ${VAR} here and "
                "set VAR in the environment",
            )
        for var in dict.fromkeys(references(value)):
            if var not in c.env:
                msg = f"environment variable {var} is not set"
                if c.require_env:
                    c.error((*path, key), msg)
                else:
                    c.warn((*path, key), msg)
    for key, rule in schema.provider_fragment(type_name).get("properties", {}).items():
        value = options.get(key)
        if rule.get("format") == "regex" and isinstance(value, str):
            problem = regex_problem(value)
            if problem:
                c.error((*path, key), f"not a valid regular expression: {problem}")
    timeout = cfg.get("timeout")
    if isinstance(timeout, dict):
        connect = c.seconds((*path, "timeout", "connect"), timeout.get("connect"), 5.0)
        read = c.seconds((*path, "timeout", "read"), timeout.get("read"), 30.0)
    else:
        connect = read = c.seconds((*path, "timeout"), timeout, 5.0)
        if timeout is None:
            read = 30.0
    retry = cfg.get("retry") if isinstance(cfg.get("retry"), dict) else {}
    assert isinstance(retry, dict)
    default = RetryPolicy()
    policy = RetryPolicy(
        attempts=retry.get("attempts", default.attempts),
        base_delay=c.seconds(
            (*path, "retry", "base_delay"),
            retry.get("base_delay"),
            default.base_delay,
        ),
        max_delay=c.seconds(
            (*path, "retry", "max_delay"), retry.get("max_delay"), default.max_delay
        ),
        max_total=c.seconds(
            (*path, "retry", "max_total"), retry.get("max_total"), default.max_total
        ),
    )
    ca = cfg.get("ca_bundle")
    ca_path = c.relative_file((*path, "ca_bundle"), ca, "CA bundle")
    return ProviderConfig(
        name=name,
        type=type_name,
        base_url=cfg.get("base_url"),
        options=options,
        concurrency=cfg.get("concurrency"),
        rate=c.rate((*path, "rate"), cfg.get("rate")),
        retry=policy,
        timeout=(connect, read),
        ca_bundle=str(ca_path) if ca_path else None,
        line=c.doc.pos(path, key=True).line,
    )


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be used as a regular expression, or None.

    Warnings count: ``re`` only warns of a nested set (``[[``) that a future
    Python will read differently, and a pattern is checked here, not at send time.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        re.purge()  # a cached pattern (the schema's format check) would not warn again
        try:
            re.compile(pattern)
        except re.error as e:
            return str(e)
        except Warning as w:
            return str(w)
    return None


def recipients(c: Checker, jinja: JinjaChecker, value: Any) -> RecipientSource | None:
    """An inline list, or a mapping naming a file (which must exist) or rows."""
    path: FieldPath = ("recipients",)
    line = c.doc.pos(path, key=True).line
    if isinstance(value, list):
        rows = tuple(r for r in value if isinstance(r, dict))
        return RecipientSource(inline=rows, line=line)
    if not isinstance(value, dict):
        return None
    phone_field = value.get("phone_field", "phone")
    inline = value.get("inline")
    rows_out: tuple[dict[str, Any], ...] | None = None
    if isinstance(inline, list):
        for i, row in enumerate(inline):
            if not isinstance(row, dict) or not isinstance(phone_field, str):
                continue
            if phone_field not in row:
                c.error((*path, "inline", i), f"missing the phone field {phone_field!r}")
            elif not isinstance(row[phone_field], str):
                c.error(
                    (*path, "inline", i, phone_field),
                    "the phone number must be a string: quote it",
                )
        rows_out = tuple(r for r in inline if isinstance(r, dict))
    fmt = value.get("format")
    file = c.relative_file((*path, "file"), value.get("file"), "recipients file")
    if file is not None and fmt is None:
        fmt = RECIPIENT_SUFFIXES.get(file.suffix.lower())
        if fmt is None:
            c.error(
                (*path, "file"),
                f"cannot tell the format of {value['file']!r} from its suffix; "
                "add format: csv or format: jsonl",
            )
    encoding = value.get("encoding")
    if isinstance(encoding, str):
        try:
            codecs.lookup(encoding)
        except LookupError:
            c.error((*path, "encoding"), f"unknown text encoding {encoding!r}")
    excludes = value.get("exclude", [])
    excludes = [excludes] if isinstance(excludes, str) else excludes
    exclude_paths: list[Path] = []
    if isinstance(excludes, list):
        one = isinstance(value.get("exclude"), str)
        for i, item in enumerate(excludes):
            where = (*path, "exclude") if one else (*path, "exclude", i)
            found = c.relative_file(where, item, "exclusion file")
            if found is not None:
                exclude_paths.append(found)
    where_expr = value.get("where")
    if isinstance(where_expr, str):
        jinja.expression((*path, "where"), where_expr)
    return RecipientSource(
        inline=rows_out,
        file=file,
        format=fmt,
        phone_field=phone_field if isinstance(phone_field, str) else "phone",
        delimiter=value.get("delimiter"),
        encoding=encoding if isinstance(encoding, str) else None,
        on_invalid=value.get("on_invalid", "skip"),
        exclude=tuple(exclude_paths),
        where=where_expr if isinstance(where_expr, str) else None,
        line=line,
    )


def templates(c: Checker, jinja: JinjaChecker, value: Any) -> dict[str, Template]:
    """Each template compiled; ``{file: ...}`` read, so its errors name the file."""
    out: dict[str, Template] = {}
    if not isinstance(value, dict):
        return out
    for name, spec in value.items():
        path: FieldPath = ("templates", name)
        line = c.doc.pos(path, key=True).line
        if isinstance(spec, str):
            jinja.template(path, spec)
            out[name] = Template(name=name, text=spec, line=line)
        elif isinstance(spec, dict) and isinstance(spec.get("file"), str):
            source = c.relative_file((*path, "file"), spec["file"], "template file")
            text = read_template(c, path, source) if source else None
            if text is not None and source is not None:
                shown = str(c.path.parent / spec["file"])
                jinja.template(path, text, file=shown)
                out[name] = Template(name=name, text=text, source=source, line=line)
        elif isinstance(spec, dict) and isinstance(spec.get("variants"), dict):
            variants = spec["variants"]
            for key, text in variants.items():
                if isinstance(text, str):
                    jinja.template((*path, "variants", key), text)
            default = spec.get("default")
            if isinstance(default, str) and default not in variants:
                more = schema.hint(default, [str(k) for k in variants])
                msg = f"{default!r} is not one of the variants"
                c.error((*path, "default"), f"{msg}.{more}" if more else msg)
            out[name] = Template(
                name=name,
                variants=dict(variants),
                variant_by=spec.get("by"),
                default=default if isinstance(default, str) else None,
                line=line,
            )
    return out


def read_template(c: Checker, path: FieldPath, source: Path) -> str | None:
    try:
        return source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        c.error((*path, "file"), "the template file is not UTF-8 text")
    except OSError as e:
        c.error((*path, "file"), f"cannot read the template file: {e.strerror}")
    return None


def test_recipients(c: Checker, value: Any, region: str | None) -> tuple[str, ...]:
    """The numbers a test send goes to, in E.164; each bad one an error where it is."""
    if not isinstance(value, list):
        return ()
    normalise = PhoneNormalizer(region)
    numbers = []
    for i, raw in enumerate(value):
        if not isinstance(raw, str):
            continue  # the schema said so
        try:
            numbers.append(normalise(raw))
        except InvalidPhone as e:
            c.error(
                ("test_recipients", i), f"{raw!r} is not a phone number to send to: {e}"
            )
    return tuple(numbers)


def frequency_cap(c: Checker, value: Any) -> FrequencyCap | None:
    """``limits.per_recipient`` (and ``on_cap``), or None without one."""
    if not isinstance(value, dict) or not isinstance(value.get("per_recipient"), str):
        return None
    try:
        count, window = parse_cap(value["per_recipient"])
    except ValueError as e:
        c.error(("limits", "per_recipient"), str(e))
        return None
    return FrequencyCap(count, window, defer=value.get("on_cap") == "defer")


def fire_texts(
    c: Checker,
    jinja: JinjaChecker,
    steps: Any,
    known: Known | None,
    vars_: Any,
) -> dict[str, Template]:
    """The ``text`` of each fire step as a template of its own (``fire:ID``),
    checked like the file's templates against ``known`` (recipient_fields)."""
    out: dict[str, Template] = {}
    if not isinstance(steps, list):
        return out
    fields, where = known if known is not None else (None, "")
    known_vars = vars_ if isinstance(vars_, dict) else {}
    for i, item in enumerate(steps):
        spec = item.get("fire") if isinstance(item, dict) else None
        text = spec.get("text") if isinstance(spec, dict) else None
        if not isinstance(text, str) or not isinstance(item.get("id"), str):
            continue
        path: FieldPath = ("steps", i, "fire", "text")
        jinja.template(path, text)
        jinja.names(path, text, fields, where, known_vars)
        name = fire_template(item["id"])
        out[name] = Template(name=name, text=text, line=c.doc.pos(path).line)
    return out


def template_names(
    c: Checker,
    jinja: JinjaChecker,
    value: Any,
    known: Known | None,
    vars_: Any,
) -> None:
    """Every template's names against what the recipients and ``vars`` have
    (``known``, from recipient_fields: the CSV header is read, not the file;
    inline rows' keys are known; JSON Lines rows may differ, so their fields are
    not checked)."""
    if not isinstance(value, dict) or known is None:
        return
    fields, where = known
    known_vars = vars_ if isinstance(vars_, dict) else {}
    for name, spec in value.items():
        path: FieldPath = ("templates", name)
        if isinstance(spec, str):
            jinja.names(path, spec, fields, where, known_vars)
        elif isinstance(spec, dict) and isinstance(spec.get("file"), str):
            file = c.path.parent / spec["file"]
            text = read_template(c, path, file) if file.is_file() else None
            if text is not None:
                jinja.names(path, text, fields, where, known_vars, file=str(file))
        elif isinstance(spec, dict) and isinstance(spec.get("variants"), dict):
            for key, text in spec["variants"].items():
                if isinstance(text, str):
                    jinja.names((*path, "variants", key), text, fields, where, known_vars)


# the fields every recipient may have (None: unknown), and where they come from
Known = tuple[set[str] | None, str]


def recipient_fields(source: RecipientSource) -> Known:
    """The fields every recipient may have, and where they come from in words."""
    if source.inline is not None:
        return {str(k) for row in source.inline for k in row}, "the inline recipients"
    if source.file is None or not source.file.is_file():
        return None, ""
    fmt = source.format or RECIPIENT_SUFFIXES.get(source.file.suffix.lower())
    if fmt != "csv":
        return None, ""
    try:
        encoding = codec(source.encoding, source.file.name)
        layout = read_layout(
            source.file, source.file.name, encoding, "csv", source.delimiter, ""
        )
    except (RecipientError, UnicodeDecodeError, OSError):
        return None, ""  # reported when the file is read
    return set(layout.header), f"{source.file.name}'s header"
