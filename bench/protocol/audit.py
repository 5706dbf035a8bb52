"""The leakage audit: checks that a split keeps what it promises, on its tables alone.

Every check works on :class:`~bench.protocol.manifest.SplitTables`, so the same code audits a
split computed here and a split exported to files (and perhaps edited since). A rating is named
by its (user, item) pair. The checks:

- no new user or item has a training rating;
- each task's support and query share no rating, and no query rating is in training;
- validation tasks are neither test tasks nor in training;
- the statistics a learner is given come from the training ratings: the like threshold (where the
  split computes it), the rating scale (where the dataset does not declare it), the rating
  levels, and the item means;
- a task's query is the same at every support size k;
- in temporal protocols no support rating, and no training rating of the task's own entity, is
  later than the task's cut-off, its first query rating.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from bench.protocol.base import LIKE_FROM_MEDIAN
from bench.protocol.manifest import SplitTables, item_means, k_folder, task_table

SHOWN_IDS = 10
"""How many offending ids a failed check lists (its count says how many there are)."""


@dataclass
class Check:
    """One check of one split: what it looked at, how many, and the offending ids."""

    name: str
    checked: int
    unit: str
    offending: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def passed(self) -> bool:
        return not self.offending

    def line(self) -> str:
        head = f"{'ok  ' if self.passed else 'FAIL'}  {self.name}: {self.checked} {self.unit}"
        if self.note:
            head += f" ({self.note})"
        if self.passed:
            return head
        shown = ", ".join(self.offending[:SHOWN_IDS])
        more = f", … ({len(self.offending)} in all)" if len(self.offending) > SHOWN_IDS else ""
        return f"{head}; {len(self.offending)} offending: {shown}{more}"


def _pairs(frame: pd.DataFrame) -> pd.Series:
    """Each rating's (user, item) pair as one integer (see :func:`_keyed`)."""
    return frame["key"]


def _show(frame: pd.DataFrame, mask: pd.Series | np.ndarray, label: str = "") -> list[str]:
    """The ratings of ``frame`` under ``mask``, named by their pairs, each listed once."""
    if not np.asarray(mask).any():
        return []
    picked = frame.loc[mask, ["user", "item"]].drop_duplicates().sort_values(["user", "item"])
    prefix = f"{label}: " if label else ""
    return [f"{prefix}(user {u}, item {i})" for u, i in picked.itertuples(index=False)]


def _codes(columns: list[pd.Series]) -> tuple[np.ndarray, int]:
    """A code per value of ``columns`` taken as one column of text, and how many values are
    distinct."""
    codes, distinct = pd.factorize(pd.concat([c.astype(str) for c in columns], ignore_index=True))
    return codes, len(distinct)


def _keyed(tables: SplitTables) -> SplitTables:
    """The tables with ids as text and each rating's (user, item) pair as one integer key,
    numbered over all tables at once so that keys compare across them."""
    rated = {n: f for n, f in tables.tables.items() if {"user", "item"} <= set(f.columns)}
    # One side at a time, and the key built in place: at 10^8 ratings each joined column and
    # each array of codes is a gigabyte.
    keys, _ = _codes([f["user"] for f in rated.values()])
    keys = keys.astype(np.int64, copy=False)
    item_codes, item_count = _codes([f["item"] for f in rated.values()])
    keys *= max(item_count, 1)
    keys += item_codes
    del item_codes
    keyed, start = dict(tables.tables), 0
    for name, frame in rated.items():
        end = start + len(frame)
        frame = frame.assign(
            user=frame["user"].astype(str), item=frame["item"].astype(str), key=keys[start:end]
        )
        if "task" in frame.columns:
            frame = frame.assign(task=frame["task"].astype(str))
        keyed[name], start = frame, end
    return replace(tables, tables=keyed)


def _task_tables(tables: SplitTables) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(label, support, query) of every evaluated (scenario, k), and of the validation tasks."""
    out = []
    for scenario, k in tables.evaluated:
        out.append(
            (
                f"{scenario} {k_folder(k)}",
                tables.tables[task_table(scenario, k, "support")],
                tables.tables[task_table(scenario, k, "query")],
            )
        )
    val = tables.tables["validation"]
    out.append(("validation", val[val["role"] == "support"], val[val["role"] == "query"]))
    return out


def _distinct_texts(column: pd.Series) -> set[str]:
    """The distinct values of ``column`` as text (made distinct first: a column repeats each
    task's id once per rating)."""
    return set(column.astype(str).unique())


def check_new_entities(tables: SplitTables) -> Check:
    train, new = tables.tables["train"], tables.tables["new_entities"]
    new_users = set(new.loc[new["side"] == "user", "id"].astype(str))
    new_items = set(new.loc[new["side"] == "item", "id"].astype(str))
    bad = train["user"].astype(str).isin(new_users) | train["item"].astype(str).isin(new_items)
    offending = _show(train, bad)
    note = f"{len(new_users)} new users, {len(new_items)} new items"
    return Check("no new user or item in training", len(train), "training ratings", offending, note)


def check_support_query(tables: SplitTables) -> Check:
    offending, tasks = [], 0
    for label, support, query in _task_tables(tables):
        tasks += query["task"].nunique()
        shared = np.isin(_pairs(support).to_numpy(), _pairs(query).to_numpy())
        offending += _show(support, shared, label)
    return Check("support and query disjoint", tasks, "tasks", offending)


def _members(values: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Which ``values`` lie in the sorted array ``ordered``: one binary search each, so the
    training pairs are sorted once for every task table (``np.isin`` would hash them anew for
    each table, which dominates the audit at 10^7 ratings)."""
    if not len(ordered):
        return np.zeros(len(values), dtype=bool)
    at = np.searchsorted(ordered, values).clip(max=len(ordered) - 1)
    return ordered[at] == values


def check_queries_held_out(tables: SplitTables) -> Check:
    training = np.sort(_pairs(tables.tables["train"]).to_numpy())
    offending, checked = [], 0
    for label, _, query in _task_tables(tables):
        checked += len(query)
        shared = _members(_pairs(query).to_numpy(), training)
        offending += _show(query, shared, label)
    return Check("no query rating in training", checked, "query ratings", offending)


def check_validation(tables: SplitTables) -> Check:
    val = tables.tables["validation"]
    entities = _distinct_texts(val["task"])
    offending = []
    for scenario, k in tables.evaluated:
        tested = _distinct_texts(tables.tables[task_table(scenario, k, "query")]["task"])
        offending += [
            f"{tables.task_axis} {e} in {scenario} {k_folder(k)}" for e in sorted(entities & tested)
        ]
    # the training entities made distinct first: matching the validation tasks against every
    # training rating would turn each rating's id into a Python string
    trained = sorted(entities & _distinct_texts(tables.tables["train"][tables.task_axis]))
    offending += [f"{tables.task_axis} {e} in training" for e in trained]
    return Check(
        "validation tasks apart from test tasks and training",
        len(entities),
        "validation tasks",
        offending,
    )


def check_statistics(tables: SplitTables, tolerance: float = 1e-9) -> Check:
    """The like threshold, rating scale, rating levels and item means given to learners against
    the same statistics of the training table."""
    stats, train = tables.statistics, tables.tables["train"]
    ratings = train["rating"].to_numpy(dtype=np.float64)
    offending: list[str] = []
    if stats.get("like_threshold_source") == LIKE_FROM_MEDIAN and len(ratings):
        median = float(np.median(ratings))
        # the split takes the median in float32, the rating's own precision
        if not math.isclose(stats["like_threshold"], median, rel_tol=1e-6, abs_tol=tolerance):
            offending.append(
                f"like threshold {stats['like_threshold']:g}, training median {median:g}"
            )
    if stats.get("rating_scale_from") != "declared" and len(ratings):
        low, high = float(ratings.min()), float(ratings.max())
        if [low, high] != [float(v) for v in stats["rating_scale"]]:
            offending.append(
                f"rating scale {stats['rating_scale']}, training range [{low:g}, {high:g}]"
            )
    levels = np.unique(ratings)
    given_levels = np.asarray(stats.get("rating_levels", levels), dtype=np.float64)
    extra = np.setdiff1d(given_levels, levels)
    if len(extra):
        offending.append(
            f"rating levels {', '.join(f'{v:g}' for v in extra[:SHOWN_IDS])} given but in no "
            f"training rating ({len(extra)} in all)"
        )
    given = tables.tables["item_means"].copy()
    given["item"] = given["item"].astype(str)
    expected = item_means(train["item"].astype(str), ratings)
    both = expected.merge(given, on="item", how="outer", suffixes=("", "_given"), indicator=True)
    differs = (both["_merge"] != "both") | (both["ratings"] != both["ratings_given"])
    differs |= ~np.isclose(both["mean"], both["mean_given"], rtol=tolerance, atol=tolerance)
    offending += [f"item {item} mean" for item in both.loc[differs, "item"]]
    checked = 3 + len(both)  # threshold, scale, levels, and one mean per item
    return Check(
        "statistics from training only",
        checked,
        "statistics",
        offending,
        "like threshold, rating scale, rating levels, item means",
    )


def check_query_across_k(tables: SplitTables) -> Check:
    by_scenario: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for scenario, k in tables.evaluated:
        query = tables.tables[task_table(scenario, k, "query")]
        by_scenario.setdefault(scenario, []).append((k_folder(k), query))
    offending, tasks = [], 0
    for scenario, queries in by_scenario.items():
        first_label, first = queries[0]
        tasks += first["task"].nunique() * len(queries)
        for label, query in queries[1:]:
            offending += [
                f"{scenario} task {t} ({first_label} vs {label})"
                for t in sorted(_tasks_whose_query_differs(first, query))
            ]
    return Check("query the same at every k", tasks, "task queries", offending)


def _tasks_whose_query_differs(first: pd.DataFrame, other: pd.DataFrame) -> set[str]:
    """The tasks with a (task, position) in one table and not the other, or another rating
    there. Tables that list the same (task, position) rows in the same order, each once (as a
    split's are), are compared row by row; any others through an outer join."""
    places = ["task", "position"]
    if (
        len(first) == len(other)
        and np.array_equal(first["position"].to_numpy(), other["position"].to_numpy())
        and np.array_equal(first["task"].to_numpy(), other["task"].to_numpy())
        and not first[places].isna().any().any()
        and not first.duplicated(places).any()
    ):
        differs = first["key"].to_numpy() != other["key"].to_numpy()
        return set(first.loc[differs, "task"].astype(str))
    both = first.merge(other, on=places, how="outer", suffixes=("", "_k"), indicator=True)
    differs = (both["_merge"] != "both") | (both["key"] != both["key_k"])
    return set(both.loc[differs, "task"].astype(str))


def check_cut_off(tables: SplitTables) -> Check:
    """Per task, its cut-off is its first query rating: no support rating and no training rating
    of the task's own entity may be later."""
    train = tables.tables["train"]
    axis = tables.task_axis
    latest_train = train.groupby(train[axis].astype(str))["timestamp"].max()
    offending, tasks = [], 0
    for label, support, query in _task_tables(tables):
        cut = query.groupby(query["task"].astype(str))["timestamp"].min()
        tasks += len(cut)
        last_support = support.groupby(support["task"].astype(str))["timestamp"].max()
        late = last_support.reindex(cut.index) > cut
        offending += [f"{label} task {t}: support after its query" for t in cut.index[late]]
        late = latest_train.reindex(cut.index) > cut
        offending += [f"{label} task {t}: training rating after its query" for t in cut.index[late]]
    return Check("nothing after a task's cut-off", tasks, "tasks", offending)


def audit(tables: SplitTables) -> list[Check]:
    """Every check of one split (the cut-off only where the protocol is temporal)."""
    tables = _keyed(tables)
    checks = [
        check_new_entities(tables),
        check_support_query(tables),
        check_queries_held_out(tables),
        check_validation(tables),
        check_statistics(tables),
        check_query_across_k(tables),
    ]
    if tables.temporal:
        checks.append(check_cut_off(tables))
    return checks


def summary(checks: list[Check]) -> dict[str, object]:
    """A compact record of an audit, kept with a split's summary."""
    return {
        "passed": all(c.passed for c in checks),
        "checks": {c.name: c.checked for c in checks},
        "failed": {c.name: len(c.offending) for c in checks if not c.passed},
    }
