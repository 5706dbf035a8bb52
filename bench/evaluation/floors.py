"""Floors: what a ranking metric gives without any knowledge of the items, on the same tasks.

- ``floor-random``: the expected metric under a uniformly random order of each task's items. It
  predicts one score for every item and is scored under the ``expected`` tie policy whatever the
  suite's, so the metric code computes that expectation exactly (by a closed form; a metric
  without one falls back on :func:`bench.evaluation.ranking.shuffled_expectation`).
- ``floor-constant``: the same single score, scored under the suite's tie policy: it shows what
  the tie policy alone earns (under ``expected`` the two floors coincide).

Both are ordinary learners (:mod:`bench.evaluation.floor_learners`): they run as cells beside every other learner, so their per-task values
pair with every learner's on the same tasks of the same seeds, and every table, export and paired
test handles them like any learner. Their rating metrics (RMSE...) are those of the training mean.
A learner that is not significantly above the higher of the two floors on a ranking metric is
*at floor* there (:func:`at_floor`). A ranking metric added elsewhere (a full or sampled candidate
ranking) joins by honouring ``Queries.tie_policy`` or its own equivalent: the floors then apply
to it unchanged, since they only fix the predictions and the policy.
"""

from __future__ import annotations

from collections.abc import Mapping

from bench.evaluation.ranking import DEFAULT_TIE_POLICY

RANDOM_FLOOR = "floor-random"
CONSTANT_FLOOR = "floor-constant"
FLOOR_POLICIES: Mapping[str, str | None] = {RANDOM_FLOOR: DEFAULT_TIE_POLICY, CONSTANT_FLOOR: None}
"""Each floor learner and the tie policy it is scored under (None: the suite's)."""
FLOORS: tuple[str, ...] = tuple(FLOOR_POLICIES)


def is_floor(learner: str) -> bool:
    """Whether a learner name or label (``floor-random~1a2b``) is a floor."""
    return learner.split("~", 1)[0] in FLOOR_POLICIES


def scoring_tie_policy(learner: str, suite_policy: str) -> str:
    """The tie policy a learner's predictions are scored under."""
    return FLOOR_POLICIES.get(learner) or suite_policy
