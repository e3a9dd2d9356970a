"""The command line: builds the parser from the command modules and dispatches.

``main`` is the one error boundary that maps exceptions to exit codes: 0 ok, 1
expected failure, 2 usage or invalid input, 3 internal error (traceback to a
file, one line on screen), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import NoReturn

from runner import __version__
from runner.errors import RunnerError, write_crash_log

# name -> module, in the order ``--help`` lists them. Only the module of the
# command being run is imported: importing all of them (SQLAlchemy, APScheduler,
# Jinja, lxml, prometheus_client) costs ~0.6 s of start-up (measured with
# ``python -X importtime``), which ``validate`` and ``--help`` need not pay.
COMMANDS: dict[str, str] = {
    "new": "runner.commands.new",
    "validate": "runner.commands.validate",
    "schema": "runner.commands.schema",
    "preview": "runner.commands.preview",
    "run": "runner.commands.run",
    "test": "runner.commands.test",
    "retry": "runner.commands.retry",
    "pause": "runner.commands.pause",
    "resume": "runner.commands.resume",
    "cancel": "runner.commands.cancel",
    "history": "runner.commands.history",
    "show": "runner.commands.show",
    "why": "runner.commands.why",
    "sandbox": "runner.commands.sandbox",
    "daemon": "runner.commands.daemon",
    "status": "runner.commands.status",
    "suppress": "runner.commands.suppress",
    "pin": "runner.commands.pin",
    "completion": "runner.commands.completion",
}


def command_module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


class ArgumentError(Exception):
    """argparse's usage error, raised so that ``main`` may read the line again."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class Parser(argparse.ArgumentParser):
    """argparse, whose errors are raised instead of exiting (sub-parsers too)."""

    def error(self, message: str) -> NoReturn:
        raise ArgumentError(self, message)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (``only``) one with just that command's arguments."""
    parser = Parser(
        prog="campaign-runner",
        description="Declarative SMS campaigns: validate, preview, run, schedule.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        if only is not None and name != only:
            sub.add_parser(name)
            continue
        module = command_module(name)
        doc = (module.main.__doc__ or "").strip()
        p = sub.add_parser(
            name, help=doc.splitlines()[0] if doc else None, description=doc
        )
        module.add_arguments(p)
        _verbose_after(p)
        p.set_defaults(func=module.main)
        if getattr(module, "WANTS_PARSER", False):  # completion: every command's
            p.set_defaults(parser=build_parser)
    return parser


def _verbose_after(p: argparse.ArgumentParser) -> None:
    """``-v`` after the command too (``run x.yaml -v``, ``suppress list -v``),
    counted with the one before it."""
    p.add_argument(
        "-v",
        "--verbose",
        dest="command_verbose",
        action="count",
        default=0,
        help="more logging (-vv: debug)",
    )
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _verbose_after(sub)


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed; options go before or after the file.

    argparse alone misreads two orders people type: an option whose value is
    optional takes the word after it (``run --resume FILE`` reads FILE as the run
    id, then misses FILE), and a command's action's options must follow the
    action (``suppress --format json list``). When the line as typed fails, it is
    read again in the order argparse expects; if that fails too, its error (about
    the words as argparse reads them) is the one reported.
    """
    try:
        return parser.parse_args(argv)
    except ArgumentError as first:
        error = first
        for retry in _reorderings(parser, argv):
            try:
                return parser.parse_args(retry)
            except ArgumentError as e:
                error = e
        raise error from None


def _reorderings(parser: argparse.ArgumentParser, argv: list[str]) -> list[list[str]]:
    command = _command_in(argv)
    if command is None or "--" in argv:
        return []
    at = argv.index(command)
    sub = _subparser(parser, command)
    if sub is None:
        return []
    candidates = []
    actions = _actions_first(sub, argv, at)
    for words in (_files_as_positionals(sub, argv), actions):
        if words is not None:
            candidates.append(words)
    if actions is not None:
        both = _files_as_positionals(sub, actions)
        if both is not None:
            candidates.append(both)
    return [c for c in candidates if c != argv]


def _subparser(
    parser: argparse.ArgumentParser, name: str
) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser | None = action.choices.get(name)
            return found
    return None


def _files_as_positionals(
    sub: argparse.ArgumentParser, argv: list[str]
) -> list[str] | None:
    """An option with an optional value followed by an existing file: the file
    is the command's positional, and the option takes no value
    (``run --resume x.yaml`` -> ``run --resume -- x.yaml``)."""
    optional = {
        flag
        for a in sub._actions
        if a.option_strings and a.nargs == argparse.OPTIONAL
        for flag in a.option_strings
    }
    kept, moved = [], []
    i = 0
    while i < len(argv):
        kept.append(argv[i])
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if argv[i] in optional and nxt and not nxt.startswith("-") and Path(nxt).exists():
            moved.append(nxt)
            i += 1
        i += 1
    return [*kept, "--", *moved] if moved else None


def _actions_first(
    sub: argparse.ArgumentParser, argv: list[str], at: int
) -> list[str] | None:
    """A command with actions (``suppress list``): the options written before the
    action go after it (``suppress --format json list`` -> ``suppress list
    --format json``)."""
    for action in sub._actions:
        if isinstance(action, argparse._SubParsersAction):
            for j in range(at + 1, len(argv)):
                if argv[j] in action.choices:
                    if j == at + 1:
                        return None
                    return [*argv[: at + 1], argv[j], *argv[at + 1 : j], *argv[j + 1 :]]
    return None


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named on the line (the first word that is not an option)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_in(argv))
    try:
        args = parse(parser, argv)
    except ArgumentError as e:
        e.parser.print_usage(sys.stderr)
        print(f"{e.parser.prog}: error: {e.message}", file=sys.stderr)  # noqa: T201
        return 2
    except SystemExit as e:  # argparse: 0 for --help and --version
        return int(e.code or 0)
    verbose = args.verbose + getattr(args, "command_verbose", 0)
    logging.basicConfig(
        level=logging.DEBUG
        if verbose > 1
        else logging.INFO
        if verbose
        else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("campaign-runner: interrupted", file=sys.stderr)  # noqa: T201
        return 130
    except RunnerError as e:
        print(f"campaign-runner: {e}", file=sys.stderr)  # noqa: T201
        return e.exit_code
    except BrokenPipeError:
        return 0
    except Exception as e:  # the one place an unexpected error is caught
        path = write_crash_log()
        print(  # noqa: T201
            f"campaign-runner: internal error: {type(e).__name__}; details in {path}",
            file=sys.stderr,
        )
        return 3
