"""Where a journal lives: a SQLite file (the embedded default) or a PostgreSQL
database shared by several processes and machines.

``--state`` (or ``$CAMPAIGN_RUNNER_STATE``) is a path or a URL
(``postgresql://user@host:5432/db``). A URL's password is never written in it:
it comes from a ``${VAR}`` in the URL, resolved from the environment, or from
libpq's own ``PGPASSWORD``/``PGPASSFILE``; people only ever see the URL without it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from runner.errors import UsageError

SCHEMES = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def default_path() -> Path:
    """``$XDG_STATE_HOME/campaign-runner/journal.db`` (``~/.local/state`` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "campaign-runner" / "journal.db"


@dataclass(frozen=True)
class Where:
    """A journal's place: ``path`` for SQLite, ``url`` (password resolved) for
    PostgreSQL; ``str()`` is what people may see."""

    path: Path | None = None
    url: str | None = field(default=None, repr=False)
    shown: str = ""

    def __str__(self) -> str:
        return self.shown or str(self.path)

    @property
    def shared(self) -> bool:
        """A server database several processes and machines may use at once."""
        return self.url is not None

    def exists(self) -> bool:
        return self.path.exists() if self.path is not None else True

    def beside(self, name: str) -> Path:
        """A file next to the journal (the event log, the daemon's lock); for a
        database, in the local state folder."""
        if self.path is not None:
            return self.path.with_name(name)
        return default_path().with_name(name)


def locate(state: Path | str | None, env: Mapping[str, str] | None = None) -> Where:
    """``--state`` as given, else ``$CAMPAIGN_RUNNER_STATE``, else the default file."""
    env = os.environ if env is None else env
    if state is None:
        state = env.get("CAMPAIGN_RUNNER_STATE") or None
    if isinstance(state, str) and "://" in state:
        return _database(state, env)
    return Where(path=Path(state) if state else default_path())


def _database(text: str, env: Mapping[str, str]) -> Where:
    scheme = text.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise UsageError(
            f"--state {scheme}://...: expected a file path or a postgresql:// URL"
        )
    try:
        written = sa.engine.make_url(text)
    except sa.exc.ArgumentError:
        raise UsageError("--state: not a valid database URL") from None
    password = None if written.password is None else str(written.password)
    ref = _REF.fullmatch(password) if password is not None else None
    if password is not None and ref is None:
        raise UsageError(
            "--state: the URL holds a password; write ${VAR} in its place (read from "
            "the environment) or use PGPASSWORD/PGPASSFILE, so it never shows in "
            "process lists, shell history or logs"
        )
    url = written.set(drivername=SCHEMES[scheme])
    if ref is not None:
        if ref.group(1) not in env:
            raise UsageError(f"--state: environment variable {ref.group(1)} is not set")
        url = url.set(password=env[ref.group(1)])
    shown = url.render_as_string(hide_password=True)
    return Where(url=url.render_as_string(hide_password=False), shown=shown)
