"""Which of a task's query items are relevant: part of the protocol, so that the ranking metrics
of every learner answer the same question (``relevance`` and ``relevance_ties`` in
:class:`bench.protocol.base.ProtocolConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RELEVANCE_KINDS: dict[str, str] = {
    "threshold": "an item is relevant when its rating is at or above the like threshold",
    "top": "the n highest-rated items of a task are relevant (relevance = 'top:N')",
}
RELEVANCE_TIES: dict[str, str] = {
    "lower-position-first": "ratings tied at the cut: the lower query positions are relevant",
    "include": "ratings tied at the cut: every tied item is relevant (may exceed n)",
}
DEFAULT_RELEVANCE = "threshold"
DEFAULT_RELEVANCE_TIES = "lower-position-first"


@dataclass(frozen=True)
class RelevanceRule:
    """Which of a task's items are relevant: ``threshold`` (rating >= the like threshold) or the
    ``n`` highest-rated (``top``), with ``ties`` deciding the items tied at the cut."""

    kind: str = DEFAULT_RELEVANCE
    n: int = 0
    ties: str = DEFAULT_RELEVANCE_TIES

    @classmethod
    def parse(cls, text: str, ties: str = DEFAULT_RELEVANCE_TIES) -> RelevanceRule:
        """``"threshold"`` or ``"top:N"`` (N >= 1); a bad value is a ValueError saying so."""
        if ties not in RELEVANCE_TIES:
            raise ValueError(
                f"unknown relevance tie rule {ties!r}; valid: {', '.join(RELEVANCE_TIES)}"
            )
        if text == "threshold":
            return cls("threshold", 0, ties)
        kind, _, count = str(text).partition(":")
        if kind == "top" and count.isdigit() and int(count) >= 1:
            return cls("top", int(count), ties)
        raise ValueError(f"relevance must be 'threshold' or 'top:N' with N >= 1, got {text!r}")

    @property
    def label(self) -> str:
        return "threshold" if self.kind == "threshold" else f"top:{self.n} ({self.ties})"

    def relevant(self, actual: np.ndarray, mask: np.ndarray, threshold: float) -> np.ndarray:
        """A boolean ``[tasks, items]`` array of the relevant valid items."""
        if self.kind == "threshold":
            return (actual >= threshold) & mask
        ratings = np.where(mask, actual, -np.inf)
        if self.ties == "include":
            # The n-th highest rating of each task (or its lowest, with fewer items).
            n = np.minimum(self.n, mask.sum(axis=1))
            ranked = -np.sort(-ratings, axis=1)
            cut = np.take_along_axis(ranked, np.maximum(n - 1, 0)[:, None], axis=1)
            return mask & (ratings >= cut) & (n[:, None] > 0)
        # A stable sort on the negated rating puts the lower position first among equals.
        order = np.argsort(-ratings, axis=1, kind="stable")
        top = np.zeros(mask.shape, dtype=bool)
        np.put_along_axis(top, order[:, : self.n], True, axis=1)
        return top & mask


THRESHOLD_RELEVANCE = RelevanceRule()
"""The default rule: relevant at or above the like threshold."""
