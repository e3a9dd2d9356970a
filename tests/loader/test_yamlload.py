"""Safe YAML loading: positions, duplicate keys, limits, YAML 1.2 scalars."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from runner.loader import yamlload
from runner.loader.yamlload import Pos, YamlError, load_bytes, load_file, load_text


def error_of(text: str) -> YamlError:
    with pytest.raises(YamlError) as info:
        load_text(text)
    return info.value


def test_positions_of_values_and_keys_are_one_based() -> None:
    doc = load_text("a: 1\nsteps:\n  - id: x\n    wait: 5m\n")
    assert doc.values[("a",)] == Pos(1, 4)
    assert doc.keys[("steps",)] == Pos(2, 1)
    assert doc.values[("steps", 0)] == Pos(3, 5)
    assert doc.keys[("steps", 0, "wait")] == Pos(4, 5)
    assert doc.values[("steps", 0, "wait")] == Pos(4, 11)


def test_pos_falls_back_to_the_nearest_ancestor() -> None:
    doc = load_text("a:\n  b: 1\n")
    assert doc.pos(("a", "b", "missing")) == Pos(2, 6)
    assert doc.pos(("a", "b"), key=True) == Pos(2, 3)


def test_block_scalars_are_marked() -> None:
    doc = load_text("t: |\n  hello\n  world\nu: plain\n")
    assert doc.values[("t",)].block
    assert not doc.values[("u",)].block
    assert doc.data["t"] == "hello\nworld\n"


def test_duplicate_key_names_both_lines() -> None:
    e = error_of("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n")
    assert (e.line, e.col) == (5, 3)
    assert e.message == "duplicate key 'c' (first defined on line 3)"
    assert e.path == ("b", "c")


def test_tab_indentation_is_refused_with_its_position() -> None:
    e = error_of("a:\n  b: 1\n\tc: 2\n")
    assert (e.line, e.col) == (3, 1)
    assert "tab" in e.message


def test_syntax_error_has_line_and_column() -> None:
    e = error_of("a: [1, 2\nb: 3\n")
    assert e.line == 2
    assert e.message.startswith("YAML syntax error:")
    assert "line 1" in e.message


def test_more_than_one_document_is_refused() -> None:
    e = error_of("a: 1\n---\nb: 2\n")
    assert "more than one YAML document" in e.message


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file(text: str) -> None:
    assert "empty" in error_of(text).message


def test_alias_bomb_is_stopped_quickly() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 12):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    e = error_of("\n".join(lines) + "\n")
    assert "alias" in e.message
    assert e.line > 1


def test_self_referencing_alias_does_not_recurse_forever() -> None:
    e = error_of("a: &x [*x]\n")
    assert "too deep" in e.message


def test_deep_nesting_is_refused() -> None:
    e = error_of("a: " + "[" * 200 + "]" * 200 + "\n")
    assert "deep" in e.message or "syntax" in e.message


def test_a_few_aliases_and_merge_keys_work() -> None:
    doc = load_text(
        "base: &b {x: 1, y: 2}\n"
        "one: {<<: *b, y: 3}\n"
        "two: *b\n"
        "three: {<<: [*b, {z: 4}], x: 0}\n"
    )
    assert doc.data["one"] == {"x": 1, "y": 3}
    assert doc.data["two"] == {"x": 1, "y": 2}
    assert doc.data["three"] == {"x": 0, "y": 2, "z": 4}


def test_yaml_1_2_core_scalars() -> None:
    doc = load_text(
        "no_: NO\nno2: no\nyes_: yes\non: on\nt: true\nf: False\n"
        "time: 09:30\nday: 2026-05-17\nstamp: 2026-05-17T09:30:00Z\n"
        "oct: 010\nhex: 0x1F\noct2: 0o17\nfl: 1.5\nexp: 1e3\ninf: -.inf\n"
        "null1: ~\nnull2:\nphone: +34600000001\n"
    )
    d = doc.data
    assert d["no_"] == "NO" and d["no2"] == "no" and d["yes_"] == "yes"
    assert d["on"] == "on"
    assert d["t"] is True and d["f"] is False
    assert d["time"] == "09:30"  # YAML 1.1 would give 570
    assert d["day"] == "2026-05-17" and d["stamp"] == "2026-05-17T09:30:00Z"
    assert d["oct"] == 10 and d["hex"] == 31 and d["oct2"] == 15
    assert d["fl"] == 1.5 and d["exp"] == 1000.0 and d["inf"] == -math.inf
    assert d["null1"] is None and d["null2"] is None
    assert d["phone"] == 34600000001  # unquoted: a number (the schema says quote it)


def test_keys_are_their_source_text() -> None:
    doc = load_text("vars: {1: a, true: b, 2026-01-01: c}\n")
    assert doc.data["vars"] == {"1": "a", "true": "b", "2026-01-01": "c"}


def test_non_scalar_keys_and_unknown_tags_are_refused() -> None:
    assert "plain value" in error_of("? [a]\n: 1\n").message
    assert "unsupported tag" in error_of("a: !!binary aGk=\n").message
    assert "unsupported tag" in error_of("a: !!python/object:os.system ls\n").message


def test_explicit_str_tag_keeps_text() -> None:
    assert load_text("a: !!str 0123\n").data == {"a": "0123"}


def test_not_utf8_and_nul_are_reported_with_position() -> None:
    with pytest.raises(YamlError) as info:
        load_bytes(b"a: 1\nb: caf\xe9\n")
    assert (info.value.line, info.value.col) == (2, 7)
    assert "UTF-8" in info.value.message
    with pytest.raises(YamlError) as info:
        load_bytes(b"a: 1\nb: x\x00\n")
    assert info.value.line == 2


def test_bom_is_tolerated() -> None:
    assert load_bytes("\ufeffa: 1\n".encode()).data == {"a": 1}


def test_too_large_file_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:  # sparse: no 11 MiB write
        f.truncate(yamlload.MAX_BYTES + 1)
    with pytest.raises(YamlError) as info:
        load_file(big)
    assert "too large" in info.value.message
    assert "10 MiB" in info.value.message


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(YamlError) as info:
        load_file(tmp_path / "nope.yaml")
    assert "cannot read" in info.value.message
