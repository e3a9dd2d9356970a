"""From a campaign's provider entries to working provider objects.

``${VAR}`` references are resolved here, at run time, into values that every
output redacts; the sandbox's stand-in values and endpoint overrides are
applied here too, so nothing else needs to know about them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from runner import providers as registry
from runner.errors import CampaignError, Problem
from runner.model.campaign import Campaign
from runner.model.secrets import (
    Redactor,
    has_reference,
    references,
    resolve,
    stand_in,
)
from runner.providers.base import Provider


def resolve_options(
    campaign: Campaign, env: Mapping[str, str], *, sandbox: bool
) -> tuple[dict[str, dict[str, Any]], Redactor]:
    """Provider options with ``${VAR}`` resolved; every resolved value is redacted.

    With the sandbox, a variable that is not set gets a stand-in value, so a
    rehearsal needs no account (the emulator accepts exactly that value).
    """
    redactor = Redactor()
    resolved: dict[str, dict[str, Any]] = {}
    missing: list[Problem] = []
    for name, cfg in campaign.providers.items():
        out: dict[str, Any] = {}
        for key, value in cfg.options.items():
            if isinstance(value, str) and has_reference(value):
                scope = dict(env)
                for var in references(value):
                    if var not in scope:
                        if not sandbox:
                            missing.append(
                                Problem(
                                    str(campaign.path),
                                    cfg.line,
                                    1,
                                    f"providers.{name}.{key}",
                                    f"environment variable {var} is not set",
                                )
                            )
                        scope[var] = stand_in(var)
                try:
                    secret = resolve(value, scope)
                except KeyError:
                    continue
                redactor.add(secret)
                out[key] = secret
            else:
                out[key] = value
                if key in registry.get(cfg.type).secret_options and isinstance(
                    value, str
                ):
                    redactor.add(value)
        resolved[name] = out
    if missing:
        raise CampaignError(missing)
    return resolved, redactor


def build_providers(
    campaign: Campaign,
    options: Mapping[str, Mapping[str, Any]],
    urls: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Provider]:
    built: dict[str, Provider] = {}
    for name, cfg in campaign.providers.items():
        opts = dict(options[name])
        override = dict((urls or {}).get(name, {}))
        base_url = override.pop("base_url", None)
        opts.update(override)
        if base_url is not None:
            cfg = dataclasses.replace(cfg, base_url=base_url)
        if not opts.get("campaign_code"):
            opts["campaign_code"] = campaign.name
        built[name] = registry.get(cfg.type)(cfg, opts)
    return built
