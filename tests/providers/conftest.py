"""Fixtures shared by the provider tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runner.sandbox.server import Sandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """One server per test module (stopping one costs ~0.5 s); a mount per test."""
    with Sandbox() as sb:
        yield sb
