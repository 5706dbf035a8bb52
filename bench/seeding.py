"""One root seed per run, split into named, independent random streams.

Every random choice of a cell derives from the run's seed through :class:`Seeds`: the protocol's
entity split, the order of each task's ratings, and per learner its initialisation and its
episode sampling. A stream is named by a path (``"learner", "mf", "init"``), so adding, removing
or reordering learners, scenarios or draws elsewhere never shifts another stream. Nothing in the
harness or the built-in learners seeds a global generator.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def _word(name: str) -> int:
    """A stable 32-bit number for a stream name (Python's ``hash`` changes between processes)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


class Seeds:
    """A node of the seed tree: ``Seeds(7)`` is a run's root; :meth:`child` goes down by name.

    Stability: stable. Learners receive theirs as ``fit(..., rng=seeds)`` and draw with
    ``seeds.numpy("sampling")`` or ``seeds.torch("init")``; each name gives an independent stream
    that is the same on every call.
    """

    def __init__(self, seed: int | np.random.SeedSequence) -> None:
        self.sequence = (
            seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        )

    @property
    def root(self) -> int:
        """The run's seed this node descends from."""
        entropy = self.sequence.entropy
        assert isinstance(entropy, int)
        return entropy

    @property
    def path(self) -> tuple[int, ...]:
        return tuple(self.sequence.spawn_key)

    def child(self, *names: str) -> Seeds:
        """The node reached by following ``names`` (equivalent to a named ``spawn``)."""
        key = (*self.sequence.spawn_key, *(_word(n) for n in names))
        return Seeds(np.random.SeedSequence(self.sequence.entropy, spawn_key=key))

    def numpy(self, *names: str) -> np.random.Generator:
        """A fresh NumPy generator for the stream ``names``."""
        return np.random.default_rng(self.child(*names).sequence)

    def torch(self, *names: str) -> torch.Generator:
        """A fresh CPU torch generator for the stream ``names``; draw on the CPU and move the
        result, so every device starts from the same numbers."""
        state = self.child(*names).sequence.generate_state(1, np.uint64)[0]
        import torch  # here: a run whose cells are all stored never draws, nor loads torch

        return torch.Generator().manual_seed(int(state) & (2**63 - 1))

    def __repr__(self) -> str:
        return f"Seeds(root={self.root}, path={self.path})"
