"""A suite's ``robustness`` table: which support perturbations each cell is evaluated under.

The learner of a cell is fitted once; besides its clean evaluations it is then evaluated on the
same tasks with their support corrupted (:mod:`bench.protocol.perturbations`) at every (kind,
strength) the suite declares, without refitting. Each perturbed evaluation is stored as its own
scenario label, ``SCENARIO~KIND@STRENGTH`` (``user_cold~flip@0.2``), beside the clean
``user_cold``: the store, exports and per-task rows need no new column, and the per-task values
of a perturbed label pair with the clean ones by task entity. Strength 0 is the clean label
itself. Only the cold scenarios are perturbed: there the support set is all a learner knows
about the new entity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.errors import ConfigError, excerpt
from bench.protocol import SupportSize
from bench.protocol.perturbation_labels import (
    DEFAULT_SIGMA,
    KINDS,
    Perturbation,
    corrupted_count,
    scenario_label,
)
from bench.protocol.perturbations import robustness_perturbations

COLD_SCENARIOS = ("user_cold", "item_cold", "user_item_cold")
"""Where a learner must use its support set: nothing else tells it about the new entity."""
KEYS = ("kinds", "strengths", "sigma", "baseline", "delta")
DEFAULT_BASELINE = "item-mean"
MAX_ENTRIES = 100


@dataclass(frozen=True)
class Robustness:
    kinds: tuple[str, ...]
    strengths: tuple[float, ...]
    sigma: float = DEFAULT_SIGMA
    baseline: str = DEFAULT_BASELINE

    @property
    def perturbations(self) -> list[Perturbation]:
        return robustness_perturbations(self.kinds, self.strengths, self.sigma)

    def key(self) -> dict[str, Any]:
        """What of the settings defines a cell (the baseline only picks a report line)."""
        return {
            "kinds": sorted(self.kinds),
            "strengths": sorted(self.strengths),
            "sigma": self.sigma,
        }


def parse_robustness(table: dict[str, Any], where: str) -> Robustness | None:
    """The checked settings of a ``robustness`` table; None when the table is empty (off)."""
    if not table:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: 'robustness' must be a table")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: robustness: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(KEYS)}"
        )
    kinds = table.get("kinds")
    if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) for k in kinds):
        raise ConfigError(
            f"{where}: robustness.kinds must be a non-empty list of kinds ({', '.join(KINDS)}), "
            f"got {excerpt(kinds)}"
        )
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(
                f"{where}: robustness.kinds: unknown kind {excerpt(kind)}; allowed: "
                f"{', '.join(KINDS)}"
            )
    strengths = table.get("strengths")
    if (
        not isinstance(strengths, list)
        or not strengths
        or len(strengths) > MAX_ENTRIES
        or not all(isinstance(s, int | float) and not isinstance(s, bool) for s in strengths)
    ):
        raise ConfigError(
            f"{where}: robustness.strengths must be a non-empty list of at most {MAX_ENTRIES} "
            f"numbers in [0, 1], got {excerpt(strengths)}"
        )
    for strength in strengths:
        if not 0.0 <= float(strength) <= 1.0:
            raise ConfigError(
                f"{where}: robustness.strengths: {strength!r} lies outside [0, 1] (a strength is "
                "the share of a task's support ratings corrupted)"
            )
    for what, values in (("kinds", kinds), ("strengths", [float(s) for s in strengths])):
        if len(set(values)) < len(values):
            raise ConfigError(f"{where}: robustness.{what} lists a value twice: {excerpt(values)}")
    sigma = table.get("sigma", DEFAULT_SIGMA)
    if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not 0 < sigma <= 10:
        raise ConfigError(
            f"{where}: robustness.sigma (gauss noise as a share of the rating range) must be a "
            f"number in (0, 10], got {excerpt(sigma)}"
        )
    baseline = table.get("baseline", DEFAULT_BASELINE)
    if not isinstance(baseline, str):
        raise ConfigError(
            f"{where}: robustness.baseline must name a learner, got {excerpt(baseline)}"
        )
    delta = table.get("delta", 0.01)
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0 <= delta < 1e6:
        raise ConfigError(
            f"{where}: robustness.delta (how much worse a clean error may be in the verdict "
            f"rule) must be a number >= 0, got {excerpt(delta)}"
        )
    return Robustness(tuple(kinds), tuple(float(s) for s in strengths), float(sigma), baseline)


def check_robustness(suite: Any, protocol: Any) -> Robustness | None:
    """Check a suite's ``robustness`` table against its scenarios and support sizes; its
    settings, or None when it is off."""
    where = suite.source
    settings = parse_robustness(suite.robustness, where)
    if settings is None:
        return None
    if not any(s in COLD_SCENARIOS for s in suite.scenarios):
        raise ConfigError(
            f"{where}: robustness perturbs the support sets of cold scenarios "
            f"({', '.join(COLD_SCENARIOS)}); the suite runs none"
        )
    if "baseline" in suite.robustness and settings.baseline not in suite.learners:
        raise ConfigError(
            f"{where}: robustness.baseline {settings.baseline!r} is not among the suite's "
            f"learners ({', '.join(suite.learners)})"
        )
    sizes = protocol.config.support_sizes
    if "all" in sizes:
        return settings  # task pools differ in size: some task is corrupted at any strength above 0
    finite = [int(k) for k in sizes if int(k) > 0]
    for strength in settings.strengths:
        if strength > 0 and all(corrupted_count(strength, k) == 0 for k in finite):
            smallest = 1 / (2 * max(finite)) if finite else None
            hint = (
                f"; the smallest strength that corrupts one rating is {smallest:g}"
                if smallest
                else ""
            )
            raise ConfigError(
                f"{where}: robustness.strengths: {strength:g} corrupts round({strength:g} × k) = 0 "
                f"ratings of every task at the support sizes "
                f"({', '.join(map(str, sizes))}){hint}; use 0 for the clean run"
            )
    return settings


def suite_robustness(suite: Any) -> Robustness | None:
    return parse_robustness(suite.robustness, suite.source)


def perturbed_evaluations(
    settings: Robustness | None, wanted: list[tuple[str, SupportSize]]
) -> list[tuple[str, SupportSize]]:
    """The (scenario label, k) pairs of the perturbed evaluations that a suite's robustness
    ``settings`` (None: off) add to ``wanted``."""
    if settings is None:
        return []
    return [
        (scenario_label(scenario, p), k)
        for scenario, k in wanted
        if scenario in COLD_SCENARIOS
        for p in settings.perturbations
    ]


def perturbation_of(settings: Robustness | None, label: str) -> tuple[str, Perturbation | None]:
    """The scenario and perturbation a stored label names, under a suite's robustness
    ``settings`` (None: off)."""
    if settings is not None:
        for p in settings.perturbations:
            for scenario in COLD_SCENARIOS:
                if scenario_label(scenario, p) == label:
                    return scenario, p
    return label, None
