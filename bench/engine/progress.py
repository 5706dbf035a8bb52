"""What the cell being computed is doing, told to the run's progress bar as it goes.

A learner's fit and a tuning search report their steps through ``Budget.progress`` as
``(what, i, n)``: ("meta-step", 120, 600), ("trial", 3, 20). The bar shows the latest, counts the
finished share of the cell towards its position (so its ETA moves inside a long cell), and a cell
that has run for a minute says what it is doing in a line of its own, once a minute.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

SAY_AFTER_S = 60.0
REFRESH_S = 0.5


class CellProgress:
    """The sink the runner hands to each cell it computes in its own process."""

    def __init__(
        self,
        bar: Any,
        log: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        say_after_s: float | None = None,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self.bar, self.log, self.clock = bar, log, clock
        self.say_after_s = SAY_AFTER_S if say_after_s is None else say_after_s
        self.refresh_s = refresh_s
        self.key: str | None = None
        self.started = self.said = self.shown = 0.0

    def __call__(self, cell: Any, what: str, i: int, n: int) -> None:
        now = self.clock()
        if cell.key != self.key:  # the first report of a new cell
            self.key, self.started, self.said, self.shown = cell.key, now, now, -math.inf
        step = f"{what} {i} of {n}" if n else f"{what} {i}"
        if now - self.shown >= self.refresh_s or (n and i >= n):
            self.shown = now
            self.bar.set_postfix_str(f"{cell.learner} seed {cell.seed}: {step}", refresh=False)
            share = min(i / n, 0.99) if n else 0.0
            self.bar.n = math.floor(self.bar.n) + share  # the ETA counts the cell's finished share
            self.bar.refresh()
        if now - self.started >= self.say_after_s and now - self.said >= self.say_after_s:
            self.said = now
            minutes = (now - self.started) / 60
            self.log(f"{cell.description}: running for {minutes:.0f} min, at {step}")
