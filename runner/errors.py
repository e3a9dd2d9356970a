"""The error hierarchy: one boundary in cli.py maps these to exit codes."""

from __future__ import annotations

import os
import tempfile
import traceback
from dataclasses import dataclass


class RunnerError(Exception):
    """Base for every error we expect and report as one line (exit 1 unless set)."""

    exit_code = 1


class UsageError(RunnerError):
    """Bad command-line usage (exit 2)."""

    exit_code = 2


@dataclass(frozen=True, order=True)
class Problem:
    """One finding about a campaign file, printed as ``path:line:col: field: msg``."""

    path: str
    line: int
    col: int
    field: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def format(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}"
        field = f" {self.field}:" if self.field else ""
        tag = "warning: " if self.severity == "warning" else ""
        return f"{where}:{field} {tag}{self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "col": self.col,
            "field": self.field,
            "message": self.message,
            "severity": self.severity,
        }


class CampaignError(RunnerError):
    """A campaign file (or a file it points at) is invalid.

    Carries every problem found, not only the first, so ``validate`` can print all.
    Validation errors are usage-class failures of the input: exit 2 at ``run``
    and ``preview``; ``validate`` itself exits 1 (the check ran and said no).
    """

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.path, p.line, p.col))
        errors = [p for p in self.problems if p.severity == "error"]
        first = (errors or self.problems)[0].format() if self.problems else "invalid"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)


class TemplateError(RunnerError):
    """A template failed to render for a recipient, or tried to escape the sandbox.

    ``problem`` is the same for every recipient the same mistake hits
    (``template 'promo' variant 'en': undefined variable 'nmae'``), so failures
    can be counted by cause; the message adds which recipient. ``issue`` is the
    mistake alone (``undefined variable 'nmae'``), ``variant`` the template's
    variant and ``where`` the recipient's place (``contacts.csv:12``), for
    grouping (runner.audience.failures).
    """

    def __init__(
        self,
        message: str,
        problem: str | None = None,
        *,
        issue: str | None = None,
        variant: str | None = None,
        where: str = "",
    ) -> None:
        super().__init__(message)
        self.problem = problem or message
        self.issue = issue or self.problem
        self.variant = variant
        self.where = where


class RecipientError(RunnerError):
    """A recipient source could not be read, or a row is invalid under on_invalid=fail."""


class ProviderError(RunnerError):
    """A provider call failed in a way the engine must classify (see providers.base)."""


class JournalError(RunnerError):
    """The journal database cannot be opened, migrated or written."""


class StepFailed(RunnerError):
    """A step ran and its outcome is a failure (check not met, send aborted)."""


def write_crash_log() -> str:
    """Write the current exception's traceback to a private file; return its path.

    People see one line naming the file, never the traceback itself.
    """
    fd, path = tempfile.mkstemp(prefix="campaign-runner-crash-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        traceback.print_exc(file=f)
    return path
