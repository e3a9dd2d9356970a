"""``campaign-runner schema``: the campaign JSON Schema as one document."""

from __future__ import annotations

import argparse
import sys

from runner.loader.schema import bundled_schema_text


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    """Print the campaign JSON Schema (for editors and CI)."""
    sys.stdout.write(bundled_schema_text())
    return 0
