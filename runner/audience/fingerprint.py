"""What a run's messages are rendered from, as digests to compare on resume.

A digest per template, one of the recipients (the file's bytes, or the inline
rows, and every exclude list) and one of ``vars``: a resumed run whose file
changed can say what changed and render again what was never sent.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from runner.model.campaign import Campaign

CHUNK = 1 << 20


def fingerprint(campaign: Campaign) -> dict[str, Any]:
    templates = {
        name: _digest(
            json.dumps(
                [t.text, dict(t.variants or {}), t.variant_by, t.default],
                sort_keys=True,
                default=str,
            ).encode()
        )
        for name, t in campaign.templates.items()
    }
    src = campaign.recipients
    h = hashlib.sha256()
    if src.file is not None:
        _add_file(h, src.file)
    else:
        h.update(json.dumps(list(src.inline or ()), sort_keys=True, default=str).encode())
    for path in src.exclude:
        _add_file(h, path)
    h.update(json.dumps([src.where, src.phone_field, campaign.default_region]).encode())
    return {
        "templates": templates,
        "recipients": h.hexdigest(),
        "vars": _digest(
            json.dumps(dict(campaign.vars), sort_keys=True, default=str).encode()
        ),
    }


def changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs, for people: ``template promo``, ``recipients``, ``vars``."""
    if not before:
        return []
    found = []
    old, new = before.get("templates", {}), now.get("templates", {})
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            found.append(f"template {name}")
    for key in ("recipients", "vars"):
        if before.get(key) != now.get(key):
            found.append(key)
    return found


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _add_file(h: Any, path: Path) -> None:
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
    except OSError as e:  # reading it for the run will say what is wrong
        h.update(f"unreadable:{e.errno}".encode())
