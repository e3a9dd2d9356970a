"""``campaign-runner new``: a campaign to start from, with its data and schema."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TextIO

from runner.commands.scaffold import (
    KINDS,
    SCHEMA_FILE,
    campaign_yaml,
    contacts_csv,
    optout_txt,
)
from runner.errors import RunnerError, UsageError
from runner.loader.schema import bundled_schema_text, campaign_schema

DEFAULT_PROVIDER = "mailup"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", help="the campaign's name (a slug)")
    p.add_argument(
        "--provider",
        choices=sorted(KINDS),
        default=DEFAULT_PROVIDER,
        help=f"the provider type it sends through (default {DEFAULT_PROVIDER}; "
        "tellody checks credits and reads statistics beside MailUp)",
    )
    p.add_argument(
        "--dir", metavar="DIR", default=".", help="where to write it (default: here)"
    )
    p.add_argument("--force", action="store_true", help="overwrite files already there")


def main(args: argparse.Namespace) -> int:
    """Write a new campaign to start from: NAME.yaml, commented, for the chosen
    provider, a sample NAME-contacts.csv, an opt-out list NAME-optout.txt, and
    the schema (campaign.schema.json) its first line points editors at.

    It validates and runs as it is on the sandbox (run NAME.yaml --sandbox --now).
    Files already there are left alone (exit 1) unless --force.
    """
    written = scaffold(
        args.name, args.provider, Path(args.dir), force=args.force, out=sys.stdout
    )
    campaign = written[0]
    sys.stdout.write(
        f"next: campaign-runner validate {campaign}\n"
        f"      campaign-runner run {campaign} --sandbox --now\n"
    )
    return 0


def scaffold(
    name: str, type_: str, folder: Path, *, force: bool, out: TextIO
) -> list[Path]:
    """Write the campaign's files into ``folder``; the paths written, the campaign
    file first. Nothing is written when one would overwrite a file (unless
    ``force``), except a schema file with the same text: the campaigns of one
    folder share it."""
    pattern = campaign_schema()["properties"]["name"]["pattern"]
    if not re.fullmatch(pattern, name):
        raise UsageError(
            f"{name!r}: not a campaign name: lowercase letters, digits, - and _, "
            "starting with a letter or digit, at most 64 characters"
        )
    if type_ not in KINDS:
        raise UsageError(f"--provider {type_!r}: one of {', '.join(sorted(KINDS))}")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--dir {folder}: not a folder")
    files = {
        folder / f"{name}.yaml": campaign_yaml(name, type_),
        folder / f"{name}-contacts.csv": contacts_csv(type_),
        folder / f"{name}-optout.txt": optout_txt(type_),
        folder / SCHEMA_FILE: bundled_schema_text(),
    }
    schema = folder / SCHEMA_FILE  # shared by the campaigns of a folder
    same = (
        {schema}
        if schema.is_file() and schema.read_text("utf-8") == files[schema]
        else set()
    )
    there = [p for p in files if p.exists() and p not in same]
    if there and not force:
        raise RunnerError(
            f"{there[0]} already exists: nothing written (--force overwrites"
            f"{' it' if len(there) == 1 else f' it and {len(there) - 1} more'})"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        if path not in same:
            path.write_text(text, encoding="utf-8")
        out.write(f"{'kept' if path in same else 'wrote'} {path}\n")
    return list(files)
