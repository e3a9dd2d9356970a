"""Start the emulators a campaign needs and point its providers at them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.model.campaign import Campaign
from runner.sandbox import EMULATORS
from runner.sandbox.faults import FaultPlan
from runner.sandbox.server import Sandbox


def start_for(
    campaign: Campaign,
    options: Mapping[str, Mapping[str, Any]],
    *,
    settle: float = 1.0,
    faults: FaultPlan | None = None,
) -> tuple[Sandbox, dict[str, dict[str, str]]]:
    """One sandbox serving an emulator per provider of ``campaign``.

    ``options`` are the resolved provider options (the emulators accept exactly
    these credentials). Returns the sandbox and, per provider name, the URL
    options that point at it.
    """
    sandbox = Sandbox()
    sandbox.latency = campaign.sandbox.latency
    plan = faults or FaultPlan.from_options(campaign.sandbox)
    if plan.active:
        sandbox.faults = plan.injector()
    urls: dict[str, dict[str, str]] = {}
    for name, cfg in campaign.providers.items():
        emulator_cls = EMULATORS.get(cfg.type)
        if emulator_cls is None:
            continue
        kwargs: dict[str, Any] = {"settle": settle}
        if campaign.sandbox.credits is not None:
            kwargs["credits"] = campaign.sandbox.credits
        emulator = emulator_cls(dict(options.get(name, {})), **kwargs)
        emulator.reply_texts = {
            p.lstrip("+"): text for p, text in campaign.sandbox.replies.items()
        }
        emulator.opted_out.update(p.lstrip("+") for p in campaign.sandbox.opted_out)
        urls[name] = sandbox.mount(name, emulator)
        # the emulators' reports are never late: unknown sends can be settled at once
        urls[name]["report_lag"] = "0"
    sandbox.start()
    return sandbox, urls
