"""Campaign files -> the typed objects of ``runner.model.campaign``.

Three passes, every problem collected (never only the first): safe YAML with
positions (``yamlload``), the JSON Schema (``schema``), then the checks a schema
cannot express (references with hints, capabilities, Jinja, time values, files,
secrets) in ``checks``. Each problem is ``path:line:col: field: message``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.audience.recipients import undecodable_files
from runner.errors import CampaignError, Problem
from runner.loader import schema
from runner.loader.build import build
from runner.loader.checker import Checker
from runner.loader.yamlload import YamlError, load_file
from runner.model.campaign import Campaign


@dataclass(frozen=True)
class LoadResult:
    """The campaign (None when there are errors) and every problem, source order."""

    campaign: Campaign | None
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


def load(
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    require_env: bool = False,
    read_data: bool = False,
) -> LoadResult:
    """Load and check one campaign file; never raises for a bad file.

    ``require_env`` (``run``) makes an unset ``${VAR}`` an error; otherwise
    (``validate``) it is a warning. Secrets stay ``${VAR}`` text in the result.
    ``read_data`` (``validate``) also reads every byte of the recipients file and
    opt-out lists, to report one that is not in its encoding (``run`` and
    ``preview`` find it as they read).
    """
    path = Path(path)
    env = os.environ if env is None else env
    where = str(path)
    try:
        doc = load_file(path)
    except YamlError as e:
        field = schema.field_path(e.path)
        return LoadResult(None, [Problem(where, e.line, e.col, field, e.message)])
    if not isinstance(doc.data, dict):
        pos = doc.pos(())
        msg = "expected a mapping of campaign keys (version, name, providers, ...)"
        return LoadResult(None, [Problem(where, pos.line, pos.col, "", msg)])
    issues = schema.check(doc.data)
    checker = Checker(path, doc, env, require_env, {i.path for i in issues})
    for issue in issues:
        checker.error(issue.path, issue.message, at_key=issue.at_key, force=True)
    campaign = build(checker)
    if read_data and campaign is not None:
        for which, error in undecodable_files(campaign):
            at = ("file",) if which is None else ("exclude", which)
            checker.error(("recipients", *at), str(error))
    problems = checker.sorted_problems()
    if any(p.severity == "error" for p in problems):
        campaign = None
    return LoadResult(campaign, problems)


def load_campaign(
    path: Path, *, env: Mapping[str, str] | None = None, require_env: bool = False
) -> tuple[Campaign, list[Problem]]:
    """Like ``load``, but raise CampaignError on any error; returns the warnings."""
    result = load(path, env=env, require_env=require_env)
    if result.campaign is None:
        raise CampaignError(result.problems)
    return result.campaign, result.warnings
