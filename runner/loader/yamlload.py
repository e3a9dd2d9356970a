"""Safe YAML loading that keeps where every value came from.

The text is composed into nodes (libyaml when available) and turned into plain
data by our own walk, so that every key and value keeps its ``line:col`` for
error messages, duplicate keys are refused (PyYAML silently keeps the last),
alias bombs and absurd sizes stop with a clear error, and scalars follow the
YAML 1.2 core schema: only ``true``/``false`` are booleans (``NO`` stays the
country code), no sexagesimal ``09:00`` integers, and timestamps stay strings so
the schema's patterns and our own parser see the text the user wrote.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 10 * 1024 * 1024
MAX_NODES = 2_000_000  # values after alias expansion
MAX_ALIASES = 10_000  # uses of an anchored list or mapping
MAX_DEPTH = 64

FieldPath = tuple[str | int, ...]

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Composes only; implicit tags are those of the YAML 1.2 core schema."""


_Loader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in (
    (_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (_NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        _FLOAT,
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    (_MERGE, r"^(?:<<)$", "<"),
):
    _Loader.add_implicit_resolver(_tag, re.compile(_regexp), list(_first))


@dataclass(frozen=True)
class Pos:
    """1-based line and column; ``block`` for ``|``/``>`` scalars (text starts on
    the next line)."""

    line: int
    col: int
    block: bool = False


@dataclass(frozen=True)
class Document:
    """Loaded data plus the position of each value and of each mapping key."""

    data: Any
    values: Mapping[FieldPath, Pos] = field(default_factory=dict)
    keys: Mapping[FieldPath, Pos] = field(default_factory=dict)
    lines: tuple[str, ...] = ()  # the source, to place errors inside block scalars

    def pos(self, path: FieldPath, *, key: bool = False) -> Pos:
        """Where ``path`` is (its key when ``key``), else its nearest ancestor."""
        if key and path in self.keys:
            return self.keys[path]
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, Pos(1, 1))


class YamlError(Exception):
    """The text is not a YAML document we accept; ``line``/``col`` are 1-based."""

    def __init__(
        self, message: str, line: int = 1, col: int = 1, path: FieldPath = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col
        self.path = path  # the data path, when known


def load_file(path: Path) -> Document:
    """Read and load ``path``; every failure is a YamlError (OSError too)."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise YamlError(
                f"file is too large ({size / 1048576:.1f} MiB; the limit is "
                f"{MAX_BYTES // 1048576} MiB)"
            )
        raw = path.read_bytes()
    except OSError as e:
        raise YamlError(f"cannot read the file: {e.strerror or e}") from None
    return load_bytes(raw)


def load_bytes(raw: bytes) -> Document:
    if len(raw) > MAX_BYTES:
        raise YamlError(
            f"file is too large ({len(raw) / 1048576:.1f} MiB; the limit is "
            f"{MAX_BYTES // 1048576} MiB)"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise YamlError("not UTF-8 text (save the file as UTF-8)", line, col) from None
    return load_text(text)


def load_text(text: str) -> Document:
    """Load one YAML document from ``text``."""
    if "\x00" in text:
        i = text.index("\x00")
        line = text.count("\n", 0, i) + 1
        raise YamlError("NUL character in the file", line, i - text.rfind("\n", 0, i))
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        raise _syntax_error(e, text) from None
    except yaml.reader.ReaderError as e:
        at = max(0, min(int(e.position), len(text)))
        line = text.count("\n", 0, at) + 1
        col = at - (text.rfind("\n", 0, at) + 1) + 1
        char = f"U+{e.character:04X}" if isinstance(e.character, int) else "character"
        raise YamlError(f"{char} is not allowed in YAML text", line, col) from None
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid"
        raise YamlError(f"invalid YAML: {first}") from None
    except RecursionError:
        raise YamlError(f"nesting is too deep (more than {MAX_DEPTH} levels)") from None
    doc = None if node is None else _Walker().run(node, tuple(text.splitlines()))
    if doc is None or doc.data is None:
        raise YamlError("the file is empty (expected a campaign mapping)")
    return doc


def _syntax_error(e: yaml.MarkedYAMLError, text: str) -> YamlError:
    mark = e.problem_mark or e.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = (e.problem or "invalid YAML").strip()
    lines = text.splitlines()
    bad = lines[line - 1][col - 1 : col] if 0 < line <= len(lines) else ""
    if bad == "\t" or ("\t" in problem and "character" in problem):
        return YamlError("tab character: YAML must be indented with spaces", line, col)
    if "another document" in problem:
        return YamlError(
            "more than one YAML document (a second '---'); a campaign is one document",
            line,
            col,
        )
    context = f" ({e.context.strip()})" if e.context else ""
    cm, pm = e.context_mark, e.problem_mark
    if e.context and cm is not None and pm is not None and cm.line != pm.line:
        context = f" ({e.context.strip()} on line {cm.line + 1})"
    return YamlError(f"YAML syntax error: {problem}{context}", line, col)


def _pos(node: yaml.Node) -> Pos:
    style = getattr(node, "style", None)
    return Pos(node.start_mark.line + 1, node.start_mark.column + 1, style in ("|", ">"))


class _Walker:
    """Turns the node graph into data, counting expanded nodes to stop alias bombs."""

    def __init__(self) -> None:
        self.values: dict[FieldPath, Pos] = {}
        self.keys: dict[FieldPath, Pos] = {}
        self.count = 0
        self.aliases = 0
        self.seen: set[int] = set()

    def run(self, node: yaml.Node, lines: tuple[str, ...]) -> Document:
        data = self.value(node, (), 0)
        return Document(data, self.values, self.keys, lines)

    def value(self, node: yaml.Node, path: FieldPath, depth: int) -> Any:
        self.count += 1
        if id(node) in self.seen:
            self.aliases += 1
        elif not isinstance(node, yaml.ScalarNode):
            self.seen.add(id(node))
        if self.aliases > MAX_ALIASES:
            raise YamlError(
                f"too many alias uses (more than {MAX_ALIASES}): "
                "an alias bomb? Write the values out instead",
                *self.where(path, node),
            )
        if self.count > MAX_NODES:
            raise YamlError(
                f"too many values (more than {MAX_NODES})", *self.where(path, node)
            )
        if depth > MAX_DEPTH:
            raise YamlError(
                f"nesting is too deep (more than {MAX_DEPTH} levels)", *_xy(node)
            )
        self.values.setdefault(path, _pos(node))
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag not in (_SEQ, "!"):
                raise YamlError(f"unsupported tag {node.tag}", *_xy(node))
            items = enumerate(node.value)
            return [self.value(n, (*path, i), depth + 1) for i, n in items]
        return scalar(node)

    def where(self, path: FieldPath, node: yaml.Node) -> tuple[int, int, FieldPath]:
        """The innermost key holding ``path``: an alias's own node is elsewhere."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.keys:
                return self.keys[path[:n]].line, self.keys[path[:n]].col, path[:n]
        return (*_xy(node), ())

    def mapping(self, node: yaml.MappingNode, path: FieldPath, depth: int) -> Any:
        if node.tag not in (_MAP, "!"):
            raise YamlError(f"unsupported tag {node.tag}", *_xy(node))
        out: dict[str, Any] = {}
        first: dict[str, Pos] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.update(self.merge(value_node, path, depth))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError(
                    "a mapping key must be a plain value, not a list or mapping",
                    *_xy(key_node),
                )
            key = key_node.value
            kpos = _pos(key_node)
            if key in first:
                raise YamlError(
                    f"duplicate key {key!r} (first defined on line {first[key].line})",
                    kpos.line,
                    kpos.col,
                    (*path, key),
                )
            first[key] = kpos
            self.keys[(*path, key)] = kpos
            out[key] = self.value(value_node, (*path, key), depth + 1)
        return {**merged, **out}

    def merge(self, node: yaml.Node, path: FieldPath, depth: int) -> dict[str, Any]:
        """``<<: *base`` (or a list of them): keys the mapping itself sets win."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        out: dict[str, Any] = {}
        for src in reversed(sources):
            if not isinstance(src, yaml.MappingNode):
                raise YamlError("'<<' merges only mappings", *_xy(src))
            out.update(self.mapping(src, path, depth + 1))
        return out


def _xy(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def scalar(node: yaml.Node) -> Any:
    """A scalar by the YAML 1.2 core schema; explicit ``!!timestamp`` stays text."""
    text = node.value
    tag = node.tag
    if tag in (_STR, _TIMESTAMP, "!"):
        return text
    if tag == _NULL:
        return None
    if tag == _BOOL:
        if text.lower() not in ("true", "false"):
            raise YamlError(f"not a boolean: {text!r} (use true or false)", *_xy(node))
        return text.lower() == "true"
    if tag == _INT:
        try:
            if text.startswith("0o"):
                return int(text[2:], 8)
            if text.startswith("0x"):
                return int(text[2:], 16)
            return int(text)
        except ValueError:
            raise YamlError(f"not an integer: {text!r}", *_xy(node)) from None
    if tag == _FLOAT:
        lowered = text.lower()
        if lowered.endswith(".inf"):
            return -math.inf if lowered.startswith("-") else math.inf
        if lowered == ".nan":
            return math.nan
        try:
            return float(text)
        except ValueError:
            raise YamlError(f"not a number: {text!r}", *_xy(node)) from None
    raise YamlError(f"unsupported tag {tag}", *_xy(node))
