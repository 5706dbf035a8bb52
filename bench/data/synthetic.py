"""The embedded default dataset: planted low-rank structure, generated from a seed, no files.

Ratings are ``clip(round(mu + b_u + b_i + u.v + noise), 1, 5)``. User and item features are observed
linear views of part of the latent factors and biases, so content helps in cold start. Timestamps
follow user join and item release times, so temporal splits are meaningful.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from bench.data.dataset import Dataset

MAX_ENTITIES = 1_000_000
MAX_RATINGS_PER_USER = 100_000
MAX_RATINGS = 50_000_000


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 1000
    n_items: int = 600
    rank: int = 8
    n_user_features: int = 8
    n_item_features: int = 8
    feature_share: float = 0.6
    """Fraction of each factor's variance (and each bias's) that the features explain."""
    factor_std: float = 0.45
    user_bias_std: float = 0.35
    item_bias_std: float = 0.5
    global_mean: float = 3.4
    noise: float = 0.6
    """Standard deviation of the latent noise before rounding and clipping."""
    min_ratings_per_user: int = 30
    mean_ratings_per_user: int = 80
    max_ratings_per_user: int = 200
    popularity_exponent: float = 0.7
    first_year: int = 1990
    years: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        # Sizes are bounded so that a card or suite asking for 10^9 users is an error line, not
        # an attempt to allocate their arrays; the bounds lie far above any benchmark's needs.
        bounds = {
            "n_users": (1, MAX_ENTITIES),
            "n_items": (1, MAX_ENTITIES),
            "rank": (1, 1024),
            "n_user_features": (0, 1024),
            "n_item_features": (0, 1024),
            "min_ratings_per_user": (0, MAX_RATINGS_PER_USER),
            "mean_ratings_per_user": (0, MAX_RATINGS_PER_USER),
            "max_ratings_per_user": (0, MAX_RATINGS_PER_USER),
            "years": (1, 1000),
            "first_year": (-10_000, 10_000),
            "seed": (0, 2**63 - 1),
        }
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")
        budget = self.n_users * min(self.max_ratings_per_user, self.n_items)
        if budget > MAX_RATINGS:
            raise ValueError(
                f"n_users x max_ratings_per_user allows {budget} ratings; at most {MAX_RATINGS}"
            )
        for name in ("feature_share", "factor_std", "user_bias_std", "item_bias_std", "noise",
                     "global_mean", "popularity_exponent"):  # fmt: skip
            value = getattr(self, name)
            if not math.isfinite(value) or (name != "global_mean" and value < 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.feature_share > 1:
            raise ValueError(f"feature_share must lie in [0, 1], got {self.feature_share}")


@dataclass(frozen=True, eq=False)
class SyntheticTruth:
    """The generator's latent parameters: enough to compute the best possible prediction."""

    global_mean: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    noise: float
    scale: tuple[float, float]

    def latent_mean(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        dot = np.einsum("...r,...r->...", self.user_factors[users], self.item_factors[items])
        return self.global_mean + self.user_bias[users] + self.item_bias[items] + dot

    def expected_rating(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """E[clip(round(m + noise))]: the prediction with the least possible squared error."""
        from scipy.special import ndtr  # here: a run whose cells are all stored never needs it

        m = self.latent_mean(users, items)
        lo, hi = int(self.scale[0]), int(self.scale[1])
        # P(observed >= r) = P(z >= r - 0.5) for lo < r <= hi, so E = lo + sum_r P(z >= r - 0.5).
        expected = np.full(m.shape, float(lo))
        for r in range(lo + 1, hi + 1):
            expected += ndtr((m - (r - 0.5)) / self.noise)
        return expected


def _factor_with_features(
    rng: np.random.Generator, count: int, n_features: int, width: int, share: float
) -> tuple[np.ndarray, np.ndarray]:
    """Latent columns of unit variance, a ``share`` of whose variance is a linear map of features."""
    features = rng.normal(size=(count, n_features))
    mixing = rng.normal(size=(n_features, width)) / np.sqrt(n_features)
    visible = features @ mixing
    visible /= visible.std(axis=0, keepdims=True) + 1e-12
    hidden = rng.normal(size=(count, width))
    return np.sqrt(share) * visible + np.sqrt(1.0 - share) * hidden, features


MEMO_RATINGS = 2_000_000
"""Datasets of at most this many ratings are kept after generation, so that a process that
asks for the same one again (a suite's run after its plan, the Python API called in a loop,
an explanation after its run) does not draw it again."""
MEMO_DATASETS = 8
_memo: OrderedDict[tuple[SyntheticConfig, str], Dataset] = OrderedDict()


def generate(config: SyntheticConfig = SyntheticConfig(), name: str = "synthetic") -> Dataset:
    """The dataset ``config`` describes, named ``name``: the same arrays for the same config.

    Its arrays are read-only, so a kept dataset is shared; each caller gets its own ``extras``
    (loaders record what they did there)."""
    key = (config, name)
    kept = _memo.get(key)
    if kept is None:
        kept = _generate(config, name)
        if kept.n_ratings <= MEMO_RATINGS:
            _memo[key] = kept
            while len(_memo) > MEMO_DATASETS:
                _memo.popitem(last=False)
    else:
        _memo.move_to_end(key)
    return dataclasses.replace(kept, extras=dict(kept.extras))


def _generate(config: SyntheticConfig, name: str) -> Dataset:
    rng = np.random.default_rng(config.seed)
    width = config.rank + 1  # factors plus the bias share one feature map
    user_latent, user_features = _factor_with_features(
        rng, config.n_users, config.n_user_features, width, config.feature_share
    )
    item_latent, item_features = _factor_with_features(
        rng, config.n_items, config.n_item_features, width, config.feature_share
    )
    user_factors = user_latent[:, : config.rank] * config.factor_std
    item_factors = item_latent[:, : config.rank] * config.factor_std
    user_bias = user_latent[:, config.rank] * config.user_bias_std
    item_bias = item_latent[:, config.rank] * config.item_bias_std

    # Who rates what: a per-user count from a shifted log-normal, items drawn by a popularity law.
    extra = config.mean_ratings_per_user - config.min_ratings_per_user
    counts = config.min_ratings_per_user + np.round(
        rng.lognormal(np.log(max(extra, 1)), 0.8, size=config.n_users)
    ).astype(np.int64)
    counts = np.clip(
        counts, config.min_ratings_per_user, min(config.max_ratings_per_user, config.n_items)
    )
    popularity = 1.0 / np.arange(1, config.n_items + 1) ** config.popularity_exponent
    popularity = popularity[rng.permutation(config.n_items)]
    popularity /= popularity.sum()
    users = np.repeat(np.arange(config.n_users), counts)
    items = np.concatenate(
        [rng.choice(config.n_items, size=c, replace=False, p=popularity) for c in counts]
    )

    truth = SyntheticTruth(
        global_mean=config.global_mean,
        user_bias=user_bias,
        item_bias=item_bias,
        user_factors=user_factors,
        item_factors=item_factors,
        noise=config.noise,
        scale=(1.0, 5.0),
    )
    latent = truth.latent_mean(users, items) + rng.normal(scale=config.noise, size=len(users))
    ratings = np.clip(np.round(latent), 1, 5).astype(np.float32)

    # Time in days: users join and items are released over the span; a rating follows both.
    span = 365.0 * config.years
    join = rng.uniform(0, span, size=config.n_users)
    release = rng.uniform(0, span, size=config.n_items)
    when = np.maximum(join[users], release[items]) + rng.exponential(60.0, size=len(users))
    timestamps = (when * 86400).astype(np.int64)
    release_year = (config.first_year + release // 365.0).astype(np.int64)

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
        user_features=user_features.astype(np.float32),
        item_features=item_features.astype(np.float32),
        item_attributes={"release_year": release_year},
        user_ids=np.arange(config.n_users),
        item_ids=np.arange(config.n_items),
        truth=truth,
    )
