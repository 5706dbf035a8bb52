"""Keeping a run's claims alive while its cells are computed."""

from __future__ import annotations

import threading
from collections.abc import Callable

from bench.errors import StoreError
from bench.results.claims import check_lease
from bench.results.store import ResultStore


class LeaseKeeper:
    """Renews a run's claims from a background thread while its cells are computed.

    The thread writes through its own connection to the store (a SQLite connection belongs to one
    thread), with the store's retrying write path; a renewal that fails is reported once and tried
    again at the next beat, so a briefly busy store costs nothing."""

    def __init__(
        self, store: ResultStore, owner: str, lease_s: float, log: Callable[[str], None]
    ) -> None:
        check_lease(lease_s)
        self.owner = owner
        self.lease_s = lease_s
        self.log = log
        self._store = store
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="bench-leases", daemon=True)
        self._thread.start()

    def hold(self, cell_key: str) -> None:
        with self._lock:
            self._held.add(cell_key)

    def drop(self, cell_key: str) -> None:
        with self._lock:
            self._held.discard(cell_key)

    def held(self) -> list[str]:
        with self._lock:
            return sorted(self._held)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        interval = self.lease_s / 4
        store = self._store.sibling(busy_wait_s=interval)
        warned = False
        try:
            while not self._stop.wait(interval):
                try:
                    store.renew_claims(self.owner, self.held(), self.lease_s)
                except StoreError as exc:
                    if not warned:
                        self.log(f"could not renew the run's claims on its cells: {exc}")
                        warned = True
        finally:
            store.close()
