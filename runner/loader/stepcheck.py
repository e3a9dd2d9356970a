"""Steps: unique ids, references with hints, provider capabilities, timing."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from jinja2 import nodes

from runner import providers
from runner.loader import schema
from runner.loader.checker import Checker
from runner.loader.jinjacheck import JinjaChecker
from runner.loader.yamlload import FieldPath
from runner.model import secrets
from runner.model.campaign import (
    PIN_KEY_VAR,
    PREVIOUS_FIELDS,
    Action,
    CheckCreditsAction,
    CheckReportAction,
    Expect,
    FollowUp,
    PinRequest,
    ProviderConfig,
    SendAction,
    Step,
    Template,
    Timing,
    Tolerance,
    WaitAction,
    fire_template,
)
from runner.providers.base import Capability

ACTIONS = ("send", "fire", "check_credits", "check_report", "wait")
NEEDS = {
    "send": Capability.SEND,
    "pin": Capability.PIN,
    "fire": Capability.FIRE_MESSAGE,
    "check_credits": Capability.CREDITS,
    "check_report": Capability.REPORT,
}
VERB = {
    Capability.SEND: "send",
    Capability.PIN: "send PINs",
    Capability.FIRE_MESSAGE: "fire messages",
    Capability.CREDITS: "check credits",
    Capability.REPORT: "give reports",
}
# the step kinds whose messages are journaled per recipient (``for:``, ``from:``)
MESSAGE_KINDS = ("send", "fire", "")  # "": a step whose action has errors
EXPECT_KEYS = frozenset(f.name for f in dataclasses.fields(Expect))
WHEN_NAMES = frozenset({"steps", "vars"})
MIN_NAMES = frozenset({"segments", "messages", "vars"})
# what a follow-up's ``where`` can read of the earlier step's message
FOLLOW_NAMES = frozenset({*PREVIOUS_FIELDS, "vars"})
DELIVERY_NAMES = frozenset({"delivery_status", "delivery_code"})


class StepChecker:
    def __init__(
        self,
        checker: Checker,
        jinja: JinjaChecker,
        provider_configs: Mapping[str, ProviderConfig],
        templates: Mapping[str, Template],
    ) -> None:
        self.c = checker
        self.jinja = jinja
        self.providers = provider_configs
        self.templates = templates
        raw = checker.data.get("providers")
        self.provider_names = list(raw) if isinstance(raw, dict) else []
        raw = checker.data.get("templates")
        self.template_names = list(raw) if isinstance(raw, dict) else []
        self.ids: list[str] = []  # ids of the steps seen so far, in order
        self.kinds: dict[str, str] = {}  # every step id -> its action key
        self.sends: dict[str, SendAction] = {}  # the send steps checked so far

    def steps(self, value: Any) -> tuple[Step, ...] | None:
        if not isinstance(value, list):
            return None
        first_line: dict[str, int] = {}
        for i, item in enumerate(value):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            sid = item["id"]
            kind = next((k for k in ACTIONS if k in item), "")
            self.kinds.setdefault(sid, kind)
            if sid in first_line:
                self.c.error(
                    ("steps", i, "id"),
                    f"duplicate step id {sid!r} (first used on line {first_line[sid]})",
                )
            else:
                first_line[sid] = self.c.doc.pos(("steps", i, "id")).line
        out = []
        for i, item in enumerate(value):
            step = self.step(("steps", i), item) if isinstance(item, dict) else None
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                self.ids.append(item["id"])
            if step is not None:
                out.append(step)
        return tuple(out) if len(out) == len(value) else None

    def step(self, path: FieldPath, item: dict[str, Any]) -> Step | None:
        c = self.c
        actions = [k for k in ACTIONS if k in item]
        action: Action | None = None
        if len(actions) == 1:
            kind = actions[0]
            spec = item[kind]
            apath = (*path, kind)
            if kind == "wait":
                duration = c.duration(apath, spec)
                action = WaitAction(duration) if duration is not None else None
            elif kind == "fire" and isinstance(spec, dict):
                action = self.fire(apath, spec, str(item.get("id")))
            elif isinstance(spec, dict):
                action = getattr(self, kind)(apath, spec)
        when = item.get("when")
        if isinstance(when, str):
            self.expression_refs((*path, "when"), when, WHEN_NAMES)
        window = item.get("window")
        timing = Timing(
            at=c.datetime((*path, "at"), item.get("at")),
            after=c.duration((*path, "after"), item.get("after")),
            window=c.window((*path, "window"), window) if window is not None else None,
        )
        if action is None or not isinstance(item.get("id"), str):
            return None
        if isinstance(action, SendAction):
            self.sends[item["id"]] = action
        return Step(
            id=item["id"],
            action=action,
            timing=timing,
            on_failure=item.get("on_failure", "abort"),
            when=when if isinstance(when, str) else None,
            line=c.doc.pos(path).line,
        )

    # -- actions ---------------------------------------------------------------------

    def send(self, path: FieldPath, spec: dict[str, Any]) -> SendAction | None:
        names = spec.get("provider")
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list):
            return None
        one = isinstance(spec.get("provider"), str)
        pin = spec.get("pin")
        for i, name in enumerate(names):
            where = (*path, "provider") if one else (*path, "provider", i)
            self.provider_ref(where, name, "pin" if isinstance(pin, dict) else "send")
        template = spec.get("template")
        # a template whose own entry has errors is not "unknown"
        if isinstance(template, str) and template not in self.template_names:
            more = schema.hint(template, self.template_names)
            msg = f"unknown template {template!r}"
            self.c.error((*path, "template"), f"{msg}.{more}" if more else msg)
        sender = spec.get("sender")
        if sender is not None:
            for name in names:
                self.sender_fits((*path, "sender"), str(sender), name)
        options = spec.get("options")
        follow = spec.get("recipients")
        return SendAction(
            providers=tuple(str(n) for n in names),
            template=str(template),
            sender=None if sender is None else str(sender),
            options=dict(options) if isinstance(options, dict) else {},
            max_failed=tolerance(spec.get("max_failed", 0)),
            follow=self.follow_up((*path, "recipients"), follow)
            if isinstance(follow, dict)
            else None,
            pin=self.pin((*path, "pin"), pin) if isinstance(pin, dict) else None,
        )

    def pin(self, path: FieldPath, spec: dict[str, Any]) -> PinRequest:
        length = spec.get("length")
        if isinstance(length, int) and not isinstance(length, bool) and length < 4:
            self.c.warn(
                (*path, "length"),
                f"a PIN of {length} characters is easy to guess; 4 or more is usual",
            )
        key = spec.get("key")
        refs = list(secrets.references(key)) if isinstance(key, str) else []
        var = refs[0] if refs else PIN_KEY_VAR
        if var not in self.c.env:
            msg = (
                f"environment variable {var} is not set: it holds the key of the "
                "PINs' hashes (pin verify needs the same)"
            )
            where = (*path, "key") if refs else path
            (self.c.error if self.c.require_env else self.c.warn)(where, msg)
        return PinRequest(length=length if isinstance(length, int) else 0, key_var=var)

    def fire(self, path: FieldPath, spec: dict[str, Any], step_id: str) -> SendAction:
        """A fire step: the same per-recipient journal as a send, one provider,
        its text from ``text`` (a template of its own) or ``template``."""
        name = spec.get("provider")
        self.provider_ref((*path, "provider"), name, "fire")
        template = spec.get("template")
        if isinstance(spec.get("text"), str):
            template = fire_template(step_id)
        elif isinstance(template, str) and template not in self.template_names:
            more = schema.hint(template, self.template_names)
            msg = f"unknown template {template!r}"
            self.c.error((*path, "template"), f"{msg}.{more}" if more else msg)
        follow = spec.get("recipients")
        descriptor = spec.get("descriptor")
        return SendAction(
            providers=(str(name),),
            template=str(template),
            max_failed=tolerance(spec.get("max_failed", 0)),
            follow=self.follow_up((*path, "recipients"), follow)
            if isinstance(follow, dict)
            else None,
            fire=True,
            descriptor=dict(descriptor) if isinstance(descriptor, dict) else None,
        )

    def follow_up(self, path: FieldPath, spec: dict[str, Any]) -> FollowUp | None:
        """``recipients: {from, status, where}``: an earlier send step's outcomes,
        and only what its provider can tell (a delivery status needs a provider
        that reports one per recipient)."""
        source = spec.get("from")
        if not isinstance(source, str):
            return None
        self.step_ref((*path, "from"), source, send_only=True)
        statuses = spec.get("status", [])
        statuses = [statuses] if isinstance(statuses, str) else statuses
        where = spec.get("where")
        if isinstance(where, str):
            expr = self.expression_refs((*path, "where"), where, FOLLOW_NAMES)
            used = {n.name for n in expr.find_all(nodes.Name)} if expr else set()
            earlier = self.sends.get(source)
            if used & DELIVERY_NAMES and earlier is not None:
                for name in earlier.providers:
                    cfg = self.providers.get(name)
                    if (
                        cfg is not None
                        and not providers.PROVIDERS[cfg.type].per_recipient_report
                    ):
                        self.c.error(
                            (*path, "where"),
                            f"step {source!r} sends through {name!r} ({cfg.type}), "
                            "whose report has no delivery status per recipient: "
                            "select by the send outcome (status:) instead",
                        )
        return FollowUp(
            step=source,
            statuses=tuple(str(x) for x in statuses if isinstance(x, str)),
            where=where if isinstance(where, str) else None,
        )

    def sender_fits(self, path: FieldPath, sender: str, name: Any) -> None:
        """A step's sender must be one its provider's documents allow."""
        cfg = self.providers.get(name) if isinstance(name, str) else None
        if cfg is None:
            return
        rule = schema.provider_fragment(cfg.type).get("properties", {}).get("sender")
        problem = schema.value_problem(rule, sender) if rule else None
        if problem:
            self.c.error(path, f"not a sender {name!r} ({cfg.type}) accepts: {problem}")

    def check_credits(
        self, path: FieldPath, spec: dict[str, Any]
    ) -> CheckCreditsAction | None:
        provider = spec.get("provider")
        self.provider_ref((*path, "provider"), provider, "check_credits")
        minimum = spec.get("min")
        if isinstance(minimum, str):
            self.expression_refs((*path, "min"), minimum, MIN_NAMES)
            return CheckCreditsAction(provider=str(provider), min_expr=minimum)
        if isinstance(minimum, int | float) and not isinstance(minimum, bool):
            return CheckCreditsAction(provider=str(provider), min=float(minimum))
        return None

    def check_report(
        self, path: FieldPath, spec: dict[str, Any]
    ) -> CheckReportAction | None:
        c = self.c
        provider = spec.get("provider")
        self.provider_ref((*path, "provider"), provider, "check_report")
        target = spec.get("for")
        if isinstance(target, str):
            self.step_ref((*path, "for"), target, send_only=True)
        every = c.duration((*path, "every"), spec.get("every", "1m"))
        timeout = c.duration((*path, "timeout"), spec.get("timeout", "1h"))
        expect = spec.get("expect")
        options = spec.get("options")
        cfg = self.providers.get(provider) if isinstance(provider, str) else None
        if cfg is not None and isinstance(expect, dict):
            for key, why in providers.unmeasurable(cfg.type).items():
                if key in expect:
                    self.c.error(
                        (*path, "expect", key),
                        f"provider {provider!r} ({cfg.type}) cannot evaluate {key}: "
                        f"{why}",
                    )
        callback = spec.get("callback") is True
        if (
            callback
            and cfg is not None
            and not providers.PROVIDERS[cfg.type].report_callbacks
        ):
            self.c.error(
                (*path, "callback"),
                f"provider {provider!r} ({cfg.type}) does not call back when a report "
                "is ready: poll it (every:) instead",
            )
        if every is None or timeout is None:
            return None
        return CheckReportAction(
            provider=str(provider),
            for_step=str(target),
            every=every,
            timeout=timeout,
            expect=Expect(**{k: v for k, v in expect.items() if k in EXPECT_KEYS})
            if isinstance(expect, dict)
            else Expect(),
            options=dict(options) if isinstance(options, dict) else {},
            callback=callback,
        )

    # -- references ------------------------------------------------------------------

    def provider_ref(self, path: FieldPath, name: Any, kind: str) -> None:
        if not isinstance(name, str):
            return
        if name not in self.provider_names:
            more = schema.hint(name, self.provider_names)
            msg = f"unknown provider {name!r}"
            self.c.error(path, f"{msg}.{more}" if more else msg)
            return
        cfg = self.providers.get(name)
        if cfg is None:  # its entry has errors of its own
            return
        caps = providers.capabilities(cfg.type)
        if NEEDS[kind] not in caps:
            supported = ", ".join(sorted(str(c) for c in caps))
            self.c.error(
                path,
                f"provider {name!r} ({cfg.type}) cannot {VERB[NEEDS[kind]]}; "
                f"it supports: {supported}",
            )

    def step_ref(self, path: FieldPath, target: str, *, send_only: bool) -> None:
        """``target`` must be an earlier step (a send step when ``send_only``)."""
        if target not in self.kinds:
            more = schema.hint(target, list(self.kinds))
            msg = f"unknown step {target!r}"
            self.c.error(path, f"{msg}.{more}" if more else msg)
        elif send_only and self.kinds[target] not in MESSAGE_KINDS:
            self.c.error(path, f"step {target!r} is not a send or fire step")
        elif target not in self.ids:
            self.c.error(
                path, f"step {target!r} is not an earlier step (it runs after this one)"
            )

    def expression_refs(
        self, path: FieldPath, text: str, allowed: frozenset[str]
    ) -> nodes.Expr | None:
        """Compile ``text``; its names must be known and its step ids must exist."""
        expr = self.jinja.expression(path, text)
        if expr is None:
            return None
        known = allowed | set(self.jinja.env.globals)
        for name in dict.fromkeys(n.name for n in expr.find_all(nodes.Name)):
            if name not in known:
                more = schema.hint(name, sorted(allowed))
                uses = ", ".join(sorted(allowed))
                msg = f"unknown name {name!r} (this expression can use {uses})"
                self.c.error(path, f"{msg}.{more}" if more else msg)
        if "steps" in allowed:
            for target in _step_attrs(expr):
                self.step_ref(path, target, send_only=False)
        for call in expr.find_all(nodes.Call):
            fn = call.node
            if isinstance(fn, nodes.Name) and fn.name in ("segments", "messages"):
                arg = call.args[0] if call.args else None
                if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                    self.send_step_anywhere(path, arg.value)
        return expr

    def send_step_anywhere(self, path: FieldPath, target: str) -> None:
        if target not in self.kinds:
            more = schema.hint(target, list(self.kinds))
            msg = f"unknown step {target!r}"
            self.c.error(path, f"{msg}.{more}" if more else msg)
        elif self.kinds[target] not in MESSAGE_KINDS:
            self.c.error(path, f"step {target!r} is not a send or fire step")


def tolerance(value: Any) -> Tolerance:
    """``max_failed``: a count, a ratio below 1, or a percentage (the schema checked
    which)."""
    if isinstance(value, str) and value.endswith("%"):
        return Tolerance(count=None, ratio=float(value[:-1]) / 100)
    if isinstance(value, float) and not isinstance(value, bool) and value < 1:
        return Tolerance(count=None, ratio=value)
    return Tolerance(count=int(value) if isinstance(value, int | float) else 0)


def _step_attrs(expr: nodes.Node) -> list[str]:
    """Step ids read as ``steps.<id>`` or ``steps['<id>']``."""
    found = []
    for node in expr.find_all((nodes.Getattr, nodes.Getitem)):
        if not isinstance(node, nodes.Getattr | nodes.Getitem):
            continue
        base = node.node
        if not (isinstance(base, nodes.Name) and base.name == "steps"):
            continue
        if isinstance(node, nodes.Getattr):
            found.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            found.append(node.arg.value)
    return list(dict.fromkeys(found))
