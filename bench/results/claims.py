"""Claims on cells, so that two runs sharing a store never compute the same cell twice.

Before a run computes a cell it claims it in the store: the claim names the run (its owner), the
owner's host, pid and process start time, and a lease that expires ``lease_s`` seconds later. While
the cell is being computed a background thread renews the lease; the claim is released when the
cell is written, fails or the run stops. Another run that finds a live claim leaves the cell alone
and waits for it; a claim whose lease has expired, or whose owner's process is gone from this host,
is dead and is taken over.

Leases use wall-clock time (seconds since the epoch), so runs on several machines sharing one
store agree on expiry as far as their clocks agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.errors import StoreError
from bench.processes import is_gone

LEASE_S = 60.0
"""How long a claim lives without renewal; a run renews its claims four times per lease."""
MAX_LEASE_S = 3600.0
"""The longest lease a run may take. A stored claim whose lease ends later than this from now
was not written by a harness (or by one whose clock is far ahead): it is treated as expired, so a
claim planted in a shared store cannot hold a cell, and a waiting run, for ever."""


@dataclass(frozen=True)
class Claim:
    """A run's claim on one cell, as stored."""

    cell_key: str
    owner: str
    host: str
    pid: int
    process_started: str | None
    claimed_at: str
    expires_at: float

    def is_live(self, at: float | None = None) -> bool:
        """Unexpired, and not owned by a process known to have died on this host."""
        now = time.time() if at is None else at
        expires = self.expires_at
        if isinstance(expires, bool) or not isinstance(expires, int | float):
            return False  # not a lease this harness writes
        if not now < expires <= now + MAX_LEASE_S:
            return False  # expired, NaN, or further ahead than any lease a run takes
        if not isinstance(self.pid, int) or not isinstance(self.host, str):
            return False
        owner = {"host": self.host, "pid": self.pid, "process_started": self.process_started}
        return not is_gone(owner)

    @property
    def holder(self) -> str:
        return f"run {self.owner} (host {self.host}, pid {self.pid})"


def check_lease(lease_s: float) -> None:
    if not 0 < lease_s <= MAX_LEASE_S:
        raise StoreError(f"a claim's lease must lie in (0, {MAX_LEASE_S:g}] seconds, got {lease_s}")
