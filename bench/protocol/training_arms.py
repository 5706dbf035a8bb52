"""Training-data arms: transforms of a split's training view before ``fit``. Test tasks (support
and query) are never touched, so every arm is scored on the clean split's tasks and its results
pair per task with the clean run's.

**Rating noise** (``TrainingNoise``): the support kinds of :mod:`bench.protocol.perturbations`
applied to the training ratings. Strength p corrupts exactly ``round(p * N)`` of the N training
ratings. One stream per (seed, kind) draws two numbers per training rating, in the training
view's order: an order key and a value draw; the ratings with the smallest keys are corrupted,
each from its own value draw, so the ratings corrupted at a lower strength are among those at
a higher one, with the same new values.

**Shilling profiles** (``ShillingAttack``): fake users appended to the training data, as in the
shilling-attack literature (Lam and Riedl, 2004; Mobasher et al., 2007). Every profile rates the
attack's target items at the scale's maximum (a push attack) plus ``filler`` items drawn at
random among the other training items:

- ``random``: filler ratings drawn from N(global mean, global sd) of the training ratings;
- ``average``: filler ratings drawn from N(item mean, item sd) of each filler item;
- ``bandwagon``: the ``selected`` most rated items at the maximum, filler as ``random``.

Drawn ratings are rounded to the nearest training rating level (on a scale of at most
:data:`MAX_LEVELS` levels) and clipped to the scale. The attack size is the number of profiles
as a share of the training users, ``round(size * users)``. Target items come from a stream of
their own, the same for every attack kind and size of a seed, so the clean model and every
attacked one are asked about the same items. Profiles are drawn one after another from one
stream per (seed, kind), so a smaller attack's profiles are the first ones of a larger attack.
The fake users get ids after the dataset's users and, where users have side features, the
features of randomly drawn real training users.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from bench.protocol.perturbation_labels import (
    ATTACKER_KINDS,
    DEFAULT_SIGMA,
    KINDS,
    MAX_LEVELS,
    Perturbation,
    corrupted_count,
)
from bench.seeding import Seeds

if TYPE_CHECKING:  # episodes import torch, which planning a run does not need
    from bench.protocol.episodes import MetaTrain

ATTACKS = ("random", "average", "bandwagon")
TARGET_POOLS = ("any", "unpopular")
NOISE_KINDS = tuple(k for k in KINDS if k not in ATTACKER_KINDS)
"""Rating noise in training: the support kinds drawn at random (an attacker's ``push`` is
modelled by the shilling profiles instead)."""
NOISE_PREFIX = "train-"
ATTACK_PREFIX = "shill-"


@dataclass(frozen=True)
class TrainingNoise:
    """One kind of rating noise at one strength, applied to the training ratings."""

    kind: str
    strength: float
    sigma: float = DEFAULT_SIGMA

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise ValueError(
                f"unknown training noise {self.kind!r}; allowed: {', '.join(NOISE_KINDS)}"
            )
        Perturbation(self.kind, self.strength, self.sigma)  # the same checks

    @property
    def tag(self) -> str:
        return f"{NOISE_PREFIX}{self.kind}@{self.strength:g}"


@dataclass(frozen=True)
class ShillingAttack:
    """One attack model at one size: ``size`` profiles per training user, ``filler`` filler
    items per training item in each profile, ``targets`` pushed items, and for ``bandwagon``
    the ``selected`` share of items (the most rated) also rated at the maximum."""

    kind: str
    size: float
    filler: float = 0.05
    targets: int = 5
    selected: float = 0.01
    target_pool: str = "any"
    """Where targets are drawn: ``any`` item with training ratings, or ``unpopular`` ones (at most
    the median number of training ratings), which an attacker has most reason to push."""

    def __post_init__(self) -> None:
        if self.target_pool not in TARGET_POOLS:
            raise ValueError(
                f"unknown target pool {self.target_pool!r}; allowed: {', '.join(TARGET_POOLS)}"
            )
        if self.kind not in ATTACKS:
            raise ValueError(f"unknown attack {self.kind!r}; allowed: {', '.join(ATTACKS)}")
        if not 0.0 <= self.size <= 1.0:
            raise ValueError(f"attack size must lie in [0, 1], got {self.size!r}")
        if not 0.0 < self.filler <= 1.0 or not 0.0 <= self.selected <= 1.0:
            raise ValueError("filler must lie in (0, 1] and selected in [0, 1]")
        if self.targets < 1:
            raise ValueError(f"an attack needs at least one target item, got {self.targets!r}")

    @property
    def tag(self) -> str:
        return f"{ATTACK_PREFIX}{self.kind}@{self.size:g}"


def with_ratings(
    train: MetaTrain,
    user: np.ndarray,
    item: np.ndarray,
    rating: np.ndarray,
    timestamp: np.ndarray,
    n_users: int | None = None,
    user_features: np.ndarray | None = None,
) -> MetaTrain:
    """``train`` holding other ratings (and possibly more users), its sampler rebuilt."""
    from bench.protocol.episodes import EpisodeSampler

    n_users = train.n_users if n_users is None else n_users
    n_entities = n_users if train.axis == "user" else train.n_items
    return replace(
        train,
        n_users=n_users,
        user=user,
        item=item,
        rating=rating,
        timestamp=timestamp,
        user_features=train.user_features if user_features is None else user_features,
        sampler=EpisodeSampler(user, item, rating, train.axis, n_entities),
    )


def noise_positions(n: int, noise: TrainingNoise, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The indices of the training ratings the noise corrupts (``round(p * n)``, in order of
    their keys) and every rating's value draw."""
    draws = Seeds(seed).numpy("train-noise", noise.kind).random((n, 2))
    m = corrupted_count(noise.strength, n)
    return np.argsort(draws[:, 0], kind="stable")[:m], draws[:, 1]


def noisy_training(train: MetaTrain, noise: TrainingNoise, seed: int) -> MetaTrain:
    """``train`` with ``round(p * N)`` of its ratings corrupted (or, for ``drop``, removed)."""
    if noise.strength == 0 or len(train.rating) == 0:
        return train
    hit, values = noise_positions(len(train.rating), noise, seed)
    if noise.kind == "drop":
        keep = np.ones(len(train.rating), dtype=bool)
        keep[hit] = False
        return with_ratings(
            train, train.user[keep], train.item[keep], train.rating[keep], train.timestamp[keep]
        )
    from bench.protocol.perturbations import corrupted_values  # imports torch

    low, high = (float(v) for v in train.rating_scale)
    rating = train.rating.astype(np.float64).copy()
    rating[hit] = corrupted_values(
        Perturbation(noise.kind, noise.strength, noise.sigma),
        rating[hit],
        values[hit],
        low,
        high,
        np.asarray(train.rating_levels, dtype=np.float64),
    )
    return with_ratings(
        train, train.user, train.item, rating.astype(train.rating.dtype), train.timestamp
    )


def profile_count(size: float, n_users: int) -> int:
    """How many fake profiles an attack of ``size`` adds to ``n_users`` training users."""
    return corrupted_count(size, n_users)


def attack_targets(train: MetaTrain, n_targets: int, seed: int, pool: str = "any") -> np.ndarray:
    """The pushed items of a seed: drawn uniformly among the items with a training rating (with
    ``unpopular``, among those with at most the median number of them), the same for every
    attack kind and size."""
    counts = np.bincount(train.item, minlength=train.n_items)
    rated = np.flatnonzero(counts > 0)
    if pool == "unpopular" and len(rated):
        rated = rated[counts[rated] <= np.median(counts[rated])]
    if n_targets > len(rated):
        raise ValueError(
            f"an attack on {n_targets} target items needs as many items with training ratings; "
            f"the training data has {len(rated)}"
        )
    chosen = Seeds(seed).numpy("shilling", "targets", pool).choice(rated, n_targets, replace=False)
    return np.sort(chosen)


def _snapped(values: np.ndarray, levels: np.ndarray, low: float, high: float) -> np.ndarray:
    values = np.clip(values, low, high)
    if 0 < len(levels) <= MAX_LEVELS:
        nearest = np.abs(values[:, None] - levels[None, :]).argmin(1)
        return levels[nearest]
    return values


@dataclass(frozen=True)
class Profiles:
    """The fake ratings an attack adds, and what it pushes."""

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    targets: np.ndarray
    selected: np.ndarray
    n_profiles: int
    filler_size: int


def shilling_profiles(train: MetaTrain, attack: ShillingAttack, seed: int) -> Profiles:
    """The fake profiles of ``attack`` on ``train`` (user ids from ``train.n_users`` on)."""
    known_users = int(train.known_users.sum())
    count = profile_count(attack.size, known_users)
    targets = attack_targets(train, attack.targets, seed, attack.target_pool)
    popularity = np.bincount(train.item, minlength=train.n_items)
    rated = np.flatnonzero(popularity > 0)
    selected = np.array([], dtype=np.int64)
    if attack.kind == "bandwagon":
        n_selected = max(1, round(attack.selected * len(rated)))
        by_count = rated[np.argsort(-popularity[rated], kind="stable")]
        selected = np.sort(by_count[~np.isin(by_count, targets)][:n_selected])
    pool = rated[~np.isin(rated, targets) & ~np.isin(rated, selected)]
    filler_size = min(max(1, round(attack.filler * len(rated))), len(pool))
    low, high = (float(v) for v in train.rating_scale)
    levels = np.asarray(train.rating_levels, dtype=np.float64)
    ratings = train.rating.astype(np.float64)
    mean, sd = float(ratings.mean()), float(ratings.std())
    sums = np.bincount(train.item, weights=ratings, minlength=train.n_items)
    squares = np.bincount(train.item, weights=ratings**2, minlength=train.n_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        item_mean = sums / popularity
        item_sd = np.sqrt(np.maximum(squares / popularity - item_mean**2, 0.0))
    item_sd = np.where(popularity > 1, item_sd, sd)
    rng = Seeds(seed).numpy("shilling", attack.kind)
    users, items, values = [], [], []
    for j in range(count):
        filler = rng.choice(pool, filler_size, replace=False)
        noise = rng.standard_normal(filler_size)
        if attack.kind == "average":
            drawn = item_mean[filler] + item_sd[filler] * noise
        else:
            drawn = mean + sd * noise
        chosen = np.concatenate([targets, selected, filler])
        rated_as = np.concatenate(
            [np.full(len(targets) + len(selected), high), _snapped(drawn, levels, low, high)]
        )
        users.append(np.full(len(chosen), train.n_users + j, dtype=np.int64))
        items.append(chosen)
        values.append(rated_as)
    empty = np.array([], dtype=np.int64)
    return Profiles(
        user=np.concatenate(users) if users else empty,
        item=np.concatenate(items).astype(np.int64) if items else empty,
        rating=np.concatenate(values) if values else np.array([], dtype=np.float64),
        targets=targets,
        selected=selected,
        n_profiles=count,
        filler_size=filler_size,
    )


def attacked_training(train: MetaTrain, attack: ShillingAttack, seed: int) -> MetaTrain:
    """``train`` with the attack's fake profiles appended (the clean view at size 0)."""
    profiles = shilling_profiles(train, attack, seed)
    if profiles.n_profiles == 0:
        if attack.size > 0:  # never a silent clean fit under an attack's name
            raise ValueError(
                f"attack size {attack.size:g} of {int(train.known_users.sum())} training users "
                "adds no fake profile"
            )
        return train
    features = train.user_features
    if features is not None:  # fake users borrow real users' side features
        donors = (
            Seeds(seed)
            .numpy("shilling", "features")
            .choice(np.flatnonzero(train.known_users), profiles.n_profiles)
        )
        features = np.concatenate([features, features[donors]])
    stamp = train.timestamp.max() if len(train.timestamp) else 0
    return with_ratings(
        train,
        np.concatenate([train.user, profiles.user]).astype(train.user.dtype),
        np.concatenate([train.item, profiles.item]).astype(train.item.dtype),
        np.concatenate([train.rating, profiles.rating]).astype(train.rating.dtype),
        np.concatenate(
            [train.timestamp, np.full(len(profiles.user), stamp, dtype=train.timestamp.dtype)]
        ),
        n_users=train.n_users + profiles.n_profiles,
        user_features=features,
    )
