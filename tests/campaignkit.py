"""Campaign objects built directly (no YAML) for recipient, template and preview tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paths

from runner.model.campaign import Campaign, RecipientSource, SendAction, Step, Template

DATA = paths.DATA / "recipients"


def make_campaign(
    *,
    base: Path = DATA,
    file: str | Path | None = None,
    inline: list[dict[str, Any]] | None = None,
    templates: dict[str, Template | str] | None = None,
    sends: dict[str, str] | None = None,
    default_region: str | None = "ES",
    timezone: str = "Europe/Madrid",
    max_segments: int = 3,
    vars: dict[str, Any] | None = None,
    **source: Any,
) -> Campaign:
    """A campaign reading ``file`` (relative to ``base``) or ``inline`` rows.

    ``templates`` values may be plain text; ``sends`` maps step id -> template
    (default: one step ``blast`` sending the first template).
    """
    tpl: dict[str, Template] = {}
    for name, t in (templates or {"promo": "Hola {{ name }}"}).items():
        tpl[name] = t if isinstance(t, Template) else Template(name, text=t)
    steps = tuple(
        Step(step_id, SendAction(("sandbox",), template))
        for step_id, template in (sends or {"blast": next(iter(tpl))}).items()
    )
    recipients = RecipientSource(
        inline=tuple(inline) if inline is not None else None,
        file=Path(file) if file is not None else None,
        **source,
    )
    return Campaign(
        path=base / "campaign.yaml",
        name="test-campaign",
        providers={},
        recipients=recipients,
        templates=tpl,
        steps=steps,
        timezone=ZoneInfo(timezone),
        default_region=default_region,
        max_segments=max_segments,
        vars=vars or {},
    )
