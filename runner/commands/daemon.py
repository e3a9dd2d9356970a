"""``campaign-runner daemon``: schedule a folder of campaigns until stopped."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.commands.args import add_state
from runner.commands.sandbox import start_emulators
from runner.daemon.serve import serve
from runner.daemon.settings import DaemonSettings
from runner.errors import UsageError
from runner.model.timeparse import parse_cap, parse_duration


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dirs", nargs="+", metavar="DIR", help="folders of campaign files to schedule"
    )
    add_state(p, log=True)
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="send every campaign to the built-in provider emulators on 127.0.0.1",
    )
    p.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve /healthz and /metrics on this address only, e.g. 127.0.0.1:9464",
    )
    p.add_argument(
        "--callback-url",
        metavar="URL",
        help="the address providers call back at (your reverse proxy in front of "
        "--http, e.g. https://hooks.example.com): check_report callback: true "
        "gives them URL/callbacks/TOKEN; default http://HOST:PORT of --http",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text: readable lines on stderr; json: the event log's JSON lines on stdout",
    )
    p.add_argument(
        "--misfire-grace",
        metavar="DURATION",
        default="5m",
        help="a run missed by less than this (daemon down) still starts late, "
        "unless the campaign's schedule says otherwise (default 5m)",
    )
    p.add_argument(
        "--per-recipient",
        metavar="CAP",
        help="a frequency cap for every campaign that sets no limits.per_recipient, "
        "e.g. 1/24h: counted from the journal across campaigns",
    )
    p.add_argument(
        "--on-cap",
        choices=("skip", "defer"),
        default="skip",
        help="a recipient over that cap: skip (counted as capped) or defer",
    )
    p.add_argument(
        "--poll",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often to rescan the folders (default 2; SIGHUP rescans at once)",
    )


def main(args: argparse.Namespace) -> int:
    """Schedule every campaign in the folders and run each at its time, until stopped.

    New, changed and deleted files are picked up within --poll seconds; invalid
    files are reported and skipped. SIGTERM/SIGINT stop cleanly (runs end
    resumable, exit 0); after a crash, unfinished runs resume on restart. One
    daemon per journal (a lock beside it).
    """
    try:
        grace = parse_duration(args.misfire_grace)
    except ValueError as e:
        raise UsageError(f"--misfire-grace: {e}") from e
    if args.callback_url and not args.http:
        raise UsageError("--callback-url: the callbacks are served by --http: give both")
    if args.callback_url and not args.callback_url.startswith(("http://", "https://")):
        raise UsageError(f"--callback-url {args.callback_url!r}: expected an http(s) URL")
    if not args.poll > 0:
        raise UsageError("--poll: expected a number of seconds above 0")
    if args.per_recipient:
        try:
            parse_cap(args.per_recipient)
        except ValueError as e:
            raise UsageError(f"--per-recipient: {e}") from e
    settings = DaemonSettings(
        folders=tuple(Path(d) for d in args.dirs),
        state=args.state,
        log=Path(args.log) if args.log else None,
        sandbox=args.sandbox,
        http=args.http,
        callback_url=args.callback_url,
        log_format=args.log_format,
        misfire_grace=grace,
        poll=args.poll,
        per_recipient=args.per_recipient,
        on_cap=args.on_cap,
    )
    return serve(settings, out=sys.stdout, err=sys.stderr, emulate=start_emulators)
