"""The loader: exact messages for every invalid case, typed objects for valid ones."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paths import CAMPAIGNS, DATA

from runner.errors import CampaignError
from runner.loader import yamlload
from runner.loader.load import LoadResult, load, load_campaign
from runner.model.campaign import (
    CheckCreditsAction,
    CheckReportAction,
    SendAction,
    WaitAction,
    Window,
)
from runner.model.timeparse import format_duration, parse_duration

INVALID = sorted(p.name for p in (DATA / "invalid").glob("*.yaml"))
VALID = sorted(p.name for p in (DATA / "valid").glob("*.yaml"))
# The variables the case files reference and that count as set.
ENV = {
    "TATANGO_API_KEY": "k",
    "TELLODY_PASSWORD": "p",
    "OGANGI_PUBLIC_KEY": "pub",
    "OGANGI_PRIVATE_KEY": "priv",
    "MAILUP_CLIENT_ID": "c",
    "MAILUP_CLIENT_SECRET": "s",
    "MAILUP_PASSWORD": "pw",
    "MAILUP_LIST_SECRET": "ls",
}


def formatted(result: LoadResult) -> str:
    return "".join(p.format() + "\n" for p in result.problems)


@pytest.mark.parametrize("case", INVALID)
def test_invalid_case(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DATA / "invalid")
    result = load(Path(case), env=ENV)
    assert result.campaign is None
    assert result.errors
    assert formatted(result) == Path(case).with_suffix(".expected").read_text()


@pytest.mark.parametrize("case", VALID)
def test_valid_case(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DATA / "valid")
    result = load(Path(case), env=ENV)
    assert result.errors == []
    assert result.campaign is not None
    expected = Path(case).with_suffix(".expected")
    assert formatted(result) == (expected.read_text() if expected.exists() else "")


def test_there_is_a_case_for_every_error_class() -> None:
    assert len(INVALID) >= 20
    text = "".join(
        (DATA / "invalid" / c).with_suffix(".expected").read_text() for c in INVALID
    )
    for needle in (
        "duplicate key",
        "tab character",
        "YAML syntax error",
        "alias",
        "unknown key",
        "expected a mapping",
        "expected a duration",
        "not a datetime",
        "unknown time zone",
        "unknown region",
        "invalid cron expression",
        "unknown provider 'smss'. Perhaps you meant 'sms'?",
        "unknown template 'helo'. Perhaps you meant 'hello'?",
        "unknown step 'blats'. Perhaps you meant 'blast'?",
        "(tellody) cannot send; it supports: credits, report",
        "template syntax error",
        "recipients file not found",
        "cannot be used together",
        "needs one of send, fire, check_credits, check_report or wait",
        "duplicate step id",
    ):
        assert needle in text, needle


def test_problems_are_in_source_order() -> None:
    result = load(DATA / "invalid" / "unknown_references.yaml", env=ENV)
    lines = [p.line for p in result.problems]
    assert lines == sorted(lines)


def test_full_campaign_becomes_typed_objects() -> None:
    c, warnings = load_campaign(DATA / "valid" / "full.yaml", env={})
    assert {w.severity for w in warnings} == {"warning"}
    assert c.name == "full_case-1"
    assert c.timezone == ZoneInfo("Europe/Madrid")
    assert c.default_region == "ES" and c.max_segments == 2
    assert c.vars == {"shop": "Acme", "n": 3, "nested": {"a": [1, 2]}}

    main = c.providers["main"]
    assert main.type == "mailup" and main.base_url == "http://127.0.0.1:8080/console"
    assert main.concurrency == 4
    assert main.rate is not None and main.rate.per_second == pytest.approx(1 / 3)
    assert main.timeout == (2.0, 15.0)
    assert (main.retry.attempts, main.retry.base_delay) == (3, 0.25)
    assert (main.retry.max_delay, main.retry.max_total) == (10.0, 60.0)
    assert main.ca_bundle == str(DATA / "valid" / "data" / "ca.pem")
    assert main.options["password"] == "${MU_PASSWORD}"  # never resolved here
    assert "type" not in main.options and "retry" not in main.options
    assert main.line == 11
    assert c.providers["backup"].timeout == (7.0, 7.0)
    assert c.providers["stats"].timeout == (5.0, 30.0)

    r = c.recipients
    assert r.file == DATA / "valid" / "data" / "people.csv" and r.format == "csv"
    assert (r.phone_field, r.delimiter, r.encoding) == ("mobile", ";", "latin-1")
    assert r.on_invalid == "fail" and r.where == "lang in ('es', 'en')"
    assert r.exclude == (DATA / "valid" / "data" / "optout.txt",)

    assert c.templates["promo"].text == "Hola {{ name | first_name }},\n{{ vars.shop }}\n"
    legal = c.templates["legal"]
    assert legal.text == "Info: {{ vars.shop }}\n"
    assert legal.source == DATA / "valid" / "data" / "legal.j2"
    multi = c.templates["multi"]
    assert (multi.variant_by, multi.default) == ("lang", "en")
    assert multi.variants == {"es": "Hola", "en": "Hi"}

    steps = {s.id: s for s in c.steps}
    assert [s.id for s in c.steps] == [
        "credits",
        "floor",
        "blast",
        "pause",
        "night",
        "report",
    ]
    assert steps["credits"].action == CheckCreditsAction(
        "stats", min_expr="segments('blast') * 1.1 + messages('blast')"
    )
    assert steps["floor"].action == CheckCreditsAction("main", min=100.0)
    assert steps["floor"].on_failure == "continue"
    blast = steps["blast"]
    assert blast.action == SendAction(
        ("main", "backup"), "multi", "12345", {"flash": False}
    )
    assert blast.timing.at == dt.datetime(
        2026, 12, 1, 9, 0, tzinfo=ZoneInfo("Europe/Madrid")
    )
    assert blast.timing.window == Window(dt.time(9), dt.time(20, 30), (0, 4, 6))
    assert blast.when == "steps.credits.ok and vars.n > 1"
    assert steps["pause"].action == WaitAction(dt.timedelta(seconds=90))
    night = steps["night"]
    assert night.timing.after == dt.timedelta(minutes=10)
    assert night.timing.window == Window(dt.time(22), dt.time(6))
    report = steps["report"].action
    assert isinstance(report, CheckReportAction)
    assert (report.for_step, report.every, report.timeout) == (
        "blast",
        dt.timedelta(seconds=30),
        dt.timedelta(hours=2),
    )
    assert report.expect.max_optout_ratio == 0.02 and report.expect.min_sent == 1
    assert report.options == {"unit": "day"}

    assert c.schedule is not None and c.schedule.cron == "0 9 * * mon-fri"
    assert c.schedule.misfire_grace_time == dt.timedelta(minutes=10)
    assert c.schedule.coalesce is False
    assert c.sandbox.latency == 0.05 and c.sandbox.credits == 5000 and c.sandbox.seed == 1
    assert c.sandbox.faults["http_503"] == 0.05


def test_defaults() -> None:
    c, _ = load_campaign(DATA / "valid" / "missing_env.yaml", env=ENV)
    assert c.timezone == ZoneInfo("UTC") and c.max_segments == 3
    assert c.default_region is None and c.schedule is None
    assert c.recipients.inline == ({"phone": "+12145550101"},)
    step = c.steps[0]
    assert step.on_failure == "abort" and step.when is None
    assert step.timing.at is None and step.timing.after is None
    p = c.providers["sms"]
    assert p.rate is None and p.concurrency is None and p.timeout == (5.0, 30.0)
    assert p.base_url is None


def test_yaml_1_2_scalars_reach_the_campaign_as_text() -> None:
    c, _ = load_campaign(DATA / "valid" / "yaml12_scalars.yaml", env=ENV)
    assert c.default_region == "NO"
    assert [r["lang"] for r in c.recipients.inline or ()] == ["no", "NO"]
    assert c.templates["hello"].variants == {"no": "Hei", "en": "Hi"}
    assert c.vars["time"] == "09:30" and c.vars["day"] == "2026-05-17"
    assert c.vars["yes_word"] == "yes" and c.vars["off"] == "off"
    assert c.vars["flag"] is True and c.vars["octal_like"] == 10


def test_missing_env_is_an_error_with_require_env() -> None:
    path = DATA / "valid" / "missing_env.yaml"
    result = load(path, env=ENV, require_env=True)
    assert result.campaign is None
    assert [(p.field, p.message, p.severity) for p in result.problems] == [
        (
            "providers.sms.api_key",
            "environment variable NOT_SET_API_KEY is not set",
            "error",
        ),
        (
            "providers.stats.username",
            "environment variable TELLODY_USER is not set",
            "error",
        ),
    ]
    with pytest.raises(CampaignError) as info:
        load_campaign(path, env=ENV, require_env=True)
    assert len(info.value.problems) == 2
    assert info.value.exit_code == 2
    c, warnings = load_campaign(
        path, env={**ENV, "NOT_SET_API_KEY": "k", "TELLODY_USER": "u"}
    )
    assert (
        warnings == [] and c.providers["sms"].options["api_key"] == "${NOT_SET_API_KEY}"
    )


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    path = DATA / "valid" / "missing_env.yaml"
    monkeypatch.setenv("NOT_SET_API_KEY", "k")
    monkeypatch.delenv("TELLODY_USER", raising=False)
    monkeypatch.setenv("TATANGO_API_KEY", "k")
    result = load(path)
    assert [p.message for p in result.problems] == [
        "environment variable TELLODY_USER is not set"
    ]


def test_literal_secret_warning_never_quotes_the_secret() -> None:
    result = load(DATA / "valid" / "literal_secret.yaml", env=ENV)
    [problem] = result.problems
    assert problem.severity == "warning" and problem.field == "providers.sms.api_key"
    assert "0123456789abcdef" not in formatted(result)


def test_load_campaign_raises_with_every_problem() -> None:
    with pytest.raises(CampaignError) as info:
        load_campaign(DATA / "invalid" / "unknown_references.yaml", env=ENV)
    assert len(info.value.problems) == 9
    assert "unknown provider 'smss'" in str(info.value)
    assert "(+8 more)" in str(info.value)


def test_a_directory_or_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    for path in (tmp_path, tmp_path / "missing.yaml"):
        result = load(path)
        assert result.campaign is None
        assert "cannot read the file" in result.problems[0].message


def test_too_large_file(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(yamlload.MAX_BYTES + 1)
    [problem] = load(big).problems
    assert (
        problem.format()
        == f"{big}:1:1: file is too large (10.0 MiB; the limit is 10 MiB)"
    )


# -- never a traceback ---------------------------------------------------------------

EXAMPLES = [p.read_text() for p in sorted(CAMPAIGNS.glob("*.yaml"))] + [
    (DATA / "valid" / "full.yaml").read_text()
]
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def check_never_raises(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    result = load(path, env={})
    assert isinstance(result, LoadResult)
    assert (result.campaign is None) == bool(result.errors)
    for p in result.problems:
        assert p.line >= 1 and p.col >= 1 and "\n" not in p.message


@FUZZ
@given(text=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300))
def test_random_text_never_raises(tmp_path: Path, text: str) -> None:
    check_never_raises(tmp_path, text)


YAML_BITS = st.sampled_from(
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
        ">",
        "{{",
        "}}",
        "{%",
        "#",
        "\n",
        "~",
        "<<: ",
        "!!str ",
        "null",
        "1",
        "x",
        "steps",
    ]
)


@FUZZ
@given(
    example=st.sampled_from(EXAMPLES),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.integers(0, 8), st.lists(YAML_BITS, max_size=4)),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_examples_never_raise(
    tmp_path: Path, example: str, edits: list[tuple[float, int, list[str]]]
) -> None:
    text = example
    for where, cut, insert in edits:
        i = int(where * len(text))
        text = text[:i] + "".join(insert) + text[i + cut :]
    check_never_raises(tmp_path, text)


@FUZZ
@given(
    example=st.sampled_from(EXAMPLES),
    line=st.floats(0, 1),
    value=st.one_of(
        st.just("[]"),
        st.just("{}"),
        st.just("~"),
        st.just("42"),
        st.just("true"),
        st.just("'{{ x'"),
        st.text(max_size=10).map(repr),
    ),
)
def test_values_replaced_in_examples_never_raise(
    tmp_path: Path, example: str, line: float, value: str
) -> None:
    lines = example.splitlines()
    i = int(line * (len(lines) - 1))
    head, sep, _ = lines[i].partition(": ")
    if sep:
        lines[i] = f"{head}: {value}"
    check_never_raises(tmp_path, "\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("text", "shown"),
    [("1h", "1h"), ("90m", "90m"), ("120s", "2m"), ("1.5s", "1.5s"), ("500ms", "500ms")],
)
def test_durations_are_shown_as_a_campaign_file_writes_them(
    text: str, shown: str
) -> None:
    # messages such as "the report was not final after 1h" (not 1:00:00)
    assert format_duration(parse_duration(text)) == shown
    assert parse_duration(shown) == parse_duration(text)
