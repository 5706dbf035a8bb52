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
    SEPARATOR,
    Perturbation,
    corrupted_count,
    parse_label,
    scenario_label,
)
from bench.protocol.training_arms import (
    ATTACK_PREFIX,
    ATTACKS,
    NOISE_KINDS,
    NOISE_PREFIX,
    TARGET_POOLS,
    ShillingAttack,
    TrainingNoise,
    profile_count,
)

COLD_SCENARIOS = ("user_cold", "item_cold", "user_item_cold")
"""Where a learner must use its support set: nothing else tells it about the new entity."""
KEYS = ("kinds", "strengths", "sigma", "baseline", "delta", "training", "shilling")
TRAINING_KEYS = ("kinds", "strengths")
SHILLING_KEYS = ("attacks", "sizes", "filler", "targets", "selected", "target_pool")
DEFAULT_BASELINE = "item-mean"
MAX_ENTRIES = 100


@dataclass(frozen=True)
class Robustness:
    kinds: tuple[str, ...]
    strengths: tuple[float, ...]
    sigma: float = DEFAULT_SIGMA
    baseline: str = DEFAULT_BASELINE
    noise: tuple[TrainingNoise, ...] = ()
    """Training-data noise arms (strengths above 0): each refits every learner."""
    attacks: tuple[ShillingAttack, ...] = ()
    """Shilling arms (sizes above 0): each refits every learner on the attacked training data."""
    targets: int = 0
    """Target items of the attacks (0: no attack declared)."""

    @property
    def perturbations(self) -> list[Perturbation]:
        from bench.protocol.perturbations import robustness_perturbations  # torch: when used

        return robustness_perturbations(self.kinds, self.strengths, self.sigma)

    @property
    def arms(self) -> dict[str, TrainingNoise | ShillingAttack]:
        """Every training-data arm by its tag (``train-flip@0.1``, ``shill-random@0.02``)."""
        arms: dict[str, TrainingNoise | ShillingAttack] = {a.tag: a for a in self.noise}
        arms.update((a.tag, a) for a in self.attacks)
        return arms

    def key(self) -> dict[str, Any]:
        """What of the settings defines a cell (the baseline only picks a report line)."""
        key: dict[str, Any] = {
            "kinds": sorted(self.kinds),
            "strengths": sorted(self.strengths),
            "sigma": self.sigma,
        }
        if self.targets:  # every cell then scores the attack's target items
            first = self.attacks[0]
            key["targets"] = [self.targets, first.filler, first.selected]
            if first.target_pool != "any":  # keys of suites without it stay as they were
                key["targets"].append(first.target_pool)
        return key


def _parse_support(table: dict[str, Any], where: str) -> tuple[list[str], list[float]]:
    """The support kinds and strengths of a ``robustness`` table."""
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
    values_of = (("kinds", kinds), ("strengths", [float(s) for s in strengths]))
    for what, values in values_of:
        if len(set(values)) < len(values):
            raise ConfigError(f"{where}: robustness.{what} lists a value twice: {excerpt(values)}")
    return list(kinds), [float(x) for x in strengths]


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
    noise = _parse_training(table.get("training"), where, table.get("sigma", DEFAULT_SIGMA))
    attacks = _parse_shilling(table.get("shilling"), where)
    kinds: list[str] = []
    strengths: list[float] = []
    if not (noise or attacks) or "kinds" in table or "strengths" in table:
        kinds, strengths = _parse_support(table, where)
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
    return Robustness(
        tuple(kinds),
        tuple(strengths),
        float(sigma),
        baseline,
        noise,
        attacks,
        attacks[0].targets if attacks else 0,
    )


def _fraction_list(value: Any, where: str, field: str, what: str) -> list[float]:
    """A non-empty list of distinct numbers in [0, 1]."""
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_ENTRIES
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(
            f"{where}: {field} must be a non-empty list of at most {MAX_ENTRIES} numbers in "
            f"[0, 1] ({what}), got {excerpt(value)}"
        )
    for v in value:
        if not 0.0 <= float(v) <= 1.0:
            raise ConfigError(f"{where}: {field}: {v!r} lies outside [0, 1] ({what})")
    if len({float(v) for v in value}) < len(value):
        raise ConfigError(f"{where}: {field} lists a value twice: {excerpt(value)}")
    return [float(v) for v in value]


def _table(value: Any, where: str, name: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: robustness.{name} must be a table")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise ConfigError(
            f"{where}: robustness.{name}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(keys)}"
        )
    return value


def _parse_training(value: Any, where: str, sigma: Any) -> tuple[TrainingNoise, ...]:
    """The noise arms of ``robustness.training`` (rating noise in the training data)."""
    table = _table(value, where, "training", TRAINING_KEYS)
    if table is None:
        return ()
    kinds = table.get("kinds")
    if not isinstance(kinds, list) or not kinds or not all(k in NOISE_KINDS for k in kinds):
        raise ConfigError(
            f"{where}: robustness.training.kinds must be a non-empty list of kinds "
            f"({', '.join(NOISE_KINDS)}), got {excerpt(kinds)}"
        )
    if len(set(kinds)) < len(kinds):
        raise ConfigError(f"{where}: robustness.training.kinds lists a kind twice")
    strengths = _fraction_list(
        table.get("strengths"),
        where,
        "robustness.training.strengths",
        "the share of the training ratings corrupted",
    )
    spread = float(sigma) if isinstance(sigma, int | float) and sigma > 0 else DEFAULT_SIGMA
    return tuple(TrainingNoise(k, s, spread) for k in kinds for s in strengths if s > 0)


def _parse_shilling(value: Any, where: str) -> tuple[ShillingAttack, ...]:
    """The attack arms of ``robustness.shilling``."""
    table = _table(value, where, "shilling", SHILLING_KEYS)
    if table is None:
        return ()
    attacks = table.get("attacks")
    if not isinstance(attacks, list) or not attacks or not all(a in ATTACKS for a in attacks):
        raise ConfigError(
            f"{where}: robustness.shilling.attacks must be a non-empty list of attack models "
            f"({', '.join(ATTACKS)}), got {excerpt(attacks)}"
        )
    if len(set(attacks)) < len(attacks):
        raise ConfigError(f"{where}: robustness.shilling.attacks lists an attack twice")
    sizes = _fraction_list(
        table.get("sizes"),
        where,
        "robustness.shilling.sizes",
        "fake profiles as a share of the training users",
    )
    settings: dict[str, float | int] = {}
    for name, low, high, default in (("filler", 0.0, 1.0, 0.05), ("selected", -1e-12, 1.0, 0.01)):
        v = table.get(name, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or not low < v <= high:
            raise ConfigError(
                f"{where}: robustness.shilling.{name} (a share of the items) must be a number "
                f"in {'(0, 1]' if name == 'filler' else '[0, 1]'}, got {excerpt(v)}"
            )
        settings[name] = float(v)
    targets = table.get("targets", 5)
    if isinstance(targets, bool) or not isinstance(targets, int) or not 1 <= targets <= 1000:
        raise ConfigError(
            f"{where}: robustness.shilling.targets (how many items the attack pushes) must be "
            f"an integer from 1 to 1000, got {excerpt(targets)}"
        )
    pool = table.get("target_pool", "any")
    if pool not in TARGET_POOLS:
        raise ConfigError(
            f"{where}: robustness.shilling.target_pool must be one of "
            f"{', '.join(TARGET_POOLS)}, got {excerpt(pool)}"
        )
    return tuple(
        ShillingAttack(a, s, float(settings["filler"]), targets, float(settings["selected"]), pool)
        for a in attacks
        for s in sizes
        if s > 0
    )


def check_attack_sizes(settings: Robustness | None, where: str, datasets: list[Any]) -> None:
    """Refuse an attack size of a suite's robustness ``settings`` (None: off; the suite file
    ``where``) that adds no fake profile to a dataset (too few users for it)."""
    if settings is None or not settings.attacks:
        return
    for dataset in datasets:
        for attack in settings.attacks:
            if profile_count(attack.size, int(dataset.n_users)) == 0:
                raise ConfigError(
                    f"{where}: robustness.shilling.sizes: {attack.size:g} of the "
                    f"{dataset.n_users} users of {dataset.name} rounds to no fake profile; "
                    f"the smallest size that adds one is {1 / (2 * dataset.n_users):.2g}"
                )
            if attack.targets > int(dataset.n_items):
                raise ConfigError(
                    f"{where}: robustness.shilling.targets: {attack.targets} target items, "
                    f"but {dataset.name} has {dataset.n_items} items"
                )


def arm_evaluations(
    settings: Robustness | None, clean: list[tuple[str, SupportSize]]
) -> list[tuple[str, SupportSize]]:
    """The (scenario label, k) pairs of the training-data arms of a suite's robustness
    ``settings`` (None: off): every clean pair, refitted."""
    if settings is None:
        return []
    return [(arm_label(scenario, tag), k) for tag in settings.arms for scenario, k in clean]


def arm_label(scenario: str, tag: str) -> str:
    """The stored label of a clean scenario evaluated after the training-data arm ``tag``."""
    return f"{scenario}{SEPARATOR}{tag}"


def label_arm(label: str) -> str:
    """The training-data arm a stored label belongs to ('' for clean and support labels)."""
    _, kind, _ = parse_label(label)
    if kind is not None and kind.startswith((NOISE_PREFIX, ATTACK_PREFIX)):
        return label.partition(SEPARATOR)[2]
    return ""


def check_robustness(suite: Any, protocol: Any) -> Robustness | None:
    """Check a suite's ``robustness`` table against its scenarios and support sizes; its
    settings, or None when it is off."""
    where = suite.source
    settings = parse_robustness(suite.robustness, where)
    if settings is None:
        return None
    if settings.kinds and not any(s in COLD_SCENARIOS for s in suite.scenarios):
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
