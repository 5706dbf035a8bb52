"""The immutable rating dataset every protocol and learner works from."""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


def _hash_nested(digest: Any, value: Any) -> None:
    """Feed arrays, mappings and plain values into ``digest`` in a key-order-free way."""
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        digest.update(f"array{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            digest.update(f"key:{key}".encode())
            _hash_nested(digest, value[key])
    else:
        digest.update(json.dumps(value, sort_keys=True, default=str).encode())


_ID_TEXTS: weakref.WeakKeyDictionary[Dataset, dict[str, Any]] = weakref.WeakKeyDictionary()
"""Each dataset's ids as text, per side, made on first use (a split's tables and every export
name thousands of ratings by them); kept beside the dataset rather than on it, so that it is
neither pickled to workers nor copied by :func:`dataclasses.replace`."""

ID_COLUMN_BLOCK = 10_000_000
"""Ratings per Arrow chunk of an id column: keeps each chunk's text offsets within 32 bits."""

LOSS_OF_RANGE = 1e-4
"""The most a rating may move when stored as float32, as a share of the ratings' range."""


def float32_loss(values: np.ndarray) -> tuple[float, float] | None:
    """A rating that 32-bit storage would move by more than :data:`LOSS_OF_RANGE` of the
    ratings' range (or turn from non-zero into zero), as ``(rating, stored)``; None when every
    rating keeps its place. Learners and metrics see float32 ratings, so such ratings (which
    could merge, or all become 0) are refused rather than silently changed."""
    wide = np.asarray(values, dtype=np.float64)
    wide = np.unique(wide[np.isfinite(wide)])
    if len(wide) == 0:
        return None
    with np.errstate(over="ignore", under="ignore"):
        narrow = wide.astype(np.float32).astype(np.float64)
    zeroed = np.flatnonzero((narrow == 0) & (wide != 0))
    if len(zeroed):
        return float(wide[zeroed[0]]), 0.0
    moved = np.abs(narrow - wide)
    spread = float(wide[-1] - wide[0])
    worst = int(np.argmax(moved))
    if spread > 0 and moved[worst] > LOSS_OF_RANGE * spread:
        return float(wide[worst]), float(narrow[worst])
    return None


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Dataset:
    """Ratings with contiguous integer ids ``0..n_users-1`` and ``0..n_items-1``.

    Attributes:
        user, item: int64 ids per rating.
        rating: float32 ratings.
        timestamp: int64 times per rating (seconds or any monotone unit).
        user_features, item_features: optional float32 matrices, one row per id (dense or multi-hot).
        user_attributes, item_attributes: optional named per-entity values used by protocols
            (for example ``release_year``) that are not model features.
        user_ids, item_ids: the raw ids from the source, indexed by contiguous id.
        rating_scale: (min, max) of the rating scale.
        like_threshold: a rating at or above this is a "like".
        truth: generator internals for synthetic data (the oracle uses them), else None.
        extras: loader-specific data that protocols may use (predefined folds, trust graph).

    Stability: stable.
    """

    name: str
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    n_users: int
    n_items: int
    rating_scale: tuple[float, float]
    like_threshold: float
    user_features: np.ndarray | None = None
    item_features: np.ndarray | None = None
    user_attributes: dict[str, np.ndarray] = field(default_factory=dict)
    item_attributes: dict[str, np.ndarray] = field(default_factory=dict)
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    truth: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""

    def __post_init__(self) -> None:
        n = len(self.rating)
        for label, array in (
            ("user", self.user),
            ("item", self.item),
            ("timestamp", self.timestamp),
        ):
            if len(array) != n:
                raise DataError(
                    f"dataset {self.name!r}: column {label!r} has {len(array)} rows, "
                    f"expected {n} like 'rating'"
                )
        set_ = object.__setattr__
        set_(self, "user", _frozen(np.asarray(self.user, dtype=np.int64)))
        set_(self, "item", _frozen(np.asarray(self.item, dtype=np.int64)))
        if np.asarray(self.rating).dtype != np.float32:
            lost = float32_loss(np.asarray(self.rating))
            if lost is not None:
                raise DataError(
                    f"dataset {self.name!r}: rating {lost[0]!r} would be stored as {lost[1]!r} "
                    "(ratings are 32-bit floats), which blurs the ratings' range; rescale them "
                    "(e.g. subtract their offset or multiply them up) before loading"
                )
        set_(self, "rating", _frozen(np.asarray(self.rating, dtype=np.float32)))
        set_(self, "timestamp", _frozen(np.asarray(self.timestamp, dtype=np.int64)))
        if n and (self.user.min() < 0 or self.user.max() >= self.n_users):
            raise DataError(f"dataset {self.name!r}: user ids must lie in 0..{self.n_users - 1}")
        if n and (self.item.min() < 0 or self.item.max() >= self.n_items):
            raise DataError(f"dataset {self.name!r}: item ids must lie in 0..{self.n_items - 1}")
        for label, feats, count in (
            ("user_features", self.user_features, self.n_users),
            ("item_features", self.item_features, self.n_items),
        ):
            if feats is None:
                continue
            feats = np.asarray(feats, dtype=np.float32)
            if feats.ndim != 2 or feats.shape[0] != count:
                raise DataError(
                    f"dataset {self.name!r}: {label} must have shape ({count}, d), got {feats.shape}"
                )
            set_(self, label, _frozen(feats))
        lo, hi = self.rating_scale
        set_(self, "rating_scale", (float(lo), float(hi)))
        if not self.content_hash:
            set_(self, "content_hash", self._compute_hash())

    def _compute_hash(self) -> str:
        digest = hashlib.sha256()
        digest.update(
            f"{self.n_users},{self.n_items},{self.rating_scale},{self.like_threshold}".encode()
        )
        for array in (self.user, self.item, self.rating, self.timestamp):
            digest.update(array.tobytes())
        for feats in (self.user_features, self.item_features):
            digest.update(b"-" if feats is None else feats.tobytes())
        for attrs in (self.user_attributes, self.item_attributes):
            for key in sorted(attrs):
                digest.update(key.encode())
                digest.update(np.ascontiguousarray(attrs[key]).tobytes())
        # Extras such as predefined folds change splits without touching the ratings.
        _hash_nested(digest, self.extras)
        return digest.hexdigest()[:16]

    def raw_ids(self, side: str, ids: np.ndarray) -> list[str]:
        """The source's ids (as text) of contiguous ``user`` or ``item`` ids ``ids``."""
        return self._id_texts(side)[self._checked_ids(side, ids)].tolist()

    def raw_id_column(self, side: str, ids: np.ndarray) -> pd.Series:
        """:meth:`raw_ids` as a text column, built in Arrow without a Python string per row."""
        import pandas as pd
        import pyarrow as pa

        picked = self._checked_ids(side, ids)
        kept = _ID_TEXTS.setdefault(self, {})
        if f"{side}:arrow" not in kept:
            kept[f"{side}:arrow"] = pa.array(self._id_texts(side), type=pa.string())
        texts = kept[f"{side}:arrow"]
        chunks = [
            texts.take(pa.array(picked[start : start + ID_COLUMN_BLOCK]))
            for start in range(0, len(picked), ID_COLUMN_BLOCK)
        ]
        column: pa.ChunkedArray = pa.chunked_array(chunks, type=pa.string())
        return pd.Series(column.to_pandas(), dtype="str")

    def _checked_ids(self, side: str, ids: np.ndarray) -> np.ndarray:
        """``ids`` as int64, each a contiguous ``side`` id of this dataset."""
        picked = np.asarray(ids, dtype=np.int64)
        count = len(self._id_texts(side))
        if len(picked) and (picked.min() < 0 or picked.max() >= count):
            raise IndexError(f"dataset {self.name!r}: {side} ids must lie in 0..{count - 1}")
        return picked

    def _id_texts(self, side: str) -> np.ndarray:
        """Every ``side`` id as text, indexed by contiguous id (an object array of str)."""
        if side not in ("user", "item"):
            raise ValueError(f"side must be 'user' or 'item', got {side!r}")
        kept = _ID_TEXTS.setdefault(self, {})
        if side not in kept:
            table = self.user_ids if side == "user" else self.item_ids
            count = self.n_users if side == "user" else self.n_items
            values = np.arange(count) if table is None else table[:count]
            texts = np.empty(count, dtype=object)
            texts[:] = [str(v) for v in values.tolist()]
            kept[side] = texts
        return kept[side]

    @property
    def n_ratings(self) -> int:
        return len(self.rating)

    @property
    def rating_levels(self) -> np.ndarray:
        """The distinct rating values, sorted."""
        return np.unique(self.rating)

    def describe(self) -> str:
        return (
            f"{self.name}: {self.n_users} users, {self.n_items} items, {self.n_ratings} ratings, "
            f"scale {self.rating_scale[0]:g}-{self.rating_scale[1]:g}, hash {self.content_hash}"
        )
