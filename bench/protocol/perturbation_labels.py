"""Perturbations by name: the kinds, one kind at one strength, how many ratings a strength
corrupts, and the stored scenario label of a perturbed evaluation (``user_cold~flip@0.2``). Torch-free,
so reports read stored labels without loading the models' library."""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("gauss", "flip", "reverse", "outlier", "drop", "push")
ATTACKER_KINDS = ("push",)
"""Kinds whose ratings an attacker chooses (the lowest ones) instead of a random draw."""
DEFAULT_SIGMA = 0.25
"""The standard deviation of ``gauss`` noise as a share of the rating range (one star on 1-5)."""
MAX_LEVELS = 20
"""A scale with at most this many distinct ratings is discrete: ``flip`` draws one of its levels;
on a finer (continuous) scale it draws uniformly between the ends."""
SEPARATOR = "~"
"""Between a scenario and its perturbation in a stored scenario label: ``user_cold~flip@0.2``."""


@dataclass(frozen=True)
class Perturbation:
    """One kind at one strength; ``sigma`` matters to ``gauss`` only."""

    kind: str
    strength: float
    sigma: float = DEFAULT_SIGMA

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"unknown perturbation kind {self.kind!r}; allowed: {', '.join(KINDS)}"
            )
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"perturbation strength must lie in [0, 1], got {self.strength!r}")

    @property
    def tag(self) -> str:
        return f"{self.kind}@{self.strength:g}"


def corrupted_count(strength: float, n: int) -> int:
    """How many of ``n`` support ratings a strength corrupts: ``round(p * n)``, halves up."""
    return min(n, math.floor(strength * n + 0.5 + 1e-9))


def scenario_label(scenario: str, perturbation: Perturbation | None) -> str:
    """The stored scenario label of a perturbed evaluation; the plain scenario at strength 0."""
    if perturbation is None or perturbation.strength == 0:
        return scenario
    return f"{scenario}{SEPARATOR}{perturbation.tag}"


def parse_label(label: str) -> tuple[str, str | None, float]:
    """``(scenario, kind, strength)`` of a stored scenario label; ``(label, None, 0.0)`` when
    the label names a clean evaluation."""
    scenario, sep, rest = label.partition(SEPARATOR)
    if not sep or "@" not in rest:
        return label, None, 0.0
    kind, _, strength = rest.partition("@")
    return scenario, kind, float(strength)
