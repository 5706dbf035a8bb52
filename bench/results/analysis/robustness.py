"""Robustness to corrupted support sets, from the perturbed evaluations of a store.

A perturbed evaluation is stored under the scenario label ``SCENARIO~KIND@STRENGTH``
(:mod:`bench.protocol.perturbations`); its clean counterpart, strength 0, is ``SCENARIO``. Here
the labels become columns (``scenario``, ``kind``, ``strength``) and every kind gets the clean
rows as its strength 0. On those:

- :func:`robustness_curves`: per learner the metric at each strength, mean over seeds with its
  95% t-interval, and ΔM(s) = M(s) − M(0) (per seed, then over seeds);
- :func:`degradation_slope`: the least-squares slope of ΔM against s through the origin,
  Σ s·ΔM / Σ s², per learner and seed, then over seeds;
- :func:`normalised_area`: the trapezoid area under ΔM(s) from 0 to the largest strength,
  divided by that strength: the mean degradation over the range, in the metric's units;
- :func:`breakdown_strength`: the first strength at which a learner's mean is worse than the
  support-blind baseline's at the same strength (NaN: never);
- :func:`paired_degradation`: per (table, k, kind, strength) every pair of learners on their
  per-task degradation (value at s minus the clean value, same task, same seed), Wilcoxon
  signed-rank, Holm-adjusted across the pairs of that family.

The floor learners (``floor-random``, ``floor-constant``) are left out of all of these: they
ignore the support set by construction.

Stability: experimental.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations, permutations

import numpy as np
import pandas as pd

from bench.evaluation.floors import is_floor
from bench.protocol.perturbation_labels import parse_label
from bench.results.analysis.frames import Results
from bench.results.analysis.stats import holm, paired_test, t_interval
from bench.results.analysis.summary import ALPHA, higher_is_better, learner_order

LINE_KEYS = ("dataset", "protocol", "scenario", "k", "device", "kind")
CURVE_COLUMNS = (
    *LINE_KEYS,
    "learner",
    "metric",
    "strength",
    "mean",
    "half_width",
    "delta",
    "delta_half_width",
    "n_seeds",
)
SLOPE_COLUMNS = (
    *LINE_KEYS,
    "learner",
    "metric",
    "slope",
    "slope_half_width",
    "area",
    "area_half_width",
    "breakdown",
    "baseline",
    "n_seeds",
)
PAIRED_COLUMNS = (
    *LINE_KEYS,
    "metric",
    "strength",
    "learner",
    "other",
    "n_pairs",
    "mean_diff",
    "diff_half_width",
    "p_value",
    "p_holm",
    "verdict",
)


def has_robustness(results: Results) -> bool:
    """Whether the store holds any perturbed evaluation."""
    return bool(results.metrics["scenario"].map(lambda s: parse_label(s)[1] is not None).any())


def with_strengths(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of the perturbed scenarios with ``scenario`` (the clean one), ``kind`` and
    ``strength`` columns; each clean row is repeated as strength 0 of every kind stored beside
    it. Scenarios without perturbed rows are left out, and so are the floor learners: they
    ignore the support by construction, so their flat lines would only crowd the tables and
    the verdicts."""
    frame = frame[~frame["learner"].map(is_floor).astype(bool)]
    parsed = frame["scenario"].map(parse_label)
    frame = frame.assign(
        scenario=[p[0] for p in parsed],
        kind=[p[1] for p in parsed],
        strength=[p[2] for p in parsed],
    )
    dirty = frame[frame["kind"].notna()]
    if dirty.empty:
        return frame.iloc[:0]
    parts = [dirty]
    for kind in sorted(set(dirty["kind"])):
        perturbed = set(dirty[dirty["kind"] == kind]["scenario"])
        clean = frame[frame["kind"].isna() & frame["scenario"].isin(perturbed)]
        parts.append(clean.assign(kind=kind))
    return pd.concat(parts, ignore_index=True)


def degradation_slope(strengths: np.ndarray, deltas: np.ndarray) -> float:
    """Least-squares slope through the origin of ΔM against s (NaN without a strength > 0)."""
    s = np.asarray(strengths, dtype=np.float64)
    d = np.asarray(deltas, dtype=np.float64)
    keep = np.isfinite(d)
    s, d = s[keep], d[keep]
    denominator = float((s * s).sum())
    return float((s * d).sum() / denominator) if denominator > 0 else float("nan")


def normalised_area(strengths: np.ndarray, deltas: np.ndarray) -> float:
    """Trapezoid area under ΔM(s) from 0 to the largest strength, over that strength (ΔM(0) = 0
    is added when strength 0 is missing)."""
    s = np.asarray(strengths, dtype=np.float64)
    d = np.asarray(deltas, dtype=np.float64)
    order = np.argsort(s)
    s, d = s[order], d[order]
    if len(s) == 0 or s[0] > 0:
        s, d = np.concatenate([[0.0], s]), np.concatenate([[0.0], d])
    if s[-1] <= 0 or not np.isfinite(d).all():
        return float("nan")
    return float(np.sum((s[1:] - s[:-1]) * (d[1:] + d[:-1]) / 2) / s[-1])


def breakdown_strength(
    strengths: np.ndarray, learner: np.ndarray, baseline: np.ndarray, higher_better: bool
) -> float:
    """The first strength (in increasing order) where ``learner`` is worse than ``baseline``."""
    order = np.argsort(np.asarray(strengths, dtype=np.float64))
    for i in order:
        a, b = float(learner[i]), float(baseline[i])
        if np.isfinite(a) and np.isfinite(b) and (a < b if higher_better else a > b):
            return float(strengths[i])
    return float("nan")


def _per_seed(frame: pd.DataFrame) -> pd.DataFrame:
    """Each seed's value and ΔM at every strength of one (line, learner, metric)."""
    clean = frame[frame["strength"] == 0].set_index("seed")["value"]
    frame = frame.assign(delta=frame["value"] - frame["seed"].map(clean))
    return frame


def robustness_curves(results: Results, metrics: tuple[str, ...] = ("rmse",)) -> pd.DataFrame:
    """Metric against strength per learner (``CURVE_COLUMNS``)."""
    frame = with_strengths(results.metrics[results.metrics["metric"].isin(metrics)])
    rows = []
    keys = [*LINE_KEYS, "learner", "metric"]
    for key, group in frame.groupby(keys, sort=False):
        group = _per_seed(group)
        for strength, at in group.groupby("strength"):
            value = t_interval(at["value"].to_numpy(dtype=np.float64))
            delta = t_interval(at["delta"].to_numpy(dtype=np.float64))
            rows.append(
                {
                    **dict(zip(keys, key, strict=True)),
                    "strength": float(strength),
                    "mean": value.mean,
                    "half_width": value.half_width,
                    "delta": delta.mean,
                    "delta_half_width": delta.half_width,
                    "n_seeds": value.n,
                }
            )
    return _sorted(pd.DataFrame(rows, columns=list(CURVE_COLUMNS)), results)


def robustness_summary(
    results: Results, metrics: tuple[str, ...] = ("rmse",), baseline: str = "item-mean"
) -> pd.DataFrame:
    """Per learner and line: slope and normalised area (mean over seeds ± 95% t-interval of the
    per-seed values) and the breakdown strength against ``baseline`` (``SLOPE_COLUMNS``)."""
    return _summary(results, metrics, baseline, robustness_curves(results, metrics))


def _summary(
    results: Results, metrics: tuple[str, ...], baseline: str, curves: pd.DataFrame
) -> pd.DataFrame:
    """:func:`robustness_summary` from its ``curves`` (:func:`robustness_curves`), which
    :func:`robustness_verdicts` needs too."""
    frame = with_strengths(results.metrics[results.metrics["metric"].isin(metrics)])
    rows = []
    keys = [*LINE_KEYS, "learner", "metric"]
    # The curves of each line and metric, split once rather than filtered for every learner.
    line_keys = [*LINE_KEYS, "metric"]
    lines = dict(iter(curves.groupby(line_keys, sort=False))) if len(curves) else {}
    for key, group in frame.groupby(keys, sort=False):
        row = dict(zip(keys, key, strict=True))
        group = _per_seed(group)
        slopes, areas = [], []
        for _, seed_rows in group.groupby("seed"):
            s = seed_rows["strength"].to_numpy(dtype=np.float64)
            d = seed_rows["delta"].to_numpy(dtype=np.float64)
            slopes.append(degradation_slope(s, d))
            areas.append(normalised_area(s, d))
        slope, area = t_interval(slopes), t_interval(areas)
        line = lines.get(tuple(row[column] for column in line_keys), curves.iloc[:0])
        mine = line[line["learner"] == row["learner"]].set_index("strength")["mean"]
        base = line[line["learner"].map(lambda v: v.split("~", 1)[0]) == baseline]
        breakdown = float("nan")
        if not base.empty and base["learner"].iat[0] != row["learner"]:
            base_means = base.set_index("strength")["mean"].reindex(mine.index)
            breakdown = breakdown_strength(
                mine.index.to_numpy(),
                mine.to_numpy(),
                base_means.to_numpy(),
                higher_is_better(str(row["metric"])),
            )
        rows.append(
            {
                **row,
                "slope": slope.mean,
                "slope_half_width": slope.half_width,
                "area": area.mean,
                "area_half_width": area.half_width,
                "breakdown": breakdown,
                "baseline": baseline if not base.empty else None,
                "n_seeds": slope.n,
            }
        )
    return _sorted(pd.DataFrame(rows, columns=list(SLOPE_COLUMNS)), results)


def paired_degradation(
    results: Results, metrics: tuple[str, ...] = ("rmse",), alpha: float = ALPHA
) -> pd.DataFrame:
    """Every pair of learners on their per-task degradation (``PAIRED_COLUMNS``): ``mean_diff``
    is the mean over paired (seed, task) of (learner's degradation − other's); ``verdict`` says
    which degrades less where the Holm-adjusted p is below ``alpha`` (``less``/``more``: the
    learner degrades less/more than the other), else ``same``."""
    per_task = results.per_task
    frame = with_strengths(per_task[per_task["metric"].isin(metrics)])
    rows = []
    for key, group in frame.groupby([*LINE_KEYS, "metric"], sort=False):
        family = dict(zip([*LINE_KEYS, "metric"], key, strict=True))
        wide = group.pivot_table(
            index=["seed", "entity"], columns=["strength", "learner"], values="value"
        )
        strengths = sorted(s for s in set(group["strength"]) if s > 0)
        learners = [x for x in learner_order(results) if x in set(group["learner"])]
        for strength in strengths:
            found = []
            # Each learner's per-task degradation at this strength, taken once for all its pairs.
            degradation = {
                learner: (wide[(strength, learner)] - wide[(0.0, learner)]).to_numpy()
                for learner in learners
                if (0.0, learner) in wide and (strength, learner) in wide
            }
            for a, b in combinations(learners, 2):
                if a in degradation and b in degradation:
                    found.append((a, b, paired_test(degradation[a], degradation[b])))
            adjusted = holm([t.p_value for *_, t in found])
            worse_up = not higher_is_better(str(family["metric"]))
            for (a, b, test), p in zip(found, adjusted, strict=True):
                verdict = "same"
                if p < alpha:
                    # degradation is the metric moving the wrong way
                    less = test.difference.mean < 0 if worse_up else test.difference.mean > 0
                    verdict = "less" if less else "more"
                rows.append(
                    {
                        **family,
                        "strength": float(strength),
                        "learner": a,
                        "other": b,
                        "n_pairs": test.n_pairs,
                        "mean_diff": test.difference.mean,
                        "diff_half_width": test.difference.half_width,
                        "p_value": test.p_value,
                        "p_holm": float(p),
                        "verdict": verdict,
                    }
                )
    return pd.DataFrame(rows, columns=list(PAIRED_COLUMNS))


def _sorted(frame: pd.DataFrame, results: Results) -> pd.DataFrame:
    if frame.empty:
        return frame
    order = {name: i for i, name in enumerate(learner_order(results))}
    keys = [c for c in ("dataset", "protocol", "scenario", "k", "device", "kind") if c in frame]
    frame = frame.assign(_order=frame["learner"].map(order))
    by = [*keys, "_order", *(["strength"] if "strength" in frame else [])]
    return frame.sort_values(by, kind="stable").drop(columns="_order").reset_index(drop=True)


VERDICT_COLUMNS = (*LINE_KEYS, "metric", "learner", "other", "verdict", "reason")
DEFAULT_DELTA = 0.01
"""How much worse A's clean error may be than B's for "A is more robust than B" (RMSE units)."""


def robustness_verdict(
    slope_a: float,
    slope_b: float,
    less_at_top: Sequence[bool],
    clean_a: float,
    clean_b: float,
    b_uses_support: bool,
    higher_better: bool = False,
    delta: float = DEFAULT_DELTA,
) -> tuple[str, str]:
    """The rule fixed before the run: "A is more robust than B" only if A's slope is lower
    (degrades more slowly), A degrades significantly less per task at each of the largest
    strengths (``less_at_top``), A's clean metric is no worse than B's by more than ``delta``,
    and B uses its support set. Returns (verdict, reason): ``more robust``, ``flatter but less
    accurate`` or ``no difference``."""
    sign = -1.0 if higher_better else 1.0  # degradation is the metric moving the wrong way
    flatter = math.isfinite(slope_a) and math.isfinite(slope_b) and sign * slope_a < sign * slope_b
    if not flatter:
        return "no difference", "A's slope is not lower"
    if not less_at_top or not all(less_at_top):
        return "no difference", "A does not degrade significantly less at the largest strengths"
    if not b_uses_support:
        return "no difference", "B ignores its support set"
    if sign * (clean_a - clean_b) > delta:
        return (
            "flatter but less accurate",
            f"A's clean error is worse than B's by more than {delta:g}",
        )
    return "more robust", "every condition holds"


def robustness_verdicts(
    results: Results,
    metric: str = "rmse",
    baseline: str = "item-mean",
    delta: float = DEFAULT_DELTA,
    alpha: float = ALPHA,
    top: int = 2,
) -> pd.DataFrame:
    """The rule of :func:`robustness_verdict` for every ordered pair of learners per (line,
    kind) (``VERDICT_COLUMNS``). B uses its support set when its clean per-task values differ
    significantly from ``baseline``'s (paired Wilcoxon, p < ``alpha``); the baseline itself does
    not."""
    curves = robustness_curves(results, (metric,))
    summary = _summary(results, (metric,), baseline, curves)
    paired = paired_degradation(results, (metric,), alpha)
    per_task = results.per_task
    clean = per_task[(per_task["metric"] == metric)]
    higher = higher_is_better(metric)
    rows = []
    for key, group in summary.groupby(list(LINE_KEYS), sort=False):
        where = dict(zip(LINE_KEYS, key, strict=True))
        tests = paired
        for column, value in where.items():
            tests = tests[tests[column] == value]
        strengths = sorted(set(tests["strength"]))[-top:]
        zero = curves
        for column, value in where.items():
            zero = zero[zero[column] == value]
        zero = zero[zero["strength"] == 0].set_index("learner")["mean"]
        tasks = clean[
            (clean["dataset"] == where["dataset"])
            & (clean["protocol"] == where["protocol"])
            & (clean["scenario"] == where["scenario"])
            & (clean["k"] == where["k"])
            & (clean["device"] == where["device"])
        ].pivot_table(index=["seed", "entity"], columns="learner", values="value")
        slopes = group.set_index("learner")["slope"]
        # The first paired test of each (strength, learner, other), looked up per pair below.
        verdicts: dict[tuple[float, str, str], str] = {}
        columns = (tests["strength"], tests["learner"], tests["other"], tests["verdict"])
        for found in zip(*columns, strict=True):
            verdicts.setdefault((found[0], found[1], found[2]), found[3])
        base = [c for c in tasks.columns if c.split("~", 1)[0] == baseline]
        used: dict[str, bool] = {}  # B uses its support: one test per B, whatever A is
        for a, b in permutations(list(slopes.index), 2):
            if b not in used:
                used[b] = b.split("~", 1)[0] != baseline
                if used[b] and base and b in tasks.columns:
                    test = paired_test(tasks[b].to_numpy(), tasks[base[0]].to_numpy())
                    used[b] = bool(test.p_value < alpha)
            uses = used[b]
            less = []
            for s in strengths:
                if (s, a, b) in verdicts:
                    less.append(verdicts[s, a, b] == "less")
                elif (s, b, a) in verdicts:
                    less.append(verdicts[s, b, a] == "more")
            verdict, reason = robustness_verdict(
                float(slopes[a]),
                float(slopes[b]),
                less,
                float(zero.get(a, np.nan)),
                float(zero.get(b, np.nan)),
                uses,
                higher,
                delta,
            )
            rows.append(
                {
                    **where,
                    "metric": metric,
                    "learner": a,
                    "other": b,
                    "verdict": verdict,
                    "reason": reason,
                }
            )
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))
