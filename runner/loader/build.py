"""Building the typed campaign from a checked document, section by section."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from runner.loader import sections
from runner.loader.checker import Checker
from runner.loader.jinjacheck import JinjaChecker
from runner.loader.stepcheck import StepChecker
from runner.model.campaign import Campaign


def build(c: Checker) -> Campaign | None:
    """The campaign, or None when any error was found (all of them reported)."""
    d = c.data
    c.finite(d, ())
    c.tz = c.timezone(d.get("timezone", "UTC"))
    region = c.region(d.get("default_region"))
    jinja = JinjaChecker(c, c.tz)
    provider_configs = sections.providers(c, d.get("providers"))
    recipients = sections.recipients(c, jinja, d.get("recipients"))
    templates = sections.templates(c, jinja, d.get("templates"))
    # the CSV header read once, for the file's templates and fire steps' texts
    known = sections.recipient_fields(recipients) if recipients is not None else None
    sections.template_names(c, jinja, d.get("templates"), known, d.get("vars"))
    templates |= sections.fire_texts(c, jinja, d.get("steps"), known, d.get("vars"))
    steps = StepChecker(c, jinja, provider_configs, templates).steps(d.get("steps"))
    schedule = c.schedule(d.get("schedule"))
    sandbox = c.sandbox(d.get("sandbox"), region)
    testers = sections.test_recipients(c, d.get("test_recipients"), region)
    cap = sections.frequency_cap(c, d.get("limits"))
    if not c.ok or recipients is None or steps is None:
        return None
    return Campaign(
        path=c.path,
        name=d["name"],
        providers=provider_configs,
        recipients=recipients,
        templates=templates,
        steps=steps,
        version=d["version"],
        description=d.get("description", ""),
        timezone=c.tz if isinstance(c.tz, ZoneInfo) else ZoneInfo("UTC"),
        default_region=region,
        max_segments=d.get("max_segments", 3),
        vars=d.get("vars") or {},
        schedule=schedule,
        sandbox=sandbox,
        test_recipients=testers,
        kind=d.get("kind", "marketing"),
        per_recipient=cap,
    )
