"""Which process a run belongs to, and whether that process is still alive, so that a run whose
process died (killed, crashed, power lost) is shown as interrupted rather than running."""

from __future__ import annotations

import os
import socket
from typing import Any


def start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), None where unknown.

    With the pid it identifies a process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def identity() -> dict[str, Any]:
    """This process: host name, pid and start time."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "process_started": start_time(pid)}


def is_gone(owner: dict[str, Any]) -> bool:
    """True when the process ``owner`` (an :func:`identity`) surely no longer runs: it ran on this
    host and its pid is free or now names a process that started at another time. A process on
    another host cannot be checked and counts as alive."""
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process, or no pid at all
        return True
    except PermissionError:  # it exists, under another user
        pass
    started = owner.get("process_started")
    return started is not None and start_time(pid) not in (None, started)
