"""Where the repository's files are, for every test module."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CAMPAIGNS = ROOT / "campaigns"
DATA = TESTS / "data"
