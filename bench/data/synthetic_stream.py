"""Synthetic ratings at any size, streamed to a Parquet file one block of users at a time.

For scale runs (10^6 to 10^8 ratings) where the in-memory generator (:mod:`bench.data.synthetic`) would
not fit: memory is bounded by the block (``block_users`` users and their ratings) and the item
factors, not by the number of ratings. Ratings are ``clip(round(mu + b_u + b_i + u.v + noise), 1,
5)``; users rate about ``n_ratings / n_users`` items each (log-normal activity), items are drawn by a
power law of popularity. Each block draws from its own stream of the seed, so the file is the same
for a seed whatever the machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLUMNS = ("user_id", "item_id", "rating", "timestamp")


@dataclass(frozen=True)
class StreamConfig:
    n_ratings: int = 10**6
    n_users: int = 10**4
    n_items: int = 10**3
    rank: int = 8
    popularity_exponent: float = 0.8
    activity_sigma: float = 0.8
    noise: float = 0.8
    global_mean: float = 3.5
    block_users: int = 50_000
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.n_ratings, self.n_users, self.n_items, self.rank, self.block_users) < 1:
            raise ValueError("n_ratings, n_users, n_items, rank and block_users must be positive")
        if self.n_ratings > self.n_users * (self.n_items // 2):
            raise ValueError(
                f"{self.n_ratings} ratings need more than {self.n_users} users x "
                f"{self.n_items} items (each user rates at most half the items)"
            )


def _counts(config: StreamConfig, rng: np.random.Generator) -> np.ndarray:
    """Ratings per user: log-normal activity scaled to sum to ``n_ratings``, at most half the
    items (so that drawing distinct items stays quick)."""
    cap = config.n_items // 2
    activity = rng.lognormal(0.0, config.activity_sigma, size=config.n_users)
    share = activity / activity.sum() * config.n_ratings
    counts = np.minimum(np.floor(share).astype(np.int64), cap)
    short = config.n_ratings - int(counts.sum())
    while short > 0:  # hand out what rounding and the cap left, to users with room
        room = np.flatnonzero(counts < cap)
        extra = rng.choice(room, size=min(short, len(room)), replace=False)
        counts[extra] += 1
        short -= len(extra)
    return counts


def _distinct_items(
    count: np.ndarray, cdf: np.ndarray, n_items: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(user index in block, item) pairs: ``count[u]`` distinct popularity-weighted items per user.
    Draws with replacement, drops repeats and draws again for the users still short; each round
    touches only those users."""
    done: list[np.ndarray] = []
    keys = np.zeros(0, np.int64)  # the pairs of users still short
    active = np.flatnonzero(count > 0)
    rounds = 0
    while len(active):
        have = np.bincount(keys // n_items, minlength=len(count))[active]
        need = count[active] - have
        who = np.repeat(active, need + need // 4 + 1 if rounds == 0 else 2 * need + 8)
        if rounds < 8:
            drawn = np.searchsorted(cdf, rng.random(len(who)), side="right")
            drawn = np.minimum(drawn, n_items - 1)
        else:  # users who want many items: the rare ones come faster uniformly
            drawn = rng.integers(0, n_items, size=len(who))
        rounds += 1
        keys = np.sort(np.r_[keys, who * n_items + drawn])
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]  # sorting beats hashing here
        users = keys // n_items
        have_all = np.bincount(users, minlength=len(count))
        if (have_all > count).any():  # keep a random ``count[u]`` of each user's items
            order = np.lexsort((rng.random(len(keys)), users))
            keys, users = keys[order], users[order]
            rank = np.arange(len(keys)) - np.r_[0, np.cumsum(have_all)[:-1]][users]
            keys = np.sort(keys[rank < count[users]])
            users = keys // n_items
            have_all = np.bincount(users, minlength=len(count))
        full = have_all >= count
        finished = full[users]
        done.append(keys[finished])
        keys = keys[~finished]
        active = active[~full[active]]
    pairs = np.sort(np.concatenate(done)) if done else np.zeros(0, np.int64)
    return pairs // n_items, pairs % n_items


def blocks(config: StreamConfig) -> Iterator[dict[str, np.ndarray]]:
    """The ratings, one block of users at a time, as columns."""
    root = np.random.SeedSequence(config.seed)
    setup, *streams = root.spawn(1 + -(-config.n_users // config.block_users))
    rng = np.random.default_rng(setup)
    counts = _counts(config, rng)
    item_factors = rng.normal(scale=0.4, size=(config.n_items, config.rank)).astype(np.float32)
    item_bias = rng.normal(scale=0.5, size=config.n_items).astype(np.float32)
    popularity = 1.0 / np.arange(1, config.n_items + 1) ** config.popularity_exponent
    popularity = popularity[rng.permutation(config.n_items)]
    cdf = np.cumsum(popularity / popularity.sum())
    release = rng.integers(0, 10**8, size=config.n_items)
    for number, stream in enumerate(streams):
        block_rng = np.random.default_rng(stream)
        first = number * config.block_users
        count = counts[first : first + config.block_users]
        local, item = _distinct_items(count, cdf, config.n_items, block_rng)
        user_factors = block_rng.normal(scale=0.4, size=(len(count), config.rank))
        user_bias = block_rng.normal(scale=0.35, size=len(count))
        latent = (
            config.global_mean
            + user_bias[local]
            + item_bias[item]
            + np.einsum("ij,ij->i", user_factors[local].astype(np.float32), item_factors[item])
            + block_rng.normal(scale=config.noise, size=len(item))
        )
        shuffle = block_rng.permutation(len(item))  # rows in no particular order, as in real files
        yield {
            "user_id": (first + local)[shuffle],
            "item_id": item[shuffle],
            "rating": np.clip(np.round(latent), 1, 5).astype(np.float32)[shuffle],
            "timestamp": (10**9 + release[item] + block_rng.integers(0, 10**7, len(item)))[shuffle],
        }


def write_parquet(config: StreamConfig, path: Path) -> int:
    """Stream the ratings to ``path`` (one row group per block, written atomically); returns the
    number of ratings written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("user_id", pa.int64()),
            ("item_id", pa.int64()),
            ("rating", pa.float32()),
            ("timestamp", pa.int64()),
        ]
    )
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    written = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        for block in blocks(config):
            writer.write_table(pa.table(block, schema=schema))
            written += len(block["rating"])
    os.replace(tmp, path)
    return written
