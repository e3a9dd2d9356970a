"""``campaign-runner validate``: every problem of every file, for people or tools."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import TextIO

from runner.commands.args import add_format
from runner.daemon.watch import campaign_files
from runner.errors import Problem, UsageError
from runner.loader.load import LoadResult, load


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="campaign files to check, or folders (their *.yaml/*.yml, as the daemon)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="warnings fail too (exit 1), e.g. an unset ${VAR} in CI",
    )
    add_format(p)


def main(args: argparse.Namespace) -> int:
    """Check campaign files against the schema and every rule; report all problems.

    Two files that share a campaign name are an error: the name is the campaign's
    identity in the journal, so they would be one campaign sent twice.
    """
    return validate_files(args.files, fmt=args.format, out=sys.stdout, strict=args.strict)


def validate_files(
    files: list[str], fmt: str, out: TextIO, *, strict: bool = False
) -> int:
    """0 when every file is valid (warnings allowed, unless ``strict``), 1 when any
    is invalid.

    A FILE that is missing, or a folder without campaign files, is a usage error
    (exit 2), found before any file is checked.
    """
    names: list[str] = []
    for name in files:
        path = Path(name)
        if path.is_dir():
            found = [str(f) for f in campaign_files([path])]
            if not found:
                raise UsageError(f"{name}: a folder without *.yaml or *.yml files")
            names += found
        elif not path.exists():
            raise UsageError(f"{name}: no such file")
        else:
            names.append(name)
    results = _one_name_one_file(
        [(name, load(Path(name), env=os.environ, read_data=True)) for name in names]
    )
    if fmt == "json":
        json.dump([_as_dict(name, r) for name, r in results], out, indent=2)
        out.write("\n")
    else:
        for name, r in results:
            for p in r.problems:
                out.write(p.format() + "\n")
            if r.campaign is not None:
                n = len(r.warnings)
                more = f" ({n} warning{'s' if n != 1 else ''})" if n else ""
                verdict = "invalid under --strict" if strict and n else "valid"
                out.write(f"{name}: {verdict}{more}\n")
    if strict and any(r.warnings for _, r in results):
        return 1
    return 0 if all(r.campaign is not None for _, r in results) else 1


def _one_name_one_file(
    results: list[tuple[str, LoadResult]],
) -> list[tuple[str, LoadResult]]:
    """A campaign name already taken by an earlier file makes the later one invalid."""
    first: dict[str, str] = {}
    checked = []
    for name, r in results:
        if r.campaign is not None:
            owner = first.setdefault(r.campaign.name, name)
            if owner != name:
                problem = Problem(
                    name,
                    _name_line(Path(name)),
                    1,
                    "name",
                    f"campaign name {r.campaign.name!r} is also the name of {owner}: "
                    "one name, one campaign (rename one of them)",
                )
                r = LoadResult(None, [*r.problems, problem])
        checked.append((name, r))
    return checked


def _name_line(path: Path) -> int:
    """The line of the top-level ``name:`` key (1 when it cannot be found)."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for n, line in enumerate(lines, start=1):
        if re.match(r"name\s*:", line):
            return n
    return 1


def _as_dict(name: str, result: LoadResult) -> dict[str, object]:
    return {
        "path": name,
        "valid": result.campaign is not None,
        "problems": [p.as_dict() for p in result.problems],
    }
