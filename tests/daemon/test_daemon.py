"""The daemon: folder scanning, the persistent schedule, the lock, and end to end as a
real subprocess against the sandbox over HTTP on 127.0.0.1 (issue 8)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
import sqlalchemy as sa
import yaml
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from paths import CAMPAIGNS, ROOT
from prometheus_client.parser import text_string_to_metric_families
from runkit import StandaloneSandbox, standalone_sandbox

from runner.commands.status import read_status, show_status
from runner.daemon.logs import SharedRedactor
from runner.daemon.schedules import campaign_trigger
from runner.daemon.service import Daemon
from runner.daemon.settings import DaemonSettings
from runner.daemon.watch import FolderScanner
from runner.errors import UsageError
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.journal.lock import StateLock, lock_owner, lock_path
from runner.journal.tables import messages
from runner.journal.where import Where, locate
from runner.model.campaign import Schedule

MAILUP_ENV = {
    "MAILUP_CLIENT_ID": "cid-d43m0n",
    "MAILUP_CLIENT_SECRET": "csecret-Zq81xVv",
    "MAILUP_PASSWORD": "pw-D43m0nP4ss",
    "MAILUP_LIST_SECRET": "lsecret-77Hq2",
}


# -- helpers ----------------------------------------------------------------------------


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def soon(seconds: float) -> str:
    t = datetime.now(UTC) + timedelta(seconds=seconds)
    return t.isoformat(timespec="seconds")


def campaign_copy(example: str, dest: Path, name: str, **changes: Any) -> Path:
    """An example campaign (and its data) in ``dest`` with top-level ``changes``."""
    shutil.copytree(CAMPAIGNS / "data", dest / "data", dirs_exist_ok=True)
    data = yaml.safe_load((CAMPAIGNS / example).read_text())
    data.update(changes)
    path = dest / name
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def spring(dest: Path, name: str = "spring.yaml", **changes: Any) -> Path:
    """The MailUp example, its report checked at once (no 2-minute ``after``)."""
    path = campaign_copy("mailup-spring-promo.yaml", dest, name, **changes)
    data = yaml.safe_load(path.read_text())
    data["steps"][2].pop("after", None)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def edit(path: Path, fn: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


class DaemonProc:
    """``campaign-runner daemon`` as a real subprocess; output kept in files."""

    def __init__(
        self, tmp: Path, folder: Path, state: Path, *extra: str, env: Any = None
    ):
        self.out = tmp / f"daemon-{time.monotonic_ns()}.out"
        self.err = self.out.with_suffix(".err")
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "runner",
                    "daemon",
                    str(folder),
                    "--state",
                    str(state),
                    "--poll",
                    "0.3",
                    "--log-format",
                    "json",
                    *extra,
                ],
                stdout=out,
                stderr=err,
                env={**os.environ, **(env or {})},
                cwd=tmp,
            )

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        lines = self.out.read_text().splitlines()
        found = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in found if kind is None or e["event"] == kind]

    def stderr(self) -> str:
        return self.err.read_text()

    def stop(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def running_daemon(*args: Any, **kwargs: Any) -> Iterator[DaemonProc]:
    d = DaemonProc(*args, **kwargs)
    try:
        yield d
    finally:
        d.kill()


def scheduled(state: Path) -> dict[str, datetime | None]:
    """File name -> next run time, as ``status`` reads it from the journal."""
    return {Path(s.path).name: s.next_run for s in read_status(state).scheduled}


def runs_of(state: Path | Where) -> list[dict[str, Any]]:
    j = Journal(state)
    try:
        return j.list_runs(limit=100)
    finally:
        j.close()


def journal_messages(state: Path) -> list[dict[str, Any]]:
    j = Journal(state)
    try:
        with j.connect() as conn:
            return [dict(r) for r in conn.execute(messages.select()).mappings()]
    finally:
        j.close()


# -- units: folder scanning, lock, triggers, the persistent schedule ---------------------


def test_scanner_reports_added_changed_and_removed_by_content(tmp_path: Path) -> None:
    scanner = FolderScanner([tmp_path])
    (tmp_path / "a.yaml").write_text("name: a\n")
    (tmp_path / "b.yml").write_text("name: b\n")
    (tmp_path / ".#a.yaml").write_text("editor lock\n")
    (tmp_path / "notes.txt").write_text("not a campaign\n")
    first = scanner.scan()
    assert [p.name for p in first.added] == ["a.yaml", "b.yml"]
    assert not scanner.scan()  # nothing new
    os.utime(tmp_path / "a.yaml", ns=(1, 1))  # touched, same bytes: not a change
    assert not scanner.scan()
    (tmp_path / "a.yaml").write_text("name: a2\n")
    (tmp_path / "b.yml").unlink()
    changes = scanner.scan()
    assert [p.name for p in changes.changed] == ["a.yaml"]
    assert [p.name for p in changes.removed] == ["b.yml"]
    assert not changes.added


def test_lock_is_exclusive_and_names_its_owner(tmp_path: Path) -> None:
    path = lock_path(tmp_path / "journal.db")
    assert path.name == "journal.db.lock"
    first = StateLock(path)
    first.acquire()
    try:
        assert lock_owner(path) == (True, os.getpid())
        with pytest.raises(UsageError, match=rf"pid {os.getpid()}.*{path}"):
            StateLock(path).acquire()
    finally:
        first.release()
    assert lock_owner(path) == (False, None)
    second = StateLock(path)
    second.acquire()  # free again once released (or its process died)
    second.release()


def test_triggers_follow_the_campaign_timezone() -> None:
    caracas = ZoneInfo("America/Caracas")
    cron = campaign_trigger(Schedule(cron="0 8 * * mon-fri"), caracas)
    after = datetime(2026, 6, 5, 13, 0, tzinfo=UTC)  # a Friday, 09:00 in Caracas
    nxt = cron.get_next_fire_time(None, after)
    assert nxt is not None
    assert (nxt.astimezone(caracas).weekday(), nxt.astimezone(caracas).hour) == (0, 8)
    at = datetime(2026, 11, 27, 8, 45, tzinfo=ZoneInfo("Europe/Madrid"))
    one = campaign_trigger(Schedule(at=at), caracas)
    assert one.get_next_fire_time(None, after) == at


def _daemon(tmp_path: Path, journal: Journal, folder: Path) -> Daemon:
    settings = DaemonSettings(folders=(folder,), state=journal.path)
    return Daemon(settings, journal, EventLog(None), SharedRedactor(), err=io.StringIO())


def test_a_restart_keeps_the_stored_schedule_so_misfires_apply(tmp_path: Path) -> None:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    shutil.copy(CAMPAIGNS / "ogangi-appointment-reminder.yaml", folder / "clinic.yaml")
    journal = Journal(tmp_path / "j.db")
    try:
        first = _daemon(tmp_path, journal, folder)
        first.scheduler.start(paused=True)
        first.schedules.rescan(full=True)
        job = first.scheduler.get_job(str((folder / "clinic.yaml").resolve()))
        assert job.name == "clinic-reminders"
        assert (job.misfire_grace_time, job.coalesce) == (30 * 60, True)
        first.scheduler.shutdown(wait=False)
        # as if the daemon had been down at the last 08:00
        missed = datetime.now(UTC) - timedelta(minutes=10)
        store = SQLAlchemyJobStore(engine=journal.engine, tablename="apscheduler_jobs")
        stored = store.lookup_job(job.id)
        stored.next_run_time = missed
        store.update_job(stored)

        second = _daemon(tmp_path, journal, folder)
        second.scheduler.start(paused=True)
        second.schedules.rescan(
            full=True
        )  # same file, same schedule: the stored job is kept
        kept = second.scheduler.get_job(job.id)
        assert kept.next_run_time == missed
        edit(folder / "clinic.yaml", lambda d: d["schedule"].update(cron="30 9 * * *"))
        second.schedules.rescan()  # a changed schedule replaces it
        moved = second.scheduler.get_job(job.id)
        assert moved.next_run_time > datetime.now(UTC)
        assert moved.next_run_time.astimezone(ZoneInfo("America/Caracas")).minute == 30
        (folder / "clinic.yaml").unlink()
        second.schedules.rescan()
        assert second.scheduler.get_jobs() == []
        second.scheduler.shutdown(wait=False)
    finally:
        journal.close()


def test_status_without_a_journal_is_a_one_line_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no journal at"):
        show_status(str(tmp_path / "none.db"), "text", sys.stdout)


# -- end to end: the daemon as a subprocess --------------------------------------------


def test_daemon_schedules_runs_watches_and_stops_cleanly(tmp_path: Path) -> None:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    state = tmp_path / "state" / "journal.db"
    at = soon(4)
    spring(folder, schedule={"at": at})
    # a one-off long past its grace: skipped, and the daemon says so
    campaign_copy(
        "tatango-order-ready.yaml",
        folder,
        "old.yaml",
        schedule={"at": soon(-3600), "misfire_grace_time": "1m"},
    )
    port = free_port()
    with running_daemon(
        tmp_path, folder, state, "--sandbox", "--http", f"127.0.0.1:{port}"
    ) as d:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> Any:
            try:
                r = requests.get(base + "/healthz", timeout=2)
            except requests.ConnectionError:
                assert d.proc.poll() is None, d.stderr()
                return None
            return r.json() if r.status_code == 200 else None

        health = wait_for(healthy, "/healthz to answer 200")
        assert health["ok"] and health["scheduler"] == "running"
        planned = [
            e for e in d.events("campaign.scheduled") if e["campaign"] == "spring-promo"
        ]
        assert [datetime.fromisoformat(e["next_run"]) for e in planned] == [
            datetime.fromisoformat(at)
        ]
        misfired = wait_for(lambda: d.events("schedule.misfired"), "schedule.misfired")
        assert misfired[0]["path"].endswith("old.yaml")

        # a second daemon on the same journal refuses to start
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "runner",
                "daemon",
                str(folder),
                "--state",
                str(state),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 2
        assert "journal.db.lock" in second.stderr and len(second.stderr.splitlines()) == 1

        # a file added while the daemon runs is picked up
        later = soon(3600)
        pickup = campaign_copy(
            "tatango-order-ready.yaml",
            folder,
            "pickup.yaml",
            schedule={"at": later},
        )
        edit(pickup, lambda d: d.update(name="pickup-dallas"))  # old.yaml has its name
        wait_for(
            lambda: scheduled(state).get("pickup.yaml") == datetime.fromisoformat(later),
            "pickup.yaml scheduled",
        )
        # an edited schedule moves
        moved = soon(7200)
        edit(pickup, lambda data: data.update(schedule={"at": moved}))
        wait_for(
            lambda: scheduled(state).get("pickup.yaml") == datetime.fromisoformat(moved),
            "pickup.yaml moved",
        )
        # an invalid file is reported like `validate` does, once, and skipped
        (folder / "bad.yaml").write_text("version: 1\nname: bad\nstepz: []\n")
        wait_for(lambda: "bad.yaml:" in d.stderr(), "bad.yaml reported")

        # the scheduled campaign runs
        def succeeded() -> Any:
            return [r for r in runs_of(state) if r["status"] == "succeeded"]

        done = wait_for(succeeded, "spring-promo to succeed", timeout=30)
        assert done[0]["campaign"] == "spring-promo" and done[0]["counts"] == {"sent": 6}
        assert "spring.yaml" not in scheduled(state)  # a one-off: gone once fired

        # /metrics agrees with the journal
        text = requests.get(base + "/metrics", timeout=5).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        metric = {
            (s.labels["provider"], s.labels["outcome"]): s.value
            for s in families["campaign_runner_messages"].samples
        }
        rows = journal_messages(state)
        assert metric == {
            k: float(v)
            for k, v in Counter((m["provider"], m["status"]) for m in rows).items()
        }
        steps = [
            s
            for s in families["campaign_runner_step_duration_seconds"].samples
            if s.name.endswith("_count")
        ]
        assert sum(s.value for s in steps) == 3  # credits, blast, delivery
        fire = families["campaign_runner_next_fire_time_seconds"].samples
        assert [(s.labels["file"], s.value) for s in fire] == [
            ("pickup.yaml", datetime.fromisoformat(moved).timestamp())
        ]

        # a deleted file is unscheduled
        pickup.unlink()
        wait_for(lambda: "pickup.yaml" not in scheduled(state), "pickup.yaml unscheduled")

        assert d.stop() == 0, d.stderr()
    # the same messages as `validate`, each once (the file did not change again)
    bad = (folder / "bad.yaml").resolve()
    check = subprocess.run(
        [sys.executable, "-m", "runner", "validate", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    expected = check.stdout.splitlines()
    assert (
        expected
        and [ln for ln in d.stderr().splitlines() if "bad.yaml:" in ln] == expected
    )
    kinds = [e["event"] for e in d.events()]
    assert kinds[-1] == "daemon.stopped"
    assert kinds.count("run.started") == 1
    assert {e["reason"] for e in d.events("campaign.unscheduled")} >= {"file deleted"}
    assert not [m for m in journal_messages(state) if m["status"] == "pending"]
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "status",
            "--state",
            str(state),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["daemon"] == {"running": False, "pid": None}
    for secret in MAILUP_ENV.values():
        assert secret not in d.out.read_text() + d.stderr()


def many(path: Path, n: int, first: int = 0) -> None:
    """``n`` generated Spanish mobiles from number ``first``, English text (one
    segment each), in a CSV named after the campaign file."""
    csv = path.with_suffix(".csv")
    with csv.open("w") as f:
        f.write("phone,name,lang\n")
        for i in range(first, first + n):
            f.write(f"+346{i:08d},Name {i},en\n")
    edit(path, lambda d: d.update(recipients={"file": csv.name}))


@contextmanager
def blast_folder(
    tmp_path: Path,
    n: int,
    rate: str,
    start_in: float,
    names: tuple[str, ...] = ("blast",),
) -> Iterator[tuple[Path, StandaloneSandbox]]:
    """A folder holding a MailUp send of ``n`` at ``rate`` per campaign (one per
    name, their recipients distinct), due in ``start_in`` seconds, pointed at a
    sandbox in its own process (it outlives daemon kills)."""
    staging = tmp_path / "staging"
    staging.mkdir()
    files = []
    for i, name in enumerate(names):
        campaign = spring(staging, f"{name}.yaml")
        many(campaign, n, first=i * n)

        def shape(data: dict[str, Any], name: str = name) -> None:
            data["steps"] = [data["steps"][1]]  # the send step alone
            data["providers"]["mailup"].update(rate=rate, concurrency=8)
            if len(names) > 1:
                data["name"] = name

        edit(campaign, shape)
        files.append(campaign)
    with standalone_sandbox(files[0], MAILUP_ENV, "--settle", "0.2") as sb:

        def point(data: dict[str, Any]) -> None:
            data["providers"]["mailup"].update(sb.urls["mailup"], report_lag=0)
            data["schedule"] = {"at": soon(start_in)}

        folder = tmp_path / "campaigns"
        folder.mkdir()
        for campaign in files:
            edit(campaign, point)
            shutil.copy(campaign.with_suffix(".csv"), folder)
            shutil.copy(campaign, folder)
        yield folder, sb


def test_kill_9_mid_send_then_restart_sends_each_recipient_exactly_once(
    tmp_path: Path,
) -> None:
    n = 2000
    with blast_folder(tmp_path, n, "400/s", 1) as (folder, sb):
        state = tmp_path / "journal.db"

        def sent() -> int:
            j = Journal(state)
            try:
                with j.connect() as conn:
                    return int(
                        conn.scalar(
                            sa.select(sa.func.count()).where(messages.c.status == "sent")
                        )
                        or 0
                    )
            finally:
                j.close()

        # 1. kill -9 in the middle of the send
        with running_daemon(tmp_path, folder, state, env=MAILUP_ENV) as d:
            wait_for(lambda: sent() >= 300, "300 sent before the kill")
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait()
        assert [r["status"] for r in runs_of(state)] == ["running"]
        at_kill = sent()
        assert at_kill < n

        # 2. restart: the run resumes; SIGTERM mid-send stops it cleanly
        with running_daemon(tmp_path, folder, state, env=MAILUP_ENV) as d:
            wait_for(lambda: d.events("run.resumed"), "the run to resume")
            wait_for(lambda: sent() >= at_kill + 200, "the resumed run to send")
            assert d.stop() == 0, d.stderr()
        rows = journal_messages(state)
        assert not [m for m in rows if m["status"] == "pending"]
        assert [r["status"] for r in runs_of(state)] == ["interrupted"]
        assert sent() < n

        # 3. restart again: the run completes
        with running_daemon(tmp_path, folder, state, env=MAILUP_ENV) as d:
            wait_for(
                lambda: [r for r in runs_of(state) if r["status"] == "succeeded"],
                "the run to complete",
                timeout=40,
            )
            assert d.stop() == 0, d.stderr()
        assert len(runs_of(state)) == 1  # resumed, never started twice
        received = sb.messages()["mailup"]
    per_recipient = Counter(m["to"] for m in received)
    assert len(per_recipient) == n  # none missing
    assert max(per_recipient.values()) == 1  # none twice
    rows = journal_messages(state)
    assert Counter(m["status"] for m in rows) == {"sent": n}
    ids = {m["to"]: m["id"] for m in received}
    for m in rows:  # the journal's provider ids are the sandbox's own
        if m["provider_message_id"] is None:  # an unknown settled from the report
            assert m["error_detail"] == "reconciled from the provider's report"
        else:
            assert m["provider_message_id"] == ids[m["phone"].lstrip("+")]


def test_a_real_daemon_refuses_to_resume_a_rehearsal(tmp_path: Path) -> None:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    dead = f"http://127.0.0.1:{free_port()}"  # were the refusal missing: no answer
    campaign = spring(folder)
    edit(
        campaign,
        lambda d: d["providers"]["mailup"].update(
            base_url=dead, token_url=dead, send_url=dead
        ),
    )
    state = tmp_path / "journal.db"
    j = Journal(state)
    try:
        run = j.start_run("spring-promo", str(campaign), {}, sandbox="http://127.0.0.1:1")
    finally:
        j.close()
    with running_daemon(tmp_path, folder, state, env=MAILUP_ENV) as d:
        errors = wait_for(lambda: d.events("run.error"), "the refusal")
        assert d.stop() == 0, d.stderr()
    assert run in errors[0]["error"] and "rehearsal" in errors[0]["error"]
    assert not d.events("run.resumed")
    (row,) = runs_of(state)
    assert row["status"] == "running" and row["mode"] == "sandbox"
    assert journal_messages(state) == []


# -- docs and the systemd unit -----------------------------------------------------------


def test_readme_documents_every_daemon_and_status_option() -> None:
    from runner.cli import build_parser

    section = (ROOT / "README.md").read_text().split("## Running the daemon", 1)[1]
    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in ("daemon", "status"):
        assert f"{name} " in section
        for action in sub[name]._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert flag in section, f"{name} {flag} not in the README"


def test_systemd_unit_has_the_hardening_an_operator_expects() -> None:
    unit = (ROOT / "contrib" / "campaign-runner.service").read_text()
    settings = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in unit.splitlines()
        if "=" in line and not line.startswith(("#", " "))
    }
    assert settings["ExecStart"].split()[1] == "daemon"
    expected = {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "StateDirectory": "campaign-runner",
        "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes",
        "KillSignal": "SIGTERM",
        "Restart": "on-failure",
    }
    assert {k: settings.get(k) for k in expected} == expected
    assert "/var/lib/campaign-runner/journal.db" in unit
    assert "@system-service" in unit and "AF_INET" in settings["RestrictAddressFamilies"]
    for key in ("ReadWritePaths", "EnvironmentFile", "TimeoutStopSec"):
        assert settings.get(key), key


def sent_times(state: Path, run_id: str | None = None) -> tuple[int, list[float]]:
    """(messages sent, when each call started) from the journal (of one run)."""
    rows = [
        m
        for m in journal_messages(state)
        if m["status"] == "sent" and run_id in (None, m["run_id"])
    ]
    return len(rows), [datetime.fromisoformat(m["sent_at"]).timestamp() for m in rows]


@pytest.mark.slow
def test_pause_resume_cancel_through_the_daemons_http_endpoints(tmp_path: Path) -> None:
    """The daemon's run controlled over HTTP (a token required), a `run` of another
    campaign beside it on the same journal, and a `run` of its campaign refused."""
    n = 1500
    folder = tmp_path / "campaigns"
    folder.mkdir()
    campaign = spring(folder, "blast.yaml", schedule={"at": soon(1)})
    many(campaign, n)

    def shape(data: dict[str, Any]) -> None:
        data["steps"] = [data["steps"][1]]  # the send step alone
        data["providers"]["mailup"].update(rate="100/s", concurrency=4)

    edit(campaign, shape)
    other = campaign_copy("tatango-order-ready.yaml", tmp_path, "other.yaml")
    state = tmp_path / "journal.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**MAILUP_ENV, "CAMPAIGN_RUNNER_HTTP_TOKEN": "t0k3n-for-the-test"}
    auth = {"Authorization": "Bearer t0k3n-for-the-test"}
    with running_daemon(
        tmp_path, folder, state, "--sandbox", "--http", f"127.0.0.1:{port}", env=env
    ) as d:
        wait_for(lambda: sent_times(state)[0] >= 150, "150 sent", timeout=30)
        run_id = runs_of(state)[0]["id"]

        def status() -> str:
            return str(next(r for r in runs_of(state) if r["id"] == run_id)["status"])

        assert requests.post(f"{base}/runs/{run_id}/pause", timeout=5).status_code == 401
        r = requests.post(f"{base}/runs/{run_id}/pause", headers=auth, timeout=5)
        assert r.status_code == 200 and "pausing; its daemon pid" in r.json()["message"]
        wait_for(lambda: status() == "paused", "the run paused")
        j = Journal(state)
        control = j.control_of(run_id)
        j.close()
        assert control.by == "http 127.0.0.1"
        paused_at = datetime.fromisoformat(str(control.at)).timestamp()
        time.sleep(1.5)
        count, times = sent_times(state, run_id)
        assert count < n and max(times) <= paused_at + 1.0  # nothing started after
        beside = subprocess.run(
            [
                sys.executable,
                "-m",
                "runner",
                "run",
                str(other),
                "--sandbox",
                "--now",
                "--state",
                str(state),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert beside.returncode == 0, beside.stdout + beside.stderr
        same = subprocess.run(
            [
                sys.executable,
                "-m",
                "runner",
                "run",
                str(campaign),
                "--sandbox",
                "--state",
                str(state),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={**os.environ, **MAILUP_ENV},
        )
        assert same.returncode == 2 and same.stderr.count("\n") == 1
        assert f"is being sent by run {run_id}, the daemon, pid" in same.stderr
        assert (
            sent_times(state, run_id)[0] == count
        )  # still paused: nothing more went out
        r = requests.post(f"{base}/runs/{run_id}/resume", headers=auth, timeout=5)
        assert r.status_code == 200, r.text
        wait_for(lambda: sent_times(state, run_id)[0] >= count + 100, "the run goes on")
        r = requests.post(f"{base}/runs/{run_id}/cancel", headers=auth, timeout=5)
        assert r.status_code == 200, r.text
        wait_for(lambda: status() == "cancelled", "cancelled")
        r = requests.post(f"{base}/runs/{run_id}/pause", headers=auth, timeout=5)
        assert r.status_code == 409 and "has ended (cancelled)" in r.json()["error"]
        r = requests.post(f"{base}/runs/nope/pause", headers=auth, timeout=5)
        assert r.status_code == 404
        assert d.stop() == 0, d.stderr()
    statuses = Counter(
        m["status"] for m in journal_messages(state) if m["run_id"] == run_id
    )
    assert set(statuses) == {"sent", "cancelled"} and sum(statuses.values()) == n
    assert d.events("run.paused") and d.events("run.resumed")
    assert d.events("run.cancelled")


def test_two_files_with_one_campaign_name_run_as_one(tmp_path: Path) -> None:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    state = tmp_path / "journal.db"
    at = soon(3)
    spring(folder, "a.yaml", schedule={"at": at})
    spring(folder, "b.yaml", schedule={"at": at})  # the same name: spring-promo
    with running_daemon(tmp_path, folder, state, "--sandbox") as d:
        wait_for(
            lambda: [r for r in runs_of(state) if r["status"] == "succeeded"],
            "the run to finish",
            timeout=60,
        )
        time.sleep(1.0)  # b.yaml's time has passed too
        assert d.stop() == 0, d.stderr()
    runs = runs_of(state)
    assert [Path(r["campaign_path"]).name for r in runs] == ["a.yaml"]
    lines = [line for line in d.stderr().splitlines() if "b.yaml" in line]
    a, b = (folder / "a.yaml").resolve(), (folder / "b.yaml").resolve()
    assert lines == [
        f"{b}: campaign name 'spring-promo' is also the name of {a}, which keeps "
        "running; this file is not scheduled (one name, one campaign: rename one "
        "of them)"
    ]
    assert [e["path"] for e in d.events("campaign.duplicate_name")] == [str(b)]


@pytest.mark.slow
def test_two_daemons_on_postgresql_a_standby_takes_over_when_the_leader_dies(
    tmp_path: Path, pg_url: str
) -> None:
    """The leader is killed (-9) mid-send: the standby leads within the bound,
    continues the orphaned run, and the provider gets every message once."""
    n = 1500
    with blast_folder(tmp_path, n, "150/s", 2) as (folder, sb):
        state = locate(pg_url)

        def sent() -> int:
            j = Journal(state)
            try:
                return j.message_counts(j.list_runs(limit=1)[0]["id"]).get("sent", 0)
            except IndexError:
                return 0
            finally:
                j.close()

        ports = {"a": free_port(), "b": free_port()}
        http = {k: ("--http", f"127.0.0.1:{p}") for k, p in ports.items()}
        with (
            running_daemon(tmp_path, folder, pg_url, *http["a"], env=MAILUP_ENV) as a,
            running_daemon(tmp_path, folder, pg_url, *http["b"], env=MAILUP_ENV) as b,
        ):
            wait_for(
                lambda: a.events("daemon.leader") or b.events("daemon.leader"), "a leader"
            )
            leader, standby = (a, b) if a.events("daemon.leader") else (b, a)
            wait_for(lambda: standby.events("daemon.standby"), "the other to stand by")
            assert standby.events("daemon.standby")[0]["reason"] == (
                "another daemon leads the schedule of this journal"
            )

            def roles() -> list[str]:
                return sorted(d.role for d in read_status(state).daemons if d.alive())

            # status names them both (the standby's first heartbeat may follow
            # its standby event by a moment)
            wait_for(lambda: roles() == ["leader", "standby"], "both in status")
            port = ports["b"] if standby is b else ports["a"]
            health = wait_for(
                lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2),
                "the standby's /healthz",
            )
            assert health.status_code == 200, health.text
            assert health.json()["role"] == "standby" and health.json()["ok"]
            listed = {(d["pid"], d["role"]) for d in health.json()["daemons"]}
            assert listed == {(leader.proc.pid, "leader"), (standby.proc.pid, "standby")}
            wait_for(lambda: sent() >= 300, "300 sent before the kill", timeout=30)
            leader.proc.send_signal(signal.SIGKILL)
            leader.proc.wait()
            killed = time.monotonic()
            wait_for(lambda: standby.events("daemon.leader"), "the standby to lead")
            took = time.monotonic() - killed
            assert took < 10, took
            wait_for(lambda: standby.events("run.resuming"), "the orphan resumed")
            wait_for(
                lambda: [r for r in runs_of(state) if r["status"] == "succeeded"],
                "the run to complete",
                timeout=60,
            )
            assert standby.stop() == 0, standby.stderr()
        assert len(runs_of(state)) == 1  # continued, never started twice
        received = sb.messages()["mailup"]
    per_recipient = Counter(m["to"] for m in received)
    assert len(per_recipient) == n  # none missing
    assert max(per_recipient.values()) == 1  # none twice


@pytest.mark.slow
def test_the_leader_killed_at_the_fire_time_the_standby_makes_the_one_run(
    tmp_path: Path, pg_url: str
) -> None:
    """kill -9 of the leader at the moment its campaign is due: whether it had
    fired or not, the standby leads, the occurrence gets one run, and every
    recipient one message."""
    n = 300
    with blast_folder(tmp_path, n, "300/s", 3) as (folder, sb):
        state = locate(pg_url)
        data = yaml.safe_load((folder / "blast.yaml").read_text())
        due = datetime.fromisoformat(data["schedule"]["at"])
        with (
            running_daemon(tmp_path, folder, pg_url, env=MAILUP_ENV) as a,
            running_daemon(tmp_path, folder, pg_url, env=MAILUP_ENV) as b,
        ):
            wait_for(
                lambda: a.events("daemon.leader") or b.events("daemon.leader"), "a leader"
            )
            leader, standby = (a, b) if a.events("daemon.leader") else (b, a)
            wait_for(lambda: standby.events("daemon.standby"), "the other to stand by")
            left = (due - datetime.now(UTC)).total_seconds()
            assert left > 0, "the set-up took longer than the campaign's delay"
            time.sleep(left)
            leader.proc.send_signal(signal.SIGKILL)
            leader.proc.wait()
            wait_for(lambda: standby.events("daemon.leader"), "the standby to lead")
            wait_for(
                lambda: [r for r in runs_of(state) if r["status"] == "succeeded"],
                "the run to complete",
                timeout=60,
            )
            assert standby.stop() == 0, standby.stderr()
        assert len(runs_of(state)) == 1  # one occurrence, one run
        received = sb.messages()["mailup"]
    per_recipient = Counter(m["to"] for m in received)
    assert len(per_recipient) == n  # none missing
    assert max(per_recipient.values()) == 1  # none twice


def worst_second(times: list[float]) -> int:
    """The most calls the provider saw in any one-second window."""
    times = sorted(times)
    worst, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 1.0:
            lo += 1
        worst = max(worst, hi - lo + 1)
    return worst


@pytest.mark.slow
def test_three_daemons_share_the_sending_at_one_rate_and_survive_a_helper_kill(
    tmp_path: Path, pg_url: str
) -> None:
    """Three daemons on one PostgreSQL, two campaigns due at once: the daemons
    that do not drive a run help send it, the provider sees each run's rate held
    across them, and a helper killed (-9) mid-send loses nothing and doubles
    nothing (its calls under way are settled from the provider's report)."""
    n, per_second = 1200, 120
    names = ("blast-a", "blast-b")
    with blast_folder(tmp_path, n, f"{per_second}/s", 2, names) as (folder, sb):
        state = locate(pg_url)
        daemons = [DaemonProc(tmp_path, folder, pg_url, env=MAILUP_ENV) for _ in range(3)]
        try:
            wait_for(lambda: len(runs_of(state)) == 2, "both runs to start")
            host = socket.gethostname()

            seen: dict[int, set[tuple[str, str]]] = {}

            def sent_by(d: DaemonProc) -> int:
                """The messages seen claimed by ``d`` so far (a claim is kept
                until its outcome: the journal forgets it then)."""
                mine = f"{host}:{d.proc.pid}:"
                got = seen.setdefault(d.proc.pid, set())
                got.update(
                    (m["run_id"], m["phone"])
                    for m in journal_messages(state)
                    if m["status"] == "pending"
                    and (m["claimed_by"] or "").startswith(mine)
                )
                return len(got)

            leader = wait_for(
                lambda: next((d for d in daemons if d.events("daemon.leader")), None),
                "a leader",
            )
            helpers = [d for d in daemons if d is not leader]
            wait_for(lambda: all(sent_by(d) >= 30 for d in helpers), "both to help")
            victim = helpers[0]
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            wait_for(
                lambda: (
                    [sent_by(d) for d in daemons if d is not victim]
                    and sorted(r["status"] for r in runs_of(state))
                    == ["succeeded", "succeeded"]
                ),
                "both runs to complete",
                timeout=60,
            )
            survivors = [d for d in daemons if d is not victim]
            helped = [e for d in survivors for e in d.events("step.helped")]
            assert helped and all(sent_by(d) > 0 for d in survivors)
            for d in survivors:
                assert d.stop() == 0, d.stderr()
        finally:
            for d in daemons:
                d.kill()
        received = sb.messages()["mailup"]
    per_recipient = Counter(m["to"] for m in received)
    assert len(per_recipient) == 2 * n  # none missing
    assert max(per_recipient.values()) == 1  # none twice
    rows = journal_messages(state)
    assert Counter(m["status"] for m in rows) == {"sent": 2 * n}
    for first, name in enumerate(names):  # each run's own rate, across daemons
        numbers = {f"346{i:08d}" for i in range(first * n, first * n + n)}
        times = [m["at"] for m in received if m["to"] in numbers]
        spread = max(times) - min(times)
        assert spread >= (n - 1) / per_second * 0.97, (name, spread)
        assert worst_second(times) <= per_second * 1.10, name
