"""The command line: thin commands that parse arguments and call one domain function.

Each command's help text is its docstring. ``main`` is the one error boundary that
maps exceptions to exit codes: 0 ok, 1 expected failure, 2 usage or invalid input,
3 internal error (traceback to a file, one line on screen), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import __version__
from runner.errors import RunnerError, UsageError, write_crash_log

log = logging.getLogger("runner")

CommandFn = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Arg:
    flags: tuple[str, ...]
    kwargs: dict[str, Any]


def arg(*flags: str, **kwargs: Any) -> Arg:
    return Arg(flags, kwargs)


COMMANDS: dict[str, tuple[CommandFn, tuple[Arg, ...]]] = {}


def command(name: str, *args: Arg) -> Callable[[CommandFn], CommandFn]:
    """Register a subcommand; its docstring is its help."""

    def register(fn: CommandFn) -> CommandFn:
        COMMANDS[name] = (fn, args)
        return fn

    return register


FORMAT_ARG = arg(
    "--format", choices=("text", "json"), default="text", help="output format"
)


@command(
    "validate",
    arg("files", nargs="+", metavar="FILE", help="campaign files to check"),
    FORMAT_ARG,
)
def validate(args: argparse.Namespace) -> int:
    """Check campaign files against the schema and every rule; report all problems."""
    from runner.commands.validate import validate_files

    return validate_files(args.files, fmt=args.format, out=sys.stdout)


@command("schema")
def schema(args: argparse.Namespace) -> int:
    """Print the campaign JSON Schema (for editors and CI)."""
    from runner.loader.schema import bundled_schema_text

    sys.stdout.write(bundled_schema_text())
    return 0


@command(
    "preview",
    arg("file", metavar="FILE", help="the campaign file"),
    arg("--step", metavar="ID", help="only this send step (default: every send step)"),
    arg("--limit", type=int, default=10, help="messages shown in the table (default 10)"),
    arg(
        "--format",
        choices=("text", "json", "csv"),
        default="text",
        help="text: table and summary; json or csv: every message, for other tools",
    ),
    arg(
        "--output",
        metavar="FILE",
        help="file for --format json/csv (default stdout; the summary goes to stderr)",
    ),
    arg("--show-phones", action="store_true", help="full phone numbers, not masked"),
)
def preview(args: argparse.Namespace) -> int:
    """Render every message of a campaign without sending anything; count segments.

    Exit status: 0 every message renders, 1 a recipient's text cannot be
    rendered (reasons listed), 2 invalid campaign or usage.
    """
    from runner.audience.preview import preview_file

    return preview_file(
        Path(args.file),
        step=args.step,
        limit=args.limit,
        fmt=args.format,
        output=args.output,
        show_phones=args.show_phones,
        out=sys.stdout,
        err=sys.stderr,
    )


STATE_ARGS = (
    arg(
        "--state",
        metavar="PATH",
        help="journal database (default: $CAMPAIGN_RUNNER_STATE "
        "or ~/.local/state/campaign-runner/journal.db)",
    ),
    arg(
        "--log",
        metavar="PATH",
        help="JSON Lines event log (default: events.jsonl beside the journal)",
    ),
)


@command(
    "run",
    arg("file", metavar="FILE", help="the campaign file"),
    *STATE_ARGS,
    arg(
        "--sandbox",
        action="store_true",
        help="send to the built-in provider emulators on 127.0.0.1",
    ),
    arg(
        "--now",
        action="store_true",
        help="start every step at once, ignoring at/after/wait",
    ),
    arg(
        "--ignore-windows",
        action="store_true",
        help="send outside the steps' sending windows",
    ),
    arg(
        "--dry-run",
        action="store_true",
        help="render and count everything; no network call",
    ),
    arg(
        "--resume",
        nargs="?",
        const="last",
        metavar="RUN_ID",
        help="continue an unfinished run (default: the last one of this campaign)",
    ),
    arg(
        "--resend-unknown",
        action="store_true",
        help="resend messages whose outcome is unknown (they may be received twice)",
    ),
    arg(
        "--show-phones",
        action="store_true",
        help="log full phone numbers instead of masked ones",
    ),
    arg(
        "--faults",
        metavar="SPEC",
        help="sandbox fault injection, e.g. http_503=0.1,timeout=0.02",
    ),
)
def run(args: argparse.Namespace) -> int:
    """Run a campaign once, step by step at the times it says, then exit.

    Exit status: 0 every step succeeded, 1 a step failed or a check was not met,
    2 invalid campaign or usage, 130 interrupted (resume with --resume).
    """
    from runner.commands.run import Settings, run_file
    from runner.engine.run import RunOptions

    if args.faults and not args.sandbox:
        raise UsageError("--faults needs --sandbox")
    settings = Settings(
        state=Path(args.state) if args.state else None,
        log=Path(args.log) if args.log else None,
        sandbox=args.sandbox,
        faults=args.faults,
    )
    options = RunOptions(
        now=args.now,
        ignore_windows=args.ignore_windows,
        dry_run=args.dry_run,
        resume=args.resume,
        resend_unknown=args.resend_unknown,
        show_phones=args.show_phones,
    )
    return run_file(Path(args.file), settings, options, out=sys.stdout).exit_code


@command(
    "history",
    arg("name", nargs="?", metavar="NAME", help="only runs of this campaign"),
    *STATE_ARGS[:1],
    arg("--limit", type=int, default=20, help="how many runs (default 20)"),
    arg(
        "--format", choices=("text", "json", "csv"), default="text", help="output format"
    ),
)
def history(args: argparse.Namespace) -> int:
    """List past runs with their message counts and outcome."""
    from runner.commands.show import history as show_history

    return show_history(args.state, args.name, args.limit, args.format, sys.stdout)


@command(
    "show",
    arg("run_id", metavar="RUN_ID", help="a run id from 'history'"),
    *STATE_ARGS[:1],
    arg("--recipients", action="store_true", help="one row per recipient and step"),
    arg(
        "--show-phones",
        action="store_true",
        help="full phone numbers instead of masked ones",
    ),
    arg(
        "--format", choices=("text", "json", "csv"), default="text", help="output format"
    ),
)
def show(args: argparse.Namespace) -> int:
    """Show one run: per-step summary and, with --recipients, who got what."""
    from runner.commands.show import show_run

    return show_run(
        args.state,
        args.run_id,
        args.recipients,
        args.show_phones,
        args.format,
        sys.stdout,
    )


@command(
    "sandbox",
    arg("files", nargs="+", metavar="FILE", help="campaigns whose providers to emulate"),
    arg("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)"),
    arg(
        "--faults", metavar="SPEC", help="fault injection, e.g. http_503=0.1,timeout=0.02"
    ),
    arg("--settle", type=float, default=1.0, help="seconds before a delivery is final"),
)
def sandbox(args: argparse.Namespace) -> int:
    """Run the provider emulators standalone on 127.0.0.1 until Ctrl-C.

    Each provider of the given campaigns gets an emulator that accepts the
    credentials the campaign resolves from the environment (a stand-in value
    for a variable that is not set); the URLs to use are printed.
    """
    from runner.commands.sandbox import serve

    return serve(
        [Path(f) for f in args.files], args.port, args.faults, args.settle, sys.stdout
    )


@command(
    "daemon",
    arg("dirs", nargs="+", metavar="DIR", help="folders of campaign files to schedule"),
    *STATE_ARGS,
    arg(
        "--sandbox",
        action="store_true",
        help="send every campaign to the built-in provider emulators on 127.0.0.1",
    ),
    arg(
        "--http",
        metavar="HOST:PORT",
        help="serve /healthz and /metrics on this address only, e.g. 127.0.0.1:9464",
    ),
    arg(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text: readable lines on stderr; json: the event log's JSON lines on stdout",
    ),
    arg(
        "--misfire-grace",
        metavar="DURATION",
        default="5m",
        help="a run missed by less than this (daemon down) still starts late, "
        "unless the campaign's schedule says otherwise (default 5m)",
    ),
    arg(
        "--poll",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often to rescan the folders (default 2; SIGHUP rescans at once)",
    ),
)
def daemon(args: argparse.Namespace) -> int:
    """Schedule every campaign in the folders and run each at its time, until stopped.

    New, changed and deleted files are picked up within --poll seconds; invalid
    files are reported and skipped. SIGTERM/SIGINT stop cleanly (runs end
    resumable, exit 0); after a crash, unfinished runs resume on restart. One
    daemon per journal (a lock beside it).
    """
    from runner.daemon.service import DaemonSettings, serve
    from runner.model.timeparse import parse_duration

    try:
        grace = parse_duration(args.misfire_grace)
    except ValueError as e:
        raise UsageError(f"--misfire-grace: {e}") from e
    if not args.poll > 0:
        raise UsageError("--poll: expected a number of seconds above 0")
    settings = DaemonSettings(
        folders=tuple(Path(d) for d in args.dirs),
        state=Path(args.state) if args.state else None,
        log=Path(args.log) if args.log else None,
        sandbox=args.sandbox,
        http=args.http,
        log_format=args.log_format,
        misfire_grace=grace,
        poll=args.poll,
    )
    return serve(settings, out=sys.stdout, err=sys.stderr)


@command("status", *STATE_ARGS[:1], FORMAT_ARG)
def status(args: argparse.Namespace) -> int:
    """Show the daemon's next scheduled runs and the runs in progress."""
    from runner.commands.status import show_status

    return show_status(args.state, args.format, sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="campaign-runner",
        description="Declarative SMS campaigns: validate, preview, run, schedule.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (fn, args) in COMMANDS.items():
        doc = (fn.__doc__ or "").strip()
        p = sub.add_parser(
            name, help=doc.splitlines()[0] if doc else None, description=doc
        )
        for a in args:
            p.add_argument(*a.flags, **a.kwargs)
        p.set_defaults(func=fn)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
