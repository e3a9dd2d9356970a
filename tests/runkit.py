"""Helpers for end-to-end tests: the real CLI in a subprocess, a standalone sandbox
in another, campaigns copied and pointed at it, the journal read back."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import yaml
from paths import CAMPAIGNS

from runner.journal.journal import Journal
from runner.journal.where import locate

# what the MailUp examples' ${VARS} resolve to in tests (the sandbox accepts them)
MAILUP_ENV = {
    "MAILUP_CLIENT_ID": "cid-7f3a9e",
    "MAILUP_CLIENT_SECRET": "csecret-Q8xZ2vLm",
    "MAILUP_PASSWORD": "pw-R4nd0mP4ss",
    "MAILUP_LIST_SECRET": "lsecret-9Kd2Jx",
}


def cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def start_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def copy_campaign(name: str, dest: Path, **changes: Any) -> Path:
    """Copy campaigns/<name> (and its data) into ``dest``, applying top-level changes."""
    shutil.copytree(CAMPAIGNS / "data", dest / "data", dirs_exist_ok=True)
    data = yaml.safe_load((CAMPAIGNS / name).read_text())
    for key, value in changes.items():
        data[key] = value
    path = dest / name
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def many_recipients(path: Path, n: int, *, failing: int = 0) -> None:
    """Replace the campaign's recipients with ``n`` generated mobile numbers."""
    csv = path.parent / "many.csv"
    with csv.open("w") as f:
        f.write("phone,name,lang\n")
        for i in range(n):
            tail = 99 if i < failing else i % 90  # the sandbox fails deliveries to ...99
            f.write(f"+346{100000 + i:06d}{tail:02d},Name {i},es\n")

    def apply(data: dict) -> None:
        data["recipients"] = {"file": "many.csv"}
        data["providers"]["mailup"].update(rate="1000/s", concurrency=16)
        for step in data["steps"]:
            if "check_report" in step:
                step["check_report"]["every"] = "500ms"

    edit(path, apply)


def edit(path: Path, fn: Any) -> None:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


class StandaloneSandbox:
    """``campaign-runner sandbox FILE`` in its own process (it outlives runner kills)."""

    def __init__(self, campaign: Path, env: Mapping[str, str], *extra: str) -> None:
        self.proc = start_cli("sandbox", str(campaign), *extra, env=env)
        assert self.proc.stdout is not None
        self.urls: dict[str, dict[str, str]] = {}
        current = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(
                    "sandbox exited: "
                    + (self.proc.stderr.read() if self.proc.stderr else "")
                )
            if line.startswith("sandbox listening on "):
                self.root = line.split()[3]
                return
            if ": providers." in line:
                current = line.split("providers.")[1].split()[0]
                self.urls[current] = {}
            elif current and line.startswith("    "):
                key, _, url = line.strip().partition(": ")
                self.urls[current][key] = url
        raise RuntimeError("sandbox did not start")

    def messages(self) -> dict[str, list[dict[str, Any]]]:
        return dict(requests.get(self.root + "/_sandbox/messages", timeout=10).json())

    def calls(self) -> list[dict[str, Any]]:
        return list(requests.get(self.root + "/_sandbox/calls", timeout=10).json())

    def point(self, campaign: Path) -> None:
        """Point the campaign's providers at this sandbox."""

        def apply(data: dict[str, Any]) -> None:
            for name, urls in self.urls.items():
                data["providers"][name].update(urls)
                if data["providers"][name]["type"] == "mailup":
                    data["providers"][name]["report_lag"] = (
                        0  # the emulator is never late
                    )

        edit(campaign, apply)

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def standalone_sandbox(
    campaign: Path, env: Mapping[str, str], *extra: str
) -> Iterator[StandaloneSandbox]:
    sb = StandaloneSandbox(campaign, env, *extra)
    try:
        yield sb
    finally:
        sb.close()


def journal_rows(
    state: Path | str, run_id: str | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """A run's messages (the latest run's by default), from a journal file or a
    database URL."""
    j = Journal(locate(str(state)))
    try:
        if run_id is None:
            run_id = j.list_runs(limit=1)[0]["id"]
        return run_id, j.messages_for(run_id)
    finally:
        j.close()


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def offline_env() -> dict[str, str]:
    """The environment with every proxy pointing at a closed local port: any
    attempt to fetch a schema from the network fails instead of leaving the box."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    dead = "http://127.0.0.1:9"
    env.update(HTTP_PROXY=dead, HTTPS_PROXY=dead, http_proxy=dead, https_proxy=dead)
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    return env
