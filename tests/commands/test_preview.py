"""preview: the table, the summary, every message as JSON/CSV, exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from campaignkit import make_campaign

from runner.audience import numberset
from runner.audience import render as batch
from runner.audience.preview import send_totals
from runner.cli import main
from runner.commands.preview import preview
from runner.model.campaign import Template

PROMO = Template(
    "promo",
    variants={
        "es": "Hola {{ name | first_name }}, tu código {{ vars.code }}. Baja: STOP",
        "en": "Hi {{ name | first_name }}, your code is {{ vars.code }}. STOP to end",
    },
    variant_by="lang",
    default="en",
)


def run(campaign, **kw) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    out, messages = io.StringIO(), io.StringIO()
    options = {"limit": 10, "fmt": "text", "output": None, "show_phones": False}
    options.update(kw)
    if options["fmt"] != "text":
        options["output"] = messages
    code = preview(campaign, out=out, **options)  # type: ignore[arg-type]
    return code, out.getvalue(), messages.getvalue()


def test_table_summary_and_invalid_rows() -> None:
    campaign = make_campaign(
        file="bom_semicolon.csv",
        templates={"promo": PROMO},
        vars={"code": "SPRING"},
        exclude=(Path("optout.txt"),),
    )
    code, out, _ = run(campaign, limit=3)
    assert code == 0
    lines = out.splitlines()
    assert lines[:5] == [
        "step blast (template promo):",
        "  PHONE         ENC    SEG  TEXT",
        "  +34*****5678  UCS-2    1  Hola José, tu código SPRING. Baja: STOP",
        "  +34*****5679  UCS-2    1  Hi Zoë, your code is SPRING. STOP to end",
        "  +34*****5680  UCS-2    1  Hola María-Luisa, tu código SPRING. Baja: STOP",
    ]
    assert (
        "recipients: 12 read, 4 invalid, 1 duplicates, 1 excluded, 0 filtered out, "
        "6 accepted"
    ) in lines
    # ó (the Spanish text), ë, 李, 😀 are not GSM-7: only Oliver's text is
    assert "step blast: 6 messages, 6 segments (GSM-7 1, UCS-2 5), 0 failed" in lines
    assert "invalid recipients (4, skipped):" in lines
    assert (
        "  bom_semicolon.csv:13: +44********0123 not a valid number for region GB"
        in lines
    )


def test_ucs2_warning_names_the_character_and_where_it_is() -> None:
    inline = [
        {"phone": "+34612345678", "name": "Ana"},
        {"phone": "+34612345679", "name": "Bo 😀"},
        {"phone": "+34612345670", "name": "Ζωή Παπαδοπούλου"},  # Greek: naturally UCS-2
    ]
    campaign = make_campaign(inline=inline, templates={"t": "It’s {{ name }}'s day"})
    _, out, _ = run(campaign)
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: template 't': 3 of 3 messages are UCS-2 (70 characters a segment, "
        "not 160) because its text has '’' (U+2019 RIGHT SINGLE QUOTATION MARK)"
    ]
    campaign = make_campaign(inline=inline, templates={"t": "It's {{ name }}'s day"})
    _, out, _ = run(campaign)
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    # every UCS-2 message warns, the Greek name's many letters too (issue 17)
    assert "2 of 3 messages are UCS-2" in warnings[0]
    assert "'😀' (U+1F600 GRINNING FACE)" in warnings[0]
    assert "in recipient data" in warnings[0] and " more" in warnings[0]
    # four distinct typographic characters in the text: still a warning
    campaign = make_campaign(inline=inline[:1], templates={"t": "it’s “great” — really…"})
    _, out, _ = run(campaign)
    warned = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "1 of 1 messages are UCS-2" in warned[0]
    assert "U+2026 HORIZONTAL ELLIPSIS" in warned[0]


def test_render_failures_exit_1_with_reasons() -> None:
    inline = [{"phone": "+34612345678", "name": "Ana"}, {"phone": "+34612345679"}]
    campaign = make_campaign(inline=inline, templates={"t": "Hi {{ name }}"})
    code, out, messages = run(campaign, fmt="json")
    assert code == 1
    assert "step blast: 1 messages, 1 segments (GSM-7 1), 1 failed" in out
    assert "  undefined variable 'name': 1 recipient, first at inline row 2" in (
        out.splitlines()
    )
    records = json.loads(messages)
    assert [r["error"] for r in records] == [
        None,
        "template 't' undefined variable 'name' for inline row 2 (+34*****5679)",
    ]
    assert records[0] == {
        "step": "blast",
        "template": "t",
        "phone": "+34*****5678",
        "source": "inline",
        "line": 1,
        "encoding": "GSM-7",
        "units": 6,
        "segments": 1,
        "text": "Hi Ana",
        "error": None,
    }


def langs_csv(path: Path, n: int) -> None:
    """``n`` rows, every third one (file lines 4, 7, ...) in English."""
    rows = ["phone,name,lang"] + [
        f"+3461200{i:04d},Name {i},{'en' if i % 3 == 2 else 'es'}" for i in range(n)
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


# through ``recipient``: a name validate cannot check (the CSV header has every
# other one), so it fails per message, as a field missing from JSON Lines does
NMAE = Template(
    "promo",
    variants={"es": "Hola {{ name }}", "en": "Hi {{ recipient.nmae }}"},
    variant_by="lang",
)


@pytest.mark.parametrize("workers", [1, 2])
def test_render_failures_are_grouped_by_problem_and_variant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    if workers > 1 and threading.active_count() > 1:
        pytest.skip("worker processes are not forked while threads run")
    langs_csv(tmp_path / "contacts.csv", 3000)
    monkeypatch.setattr(batch, "CHUNK_LINES", 250)  # the groups span chunks
    campaign = make_campaign(
        base=tmp_path, file="contacts.csv", templates={"promo": NMAE}
    )
    code, out, _ = run(campaign, limit=0, workers=workers)
    assert code == 1
    at = out.index("step blast (template promo): 1,000 recipients cannot be rendered:")
    assert out[at:].splitlines()[1:] == [
        "  undefined attribute 'nmae' in variant 'en': 1,000 recipients, "
        "first at contacts.csv:4"
    ]
    assert "step blast: 2,000 messages, 2,000 segments (GSM-7 2,000), 1,000 failed" in out


def test_render_failure_groups_are_capped(tmp_path: Path) -> None:
    # a data error differs per value: 30 problems, the commonest 10 listed
    rows = ["phone,name,when"] + [
        f"+3461200{i:04d},Name {i},{'2026-05-01' if i < 20 else f'soon{i % 30}'}"
        for i in range(20 + 30 * 4)
    ]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    campaign = make_campaign(
        base=tmp_path, file="r.csv", templates={"t": "{{ when | date }}"}
    )
    code, out, _ = run(campaign, limit=0)
    assert code == 1
    listed = out.split("120 recipients cannot be rendered:\n", 1)[1].splitlines()
    assert len(listed) == 11
    assert listed[0] == (
        "  ValueError: not an ISO date or datetime: 'soon20': 4 recipients, "
        "first at r.csv:22"
    )
    assert listed[-1] == "  ... and 80 recipients with 20 other problems"


def test_csv_output_quotes_like_the_csv_module() -> None:
    inline = [
        {"phone": "+34612345678", "t": 'a "quoted", text'},
        {"phone": "+34612345679", "t": "two\nlines"},
        {"phone": "+34612345670", "t": "plain"},
    ]
    campaign = make_campaign(inline=inline, templates={"m": "{{ t }}"})
    code, _, messages = run(campaign, fmt="csv", show_phones=True)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(messages)))
    assert [(r["phone"], r["text"]) for r in rows] == [
        ("+34612345678", 'a "quoted", text'),
        ("+34612345679", "two\nlines"),
        ("+34612345670", "plain"),
    ]
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    writer.writerow(batch.COLUMNS)
    for r in rows:
        writer.writerow(r.values())
    assert messages == expected.getvalue()


def test_every_send_step_or_one() -> None:
    templates = {"a": "first {{ name }}", "b": "second {{ name }}"}
    campaign = make_campaign(
        inline=[{"phone": "+34612345678", "name": "Ana"}],
        templates=templates,
        sends={"one": "a", "two": "b"},
    )
    _, out, messages = run(campaign, fmt="json")
    assert "step one: 1 messages" in out and "step two: 1 messages" in out
    assert [r["text"] for r in json.loads(messages)] == ["first Ana", "second Ana"]
    _, out, _ = run(campaign, step="two")
    assert "step one" not in out and "second Ana" in out


def test_send_totals_agree_with_preview() -> None:
    campaign = make_campaign(
        file="bom_semicolon.csv", templates={"promo": PROMO}, vars={"code": "SPRING"}
    )
    totals = send_totals(campaign, "promo")
    # every text is short: one segment each
    assert (totals.messages, totals.segments, totals.failures) == (7, 7, 0)
    assert dict(totals.by_encoding) == {"GSM-7": 1, "UCS-2": 6}
    _, out, _ = run(campaign)
    assert "step blast: 7 messages, 7 segments (GSM-7 1, UCS-2 6), 0 failed" in out


def big_campaign(tmp_path: Path, rows: int):  # type: ignore[no-untyped-def]
    rng = random.Random(5)
    lines = ["phone,name,lang,note"]
    for i in range(rows):
        k = rng.random()
        if k < 0.02:
            phone = "12345"  # invalid
        elif k < 0.05:
            phone = f"+3461200{rng.randrange(100):04d}"  # duplicates
        else:
            phone = f"+346{rng.randrange(10**8):08d}"
        note = '"multi\nline, ""quoted"""' if i % 97 == 0 else "x"
        lines.append(f"{phone},Name {i},{rng.choice(['es', 'en', 'fr'])},{note}")
    (tmp_path / "big.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "optout.txt").write_text("+34612000001\n+34612000002\n", encoding="utf-8")
    return make_campaign(
        base=tmp_path,
        file="big.csv",
        templates={"promo": PROMO, "plain": "{{ name }} {{ note }}"},
        sends={"a": "promo", "b": "plain"},
        vars={"code": "X"},
        exclude=(Path("optout.txt"),),
        where="lang != 'fr' or name.endswith('7')",
    )


def test_worker_processes_give_the_same_result_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if threading.active_count() > 1:
        pytest.skip("worker processes are not forked while threads run")
    # many chunks, records split over lines
    monkeypatch.setattr(batch, "CHUNK_LINES", 300)
    forked = []
    parallel = batch._parallel

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        forked.append(args[-1])
        yield from parallel(*args, **kwargs)

    monkeypatch.setattr(batch, "_parallel", spy)
    campaign = big_campaign(tmp_path, 4000)
    one = run(campaign, fmt="csv", workers=1)
    assert forked == []
    two = run(campaign, fmt="csv", workers=2)
    assert forked == [2]
    assert one == two
    assert one[1].count("\n") > 10 and one[2].count("\n") > 4000


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_small_chunks_merge_to_the_same_result_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    campaign = big_campaign(tmp_path, 1500)
    monkeypatch.setattr(batch, "CHUNK_LINES", 10**6)
    whole = run(campaign, fmt=fmt, workers=1, limit=40)
    monkeypatch.setattr(batch, "CHUNK_LINES", 7)  # duplicates dropped at every edge
    assert run(campaign, fmt=fmt, workers=1, limit=40) == whole
    assert "duplicates" in whole[1] and whole[0] == 0


def test_dedup_keeps_the_first_row_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if threading.active_count() > 1:
        pytest.skip("worker processes are not forked while threads run")
    monkeypatch.setattr(batch, "CHUNK_LINES", 2)
    rows = ["phone,name"] + [f"+3461234567{i % 3},n{i}" for i in range(9)]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    campaign = make_campaign(base=tmp_path, file="r.csv", templates={"t": "{{ name }}"})
    _, out, messages = run(campaign, fmt="csv", workers=2)
    assert [r["text"] for r in csv.DictReader(io.StringIO(messages))] == [
        "n0",
        "n1",
        "n2",
    ]
    assert "9 read, 0 invalid, 6 duplicates" in out


@pytest.mark.parametrize("workers", [1, 2])
def test_numbers_spilled_to_files_give_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    if workers > 1 and threading.active_count() > 1:
        pytest.skip("worker processes are not forked while threads run")
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    campaign = big_campaign(tmp_path, 3000)
    monkeypatch.setattr(batch, "CHUNK_LINES", 150)
    whole = run(campaign, fmt="csv", workers=workers, limit=20)
    # the opt-out list (2 numbers) and the numbers seen in files, read by workers
    monkeypatch.setattr(numberset, "SPILL_AT", 2)
    assert run(campaign, fmt="csv", workers=workers, limit=20) == whole
    assert "duplicates" in whole[1] and whole[2].count("\n") > 2000
    assert list(temp.iterdir()) == []


def test_workers_in_a_fresh_process_match_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a subprocess has no thread of this test session: it always forks workers
    big_campaign(tmp_path, 5000)  # writes big.csv and optout.txt
    (tmp_path / "big.yaml").write_text(BIG_YAML, encoding="utf-8")
    args = ["preview", str(tmp_path / "big.yaml"), "--format", "csv"]
    env = {**os.environ, "CAMPAIGN_RUNNER_WORKERS": "2"}
    forked = subprocess.run(
        [sys.executable, "-m", "runner", "-v", *args],
        capture_output=True,
        env=env,
        check=False,
    )
    monkeypatch.setenv("CAMPAIGN_RUNNER_WORKERS", "1")
    assert main(args) == 0
    one = capsys.readouterr()
    assert forked.returncode == 0, forked.stderr
    assert forked.stdout.decode() == one.out
    log, _, summary = forked.stderr.decode().partition("\n")
    assert log == "INFO runner.audience.render: preview: 2 worker processes"
    assert summary == one.err
    assert one.out.count("\n") > 5000


def test_a_worker_error_is_one_line_naming_the_row(tmp_path: Path) -> None:
    rows = ["phone,name"] + [f"+3461234{i:04d},n{i}" for i in range(4000)]
    rows[3500] = "12,bad"  # file line 3501
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    yaml = (
        BIG_YAML.replace("  exclude: [optout.txt]\n", "")
        .replace("  where: \"lang != 'fr' or name.endswith('7')\"\n", "")
        .replace("  file: big.csv\n", "  file: r.csv\n  on_invalid: fail\n")
        .replace("{{ note }}", "")
    )
    (tmp_path / "c.yaml").write_text(yaml, encoding="utf-8")
    env = {**os.environ, "CAMPAIGN_RUNNER_WORKERS": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "runner", "preview", str(tmp_path / "c.yaml")],
        capture_output=True,
        env=env,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.decode() == (
        "campaign-runner: r.csv:3501: ** too short (on_invalid: fail)\n"
    )


BIG_YAML = """\
version: 1
name: big
timezone: Europe/Madrid
default_region: ES
vars: {code: X}
providers:
  tatango: {type: tatango, email: ops@example.com, api_key: "${TATANGO_API_KEY}"}
recipients:
  file: big.csv
  exclude: [optout.txt]
  where: "lang != 'fr' or name.endswith('7')"
templates:
  promo:
    by: lang
    variants:
      es: "Hola {{ name | first_name }}, tu código {{ vars.code }}. Baja: STOP"
      en: "Hi {{ name | first_name }}, your code is {{ vars.code }}. STOP to end"
    default: en
  plain: "{{ name }} {{ note }}"
steps:
  - {id: a, send: {provider: tatango, template: promo}}
  - {id: b, send: {provider: tatango, template: plain}}
"""


# -- the command ---------------------------------------------------------------------

CAMPAIGN = """\
version: 1
name: pickup
timezone: America/Chicago
default_region: US
providers:
  tatango:
    type: tatango
    email: ops@example.com
    api_key: ${TATANGO_API_KEY}
recipients:
  inline:
    - {phone: "(202) 555-0143", name: Ana Lopez}
    - {phone: "+1 202 555 0144", name: Bob}
    - {phone: "555", name: Nobody}
templates:
  ready: "Hi {{ name | first_name }}, your order is ready."
steps:
  - id: notify
    send:
      provider: tatango
      template: ready
"""


@pytest.fixture
def campaign_file(tmp_path: Path) -> Path:
    path = tmp_path / "pickup.yaml"
    path.write_text(CAMPAIGN, encoding="utf-8")
    return path


def test_command_text(campaign_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preview", str(campaign_file)]) == 0
    out = capsys.readouterr().out
    assert "  +1******0143  GSM-7    1  Hi Ana, your order is ready." in out
    assert "inline row 3: *** too short" in out


def test_command_csv_to_stdout_keeps_the_summary_apart(
    campaign_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["preview", str(campaign_file), "--format", "csv", "--show-phones"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert [r["phone"] for r in rows] == ["+12025550143", "+12025550144"]
    assert "2 accepted" in captured.err


def test_command_output_file(campaign_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    args = ["preview", str(campaign_file), "--format", "json", "--output", str(target)]
    assert main(args) == 0
    assert [r["text"] for r in json.loads(target.read_text(encoding="utf-8"))] == [
        "Hi Ana, your order is ready.",
        "Hi Bob, your order is ready.",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output", "x.csv"], "--output needs --format json or csv"),
        (["--step", "nope"], "no send step 'nope' in pickup (send steps: notify)"),
        (["--limit", "-1"], "--limit must be 0 or more"),
        (["--format", "csv", "--output", "/nonexistent/x.csv"], "--output /nonexistent"),
    ],
)
def test_command_usage_errors_exit_2(
    campaign_file: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["preview", str(campaign_file), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_command_without_a_usable_temporary_folder_says_so(
    campaign_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(numberset, "SPILL_AT", 1)  # the first number needs the file
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    assert main(["preview", str(campaign_file)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "cannot keep the recipients' numbers in a temporary file in " in err
    assert f"{tmp_path / 'gone'}" in err
    assert err.endswith("(TMPDIR: a writable folder with space)\n")


def test_command_invalid_campaign_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(CAMPAIGN.replace("name: pickup", "name: [oops]"), encoding="utf-8")
    assert main(["preview", str(path)]) == 2
    assert "bad.yaml:2:" in capsys.readouterr().err
