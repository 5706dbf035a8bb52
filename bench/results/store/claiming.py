"""Claims on cells in the store, so runs sharing it never compute a cell twice (the rules live
in :mod:`bench.results.claims`)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

from bench.processes import identity
from bench.results.claims import Claim
from bench.results.store.opening import StoreConnection, now


class StoreClaims(StoreConnection):
    # Claims ---------------------------------------------------------------------------------

    def claim(self, cell_key: str, owner: str, lease_s: float) -> Claim | None:
        """Claim a cell for run ``owner`` for ``lease_s`` seconds. Returns None when the claim is
        now ``owner``'s (new, its own already, or taken over from a dead one), else the live claim
        of another run. The check and the claim are one transaction, so two runs cannot both win."""
        me = identity()
        held: list[Claim] = []

        def take(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")  # take the write lock before reading the claim
            row = c.execute("SELECT * FROM claims WHERE cell_key=?", (cell_key,)).fetchone()
            if row is not None:
                found = Claim(*row)
                if found.owner != owner and found.is_live():
                    held.append(found)
                    return
            c.execute(
                "INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?,?,?)",
                (
                    cell_key,
                    owner,
                    me["host"],
                    me["pid"],
                    me["process_started"],
                    now(),
                    time.time() + lease_s,
                ),
            )

        self._write("claiming a cell", take)
        return held[0] if held else None

    def renew_claims(self, owner: str, cell_keys: list[str], lease_s: float) -> None:
        """Extend ``owner``'s claims on ``cell_keys`` to ``lease_s`` seconds from now."""
        if not cell_keys:
            return
        expires = time.time() + lease_s
        self._write(
            "renewing claims",
            lambda c: c.executemany(
                "UPDATE claims SET expires_at=? WHERE cell_key=? AND owner=?",
                [(expires, key, owner) for key in cell_keys],
            ),
        )

    def release_claims(self, owner: str, cell_keys: Iterable[str] | None = None) -> None:
        """Drop ``owner``'s claims on ``cell_keys`` (all of them when None)."""
        keys = None if cell_keys is None else list(cell_keys)

        def release(c: sqlite3.Connection) -> None:
            if keys is None:
                c.execute("DELETE FROM claims WHERE owner=?", (owner,))
            else:
                c.executemany(
                    "DELETE FROM claims WHERE cell_key=? AND owner=?", [(k, owner) for k in keys]
                )

        self._write("releasing claims", release)

    def claims(self) -> list[Claim]:
        """Every claim in the store, live or not."""
        rows = self._query("SELECT * FROM claims ORDER BY cell_key")
        return [Claim(**row) for row in rows]
