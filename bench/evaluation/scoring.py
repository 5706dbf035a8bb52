"""Scoring a learner's predictions for a batch of tasks: the one path that both the evaluation of
a scenario's test tasks and the tuning objective on validation tasks go through, so a tuned value
means what a reported value means."""

from __future__ import annotations

import numpy as np
import torch

from bench.data.dataset import Dataset
from bench.evaluation.metrics import MetricValue, Queries, evaluate
from bench.evaluation.ranking import DEFAULT_TIE_POLICY, THRESHOLD_RELEVANCE, RelevanceRule
from bench.protocol.episodes import TaskBatch


def score(
    labelled: TaskBatch,
    predicted: torch.Tensor,
    metrics: tuple[str, ...],
    *,
    dataset: Dataset,
    like_threshold: float,
    gain: str,
    learner: str,
    where: str,
    tie_policy: str = DEFAULT_TIE_POLICY,
    relevance: RelevanceRule = THRESHOLD_RELEVANCE,
) -> dict[str, MetricValue]:
    """The ``metrics`` of ``predicted`` against the query ratings of ``labelled``'s tasks."""
    queries = scored_queries(
        labelled,
        predicted,
        dataset=dataset,
        like_threshold=like_threshold,
        gain=gain,
        learner=learner,
        where=where,
        tie_policy=tie_policy,
        relevance=relevance,
    )
    return evaluate(queries, metrics)


def scored_queries(
    labelled: TaskBatch,
    predicted: torch.Tensor,
    *,
    dataset: Dataset,
    like_threshold: float,
    gain: str,
    learner: str,
    where: str,
    tie_policy: str = DEFAULT_TIE_POLICY,
    relevance: RelevanceRule = THRESHOLD_RELEVANCE,
) -> Queries:
    """``predicted`` beside the query ratings of ``labelled``'s tasks, ready to score.

    Predictions of the wrong shape or non-finite ratings are an error naming the learner and
    ``where`` (the tasks' scenario and k)."""
    expected = tuple(labelled.query_items.shape)
    if tuple(predicted.shape) != expected:
        raise ValueError(
            f"learner {learner!r} returned predictions of shape {tuple(predicted.shape)}, "
            f"expected {expected} ({where})"
        )
    assert labelled.query_ratings is not None, "scoring needs the tasks' query labels"
    queries = Queries(
        predicted=predicted.detach().float().cpu().numpy().astype(np.float64),
        actual=labelled.query_ratings.numpy().astype(np.float64),
        mask=labelled.query_mask.numpy(),
        like_threshold=like_threshold,
        rating_scale=dataset.rating_scale,
        gain=gain,
        tie_policy=tie_policy,
        relevance=relevance,
    )
    if not np.isfinite(queries.predicted[queries.mask]).all():
        raise ValueError(f"learner {learner!r} predicted non-finite ratings ({where})")
    return queries
