"""The campaign JSON Schema: loading, validating, and errors people can act on.

The schema files in top-level ``schemas/`` ship as the ``runner.schemas`` resource
package. Every error is collected (``iter_errors``), turned into one short message
at the data path it is about (an unknown key points at the key itself, with a
"Perhaps you meant" hint), and oneOf/anyOf show their best match, not a wall of
alternatives.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from runner.loader.yamlload import FieldPath

CAMPAIGN_SCHEMA = "campaign.schema.json"
_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@dataclass(frozen=True)
class SchemaIssue:
    """One schema finding at a data ``path`` (at its key when ``at_key``)."""

    path: FieldPath
    message: str
    at_key: bool = False


def schema_text(name: str = CAMPAIGN_SCHEMA) -> str:
    """A schema file's text, ``name`` relative to ``schemas/``."""
    node = resources.files("runner.schemas")
    for part in name.split("/"):
        node = node.joinpath(part)
    return node.read_text(encoding="utf-8")


# The files carry no ``$id``, so every tool (check-jsonschema, the YAML language
# server) resolves their relative ``$ref``s to the files beside them, offline. In
# memory each gets one under this base, and the registry serves them from there.
BASE_URI = "https://campaign-runner.dev/schemas/"


def _loaded(name: str) -> dict[str, Any]:
    contents: dict[str, Any] = {"$id": BASE_URI + name, **json.loads(schema_text(name))}
    return contents


@cache
def campaign_schema() -> dict[str, Any]:
    return _loaded(CAMPAIGN_SCHEMA)


@cache
def _fragment_names() -> tuple[str, ...]:
    folder = resources.files("runner.schemas").joinpath("providers")
    return tuple(
        sorted(
            f"providers/{p.name}" for p in folder.iterdir() if p.name.endswith(".json")
        )
    )


@cache
def registry() -> Registry[Any]:
    """Every schema under ``runner.schemas`` by its ``$id``: refs never go online."""
    resources_ = []
    for name in (CAMPAIGN_SCHEMA, *_fragment_names()):
        contents = _loaded(name)
        resources_.append(
            (contents["$id"], Resource.from_contents(contents, DRAFT202012))
        )
    return Registry().with_resources(resources_)


@cache
def validator() -> Draft202012Validator:
    return Draft202012Validator(
        campaign_schema(),
        registry=registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def provider_fragment(type_name: str) -> dict[str, Any]:
    """The options schema of one provider type (``schemas/providers/<type>...``)."""
    base = campaign_schema()["$id"]
    ref = f"providers/{type_name}.schema.json"
    contents: dict[str, Any] = registry().resolver(base).lookup(ref).contents
    return contents


def value_problem(subschema: Mapping[str, Any], value: Any) -> str | None:
    """What is wrong with ``value`` under one property's schema, or None."""
    v = Draft202012Validator(
        subschema, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    error = best_match(v.iter_errors(value))
    return None if error is None else _message(error)


def provider_types() -> list[str]:
    return list(campaign_schema()["$defs"]["provider_type"]["enum"])


def credential_fields(type_name: str) -> frozenset[str]:
    """Options marked ``writeOnly`` in the type's fragment: they hold secrets."""
    props = provider_fragment(type_name).get("properties", {})
    return frozenset(k for k, v in props.items() if v.get("writeOnly"))


def hint(word: str, options: Iterable[str]) -> str:
    """`` Perhaps you meant 'x'?`` when one option is close, else ``""``."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if not close:
        lowered = {o.lower(): o for o in options}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f" Perhaps you meant {close[0]!r}?" if close else ""


def field_path(path: FieldPath) -> str:
    """``("steps", 2, "send")`` -> ``steps[2].send``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def check(data: Any) -> list[SchemaIssue]:
    """Every schema problem of ``data``, one short message each."""
    with warnings.catch_warnings():
        # the format checker compiles regex options: what ``re`` only warns of
        # there is reported as an error by the loader's own check (sections.py)
        warnings.simplefilter("ignore")
        errors = list(validator().iter_errors(data))
    issues = [issue for e in errors for issue in _issues(e)]
    unique: dict[tuple[FieldPath, str], SchemaIssue] = {}
    for issue in issues:
        unique.setdefault((issue.path, issue.message), issue)
    return _drop_redundant(list(unique.values()), data)


def _drop_redundant(issues: list[SchemaIssue], data: Any) -> list[SchemaIssue]:
    """An unknown provider type makes every option "unknown", and an unknown key
    in a step often is its misspelt action: say only the first thing."""
    bad_type = {i.path[:-1] for i in issues if i.path[-1:] == ("type",)}
    said = {i.path[:-1] if i.at_key else i.path for i in issues if _is_key_issue(i)}
    kept = []
    for i in issues:
        if i.at_key and "unknown key" in i.message and i.path[:-1] in bad_type:
            continue
        if i.message.startswith("needs one of") and i.path in said:
            continue
        kept.append(i)
    return kept


def _is_key_issue(issue: SchemaIssue) -> bool:
    return "unknown key" in issue.message or " needs '" in issue.message


def _issues(e: ValidationError) -> Iterator[SchemaIssue]:
    path: FieldPath = tuple(e.absolute_path)
    inst = e.instance
    kind = e.validator
    value = e.validator_value
    if kind in ("oneOf", "anyOf"):
        keys = _required_keys(value)
        if keys is not None and isinstance(inst, Mapping):
            present = [k for k in inst if k in keys]
            if len(present) > 1:
                yield SchemaIssue(
                    (*path, present[1]),
                    f"{_and(present)} cannot be used together; keep one of them",
                    at_key=True,
                )
            else:
                yield SchemaIssue(path, f"needs one of {_or(keys)}")
            return
        best = best_match([e])
        if best is not None and best is not e:
            yield from _issues(best)
            return
        yield SchemaIssue(path, "does not match any of the allowed forms")
        return
    if "propertyNames" in e.relative_schema_path:
        yield SchemaIssue((*path, str(inst)), _message(e), at_key=True)
        return
    if kind == "required" and isinstance(inst, Mapping):
        missing = [repr(k) for k in value if k not in inst]
        if missing:
            noun = "key" if len(missing) == 1 else "keys"
            yield SchemaIssue(path, f"missing required {noun} {_and(missing)}")
        return
    if kind in ("additionalProperties", "unevaluatedProperties") and isinstance(
        inst, Mapping
    ):
        allowed = _allowed_keys(e.schema, inst)
        patterns = [re.compile(p) for p in e.schema.get("patternProperties", {})]
        for key in inst:
            if key not in allowed and not any(p.search(key) for p in patterns):
                msg = f"unknown key {key!r}.{hint(key, sorted(allowed))}"
                yield SchemaIssue((*path, key), msg.rstrip("."), at_key=True)
        return
    if kind == "dependentRequired" and isinstance(inst, Mapping):
        for key, needs in value.items():
            for need in needs:
                if key in inst and need not in inst:
                    yield SchemaIssue(path, f"{key!r} needs {need!r} too")
        return
    yield SchemaIssue(path, _message(e))


def _message(e: ValidationError) -> str:
    kind, value, inst = e.validator, e.validator_value, e.instance
    if kind == "type":
        types = [value] if isinstance(value, str) else list(value)
        return f"expected {_or([_TYPE_NAMES[t] for t in types])}, got {_kind(inst)}"
    if kind == "enum":
        msg = f"expected one of {_or([str(v) for v in value])}, got {_short(inst)}"
        more = hint(inst, [str(v) for v in value]) if isinstance(inst, str) else ""
        return f"{msg}.{more}" if more else msg
    if kind == "const":
        return f"must be {json.dumps(value)}, got {_short(inst)}"
    if kind == "pattern":
        wanted = e.schema.get("patternErrorMessage") or f"expected to match {value}"
        return f"{wanted}, got {_short(inst)}"
    if kind in ("minimum", "exclusiveMinimum"):
        return f"must be at least {value}, got {_short(inst)}"
    if kind in ("maximum", "exclusiveMaximum"):
        return f"must be at most {value}, got {_short(inst)}"
    if kind in ("minItems", "minProperties", "minLength"):
        unit = {"minItems": "items", "minProperties": "entries"}.get(kind, "characters")
        return "must not be empty" if value == 1 else f"needs at least {value} {unit}"
    if kind in ("maxItems", "maxProperties", "maxLength"):
        unit = {"maxItems": "items", "maxProperties": "entries"}.get(kind, "characters")
        return f"must have at most {value} {unit}"
    if kind == "uniqueItems":
        return "must not list the same item twice"
    if kind == "format":
        return f"not a valid {value}: {_short(inst)}"
    return e.message


def _required_keys(branches: Any) -> list[str] | None:
    """The keys of a ``oneOf: [{required: [a]}, {required: [b]}]``, else None."""
    keys = []
    for b in branches:
        if not isinstance(b, dict) or set(b) != {"required"} or len(b["required"]) != 1:
            return None
        keys.append(b["required"][0])
    return keys


def _allowed_keys(schema: Mapping[str, Any], instance: Mapping[str, Any]) -> set[str]:
    """Keys a mapping may have: its properties, plus those of the ``then`` branches
    (and ``$ref``s) that apply, e.g. a provider entry's type-specific options."""
    allowed = set(schema.get("properties", {}))
    for sub in schema.get("allOf", []):
        branch = sub
        if "if" in sub:
            applies = validator().evolve(schema=sub["if"]).is_valid(instance)
            branch = sub.get("then" if applies else "else", {})
        if "$ref" in branch:
            base = campaign_schema()["$id"]
            branch = registry().resolver(base).lookup(branch["$ref"]).contents
        allowed |= _allowed_keys(branch, instance)
    return allowed


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    for t, name in (
        (dict, "a mapping"),
        (list, "a list"),
        (str, "a string"),
        (int, "an integer"),
        (float, "a number"),
    ):
        if isinstance(value, t):
            return name
    return "null" if value is None else type(value).__name__


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _or(items: list[str], word: str = "or") -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {word} {items[-1]}"


def _and(items: list[str]) -> str:
    return _or(items, "and")


def bundled_schema_text() -> str:
    """The campaign schema as one self-contained document: each provider fragment
    inlined under ``$defs`` (``provider_<type>``) and its ``$ref`` made local."""
    bundled = copy.deepcopy(campaign_schema())
    local: dict[str, str] = {}
    for name in _fragment_names():
        key = "provider_" + name.rsplit("/", 1)[-1].split(".", 1)[0]
        fragment = json.loads(schema_text(name))
        fragment.pop("$schema", None)
        fragment.pop("$id", None)
        bundled["$defs"][key] = fragment
        local[name] = f"#/$defs/{key}"

    def relink(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: local.get(v, v) if k == "$ref" and isinstance(v, str) else relink(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [relink(v) for v in node]
        return node

    return json.dumps(relink(bundled), indent=2, ensure_ascii=False) + "\n"
