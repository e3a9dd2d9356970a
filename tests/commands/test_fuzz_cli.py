"""Hostile input through the real command line: always exit 0/1/2 with a message,
never a traceback or an internal error (exit 3), never a hang, nothing recorded
as started from a campaign that is invalid."""

from __future__ import annotations

import csv
import io
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paths import CAMPAIGNS

from runner.cli import main
from runner.journal.journal import Journal

EXAMPLES = [p.read_text() for p in sorted(CAMPAIGNS.glob("*.yaml"))]
FUZZ = settings(
    max_examples=60,
    deadline=10_000,  # ms per example: a hang fails the test
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
BITS = st.sampled_from(
    [
        ":",
        "- ",
        "  ",
        "\t",
        "{",
        "}",
        "[",
        "]",
        "&a ",
        "*a",
        "'",
        '"',
        "|",
        "{{",
        "%}",
        "\n",
        "\x00",
        "ñ",
        "😀",
        "${",
        "${X}",
        "on_failure: x",
        "id: credits",
        "0x1F",
    ]
)


def cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def check(code: int, out: str, err: str) -> None:
    assert code in (0, 1, 2), (code, out, err)
    assert "Traceback" not in out + err
    assert "internal error" not in out + err
    if code != 0:
        assert (out + err).strip(), "a failure must say why"


@FUZZ
@given(
    example=st.sampled_from(EXAMPLES),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.integers(0, 12), st.lists(BITS, max_size=3)),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_campaigns_through_validate_and_run(
    example: str, edits: list[tuple[float, int, list[str]]]
) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "data").symlink_to(CAMPAIGNS / "data")
        text = example
        for where, cut, insert in edits:
            i = int(where * len(text))
            text = text[:i] + "".join(insert) + text[i + cut :]
        path = tmp / "c.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        code, out, err = cli(["validate", str(path)])
        check(code, out, err)
        state = tmp / "j.db"
        run_code, out, err = cli(
            ["run", str(path), "--dry-run", "--now", "--state", str(state)]
        )
        check(run_code, out, err)
        if code == 1:  # invalid: run refuses it before anything is recorded
            assert run_code == 2
            if state.exists():
                j = Journal(state)
                try:
                    assert j.list_runs() == []
                finally:
                    j.close()


CELL = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["+34600000001", "600 000 002", "0034600000003", "abc", "", "+1", "=1+2"]
    ),
)


@FUZZ
@given(
    rows=st.lists(st.lists(CELL, min_size=1, max_size=4), max_size=12),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
)
def test_random_csv_rows_through_preview(rows: list[list[str]], delimiter: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        buf = io.StringIO()
        w = csv.writer(buf, delimiter=delimiter)
        w.writerow(["phone", "name"])
        for r in rows:
            w.writerow(r)
        (tmp / "r.csv").write_text(
            buf.getvalue(), encoding="utf-8", errors="surrogatepass"
        )
        (tmp / "c.yaml").write_text(
            "version: 1\nname: fuzz\ndefault_region: ES\n"
            "providers: {m: {type: tatango, email: a@b.c, api_key: '${K}'}}\n"
            "recipients: {file: r.csv}\n"
            "templates: {t: 'Hi {{ name }}'}\n"
            "steps: [{id: s, send: {provider: m, template: t}}]\n"
        )
        code, out, err = cli(["preview", str(tmp / "c.yaml"), "--format", "json"])
        check(code, out, err)
