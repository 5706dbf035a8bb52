"""A small dataset with named feature fields and one planted field, for checking explanations.

Ratings are ``clip(mean + beta * g(planted) + p_u . q_i + noise, 1, 5)``: ``g`` gives each value of
the planted user field (by default ``age``) an effect, standardised to mean 0 and variance 1 over
the users; the low-rank term ``p_u . q_i`` is drawn apart from every field, so only support
ratings reveal it. The other fields carry no signal: ``gender``, ``occupation`` and ``zip`` for
users, ``genre`` (multi-hot) and ``era`` for items. ``zip`` is the declared noise field.

Feature columns are one-hot (multi-hot for genres) and named ``field=value``, as the MovieLens
loader names them, so learners group them into the same fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.data.dataset import Dataset

USER_FIELDS = {"gender": 2, "age": 5, "occupation": 6, "zip": 4}
ITEM_FIELDS = {"genre": 5, "era": 3}
NOISE_FIELD = "zip"


@dataclass(frozen=True)
class PlantedConfig:
    n_users: int = 400
    n_items: int = 120
    ratings_per_user: int = 30
    planted: str = "age"
    """The user field whose value moves every rating of its user."""
    beta: float = 1.0
    """The planted effect's standard deviation, in stars."""
    rank: int = 2
    factor_std: float = 0.35
    """Standard deviation of each entry of the low-rank factors."""
    noise: float = 0.3
    global_mean: float = 3.4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.planted not in USER_FIELDS:
            raise ValueError(f"planted must be one of {sorted(USER_FIELDS)}, got {self.planted!r}")
        if not (1 <= self.n_users <= 100_000 and 1 <= self.n_items <= 100_000):
            raise ValueError("n_users and n_items must lie in [1, 100000]")
        if not 1 <= self.ratings_per_user <= self.n_items:
            raise ValueError(f"ratings_per_user must lie in [1, n_items={self.n_items}]")
        if not 1 <= self.rank <= 64:
            raise ValueError(f"rank must lie in [1, 64], got {self.rank}")
        for name in ("beta", "factor_std", "noise", "global_mean"):
            value = getattr(self, name)
            if not math.isfinite(value) or (name != "global_mean" and value < 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def _one_hot(values: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(values), n), dtype=np.float32)
    out[np.arange(len(values)), values] = 1.0
    return out


def generate_planted(config: PlantedConfig = PlantedConfig(), name: str = "planted") -> Dataset:
    rng = np.random.default_rng(config.seed)
    user_values = {f: rng.integers(0, n, size=config.n_users) for f, n in USER_FIELDS.items()}
    levels = USER_FIELDS[config.planted]
    # Effects of alternating sign and growing size, so that no value sits at the users' mean
    # (a value at the mean is indistinguishable from "unknown").
    effect = (np.linspace(0.5, 1.0, levels) * (-1.0) ** np.arange(levels))[rng.permutation(levels)]
    g = effect[user_values[config.planted]]
    g = (g - g.mean()) / (g.std() if g.std() > 0 else 1.0)

    genres = (rng.random((config.n_items, ITEM_FIELDS["genre"])) < 0.3).astype(np.float32)
    genres[np.arange(config.n_items), rng.integers(0, ITEM_FIELDS["genre"], config.n_items)] = 1.0
    era = rng.integers(0, ITEM_FIELDS["era"], size=config.n_items)

    p = rng.normal(scale=config.factor_std, size=(config.n_users, config.rank))
    q = rng.normal(scale=config.factor_std, size=(config.n_items, config.rank))
    users = np.repeat(np.arange(config.n_users), config.ratings_per_user)
    items = np.concatenate(
        [
            rng.choice(config.n_items, config.ratings_per_user, replace=False)
            for _ in range(config.n_users)
        ]
    )
    latent = config.global_mean + config.beta * g[users] + (p[users] * q[items]).sum(1)
    latent = latent + rng.normal(scale=config.noise, size=len(users))
    ratings = np.clip(latent, 1.0, 5.0).astype(np.float32)
    timestamps = rng.integers(0, 10**8, size=len(users)).astype(np.int64)

    user_features = np.concatenate(
        [_one_hot(user_values[f], n) for f, n in USER_FIELDS.items()], axis=1
    )
    user_names = [f"{f}={v}" for f, n in USER_FIELDS.items() for v in range(n)]
    item_features = np.concatenate([genres, _one_hot(era, ITEM_FIELDS["era"])], axis=1)
    item_names = [f"genre={v}" for v in range(ITEM_FIELDS["genre"])] + [
        f"era={v}" for v in range(ITEM_FIELDS["era"])
    ]
    return Dataset(
        name=name,
        user=users,
        item=items,
        rating=ratings,
        timestamp=timestamps,
        n_users=config.n_users,
        n_items=config.n_items,
        rating_scale=(1.0, 5.0),
        like_threshold=4.0,
        user_features=user_features,
        item_features=item_features,
        user_ids=np.arange(config.n_users),
        item_ids=np.arange(config.n_items),
        extras={
            "user_feature_names": user_names,
            "item_feature_names": item_names,
            "planted_field": f"user:{config.planted}",
            "noise_field": f"user:{NOISE_FIELD}",
        },
    )
