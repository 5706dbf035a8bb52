"""The report's closing section: what each statistic and symbol on the page means."""

from __future__ import annotations

from collections.abc import Sequence

from bench.results.analysis.frames import LOAD_MARGIN
from bench.results.analysis.summary import SPREAD_FLAG
from bench.results.report.coverage import LEFT_OUT_WARNING
from bench.results.report.document import Bullets, Section
from bench.results.report.formatting import BETTER, WORSE
from bench.results.report.ranking import footer_items


def statistics_section(
    reference: str,
    alpha: float,
    unranked: Sequence[str],
    baselines: Sequence[str],
    metrics: list[str],
) -> Section:
    """The page's closing section: what every statistic and symbol means."""
    items = (
        "**Mean ± half-width**: the mean over seeds of each seed's value, and the half-width "
        "of its 95% Student-t interval over seeds (t with n−1 degrees of freedom times the "
        "standard error). Seeds re-draw the split, the tasks and the learners' "
        "initialisation, so this is the spread a re-run shows; a bootstrap over the tasks "
        "of one seed would leave that out. With one seed no interval is shown.",
        "**Seed values**: `rmse`, `mae` and `accuracy` pool every query rating of a seed; "
        "`ndcg@k` and `auc` average over the tasks they can score. NDCG ranks each task's "
        "query items by predicted rating, with the gain the *Setting* table names (2^r − 1 "
        "unless a suite chose r). Accuracy counts a like as a rating at or above the like "
        "threshold of the *Setting* table (the split's), a predicted like as a prediction "
        "at or above the threshold minus an eighth of the rating scale's span.",
        f"**{BETTER} / {WORSE}**: significantly better / worse than `{reference}`. The "
        "paired test takes each task evaluated by both learners on the same seed (tasks are "
        "matched by the task entity's own id), and applies the two-sided Wilcoxon "
        "signed-rank test (zero differences dropped; as scipy computes it: exact up to 50 "
        "pairs without ties or zeros, every sign pattern counted up to 13 pairs with them, "
        "else the normal approximation with the tie correction) to the per-task differences "
        "of all seeds. "
        "The p-values of the learners of one column and support size are adjusted with "
        f"Holm's step-down method; significant means adjusted p < {alpha:g}, and the "
        "direction is the sign of the mean difference.",
        "**Δ**: the mean over paired tasks of (learner − reference) of the per-task values, "
        "± the half-width of its 95% t-interval. For pooled metrics the per-task value is "
        "the task's own RMSE, MAE or accuracy, so Δ need not equal the difference of the "
        "pooled table means.",
        "**Bold**: the best learner of the column at that support size (by the mean over "
        f"seeds; {', '.join(unranked) or 'no learner'} excluded from ranking). *Italic*: "
        "not significantly worse than the best (the same paired test against the best, "
        "Holm-adjusted across the column).",
        "**Best meta-learner**: the best mean among the learners that are not baselines "
        f"({', '.join(baselines)}).",
        "**Coverage**: tasks evaluated per seed; candidates left out because their pool "
        "could not hold the largest support set plus the query; tasks a metric could not "
        "score (NDCG with fewer than two query ratings, AUC without both a liked and a "
        f"disliked rating). ⚠ marks a scenario that left out {LEFT_OUT_WARNING:.0%} or more.",
        "**Timing flags**: *under load* when the 1-minute load average at a phase's start "
        f"exceeded the run's own torch threads by {LOAD_MARGIN:.0%} of the machine's CPUs or "
        "more; *several hosts* when one learner was timed on different machines (each host "
        f"gets its own row); *vary* when the slowest fit took {SPREAD_FLAG:g}× the fastest "
        "or more. GPU/CPU is the GPU figure divided by the CPU figure: below 1 for fit "
        "seconds and above 1 for tasks per second mean the GPU was faster.",
        *footer_items(metrics),
    )
    return Section("Statistics and symbols", [Bullets(items)], anchor="statistics")
