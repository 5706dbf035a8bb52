"""Every metric by slice of the test users (or items): activity buckets and rating coherence.

A suite that sets ``slices = ["activity", "coherence"]`` stores with each cell the attributes of
its task entities (:mod:`bench.protocol.slices`: how many ratings the split holds of the entity
outside its query, and their spread). Here the attributes meet the per-task values:

- :func:`slice_attributes`: one row per (cell, scenario, task entity) with its attributes;
- :func:`bucket_edges` / :func:`assign_buckets`: quantile buckets of an attribute, drawn once
  per (dataset, protocol, scenario) over the task entities of every seed, so a bucket means the
  same on every seed and for every learner;
- :func:`sliced_metrics`: per learner and bucket the metric on each seed, aggregated over the
  bucket's tasks as the metric aggregates over all tasks (``rmse``, ``mae`` and ``accuracy``
  pooled over the query ratings, the others averaged over the tasks they score), then the mean
  over seeds with its 95% t-interval.

Only clean evaluations are sliced (a perturbed label's tasks are the clean ones; the
robustness section shows those). Tasks whose attribute is undefined (coherence of an entity
without a rating outside its query) form their own bucket, so no task is silently dropped.

Stability: experimental.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.protocol.perturbation_labels import parse_label
from bench.protocol.slices import ATTRIBUTES
from bench.results.analysis.frames import Results
from bench.results.analysis.stats import t_interval
from bench.results.analysis.summary import learner_order

DEFAULT_BUCKETS = 3
UNDEFINED = -1
"""The bucket of tasks whose attribute is undefined."""
BUCKET_KEYS = ("dataset", "protocol", "scenario")
"""Buckets are drawn per scenario of a dataset and protocol, over every seed's task entities."""
ATTRIBUTE_COLUMNS = ("cell_key", "scenario", "entity", *ATTRIBUTES)
SLICE_COLUMNS = (
    "dataset",
    "protocol",
    "scenario",
    "k",
    "device",
    "learner",
    "metric",
    "attribute",
    "bucket",
    "low",
    "high",
    "mean",
    "half_width",
    "n_seeds",
    "n_tasks",
)
POOLED_SQUARED = ("rmse",)
POOLED_MEAN = ("mae", "accuracy")


def has_slices(results: Results) -> bool:
    """Whether any selected cell stored slice attributes."""
    return any(
        isinstance(summary, dict) and isinstance(summary.get("slices"), dict)
        for summary in results.cells.get("split_summary", pd.Series(dtype=object))
    )


def slice_attributes(results: Results) -> pd.DataFrame:
    """One row per (cell, scenario, task entity) with the attributes its cell stored
    (``ATTRIBUTE_COLUMNS``; NaN where an attribute was not stored or is undefined)."""
    parts = []
    cells = results.cells
    for cell_key, summary in zip(cells["cell_key"], cells["split_summary"], strict=True):
        stored = summary.get("slices") if isinstance(summary, dict) else None
        if not isinstance(stored, dict):
            continue
        for scenario, table in stored.items():
            if not isinstance(table, dict) or not isinstance(table.get("entities"), list):
                continue
            entities = [str(e) for e in table["entities"]]
            columns: dict[str, object] = {
                "cell_key": cell_key,
                "scenario": scenario,
                "entity": entities,
            }
            for name in ATTRIBUTES:
                values = table.get(name)
                if isinstance(values, list) and len(values) == len(entities):
                    columns[name] = pd.to_numeric(pd.Series(values, dtype=object), "coerce")
                else:
                    columns[name] = np.nan
            parts.append(pd.DataFrame(columns))
    if not parts:
        return pd.DataFrame(columns=list(ATTRIBUTE_COLUMNS))
    frame = pd.concat(parts, ignore_index=True)
    for name in ATTRIBUTES:
        frame[name] = frame[name].astype(np.float64)
    return frame[list(ATTRIBUTE_COLUMNS)]


def bucket_edges(values: np.ndarray, n_buckets: int = DEFAULT_BUCKETS) -> np.ndarray:
    """The inner edges of ``n_buckets`` quantile buckets of the finite ``values`` (fewer where
    ties make two quantiles equal): bucket b holds the values in (edge[b-1], edge[b]]."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if len(finite) == 0 or n_buckets < 2:
        return np.array([], dtype=np.float64)
    inner = np.quantile(finite, np.arange(1, n_buckets) / n_buckets, method="lower")
    return np.unique(inner[inner < finite.max()])


def assign_buckets(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each value's bucket index under ``edges`` (``UNDEFINED`` for NaN)."""
    values = np.asarray(values, dtype=np.float64)
    buckets = np.searchsorted(edges, values, side="left")
    return np.where(np.isfinite(values), buckets, UNDEFINED)


def pooled(metric: str, values: np.ndarray, n_ratings: np.ndarray) -> float:
    """A metric over a set of tasks from their per-task values, aggregated as the metric is over
    all tasks (NaN when no task is scored)."""
    v = np.asarray(values, dtype=np.float64)
    n = np.asarray(n_ratings, dtype=np.float64)
    keep = np.isfinite(v)
    if metric in (*POOLED_SQUARED, *POOLED_MEAN):
        keep &= n > 0
    if not keep.any():
        return float("nan")
    v, n = v[keep], n[keep]
    if metric in POOLED_SQUARED:
        return float(np.sqrt((n * v**2).sum() / n.sum()))
    if metric in POOLED_MEAN:
        return float((n * v).sum() / n.sum())
    return float(v.mean())


def bucketed_tasks(
    results: Results, attribute: str, metrics: tuple[str, ...], n_buckets: int = DEFAULT_BUCKETS
) -> pd.DataFrame:
    """The clean per-task rows of ``metrics`` with ``attribute``, ``bucket``, ``low`` and ``high``
    (the bucket's smallest and largest attribute value) columns; rows of cells without stored
    attributes are left out."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown slice attribute {attribute!r}; allowed: {', '.join(ATTRIBUTES)}")
    attributes = slice_attributes(results)
    per_task = results.per_task
    clean = per_task["scenario"].map(lambda s: parse_label(s)[1] is None).astype(bool)
    frame = per_task[clean & per_task["metric"].isin(metrics)]
    frame = frame.merge(
        attributes[["cell_key", "scenario", "entity", attribute]],
        on=["cell_key", "scenario", "entity"],
        how="inner",
    )
    if frame.empty:
        return frame.assign(bucket=pd.Series(dtype=np.int64), low=np.nan, high=np.nan)
    parts = []
    for _, group in frame.groupby(list(BUCKET_KEYS), sort=False):
        # one value per (seed, entity): the task entities every learner of a seed shares
        entities = group.drop_duplicates(["seed", "entity"])[attribute].to_numpy()
        edges = bucket_edges(entities, n_buckets)
        group = group.assign(bucket=assign_buckets(group[attribute].to_numpy(), edges))
        span = group.groupby("bucket")[attribute].agg(["min", "max"])
        parts.append(
            group.assign(
                low=group["bucket"].map(span["min"]), high=group["bucket"].map(span["max"])
            )
        )
    return pd.concat(parts, ignore_index=True)


def sliced_metrics(
    results: Results,
    attribute: str = "activity",
    metrics: tuple[str, ...] = ("rmse",),
    n_buckets: int = DEFAULT_BUCKETS,
) -> pd.DataFrame:
    """Per (dataset, protocol, scenario, k, device, learner, metric) and bucket of ``attribute``:
    the metric over the bucket's tasks, mean over seeds ± 95% t-interval (``SLICE_COLUMNS``);
    ``n_tasks`` is the bucket's tasks per seed, on average."""
    frame = bucketed_tasks(results, attribute, metrics, n_buckets)
    rows = []
    keys = ["dataset", "protocol", "scenario", "k", "device", "learner", "metric", "bucket"]
    for key, group in frame.groupby(keys, sort=False):
        row = dict(zip(keys, key, strict=True))
        per_seed = [
            (pooled(str(row["metric"]), s["value"].to_numpy(), s["n_ratings"].to_numpy()), len(s))
            for _, s in group.groupby("seed")
        ]
        interval = t_interval([value for value, _ in per_seed])
        rows.append(
            {
                **row,
                "attribute": attribute,
                "low": float(group["low"].iat[0]),
                "high": float(group["high"].iat[0]),
                "mean": interval.mean,
                "half_width": interval.half_width,
                "n_seeds": interval.n,
                "n_tasks": float(np.mean([n for _, n in per_seed])),
            }
        )
    out = pd.DataFrame(rows, columns=list(SLICE_COLUMNS))
    if out.empty:
        return out
    order = {name: i for i, name in enumerate(learner_order(results))}
    out = out.assign(_order=out["learner"].map(order), _bucket=out["bucket"].replace(-1, 10**6))
    by = ["dataset", "protocol", "scenario", "k", "device", "metric", "_order", "_bucket"]
    return (
        out.sort_values(by, kind="stable")
        .drop(columns=["_order", "_bucket"])
        .reset_index(drop=True)
    )
