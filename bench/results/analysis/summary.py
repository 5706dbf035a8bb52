"""Summaries of :class:`~bench.results.analysis.frames.Results`: metric means with intervals, paired tests
against a reference learner and against the best learner of each column, timings and coverage.

A *table* is one (dataset, protocol, scenario); inside it learners are compared at the same
support size ``k`` and on the same device, metric by metric. Each such (table, k, device, metric)
is one family of tests, which the Holm correction treats together.

Stability: stable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.evaluation.metrics import DEFAULT_METRICS, METRICS
from bench.results.analysis.frames import Results, k_order, scenario_order
from bench.results.analysis.pairs import FAMILY_KEYS, TABLE_KEYS, PairedFamilies, row_groups
from bench.results.analysis.stats import holm, t_interval

SUMMARY_COLUMNS = (
    *TABLE_KEYS,
    "k",
    "learner",
    "device",
    "metric",
    "mean",
    "half_width",
    "ci_low",
    "ci_high",
    "n_seeds",
    "n_tasks",
    "n_unscored",
    "higher_is_better",
)
COMPARISON_COLUMNS = (
    *FAMILY_KEYS,
    "learner",
    "reference",
    "n_pairs",
    "mean_diff",
    "diff_half_width",
    "diff_low",
    "diff_high",
    "statistic",
    "p_value",
    "p_holm",
    "verdict",
)
MARK_COLUMNS = (*FAMILY_KEYS, "learner", "is_best", "not_worse", "n_pairs", "p_vs_best")
ALPHA = 0.05


def higher_is_better(metric: str) -> bool:
    """The metric's direction (lower is better for ``rmse`` and ``mae``)."""
    return METRICS.get(metric).higher_is_better if metric in METRICS else True


def base_name(label: str) -> str:
    """A learner label without its config suffix (``mf~1a2b3c`` -> ``mf``)."""
    return label.split("~", 1)[0]


def learner_order(results: Results) -> list[str]:
    """Learners in the order the runs' suites list them, then any others by name."""
    order: list[str] = []
    for config in results.runs.get("config", pd.Series(dtype=object)):
        for name in config.get("learners", []):
            if name not in order:
                order.append(name)
    labels = sorted(set(results.cells["learner"]))

    def rank(label: str) -> tuple[int, str]:
        name = base_name(label)
        return (order.index(name) if name in order else len(order), label)

    return sorted(labels, key=rank)


def sort_rows(frame: pd.DataFrame, learners: Sequence[str]) -> pd.DataFrame:
    """Sort by table, k, learner order and device (whichever of these columns exist)."""
    if frame.empty:
        return frame.reset_index(drop=True)
    place = {name: i for i, name in reversed(list(enumerate(learners)))}
    keys: list[tuple[str, Any]] = [
        ("dataset", None),
        ("protocol", None),
        ("scenario", scenario_order),
        ("k", k_order),
        ("learner", lambda v: place.get(v, len(learners))),
        ("device", None),
        ("metric", lambda v: DEFAULT_METRICS.index(v) if v in DEFAULT_METRICS else 99),
        ("seed", None),
    ]
    # Each column's sort keys as plain Python values, computed once per distinct value
    columns = []
    for name, key in keys:
        if name not in frame.columns:
            continue
        values = frame[name].tolist()
        if key is not None:
            found: dict[Any, Any] = {}
            values = [found[v] if v in found else found.setdefault(v, key(v)) for v in values]
        columns.append(values)
    rows = list(zip(*columns, strict=True))
    order = sorted(range(len(frame)), key=rows.__getitem__)
    return frame.iloc[order].reset_index(drop=True)


def summarise(results: Results) -> pd.DataFrame:
    """Mean over seeds and 95% t-interval of every metric (``SUMMARY_COLUMNS``).

    One row per (dataset, protocol, scenario, k, learner, device, metric); ``n_seeds`` counts the
    seeds with a value, ``n_tasks`` and ``n_unscored`` sum the scored and unscorable tasks over
    them.
    """
    rows = []
    keys = [*TABLE_KEYS, "k", "learner", "device", "metric"]
    metrics = results.metrics
    values = metrics["value"].to_numpy(dtype=np.float64)
    scored = metrics["n_scored"].to_numpy()
    unscored = metrics["n_unscored"].to_numpy()
    for key, at in row_groups(metrics, keys):
        interval = t_interval(values[at])
        row = dict(zip(keys, key, strict=True))
        row.update(
            mean=interval.mean,
            half_width=interval.half_width,
            ci_low=interval.low,
            ci_high=interval.high,
            n_seeds=interval.n,
            n_tasks=int(scored[at].sum()),
            n_unscored=int(unscored[at].sum()),
            higher_is_better=higher_is_better(str(key[-1])),
        )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return sort_rows(frame, learner_order(results))


def paired_families(results: Results) -> Iterator[tuple[dict[str, Any], pd.DataFrame]]:
    """Each (table, k, device, metric) with its per-task values side by side: one row per
    (seed, task entity), one column per learner (NaN where a learner did not score the task).

    A frame per family, through ``DataFrame.pivot``: the comparisons below read the same tables
    from :class:`~bench.results.analysis.pairs.PairedFamilies`, built for all families at once.
    """
    per_task = results.per_task
    for key, group in per_task.groupby(list(FAMILY_KEYS), sort=False):
        wide = group.pivot(index=["seed", "entity"], columns="learner", values="value")
        yield dict(zip(FAMILY_KEYS, key, strict=True)), wide


def resolve_reference(labels: Sequence[str], reference: str) -> str | None:
    """The learner label ``reference`` names among ``labels``: an exact label, or the one label
    with that base name; None when absent or ambiguous."""
    if reference in labels:
        return reference
    matches = [label for label in labels if base_name(label) == reference]
    return matches[0] if len(matches) == 1 else None


def _favours(diff: float, metric: str) -> bool:
    """Whether a difference (learner minus other) favours the learner."""
    return diff > 0 if higher_is_better(metric) else diff < 0


def compare_to_reference(
    results: Results,
    reference: str = "mf",
    alpha: float = ALPHA,
    *,
    pairs: PairedFamilies | None = None,
) -> pd.DataFrame:
    """Every learner against ``reference`` on the same tasks of the same seeds
    (``COMPARISON_COLUMNS``).

    ``mean_diff`` is the mean over the paired tasks of (learner - reference), with its
    t-interval; ``p_value`` comes from the Wilcoxon signed-rank test on those differences and
    ``p_holm`` is Holm-adjusted across the learners of the family. ``verdict`` is ``better`` or
    ``worse`` (in the metric's direction) where ``p_holm < alpha``, else ``same``. Families
    without the reference are left out. ``pairs``, where given, holds the families' values and
    the tests already run (it is built from ``results`` otherwise).
    """
    pairs = PairedFamilies(results) if pairs is None else pairs
    rows = []
    for index, found_family in pairs:
        family = found_family.key
        ref = resolve_reference(found_family.learners, reference)
        if ref is None:
            continue
        found = [
            (learner, pairs.test(index, learner, ref))
            for learner in found_family.learners
            if learner != ref
        ]
        adjusted = holm([t.p_value for _, t in found])
        for (learner, test), p_holm in zip(found, adjusted, strict=True):
            diff = test.difference
            verdict = "same"
            if p_holm < alpha:
                verdict = "better" if _favours(diff.mean, family["metric"]) else "worse"
            rows.append(
                {
                    **family,
                    "learner": learner,
                    "reference": ref,
                    "n_pairs": test.n_pairs,
                    "mean_diff": diff.mean,
                    "diff_half_width": diff.half_width,
                    "diff_low": diff.low,
                    "diff_high": diff.high,
                    "statistic": test.statistic,
                    "p_value": test.p_value,
                    "p_holm": float(p_holm),
                    "verdict": verdict,
                }
            )
    frame = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    return sort_rows(frame, learner_order(results))


def best_marks(
    results: Results,
    summary: pd.DataFrame,
    alpha: float = ALPHA,
    unranked: Sequence[str] = ("oracle",),
    *,
    pairs: PairedFamilies | None = None,
) -> pd.DataFrame:
    """In each (table, k, device, metric): the best learner by mean over seeds, and which learners
    are not significantly worse than it (``MARK_COLUMNS``).

    Each ranked learner is tested against the best on their paired per-task values (Wilcoxon
    signed-rank, Holm-adjusted across the learners of the family); it is *not worse* unless the
    adjusted p-value is below ``alpha`` with the difference in the best's favour. Learners named
    in ``unranked`` (by base name; ``oracle`` knows the true ratings) take no part. ``pairs``
    as for :func:`compare_to_reference`.
    """
    # A plain mapping: looked up once per (family, learner), a MultiIndex was the slow part
    means = {
        tuple(row[:-1]): float(row[-1])
        for row in summary[[*FAMILY_KEYS, "learner", "mean"]].itertuples(index=False, name=None)
    }
    pairs = PairedFamilies(results) if pairs is None else pairs
    rows = []
    for index, found_family in pairs:
        family = found_family.key
        key = tuple(family[k] for k in FAMILY_KEYS)
        ranked = [
            learner
            for learner in found_family.learners
            if base_name(learner) not in unranked
            and np.isfinite(means.get((*key, learner), float("nan")))
        ]
        best = None
        if ranked:
            values = [means[(*key, learner)] for learner in ranked]
            pick = np.argmax(values) if higher_is_better(family["metric"]) else np.argmin(values)
            best = ranked[int(pick)]
        others = [learner for learner in ranked if learner != best]
        tests = [pairs.test(index, o, str(best)) for o in others]
        adjusted = dict(zip(others, holm([t.p_value for t in tests]), strict=True))
        tested = dict(zip(others, tests, strict=True))
        for learner in found_family.learners:
            row = {**family, "learner": learner, "is_best": learner == best}
            if learner == best:
                scored = int(np.count_nonzero(~np.isnan(found_family.column(learner))))
                row.update(not_worse=True, n_pairs=scored, p_vs_best=1.0)
            elif learner in tested:
                test, p = tested[learner], float(adjusted[learner])
                worse = p < alpha and not _favours(test.difference.mean, family["metric"])
                row.update(not_worse=not worse, n_pairs=test.n_pairs, p_vs_best=p)
            else:
                row.update(not_worse=False, n_pairs=0, p_vs_best=float("nan"))
            rows.append(row)
    frame = pd.DataFrame(rows, columns=list(MARK_COLUMNS))
    return sort_rows(frame, learner_order(results))


def best_of(
    summary: pd.DataFrame, comparisons: pd.DataFrame, contenders: Sequence[str]
) -> pd.DataFrame:
    """Per (table, k, device, metric): the contender with the best mean over seeds, with its
    comparison against the reference (the row of ``comparisons``) joined on."""
    pool = summary[summary["learner"].map(base_name).isin(contenders)]
    pool = pool[np.isfinite(pool["mean"].astype(float))]
    if pool.empty:
        extra = [c for c in COMPARISON_COLUMNS if c not in (*FAMILY_KEYS, "learner")]
        return pd.DataFrame(columns=[*FAMILY_KEYS, "learner", "mean", "half_width", *extra])
    picks = []
    for _, group in pool.groupby(list(FAMILY_KEYS), sort=False):
        best = (
            group["mean"].idxmax() if group["higher_is_better"].iat[0] else group["mean"].idxmin()
        )
        picks.append(group.loc[best])
    chosen = pd.DataFrame(picks)[[*FAMILY_KEYS, "learner", "mean", "half_width"]]
    return chosen.merge(
        comparisons, on=[*FAMILY_KEYS, "learner"], how="left", validate="one_to_one"
    ).reset_index(drop=True)


TIMING_SUMMARY_COLUMNS = (
    "dataset",
    "protocol",
    "learner",
    "device",
    "host",
    "n_fits",
    "fit_s_median",
    "fit_s_min",
    "fit_s_max",
    "fit_cpu_s_median",
    "predict_tasks",
    "predict_s",
    "tasks_per_s",
    "rank_s",
    "peak_memory_bytes",
    "memory_kind",
    "torch_threads",
    "cpus",
    "load_max",
    "n_phases",
    "n_under_load",
    "mixed_hosts",
    "spread",
)
SPREAD_FLAG = 2.0
"""Fit times of one learner whose slowest is this many times the fastest are flagged."""


def timing_summary(results: Results) -> pd.DataFrame:
    """Per (dataset, protocol, learner, device, host) (``TIMING_SUMMARY_COLUMNS``).

    Fit seconds as median, min and max over seeds (not a mean: one slow fit on a busy machine
    would drag it); adapt+predict throughput as all tasks over all seconds; ``rank_s`` the
    seconds spent ranking the catalogue (full and sampled top-N; 0 without); the largest peak
    memory. ``n_under_load`` counts phases started under load; ``mixed_hosts`` marks a learner
    timed on several machines (each gets its own row, never an average); ``spread`` is the
    slowest fit over the fastest.
    """
    t = results.timings
    if t.empty:
        return pd.DataFrame(columns=list(TIMING_SUMMARY_COLUMNS))
    hosts = t.groupby(["dataset", "protocol", "learner", "device"])["host"].nunique()
    rows = []
    keys = ["dataset", "protocol", "learner", "device", "host"]
    for key, group in t.groupby(keys, sort=False):
        fit = group[group["phase"] == "fit"]
        predict = group[group["phase"] == "adapt+predict"]
        rank_s = float(group[group["phase"] == "rank"]["seconds"].sum())
        seconds = fit["seconds"].to_numpy(dtype=np.float64)
        predict_s = float(predict["seconds"].sum())
        tasks = int(predict["tasks"].sum())
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "n_fits": len(fit),
                "fit_s_median": float(np.median(seconds)) if len(seconds) else np.nan,
                "fit_s_min": float(seconds.min()) if len(seconds) else np.nan,
                "fit_s_max": float(seconds.max()) if len(seconds) else np.nan,
                "fit_cpu_s_median": float(fit["cpu_seconds"].median()) if len(fit) else np.nan,
                "predict_tasks": tasks,
                "predict_s": predict_s,
                "tasks_per_s": tasks / predict_s if predict_s > 0 else np.nan,
                "rank_s": rank_s,
                "peak_memory_bytes": int(group["peak_memory_bytes"].max()),
                "memory_kind": ", ".join(sorted(set(group["memory_kind"]))),
                "torch_threads": ", ".join(str(v) for v in sorted(set(group["torch_threads"]))),
                "cpus": int(group["cpus"].max()),
                "load_max": float(group["load_1m"].max()),
                "n_phases": len(group),
                "n_under_load": int(group["under_load"].sum()),
                "mixed_hosts": bool(hosts.loc[key[:4]] > 1),
                "spread": float(seconds.max() / seconds.min())
                if len(seconds) and seconds.min() > 0
                else np.nan,
            }
        )
    frame = pd.DataFrame(rows, columns=list(TIMING_SUMMARY_COLUMNS))
    return sort_rows(frame, learner_order(results))


def unscorable(results: Results) -> pd.DataFrame:
    """Per (dataset, protocol, scenario, seed, metric): tasks evaluated and tasks the metric could
    not score (the most over learners, support sizes and devices: these depend on the query)."""
    m = results.metrics
    columns = [*TABLE_KEYS, "seed", "metric", "n_tasks", "n_unscored"]
    if m.empty:
        return pd.DataFrame(columns=columns)
    frame = (
        m.groupby([*TABLE_KEYS, "seed", "metric"], sort=False)[["n_tasks", "n_unscored"]]
        .max()
        .reset_index()
    )
    return sort_rows(frame[columns], learner_order(results))
