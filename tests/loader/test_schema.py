"""The campaign JSON Schema: well-formed, documented, in step with the registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from paths import ROOT

from runner import providers
from runner.cli import main
from runner.loader import schema
from runner.loader.yamlload import load_file

SCHEMAS = ROOT / "schemas"


def property_schemas(node: Any, where: str = "#") -> Iterator[tuple[str, Any]]:
    """Every (location, subschema) under a ``properties`` keyword."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for name, sub in value.items():
                    yield f"{where}/properties/{name}", sub
            yield from property_schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from property_schemas(value, f"{where}/{i}")


def test_schemas_are_valid_draft_2020_12() -> None:
    for path in SCHEMAS.rglob("*.schema.json"):
        doc = json.loads(path.read_text())
        Draft202012Validator.check_schema(doc)
        # no $id: tools resolve the relative $refs to the files beside them
        assert "$id" not in doc, path


def test_campaign_schema_ships_as_package_data() -> None:
    assert schema.campaign_schema() == {
        "$id": schema.BASE_URI + "campaign.schema.json",
        **json.loads((SCHEMAS / "campaign.schema.json").read_text()),
    }


def test_provider_types_equal_the_registry() -> None:
    assert schema.provider_types() == sorted(providers.PROVIDERS)
    provider = schema.campaign_schema()["$defs"]["provider"]
    branches = {
        b["if"]["properties"]["type"]["const"]: b["then"]["$ref"]
        for b in provider["allOf"]
    }
    assert branches == {
        t: f"providers/{t}.schema.json" for t in sorted(providers.PROVIDERS)
    }
    for t, cls in providers.PROVIDERS.items():
        assert cls.schema == f"providers/{t}.schema.json"


def test_every_property_has_a_description() -> None:
    top = schema.campaign_schema()
    defs = top["$defs"]
    missing = []
    for where, sub in property_schemas(top):
        if "/if/" in where:  # conditions, not properties a user writes
            continue
        target = sub
        if "description" not in sub and "$ref" in sub:
            target = defs[sub["$ref"].rsplit("/", 1)[-1]]
        if "description" not in target:
            missing.append(where)
    assert missing == []


def test_typo_prone_objects_refuse_unknown_keys() -> None:
    defs = schema.campaign_schema()["$defs"]
    assert schema.campaign_schema()["additionalProperties"] is False
    for name in ("step", "send", "check_credits", "check_report", "expect", "schedule"):
        assert defs[name]["additionalProperties"] is False, name
    assert defs["provider"]["unevaluatedProperties"] is False


def test_credential_fields_come_from_write_only() -> None:
    for t in providers.PROVIDERS:
        props = json.loads((SCHEMAS / f"providers/{t}.schema.json").read_text())[
            "properties"
        ]
        expected = {k for k, v in props.items() if v.get("writeOnly")}
        assert schema.credential_fields(t) == expected
        assert expected  # every provider has at least one secret


def test_bundled_schema_is_self_contained_and_equivalent() -> None:
    bundled = json.loads(schema.bundled_schema_text())
    Draft202012Validator.check_schema(bundled)
    refs = [v for where, v in _walk(bundled) if where.endswith("/$ref")]
    assert refs and all(r.startswith("#/") for r in refs)
    assert set(bundled["$defs"]) >= {f"provider_{t}" for t in providers.PROVIDERS}
    validator = Draft202012Validator(bundled)
    for example in sorted((ROOT / "campaigns").glob("*.yaml")):
        data = load_file(example).data
        assert list(validator.iter_errors(data)) == []
        broken = dict(data, providers={"p": {"type": "tatango", "email": "x"}})
        errors = {e.message for e in validator.iter_errors(broken)}
        assert "'api_key' is a required property" in errors


def _walk(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{where}/{k}", v
            yield from _walk(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{where}/{i}")


def test_schema_command_prints_the_bundle(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == json.loads(schema.bundled_schema_text())


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), ""),
        (("steps", 2, "send", "provider"), "steps[2].send.provider"),
        (("providers", "main", "timeout", "read"), "providers.main.timeout.read"),
        (("recipients", 0), "recipients[0]"),
    ],
)
def test_field_path(path: tuple[str | int, ...], text: str) -> None:
    assert schema.field_path(path) == text


def test_hint() -> None:
    assert schema.hint("sned", ["send", "wait"]) == " Perhaps you meant 'send'?"
    assert schema.hint("ES", ["es", "en"]) == " Perhaps you meant 'es'?"
    assert schema.hint("zzz", ["send", "wait"]) == ""


def messages(data: dict[str, Any]) -> dict[tuple[str | int, ...], str]:
    return {i.path: i.message for i in schema.check(data)}


BASE: dict[str, Any] = {
    "version": 1,
    "name": "x",
    "providers": {"p": {"type": "tatango", "email": "e", "api_key": "${K}"}},
    "recipients": [{"phone": "+1"}],
    "templates": {"t": "hi"},
    "steps": [{"id": "s", "send": {"provider": "p", "template": "t"}}],
}


def test_valid_data_has_no_issues() -> None:
    assert schema.check(BASE) == []


def test_unknown_key_points_at_the_key_with_a_hint() -> None:
    data = dict(BASE, steps=[{"id": "s", "sned": {}}])
    issues = schema.check(data)
    assert len(issues) == 1  # not also "needs one of send, ..."
    assert issues[0].at_key
    assert issues[0].path == ("steps", 0, "sned")
    assert issues[0].message == "unknown key 'sned'. Perhaps you meant 'send'?"


def test_provider_options_are_known_only_for_their_type() -> None:
    p = {"type": "tatango", "email": "e", "api_key": "${K}", "username": "u"}
    assert messages(dict(BASE, providers={"p": p})) == {
        ("providers", "p", "username"): "unknown key 'username'"
    }
    # a missing option does not make the others "unevaluated"
    p = {"type": "tellody", "username": "u", "unit": "day"}
    assert messages(dict(BASE, providers={"p": p})) == {
        ("providers", "p"): "missing required key 'password'"
    }


def test_unknown_provider_type_is_one_problem() -> None:
    p = {"type": "tatangoo", "email": "e", "api_key": "${K}"}
    assert messages(dict(BASE, providers={"p": p})) == {
        ("providers", "p", "type"): "expected one of mailup, ogangi, tatango or "
        "tellody, got 'tatangoo'. Perhaps you meant 'tatango'?"
    }


def test_exactly_one_action() -> None:
    two = {"id": "s", "wait": "1m", "send": {"provider": "p", "template": "t"}}
    none = {"id": "s", "after": "1m"}
    assert messages(dict(BASE, steps=[two, none])) == {
        ("steps", 0, "send"): "wait and send cannot be used together; keep one of them",
        ("steps", 1): "needs one of send, fire, check_credits, check_report or wait",
    }


def test_type_errors_never_echo_the_value() -> None:
    p = {"type": "tatango", "email": "e", "api_key": 123456789}
    [issue] = schema.check(dict(BASE, providers={"p": p}))
    assert issue.message == "expected a string, got an integer"
    assert "123456789" not in issue.message


def test_pattern_errors_say_what_is_expected() -> None:
    step = {"id": "s", "wait": "10 minutes"}
    assert messages(dict(BASE, steps=[step])) == {
        ("steps", 0, "wait"): "expected a duration: a number and a unit such as "
        "500ms, 30s, 15m, 2h or 1d, got '10 minutes'"
    }


def test_extension_keys_hold_anchors() -> None:
    assert schema.check(dict(BASE, **{"x-common": {"a": 1}})) == []
