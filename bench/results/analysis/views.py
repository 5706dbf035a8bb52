"""Do full and sampled ranking order the learners alike? Per table (dataset, protocol, scenario)
and line (k, device): Kendall's tau-b between the learners' mean of a full-ranking metric and of
the same metric under sampled ranking, and whether the two name the same best learner.

Sampled ranking is known to reorder models relative to full ranking (Krichene & Rendle, KDD
2020); this puts a number on it for each table instead of leaving it to the reader.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

from bench.evaluation.topn import parse_topn_name, topn_name
from bench.results.analysis.rank_tests import kendall_tau_b
from bench.results.analysis.summary import base_name


@dataclass(frozen=True)
class ViewAgreement:
    """How the learners' orders under full and sampled ranking of one metric agree."""

    metric: str
    sampled_metric: str
    tau: float
    learners: int
    best_full: str
    best_sampled: str

    @property
    def disagree(self) -> bool:
        return self.best_full != self.best_sampled

    def sentence(self) -> str:
        tau = "n/a" if math.isnan(self.tau) else f"{self.tau:+.2f}"
        text = (
            f"full vs sampled ranking ({self.metric} vs {self.sampled_metric}): Kendall τ = "
            f"{tau} over {self.learners} learners"
        )
        if self.disagree:
            return (
                f"{text}; they DISAGREE on the best learner: {self.best_full} (full), "
                f"{self.best_sampled} (sampled)"
            )
        return f"{text}; both rank {self.best_full} first"


def agreement_metric(metrics: Iterable[str]) -> tuple[str, str] | None:
    """The (full, sampled) metric pair to compare among ``metrics``: recall at the largest K that
    both views have, else NDCG; None without such a pair."""
    present = set(metrics)
    for measure in ("recall", "ndcg"):
        ks = sorted(
            {
                p[1]
                for name in present
                if (p := parse_topn_name(name)) and p[0] == measure and p[2] == "full"
            },
            reverse=True,
        )
        for k in ks:
            sampled = topn_name(measure, k, "sampled")
            if sampled in present:
                return topn_name(measure, k, "full"), sampled
    return None


def view_agreement(
    full: Mapping[str, float], sampled: Mapping[str, float], metric: str, sampled_metric: str
) -> ViewAgreement | None:
    """The agreement of two orders of the learners (means by learner, higher is better); None
    when fewer than two learners have both."""
    learners = sorted(
        n for n in full if n in sampled and not (math.isnan(full[n]) or math.isnan(sampled[n]))
    )
    if len(learners) < 2:
        return None
    a = [full[n] for n in learners]
    b = [sampled[n] for n in learners]
    tau = kendall_tau_b(a, b) if len(set(a)) > 1 and len(set(b)) > 1 else math.nan
    best_full = max(learners, key=lambda n: full[n])
    best_sampled = max(learners, key=lambda n: sampled[n])
    return ViewAgreement(metric, sampled_metric, tau, len(learners), best_full, best_sampled)


def agreements(
    means: pd.DataFrame, exclude: Iterable[str] = ()
) -> dict[tuple[str, ...], ViewAgreement]:
    """Per (dataset, protocol, scenario, k, device) of a frame of learner means (columns
    ``dataset, protocol, scenario, k, device, learner, metric, mean``): its agreement, where the
    frame holds a full and a sampled metric of the same measure and K. ``exclude`` names
    learners left out of the order (``oracle``), under every config (``oracle~1a2b3c``)."""
    pair = agreement_metric(means["metric"].unique()) if len(means) else None
    if pair is None:
        return {}
    left_out = means["learner"].map(base_name).isin(list(exclude))
    frame = means[means["metric"].isin(pair) & ~left_out]
    out = {}
    lines = ["dataset", "protocol", "scenario", "k", "device"]
    for key, group in frame.groupby(lines, sort=True):
        by = {
            m: dict(zip(g["learner"], g["mean"], strict=True)) for m, g in group.groupby("metric")
        }
        found = view_agreement(by.get(pair[0], {}), by.get(pair[1], {}), *pair)
        if found is not None:
            out[tuple(str(v) for v in key)] = found
    return out
