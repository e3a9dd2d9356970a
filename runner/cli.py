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
from types import ModuleType

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
    "sandbox": "runner.commands.sandbox",
    "daemon": "runner.commands.daemon",
    "status": "runner.commands.status",
    "suppress": "runner.commands.suppress",
    "pin": "runner.commands.pin",
}


def command_module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (``only``) one with just that command's arguments."""
    parser = argparse.ArgumentParser(
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
        p.set_defaults(func=module.main)
    return parser


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
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: 0 for --help, 2 for usage errors
        return int(e.code or 0)
    logging.basicConfig(
        level=logging.DEBUG
        if args.verbose > 1
        else logging.INFO
        if args.verbose
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
