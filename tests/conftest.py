"""Shared fixtures: state stays out of $HOME; property tests are deterministic.

Hypothesis runs derandomized (the same examples on every machine, no example
database), so the suite passes or fails for a reason. To explore new examples,
``HYPOTHESIS_PROFILE=explore pytest --hypothesis-seed=N tests/commands/test_fuzz_cli.py``.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.delenv("CAMPAIGN_RUNNER_STATE", raising=False)


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server for the session (tests/pgkit.py). Without one the
    PostgreSQL tests are skipped, saying why; under CI (``$CI`` set) they fail."""
    from pgkit import PostgresServer

    try:
        server = PostgresServer()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL for these tests: {e}")
        pytest.skip(f"no PostgreSQL server could be started: {e}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres) -> str:
    """A fresh PostgreSQL database's URL, for one test."""
    return str(postgres.new_database())
