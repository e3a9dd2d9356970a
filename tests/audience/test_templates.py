"""Templates: sandbox, strict variables, filters, variants, segments."""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest
from campaignkit import make_campaign
from hypothesis import given
from hypothesis import strategies as st

from runner.audience.encoding import GSM7_BASIC, GSM7_EXTENSION, segment
from runner.audience.recipient import Recipient
from runner.audience.templates import Renderer, count_segments, make_environment
from runner.errors import TemplateError
from runner.model.campaign import Template

NOW = datetime(2024, 3, 31, 1, 30, tzinfo=UTC)  # 03:30 in Madrid, just after DST began


def person(**fields: object) -> Recipient:
    fields.setdefault("phone", "+34612345678")
    return Recipient("+34612345678", fields, 7, "people.csv", 8)


def render(text: str, *, max_segments: int = 3, **fields: object) -> str:
    shop = {"city": "Vigo"}
    campaign = make_campaign(
        inline=[],
        templates={"t": text},
        vars={"code": "SPRING", "shop": shop},
        max_segments=max_segments,
    )
    return Renderer(campaign, now=NOW).render("t", person(**fields)).text


def test_variables_fields_vars_campaign_now_and_recipient() -> None:
    text = render(
        "{{ name }}|{{ vars.code }}|{{ vars.shop.city }}|{{ campaign }}|"
        "{{ now.isoformat() }}|{{ recipient['first-visit'] }}",
        name="Ana",
        **{"first-visit": "2024-01-02"},
    )
    assert text == "Ana|SPRING|Vigo|test-campaign|2024-03-31T03:30:00+02:00|2024-01-02"


def test_reserved_names_win_over_a_field_of_the_same_name() -> None:
    assert render("{{ campaign }}/{{ recipient.campaign }}", campaign="x") == (
        "test-campaign/x"
    )


def test_no_html_escaping() -> None:
    assert render("{{ name }}", name="<b>Tom & Jerry's</b>") == "<b>Tom & Jerry's</b>"


def test_missing_variable_names_template_variable_and_masked_recipient() -> None:
    with pytest.raises(TemplateError) as e:
        render("Hola {{ nmae }}", name="Ana")
    assert str(e.value) == (
        "template 't' undefined variable 'nmae' for people.csv:8 (+34*****5678)"
    )


def test_missing_attribute_is_an_error_too() -> None:
    with pytest.raises(TemplateError, match="undefined attribute 'missing'"):
        render("{{ vars.missing }}")


@pytest.mark.parametrize(
    "attack",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ name.__class__ }}",
        "{{ (1).__class__.__base__ }}",
        "{{ vars.__class__ }}",
    ],
)
def test_sandbox_stops_walks_to_python_internals(attack: str) -> None:
    with pytest.raises(TemplateError) as e:
        render(attack, name="Ana")
    message = str(e.value)
    assert message.startswith("template 't' tried to access an unsafe attribute")
    assert "for people.csv:8 (+34*****5678)" in message


def test_sandbox_data_is_immutable() -> None:
    with pytest.raises(TemplateError, match="unsafe"):
        render("{{ vars.shop.update(city='x') }}")


def test_filters() -> None:
    assert render("{{ name | first_name }}", name="  Ana María López ") == "Ana"
    assert render("[{{ name | first_name }}]", name="   ") == "[]"
    assert render("{{ now | datetime }}") == "31/03/2024 03:30"
    assert render("{{ now | date('%Y-%m-%d') }}") == "2024-03-31"
    assert render("{{ d | date }}", d="2024-12-25") == "25/12/2024"
    # an ISO string with an offset is shown in the campaign's timezone
    assert render("{{ d | datetime('%H:%M') }}", d="2024-07-01T10:00:00Z") == "12:00"
    assert render("{{ d | datetime('%H:%M') }}", d="2024-07-01T10:00:00") == "10:00"
    assert render("{{ d | date }}", d=date(2024, 1, 5)) == "05/01/2024"
    assert render("{{ t | gsm }}", t="It’s “great” — really…") == (
        'It\'s "great" - really...'
    )
    # translit: accents GSM-7 lacks go, those it has stay; other scripts stay
    text = render("{{ t | translit }}", t="Ramón Martínez, ¿qué tal? Ça’s Łódź")
    assert text == "Ramon Martinez, ¿qué tal? Ça's Łodz"
    assert segment(render("{{ t | translit }}", t="áíóú ñ")).encoding == "GSM-7"


def test_a_bad_date_names_the_recipient() -> None:
    with pytest.raises(TemplateError) as e:
        render("{{ d | date }}", d="next tuesday")
    assert str(e.value) == (
        "template 't' ValueError: not an ISO date or datetime: 'next tuesday' "
        "for people.csv:8 (+34*****5678)"
    )


def test_unknown_filter_fails_when_compiled() -> None:
    env = make_environment(ZoneInfo("UTC"))
    with pytest.raises(Exception, match="No filter named 'shout'"):
        env.from_string("{{ name | shout }}")
    with pytest.raises(TemplateError, match=r"template 't' line 1: .*shout"):
        Renderer(make_campaign(inline=[], templates={"t": "{{ name | shout }}"}))


def test_variants_by_field_with_default() -> None:
    promo = Template(
        "promo",
        variants={"es": "Hola {{ name }}", "en": "Hi {{ name }}"},
        variant_by="lang",
        default="en",
    )
    renderer = Renderer(make_campaign(inline=[], templates={"promo": promo}), now=NOW)
    assert renderer.render("promo", person(name="Ana", lang="es")).text == "Hola Ana"
    assert renderer.render("promo", person(name="Jo", lang="fr")).text == "Hi Jo"
    assert renderer.render("promo", person(name="Jo")).text == "Hi Jo"


def test_variant_without_default_is_an_error_for_that_recipient() -> None:
    promo = Template("promo", variants={"es": "Hola"}, variant_by="lang")
    renderer = Renderer(make_campaign(inline=[], templates={"promo": promo}))
    with pytest.raises(TemplateError) as e:
        renderer.render("promo", person(lang="fr"))
    assert str(e.value) == (
        "template 'promo' has no variant for lang='fr' and no default, "
        "for people.csv:8 (+34*****5678)"
    )


def test_max_segments_is_enforced_per_recipient() -> None:
    assert render("{{ 'a' * 306 }}", max_segments=2)  # 2 x 153
    with pytest.raises(TemplateError) as e:
        render("{{ 'a' * 307 }}", max_segments=2)
    assert str(e.value) == (
        "template 't' is 3 segments (GSM-7) for people.csv:8 (+34*****5678), "
        "over max_segments 2"
    )
    with pytest.raises(TemplateError, match=r"2 segments \(UCS-2, because of '😀'\)"):
        render("{{ name }} {{ 'a' * 70 }}", max_segments=1, name="😀")


def test_evaluate_expressions_are_cached_and_errors_are_one_line() -> None:
    renderer = Renderer(make_campaign(inline=[]))
    assert renderer.evaluate("n * 2 > 3", {"n": 2}) is True
    assert renderer.evaluate("segments('a') + 1", {"segments": lambda s: 41}) == 42
    with pytest.raises(TemplateError, match=r"expression 'x \+': line 1: "):
        renderer.evaluate("x +", {})
    with pytest.raises(TemplateError, match="undefined variable 'y'"):
        renderer.evaluate("y", {})
    with pytest.raises(TemplateError, match="unsafe"):
        renderer.evaluate("''.__class__", {})


# -- segments: exact at the billing boundaries --------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),  # 2 x 153
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters count two
        ("€" * 81, "GSM-7", 162, 2),
        ("{}[]~\\|^€" + "a" * 142, "GSM-7", 160, 1),
        ("{}[]~\\|^€" + "a" * 143, "GSM-7", 161, 2),
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),  # an escape is never split
        ("é" * 160, "GSM-7", 160, 1),  # é is in the GSM-7 basic table, ó is not
        ("ó" * 70, "UCS-2", 70, 1),
        ("ó" * 71, "UCS-2", 71, 2),
        ("ó" * 134, "UCS-2", 134, 2),  # 2 x 67
        ("ó" * 135, "UCS-2", 135, 3),
        ("😀" * 35, "UCS-2", 70, 1),  # a surrogate pair: two units
        ("😀" * 36, "UCS-2", 72, 2),
        ("’" + "a" * 69, "UCS-2", 70, 1),  # one curly quote makes it all UCS-2
    ],
)
def test_count_segments_at_boundaries(
    text: str, encoding: str, units: int, segments: int
) -> None:
    got = count_segments(text)
    assert (got.encoding, got.units, got.segments) == (encoding, units, segments)
    assert got == segment(text)


ALPHABET = "".join(sorted(GSM7_BASIC | GSM7_EXTENSION)) + "óÁ’😀ç中"


@given(st.text(alphabet=ALPHABET, max_size=400))
def test_count_segments_is_segment(text: str) -> None:
    assert count_segments(text) == segment(text)


def test_mapping_attribute_lookup_keeps_jinja_semantics() -> None:
    env = make_environment(ZoneInfo("UTC"))
    proxy = MappingProxyType({"code": "A", "items": "shadowed"})
    t = env.from_string("{{ m.code }} {{ m['items'] }} {{ m.items() | list | length }}")
    assert t.render(m=proxy) == "A shadowed 2"
    assert t.render(m={"code": "B", "items": "x"}) == "B x 2"
    with pytest.raises(Exception, match="has no attribute 'nope'"):
        env.from_string("{{ m.nope }}").render(m={"code": "A"})
