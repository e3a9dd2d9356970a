"""Recipient sources read from real files: BOMs, delimiters, encodings, bad rows."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from campaignkit import DATA, make_campaign

from runner.audience import numberset, recipients
from runner.audience.recipient import RecipientStats, Skipped
from runner.audience.recipients import iter_recipients
from runner.errors import RecipientError


def read(**kw: object) -> tuple[list[tuple[str, str, int]], RecipientStats]:
    stats = RecipientStats()
    campaign = make_campaign(**kw)  # type: ignore[arg-type]
    got = [(r.phone, r.location, r.row) for r in iter_recipients(campaign, stats)]
    return got, stats


def test_bom_semicolons_national_and_international_numbers() -> None:
    stats = RecipientStats()
    campaign = make_campaign(file="bom_semicolon.csv")
    recipients = list(iter_recipients(campaign, stats))
    assert [(r.phone, r.line) for r in recipients] == [
        ("+34612345678", 2),  # national, spaces
        ("+34612345679", 3),
        ("+34612345680", 4),  # 0034 international prefix
        ("+447911123456", 9),
        ("+34612345681", 10),
        ("+34612345682", 11),
        ("+34612345683", 12),
    ]
    first = recipients[0]
    # the BOM is not part of the first column's name; every column is a field
    assert first.fields == {
        "phone": "612 345 678",
        "name": "José Pérez",
        "lang": "es",
        "tier": "gold",
    }
    assert recipients[4].fields["name"] == "李小龍"
    assert recipients[5].fields["name"] == "Ana 😀"
    assert first.source == "bom_semicolon.csv" and first.row == 1
    assert first.location == "bom_semicolon.csv:2"
    assert stats.as_dict() == {
        "read": 12,  # the blank line is not a row
        "invalid": 4,
        "duplicates": 1,
        "excluded": 0,
        "filtered_out": 0,
        "accepted": 7,
    }
    reasons = [bad.format() for bad in stats.invalid_rows]
    assert reasons == [
        "bom_semicolon.csv:6: ***** too short",
        "bom_semicolon.csv:7: no 'phone'",
        "bom_semicolon.csv:13: +44********0123 not a valid number for region GB",
        "bom_semicolon.csv:14: ***l me not a phone number",
    ]


def test_opt_out_lists_plain_and_csv() -> None:
    got, stats = read(
        file="bom_semicolon.csv", exclude=(Path("optout.txt"), Path("optout.csv"))
    )
    phones = [p for p, _, _ in got]
    assert "+34612345683" not in phones  # optout.txt, written differently
    assert "+447911123456" not in phones  # optout.csv, phone column
    assert stats.excluded == 2 and stats.accepted == 5


def test_opt_out_wins_over_everything_even_duplicates() -> None:
    inline = [
        {"phone": "+34612345683"},
        {"phone": "612 345 683"},
        {"phone": "+34612345600"},
    ]
    got, stats = read(inline=inline, exclude=(Path("optout.txt"),))
    assert [p for p, _, _ in got] == ["+34612345600"]
    assert stats.excluded == 2 and stats.duplicates == 0


def test_where_filters_on_fields_and_sees_vars() -> None:
    got, stats = read(
        file="bom_semicolon.csv",
        where="lang == vars.lang and tier != 'trial'",
        vars={"lang": "es"},
    )
    assert [loc for _, loc, _ in got] == [
        "bom_semicolon.csv:2",
        "bom_semicolon.csv:4",
        "bom_semicolon.csv:11",
        "bom_semicolon.csv:12",
    ]
    assert stats.filtered_out == 3 and stats.accepted == 4


def test_where_error_names_the_row() -> None:
    inline = [{"phone": "+34612345678", "lang": "es"}, {"phone": "+34612345679"}]
    campaign = make_campaign(inline=inline, where="lang == 'es'")
    it = iter_recipients(campaign)
    assert next(it).phone == "+34612345678"
    with pytest.raises(
        RecipientError, match=r"inline row 2: where: .*undefined variable 'lang'"
    ):
        next(it)


def test_quoted_fields_span_lines_and_short_rows_are_invalid() -> None:
    stats = RecipientStats()
    recipients = list(iter_recipients(make_campaign(file="quoted.csv"), stats))
    assert [(r.line, r.fields["name"]) for r in recipients] == [
        (2, "Pérez, José"),
        (4, "Ana"),
    ]
    assert recipients[0].fields["note"] == "first line\nsecond line"
    assert recipients[1].fields["note"] == 'said "hi"'
    assert [b.format() for b in stats.invalid_rows] == [
        "quoted.csv:5: 2 fields, the header has 3"
    ]


def test_tab_delimiter_is_sniffed_and_phone_need_not_be_first() -> None:
    got, _ = read(file="tabs.tsv")
    assert [p for p, _, _ in got] == ["+34612345678", "+34612345679"]


def test_configured_delimiter_and_phone_field(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text(
        "name|msisdn|x\nAna|612345678|a,b\n", encoding="utf-8"
    )
    got, _ = read(base=tmp_path, file="r.csv", delimiter="|", phone_field="msisdn")
    assert [p for p, _, _ in got] == ["+34612345678"]


def test_configured_encoding() -> None:
    campaign = make_campaign(file="latin1.csv", encoding="latin-1")
    names = [r.fields["name"] for r in iter_recipients(campaign)]
    assert names == ["José", "Begoña"]


def test_decoding_error_names_file_and_line() -> None:
    with pytest.raises(RecipientError) as e:
        list(iter_recipients(make_campaign(file="bad_utf8.csv")))
    assert str(e.value) == (
        "bad_utf8.csv:3: not UTF-8 (byte 0xe9); if the file is Latin-1, add "
        "encoding: latin-1 to recipients"
    )
    # with encoding: utf-8 written out, the hint says to change it
    with pytest.raises(RecipientError) as e:
        list(iter_recipients(make_campaign(file="bad_utf8.csv", encoding="utf-8")))
    assert str(e.value).endswith(
        "; if the file is Latin-1, set encoding: latin-1 in recipients"
    )
    # another encoding: no hint
    with pytest.raises(RecipientError) as e:
        list(iter_recipients(make_campaign(file="bad_utf8.csv", encoding="ascii")))
    assert str(e.value) == "bad_utf8.csv:3: not ascii (byte 0xe9)"


def test_an_opt_out_list_that_is_not_utf8_says_so(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("phone\n+34612345678\n", encoding="utf-8")
    (tmp_path / "optout.csv").write_bytes(b"phone,name\n+34612345679,Jos\xe9\n")
    campaign = make_campaign(base=tmp_path, file="r.csv", exclude=(Path("optout.csv"),))
    with pytest.raises(RecipientError) as e:
        list(iter_recipients(campaign))
    assert str(e.value) == (
        "optout.csv:2: not UTF-8 (byte 0xe9); save it as UTF-8: opt-out lists are "
        "read as UTF-8"
    )


def test_files_are_streamed(tmp_path: Path) -> None:
    # a bad byte far past the first rows: they come out before it is read
    good = "".join(f"+3461234{i:04d},Ana\n" for i in range(5000))
    (tmp_path / "r.csv").write_bytes(
        b"phone,name\n" + good.encode() + b"+34600000000,Jos\xe9\n"
    )
    it = iter_recipients(make_campaign(base=tmp_path, file="r.csv"))
    assert next(it).phone == "+34612340000"
    with pytest.raises(RecipientError, match=r"^r\.csv:5002: not UTF-8 \(byte 0xe9\)"):
        list(it)


def test_jsonl_rows_bad_lines_and_numbers_as_numbers() -> None:
    stats = RecipientStats()
    recipients = list(iter_recipients(make_campaign(file="recipients.jsonl"), stats))
    assert [(r.phone, r.line) for r in recipients] == [
        ("+34612345678", 1),
        ("+34612345679", 3),
    ]
    assert recipients[0].fields["first-visit"] == "2024-03-01"
    assert [b.format() for b in stats.invalid_rows] == [
        "recipients.jsonl:4: not valid JSON (Expecting property name enclosed in double "
        "quotes)",
        "recipients.jsonl:5: not a JSON object",
        "recipients.jsonl:7: no 'phone'",
    ]
    assert stats.duplicates == 1 and stats.read == 6


def test_on_invalid_fail_stops_at_the_first_bad_row() -> None:
    campaign = make_campaign(file="bom_semicolon.csv", on_invalid="fail")
    with pytest.raises(RecipientError) as e:
        list(iter_recipients(campaign))
    assert str(e.value) == "bom_semicolon.csv:6: ***** too short (on_invalid: fail)"


def test_missing_file_and_missing_phone_column(tmp_path: Path) -> None:
    with pytest.raises(RecipientError, match=r"^nope\.csv: cannot read: No such file"):
        list(iter_recipients(make_campaign(base=tmp_path, file="nope.csv")))
    (tmp_path / "r.csv").write_text("mobile,name\n612345678,Ana\n", encoding="utf-8")
    with pytest.raises(RecipientError) as e:
        list(iter_recipients(make_campaign(base=tmp_path, file="r.csv")))
    assert str(e.value) == (
        "r.csv:1: no column 'phone' (columns: 'mobile', 'name'); "
        "set recipients.phone_field"
    )


def test_unknown_encoding_is_one_line() -> None:
    with pytest.raises(RecipientError, match="unknown encoding 'klingon'"):
        list(iter_recipients(make_campaign(file="latin1.csv", encoding="klingon")))


def test_no_default_region_needs_international_numbers() -> None:
    got, stats = read(
        inline=[{"phone": "612345678"}, {"phone": "+34612345679"}], default_region=None
    )
    assert [p for p, _, _ in got] == ["+34612345679"]
    assert stats.invalid_rows[0].reason == "no country code (+...) and no default_region"


def test_invalid_rows_listed_are_bounded_but_counted() -> None:
    inline = [{"phone": "123"} for _ in range(250)]
    _, stats = read(inline=inline)
    assert stats.invalid == 250 and len(stats.invalid_rows) == 100


def test_exclusion_csv_without_a_phone_column_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    campaign = make_campaign(
        base=tmp_path, inline=[{"phone": "+34612345678"}], exclude=(Path("o.csv"),)
    )
    with pytest.raises(RecipientError, match=r"^o\.csv:1: no 'phone' column"):
        list(iter_recipients(campaign))


def test_data_dir_has_the_documented_files() -> None:
    # the cases above rely on these exact bytes
    assert (DATA / "bom_semicolon.csv").read_bytes().startswith(b"\xef\xbb\xbfphone;")
    assert b"\xe9" in (DATA / "latin1.csv").read_bytes()


def test_byte_spans_hold_whole_records_and_name_a_bad_line(tmp_path: Path) -> None:
    from runner.audience import sources

    rows = [f'+3461234{i:04d},"note {i}\nmore"' for i in range(300)]  # 2 lines each
    rows[250] = "+34612340250,Jos\udce9"  # one line, a byte that is not UTF-8
    data = ("phone,note\n" + "\n".join(rows) + "\n").encode("utf-8", "surrogateescape")
    (tmp_path / "r.csv").write_bytes(data)
    path = tmp_path / "r.csv"
    layout = sources.Layout("csv", sources.dialect("phone,note"), ("phone", "note"))
    spans = list(sources.spans(path, "r.csv", layout, 100))
    assert len(spans) > 3
    assert spans[0].first_line == 2 and spans[0].start == len(b"phone,note\n")
    lines = 0
    for span in spans:
        if span.start <= data.index(b"\xe9") < span.end:
            with pytest.raises(RecipientError) as e:
                sources.read_span(path, "r.csv", "utf-8-sig", span)
            # 250 two-line records after the header: the bad row is on line 502
            assert str(e.value) == "r.csv:502: not UTF-8 (byte 0xe9)"
            continue
        text = sources.read_span(path, "r.csv", "utf-8-sig", span)
        rows_read = list(sources.parse(layout, text, span.first_line, "r.csv"))
        assert all(r.fields and r.fields["note"].endswith("more") for r in rows_read)
        lines += sum(1 for _ in rows_read)
    assert lines == 250  # rows 0-249; rows 250-299 are the span with the bad byte


def repeats_campaign(tmp_path: Path, **kw: object):  # type: ignore[no-untyped-def]
    """400 rows over 60 numbers (most rows repeat one), a few invalid, every
    seventh number opted out, some repeating ones among them."""
    rng = random.Random(7)
    rows = ["phone,name,lang"]
    for i in range(400):
        phone = "12345" if rng.random() < 0.03 else f"+3461200{rng.randrange(60):04d}"
        rows.append(f"{phone},n{i},{rng.choice(['es', 'en'])}")
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    optout = "".join(f"612 00{n:04d}\n" for n in range(0, 60, 7))
    (tmp_path / "optout.txt").write_text(optout, encoding="utf-8")
    return make_campaign(base=tmp_path, file="r.csv", exclude=(Path("optout.txt"),), **kw)


def screened(campaign, during=None):  # type: ignore[no-untyped-def]
    """(phone, line) of each recipient, every row left out, and the counts."""
    skipped: list[Skipped] = []

    def skip(row: Skipped) -> None:
        skipped.append(row)
        if during is not None:
            during(row)

    stats = RecipientStats(on_skip=skip)
    got = [(r.phone, r.line) for r in iter_recipients(campaign, stats)]
    return got, skipped, stats.as_dict()


def numbers_folders() -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob("campaign-runner-numbers-*"))


def test_spilled_sets_screen_every_row_as_the_in_memory_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    campaign = repeats_campaign(tmp_path, where="lang == 'es'")
    whole = screened(campaign)
    got, skipped, counts = whole
    assert counts["duplicates"] > 200 and counts["excluded"] > 20
    assert counts["filtered_out"] > 5 and counts["invalid"] > 5
    assert {s.reason for s in skipped[:60]} == {
        "invalid",
        "excluded",
        "duplicate",
        "filtered_out",
    }
    assert len({phone for phone, _ in got}) == len(got)
    # the opt-out list and the numbers seen both in files; chunks of 7 rows
    monkeypatch.setattr(numberset, "SPILL_AT", 3)
    monkeypatch.setattr(recipients, "CHUNK_ROWS", 7)
    folders: list[int] = []
    assert screened(campaign, lambda _: folders.append(len(numbers_folders()))) == whole
    assert max(folders) == 2 and numbers_folders() == []


def test_an_opted_out_number_is_excluded_not_a_duplicate_once_spilled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(numberset, "SPILL_AT", 1)
    monkeypatch.setattr(recipients, "CHUNK_ROWS", 2)
    (tmp_path / "optout.txt").write_text("+34612000007\n", encoding="utf-8")
    rows = [{"phone": p} for p in ("+34612000001", "612 000 007", "+34612000001")]
    rows += [{"phone": "+34612000007"}, {"phone": "+34612000002"}]
    campaign = make_campaign(base=tmp_path, inline=rows, exclude=(Path("optout.txt"),))
    _, skipped, counts = screened(campaign)
    assert [(s.reason, s.row) for s in skipped] == [
        ("excluded", 2),
        ("duplicate", 3),
        ("excluded", 4),
    ]
    assert counts["accepted"] == 2


def test_an_interrupted_read_removes_its_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(numberset, "SPILL_AT", 3)
    seen: list[int] = []

    def ctrl_c(row: Skipped) -> None:
        seen.append(len(numbers_folders()))
        if len(seen) == 100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        screened(repeats_campaign(tmp_path), ctrl_c)
    assert seen[-1] == 2 and numbers_folders() == []


def test_rows_before_a_failing_row_of_a_chunk_come_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recipients, "CHUNK_ROWS", 100)
    campaign = make_campaign(file="bom_semicolon.csv", on_invalid="fail")
    stats = RecipientStats()
    it = iter_recipients(campaign, stats)
    assert [next(it).line for _ in range(3)] == [2, 3, 4]
    with pytest.raises(RecipientError, match=r"bom_semicolon\.csv:6: \*+ too short"):
        next(it)
    assert stats.read == 5 and stats.accepted == 3
