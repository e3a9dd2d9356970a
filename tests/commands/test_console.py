"""The terminal view of a run: the progress line and its ETA."""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path

import pytest
import yaml

from runner.cli import main
from runner.commands.console import eta
from runner.commands.run import run_file
from runner.commands.session import Settings
from runner.engine.context import RunOptions


@pytest.mark.parametrize(
    ("done", "total", "rate", "shown"),
    [
        (0, 100, 0.0, "eta ?"),  # nothing done yet: no rate to go by
        (10, 100, 0.0, "eta ?"),
        (50, 100, 10.0, "eta 5s"),
        (40, 100, 3.0, "eta 20s"),
        (50, 60, 20.0, "eta 1s"),  # half a second left: rounded up, never 0s
        (1, 100, 0.3, "eta 5m30s"),
        (100, 20_100, 5.0, "eta 1h06m"),  # 4000 s
        (10, 1_000_010, 5.0, "eta 2d07h"),  # 200,000 s
        (100, 100, 42.0, "eta 0s"),
        (120, 100, 42.0, "eta 0s"),  # more done than planned (released deferrals)
    ],
)
def test_eta_is_what_is_left_at_the_rate_so_far(
    done: int, total: int, rate: float, shown: str
) -> None:
    assert eta(done, total, rate) == shown


class Terminal(io.StringIO):
    """stderr as a terminal: the progress line is redrawn at every tick."""

    def isatty(self) -> bool:
        return True


def test_a_real_run_shows_the_eta_on_its_progress_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["new", "promo"]) == 0
    path = tmp_path / "promo.yaml"
    # 60 recipients at 20 a second: about 3 s of sending, six ticks or so
    rows = "".join(f"+3460000{i:04d},Name {i}\n" for i in range(100, 160))
    (tmp_path / "promo-contacts.csv").write_text("phone,name\n" + rows)
    data = yaml.safe_load(path.read_text())
    data["providers"]["sms"]["rate"] = "20/s"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    err = Terminal()
    result = run_file(
        path,
        Settings(state=tmp_path / "j.db", sandbox=True),
        RunOptions(now=True),
        out=io.StringIO(),
        err=err,
        stop=threading.Event(),
    )
    assert result.exit_code == 0
    lines = [seg for seg in err.getvalue().split("\r") if seg.startswith("[blast]")]
    assert len(lines) >= 2, err.getvalue()
    for line in lines:
        m = re.search(r"\[blast\] (\d+)/60 .*\((\d+) msg/s, eta (\d+)s\)", line)
        assert m, line
        done, rate, seconds = (int(g) for g in m.groups())
        # what is left at the rate shown (rounded to whole messages a second)
        left = (60 - done) / max(rate, 1)
        assert abs(seconds - left) <= 1.5, line
        assert (seconds == 0) == (done == 60), line  # 0s only when none is left


def test_while_the_plan_grows_the_progress_line_says_so_without_an_eta() -> None:
    from datetime import UTC

    from runner.commands.console import Console

    err = Terminal()
    console = Console(io.StringIO(), err, UTC)
    figures = {"step": "blast", "done": 900, "total": 20000, "sent": 900, "rate": 450.0}
    console._progress({**figures, "planning": True})
    assert err.getvalue().endswith(
        "[blast] 900/20000+ (planning) sent 900 failed 0 unknown 0 retries 0 "
        "(450 msg/s, eta ?)\x1b[K"
    )
    console._progress(figures)  # planned: the total is the total
    assert "[blast] 900/20000   4.5% sent 900" in err.getvalue().rsplit("\r", 1)[1]
