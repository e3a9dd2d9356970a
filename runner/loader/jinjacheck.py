"""Compile-time checks of Jinja templates and expressions in a campaign file.

Uses the project's own environment (``runner.audience.templates.make_environment``) so
its custom filters count as known. Jinja reports a line inside the template;
it is mapped to the line in the YAML file (or in the template file).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import tzinfo
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.parser import Parser

from runner.audience.templates import make_environment
from runner.loader import schema
from runner.loader.checker import Checker
from runner.loader.yamlload import FieldPath, Pos

# what every template has besides the recipient's fields (Renderer.context)
# and, in a follow-up step, the earlier message
TEMPLATE_NAMES = frozenset({"vars", "campaign", "now", "recipient", "previous"})


class JinjaChecker:
    def __init__(self, checker: Checker, tz: tzinfo) -> None:
        self.checker = checker
        self.env = make_environment(tz)

    def template(self, path: FieldPath, text: str, *, file: str | None = None) -> None:
        """Report syntax errors and unknown filters/tests of one template text."""
        try:
            ast = self.env.parse(text)
            unknown = self._unknown_names(ast)
            if not unknown:
                self.env.compile(ast)
        except TemplateSyntaxError as e:
            self._report(path, f"template syntax error: {e.message}", e.lineno, file)
            return
        except RecursionError:
            self._report(path, "template nesting is too deep", 1, file)
            return
        for lineno, message in unknown:
            self._report(path, message, lineno, file)

    def expression(self, path: FieldPath, text: str) -> nodes.Expr | None:
        """Check one expression (``where``, ``when``, ``min``); its AST when valid."""
        try:
            self.env.compile_expression(text)
            parser = Parser(self.env, text, state="variable")
            expr = parser.parse_expression()
        except TemplateSyntaxError as e:
            self.checker.error(path, f"expression syntax error: {e.message}")
            return None
        except RecursionError:
            self.checker.error(path, "expression nesting is too deep")
            return None
        for _, message in self._unknown_names(expr):
            self.checker.error(path, message)
        return expr

    def names(
        self,
        path: FieldPath,
        text: str,
        fields: Collection[str] | None,
        where: str,
        vars_: Mapping[str, Any],
        *,
        file: str | None = None,
    ) -> None:
        """Names a template uses that nothing gives it: a recipient field the
        data has not (``fields``: the CSV header or the inline rows' keys, None
        when unknown), a key ``vars`` has not. A name the template tests with
        ``is defined`` or gives a ``default`` is left alone."""
        try:
            ast = self.env.parse(text)
            undeclared = meta.find_undeclared_variables(ast)
        except TemplateError:
            return  # reported by template()
        guarded = {
            n.name
            for node in ast.find_all((nodes.Test, nodes.Filter))
            if node.name in ("defined", "undefined", "default", "d")
            for n in node.find_all(nodes.Name)
        }
        if fields is not None:
            known = set(fields) | set(self.env.globals) | TEMPLATE_NAMES
            for name in sorted(undeclared - known - guarded):
                line = next(n.lineno for n in ast.find_all(nodes.Name) if n.name == name)
                columns = ", ".join(sorted(fields)[:8]) or "none"
                more = schema.hint(name, sorted(fields))
                msg = f"undefined variable {name!r}: no such field in {where} ({columns})"
                self._report(path, f"{msg}.{more}" if more else msg, line, file)
        for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
            target = getattr(node, "node", None)
            if not (isinstance(target, nodes.Name) and target.name == "vars"):
                continue
            if isinstance(node, nodes.Getattr):
                key: Any = node.attr
            elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
                key = node.arg.value
            else:
                continue
            if key in vars_ or "vars" in guarded:
                continue
            more = schema.hint(str(key), sorted(str(k) for k in vars_))
            msg = f"vars has no {key!r}"
            self._report(path, f"{msg}.{more}" if more else msg, node.lineno, file)

    def _unknown_names(self, ast: nodes.Node) -> list[tuple[int, str]]:
        found: list[tuple[int, str]] = []
        for kind, registry, node_type in (
            ("filter", self.env.filters, nodes.Filter),
            ("test", self.env.tests, nodes.Test),
        ):
            for node in ast.find_all(node_type):
                name = getattr(node, "name", "")
                if name not in registry:
                    found.append((node.lineno, _unknown(kind, name, registry)))
        return sorted(found)

    def _report(
        self, path: FieldPath, message: str, lineno: int, file: str | None
    ) -> None:
        lineno = max(lineno or 1, 1)
        if file is not None:
            self.checker.error(path, message, pos=Pos(lineno, 1), file=file)
            return
        doc = self.checker.doc
        start = doc.pos(path)
        line = start.line + lineno if start.block else start.line + lineno - 1
        col = start.col if line == start.line else _indent(doc.lines, line)
        self.checker.error(path, message, pos=Pos(line, col))


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    more = schema.hint(name, sorted(known))
    return f"unknown {kind} {name!r}.{more}" if more else f"unknown {kind} {name!r}"


def _indent(lines: tuple[str, ...], line: int) -> int:
    if 0 < line <= len(lines):
        text = lines[line - 1]
        return len(text) - len(text.lstrip(" ")) + 1
    return 1
