"""``campaign-runner validate``: every problem of every file, for people or tools."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from runner.commands.args import add_format
from runner.errors import UsageError
from runner.loader.load import LoadResult, load


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="campaign files to check")
    add_format(p)


def main(args: argparse.Namespace) -> int:
    """Check campaign files against the schema and every rule; report all problems."""
    return validate_files(args.files, fmt=args.format, out=sys.stdout)


def validate_files(files: list[str], fmt: str, out: TextIO) -> int:
    """0 when every file is valid (warnings allowed), 1 when any is invalid.

    A FILE that is missing or a directory is a usage error (exit 2), found before
    any file is checked.
    """
    for name in files:
        path = Path(name)
        if path.is_dir():
            raise UsageError(f"{name}: is a directory, not a campaign file")
        if not path.exists():
            raise UsageError(f"{name}: no such file")
    results = [(name, load(Path(name), env=os.environ)) for name in files]
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
                out.write(f"{name}: valid{more}\n")
    return 0 if all(r.campaign is not None for _, r in results) else 1


def _as_dict(name: str, result: LoadResult) -> dict[str, object]:
    return {
        "path": name,
        "valid": result.campaign is not None,
        "problems": [p.as_dict() for p in result.problems],
    }
