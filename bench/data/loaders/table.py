"""Turning raw rating columns into a :class:`Dataset`: contiguous ids, duplicate pairs resolved,
the rating scale declared or inferred, and a report of what loading did.

Reading the columns from files is :mod:`bench.data.loaders.text_reader`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.data.dataset import Dataset, float32_loss
from bench.errors import DataError, excerpt

DUPLICATE_POLICIES = ("last", "first", "mean", "error")


def default_like_threshold(scale: tuple[float, float]) -> float:
    """Three quarters of the way up the scale: 4 on 1-5, 8 on 0-10; the card or options may say
    otherwise."""
    lo, hi = scale
    return lo + 0.75 * (hi - lo)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def declared_scale(
    options: dict[str, Any], card: Any, where: str
) -> tuple[tuple[float, float] | None, float | None]:
    """The rating scale and like threshold that the options (a suite's dataset table,
    ``--rating-scale``) or else the dataset card set; None for what neither sets."""
    scale = options.get("rating_scale", getattr(card, "rating_scale", None))
    like = options.get("like_threshold", getattr(card, "like_threshold", None))
    if scale is not None:
        if not (isinstance(scale, list | tuple) and len(scale) == 2 and all(map(_number, scale))):
            raise DataError(f"{where}: rating_scale must be [min, max], got {excerpt(scale)}")
        lo, hi = float(scale[0]), float(scale[1])
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise DataError(
                f"{where}: rating_scale [{lo:g}, {hi:g}] needs finite bounds with min < max"
            )
        scale = (lo, hi)
    if like is not None and not (_number(like) and np.isfinite(like)):
        raise DataError(f"{where}: like_threshold must be a number, got {excerpt(like)}")
    return scale, None if like is None else float(like)


def contiguous(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct raw ids and each row's contiguous id."""
    if raw.dtype.kind in "iu" and len(raw):
        low, high = int(raw.min()), int(raw.max())
        if high - low < max(4 * len(raw), 1 << 20) and high < 2**63:
            # Integer ids in a dense range: a lookup table in one pass instead of a sort (at
            # 10^8 ratings the sort takes seconds and several copies of the column). Offsets
            # are taken in int64, where no id of a narrower type can overflow.
            wide = raw.astype(np.int64, copy=False)
            offset = wide - low if low else wide
            present = np.zeros(high - low + 1, dtype=bool)
            present[offset] = True
            ids = (np.flatnonzero(present) + low).astype(raw.dtype)
            code = np.cumsum(present, dtype=np.int64) - 1
            return ids, code[offset]
    ids, index = np.unique(raw, return_inverse=True)
    return ids, index.astype(np.int64).reshape(-1)


def resolve_duplicates(
    user: np.ndarray,
    item: np.ndarray,
    rating: np.ndarray,
    timestamp: np.ndarray,
    lines: np.ndarray,
    policy: str,
    where: str,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows to keep (in file order) and ratings for them under the duplicate ``policy``.

    Returns the kept row indices, their ratings (means under ``mean``) and the number of dropped
    duplicate rows.
    """
    if policy not in DUPLICATE_POLICIES:
        raise DataError(
            f"{where}: duplicates must be one of {DUPLICATE_POLICIES}, got {excerpt(policy)}"
        )
    n_items = int(item.max()) + 1 if len(item) else 1
    key = user * n_items + item
    ordered = np.sort(key)  # most files have no duplicates: found without the stable argsort
    if len(key) < 2 or bool((ordered[1:] != ordered[:-1]).all()):
        return np.arange(len(key)), rating, 0
    del ordered
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    if len(starts) == len(key):
        return np.arange(len(key)), rating, 0
    if policy == "error":
        dup = order[starts[np.flatnonzero(np.diff(np.r_[starts, len(key)]) > 1)[0]]]
        same = lines[np.flatnonzero(key == key[dup])]
        shown = ", ".join(map(str, same[:5])) + (
            f" and {len(same) - 5} more" if len(same) > 5 else ""
        )
        raise DataError(
            f"{where}: duplicate (user, item) pair on lines {shown}; "
            "set duplicates = 'last', 'first' or 'mean' to resolve it"
        )
    ends = np.r_[starts[1:], len(key)]
    if policy == "first":
        keep = order[starts]
        values = rating[keep]
    elif policy == "last":
        keep = order[ends - 1]
        values = rating[keep]
    else:
        keep = order[ends - 1]
        values = np.add.reduceat(rating[order], starts) / (ends - starts)
    by_file = np.argsort(keep, kind="stable")
    return keep[by_file], values[by_file], len(key) - len(keep)


EXTREME_GAP = 4.0
"""How many times the other ratings' span an extreme must lie beyond them to be doubted."""


def lone_extremes(values: np.ndarray) -> list[tuple[float, int, float, float]]:
    """Extreme ratings that alone stretch an inferred scale: (value, how many, low, high of the
    others) for a top or bottom value held by at most 0.1% of the ratings (at least one) and
    further from the next value than ``EXTREME_GAP`` times the others' span. Small files (under
    ten ratings) are not judged."""
    levels, counts = np.unique(values, return_counts=True)
    if len(levels) < 3 or len(values) < 10:
        return []
    rare = max(1, len(values) // 1000)
    found = []
    if counts[-1] <= rare and levels[-1] - levels[-2] > EXTREME_GAP * (levels[-2] - levels[0]):
        found.append((float(levels[-1]), int(counts[-1]), float(levels[0]), float(levels[-2])))
    if counts[0] <= rare and levels[1] - levels[0] > EXTREME_GAP * (levels[-1] - levels[1]):
        found.append((float(levels[0]), int(counts[0]), float(levels[1]), float(levels[-1])))
    return found


def scale_warnings(
    values: np.ndarray,
    lines: np.ndarray,
    scale: tuple[float, float],
    like: float,
    where: str,
    inferred: bool,
) -> list[str]:
    """What is doubtful about the rating scale and the like threshold, one message each."""
    out = []
    for value, count, lo, hi in lone_extremes(values) if inferred else []:
        line = int(lines[np.flatnonzero(values == value)[0]])
        whom = "a single rating" if count == 1 else f"{count} ratings"
        out.append(
            f"{where}, line {line}: the inferred rating scale {scale[0]:g}-{scale[1]:g} rests on "
            f"{whom} of {value:g}; every other rating lies in {lo:g}-{hi:g}. If that is a "
            f"mistake, fix the file; else set the scale: --rating-scale {lo:g},{hi:g} or "
            f"rating_scale = [{lo:g}, {hi:g}] in the dataset's options or card"
        )
    if scale[0] == scale[1]:
        out.append(
            f"{where}: every rating is {scale[0]:g}, so the inferred scale has no span; "
            "set rating_scale = [min, max] in the dataset's options or card"
        )
    elif np.isfinite(like) and not scale[0] <= like <= scale[1]:  # NaN: unset
        out.append(
            f"{where}: the like threshold {like:g} lies outside the rating scale "
            f"{scale[0]:g}-{scale[1]:g}, so {'no' if like > scale[1] else 'every'} rating is a like"
        )
    return out


@dataclass(frozen=True, eq=False)
class RatingsTable:
    """Ratings with contiguous ids, before side features are attached.

    ``rows`` are the source rows kept after resolving duplicates (indices into the columns read).
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    rating_scale: tuple[float, float]
    like_threshold: float
    rows: np.ndarray
    duplicates_dropped: int
    duplicate_policy: str
    source: str = ""
    scale_declared: bool = False
    threshold_declared: bool = False
    warnings: tuple[str, ...] = ()

    def load_report(self, dropped: dict[str, int] | None = None) -> dict[str, Any]:
        """What loading did to the source rows, kept with the dataset and every split of it.

        ``dropped`` counts rows the parser left out before this table, by reason (a name without
        slashes, such as ``implicit_ratings``).
        """
        return {
            "source": self.source,
            "rows_read": len(self.user) + self.duplicates_dropped,
            "ratings": len(self.user),
            "duplicates_dropped": self.duplicates_dropped,
            "duplicate_policy": self.duplicate_policy,
            "rows_dropped": {k: int(v) for k, v in (dropped or {}).items()},
            "rating_scale": list(self.rating_scale),
            "rating_scale_from": "declared" if self.scale_declared else "inferred",
            "like_threshold": self.like_threshold,
            "like_threshold_from": "declared" if self.threshold_declared else "default",
            # NaN: left unset, so each split likes its median training rating and above.
            "warnings": list(self.warnings),
        }

    def to_dataset(
        self, name: str, *, dropped: dict[str, int] | None = None, **fields: Any
    ) -> Dataset:
        """The Dataset, with side features, attributes and extras given as keyword fields."""
        extras = {
            "duplicates_dropped": self.duplicates_dropped,
            "duplicate_policy": self.duplicate_policy,
            "load_report": self.load_report(dropped),
            **fields.pop("extras", {}),
        }
        return Dataset(
            name=name,
            user=self.user,
            item=self.item,
            rating=self.rating,
            timestamp=self.timestamp,
            n_users=len(self.user_ids),
            n_items=len(self.item_ids),
            rating_scale=self.rating_scale,
            like_threshold=self.like_threshold,
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            extras=extras,
            **fields,
        )


def describe_load_report(report: dict[str, Any]) -> str:
    """One line on what loading did: ratings kept, rows left out and why, the scale and the like
    threshold with where they came from."""
    changes = [f"{report.get('duplicates_dropped', 0)} duplicate (user, item) rows dropped"]
    if report.get("duplicates_dropped"):
        changes[0] += f" (kept: {report.get('duplicate_policy')})"
    for why, count in report.get("rows_dropped", {}).items():
        changes.append(f"{count} {why.replace('_', ' ')} left out")
    lo, hi = report.get("rating_scale", (float("nan"), float("nan")))
    notes = len(report.get("warnings", []))
    like = report.get("like_threshold")
    set_ = isinstance(like, int | float) and bool(np.isfinite(like))
    like_text = f"{like:g}" if set_ else "each split's median training rating"
    return (
        f"data {report.get('source')}: {report.get('ratings')} ratings; {', '.join(changes)}; "
        f"rating scale {lo:g}-{hi:g} ({report.get('rating_scale_from')}), like threshold "
        f"{like_text} ({report.get('like_threshold_from')})"
        + (f"; {notes} warning(s), shown when it was loaded" if notes else "")
    )


def ratings_table(
    raw_user: np.ndarray,
    raw_item: np.ndarray,
    rating: np.ndarray,
    timestamp: np.ndarray | None,
    lines: np.ndarray,
    *,
    duplicates: str = "last",
    rating_scale: tuple[float, float] | list[float] | None = None,
    like_threshold: float | None = None,
    where: str = "",
) -> RatingsTable:
    """Map raw ids to contiguous ones (sorted by raw id), resolve duplicate pairs and infer the
    scale where it is not given (the observed min and max)."""
    if len(rating) == 0:
        raise DataError(f"{where}: no ratings")
    user_ids, user = contiguous(raw_user)
    item_ids, item = contiguous(raw_item)
    ts = np.zeros(len(rating), dtype=np.int64) if timestamp is None else timestamp
    rows, values, dropped = resolve_duplicates(user, item, rating, ts, lines, duplicates, where)
    too_big = np.flatnonzero(np.abs(values) > np.finfo(np.float32).max)
    if len(too_big):
        raise DataError(
            f"{where}, line {lines[rows[too_big[0]]]}: rating {values[too_big[0]]:g} is too large "
            "to store (ratings are 32-bit floats)"
        )
    lost = float32_loss(values)
    if lost is not None:
        line = lines[rows[np.flatnonzero(values == lost[0])[0]]]
        raise DataError(
            f"{where}, line {line}: rating {lost[0]!r} would be stored as {lost[1]!r} (ratings "
            "are 32-bit floats), which blurs the ratings' range and can merge distinct ratings; "
            "rescale them (e.g. subtract their offset or multiply them up) before loading"
        )
    if rating_scale is None:
        scale = (float(values.min()), float(values.max()))
    else:
        scale = (float(rating_scale[0]), float(rating_scale[1]))
        outside = np.flatnonzero((values < scale[0]) | (values > scale[1]))
        if len(outside):
            raise DataError(
                f"{where}, line {lines[rows[outside[0]]]}: rating {values[outside[0]]:g} "
                f"lies outside the declared scale {scale[0]:g}-{scale[1]:g}"
            )
    threshold = default_like_threshold(scale) if like_threshold is None else float(like_threshold)

    def kept(column: np.ndarray) -> np.ndarray:  # no copy of a column when every row is kept
        return column if dropped == 0 else column[rows]

    notes = scale_warnings(values, kept(lines), scale, threshold, where, rating_scale is None)
    return RatingsTable(
        user=kept(user),
        item=kept(item),
        rating=values.astype(np.float32),
        timestamp=kept(ts).astype(np.int64, copy=False),
        user_ids=user_ids,
        item_ids=item_ids,
        rating_scale=scale,
        like_threshold=threshold,
        rows=rows,
        duplicates_dropped=dropped,
        duplicate_policy=duplicates,
        source=where,
        scale_declared=rating_scale is not None,
        threshold_declared=like_threshold is not None and bool(np.isfinite(like_threshold)),
        warnings=tuple(notes),
    )


def lookup(ids: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each of ``ids`` the position of the same value in ``keys``, or -1 where absent."""
    if len(keys) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    pos = np.searchsorted(keys[order], ids)
    pos = np.minimum(pos, len(keys) - 1)
    found = keys[order][pos] == ids
    return np.where(found, order[pos], -1).astype(np.int64)


def one_hot(codes: np.ndarray, width: int) -> np.ndarray:
    """Rows of ``width`` zeros with a one at each code (no one where the code is -1)."""
    out = np.zeros((len(codes), width), dtype=np.float32)
    valid = codes >= 0
    out[np.flatnonzero(valid), codes[valid]] = 1.0
    return out
