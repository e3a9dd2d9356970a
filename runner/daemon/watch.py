"""Folder watching: which campaign files are in the folders, and what changed.

``FolderScanner`` polls: every few seconds needs no new dependency and behaves
the same on every file system (inotify misses changes on network mounts and in
some containers). A file counts as changed only when its content hash differs,
so a ``touch`` or an editor's rewrite of the same bytes reschedules nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PATTERNS = ("*.yaml", "*.yml")


@dataclass(frozen=True)
class Fingerprint:
    """What a file looked like at the last scan; the digest decides."""

    mtime_ns: int
    size: int
    digest: str


@dataclass(frozen=True)
class Changes:
    added: tuple[Path, ...] = ()
    changed: tuple[Path, ...] = ()
    removed: tuple[Path, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def campaign_files(folders: Iterable[Path]) -> list[Path]:
    """Every ``*.yaml``/``*.yml`` directly in ``folders``, resolved, de-duplicated.

    Hidden files (editor swap and lock files such as ``.#x.yaml``) are left out.
    """
    found: set[Path] = set()
    for folder in folders:
        for pattern in PATTERNS:
            for path in folder.glob(pattern):
                if not path.name.startswith(".") and path.is_file():
                    found.add(path.resolve())
    return sorted(found)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class FolderScanner:
    """Compares each scan of ``folders`` with the previous one."""

    folders: Sequence[Path]
    known: dict[Path, Fingerprint] = field(default_factory=dict)

    def scan(self) -> Changes:
        added: list[Path] = []
        changed: list[Path] = []
        seen: dict[Path, Fingerprint] = {}
        for path in campaign_files(self.folders):
            try:
                st = path.stat()
                old = self.known.get(path)
                if old is not None and (st.st_mtime_ns, st.st_size) == (
                    old.mtime_ns,
                    old.size,
                ):
                    seen[path] = old
                    continue
                fp = Fingerprint(st.st_mtime_ns, st.st_size, _digest(path))
            except OSError:  # deleted or unreadable between listing and reading
                continue
            seen[path] = fp
            if old is None:
                added.append(path)
            elif fp.digest != old.digest:
                changed.append(path)
        removed = sorted(set(self.known) - set(seen))
        self.known = seen
        return Changes(tuple(added), tuple(changed), tuple(removed))
