"""Whether a process of this host still runs: a lease's holder, a temporary
folder's maker (shared by the layers, as ``errors`` is)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
