"""Attributions of cold-start predictions: to feature fields, to support ratings, and how
adaptation changes them.

Field attributions use Captum (the ``explain`` extra) on a learner's :class:`FieldView`, with one
feature group per field and each field's baseline its frequency-weighted mean ("unknown"):

- ``ablation``: the prediction minus the prediction with the field set to its baseline;
- ``shapley-sampled``: Shapley values over fields from random field orders (seeded);
- ``shapley``: exact Shapley values over every order of the fields (at most
  :data:`MAX_EXACT_FIELDS` fields); they sum to f(x) - f(baseline).

Support attributions say how much each support rating moved a prediction: the prediction minus
the prediction after re-adapting without that rating (a learner with an exact form gives it
through :class:`ExplainsSupport`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from bench.errors import ConfigError
from bench.protocol.episodes import TaskBatch
from bench.protocol.explaining import ExplainsFields, ExplainsSupport, FieldView

METHODS = ("ablation", "shapley-sampled", "shapley")
MAX_EXACT_FIELDS = 8
"""Exact Shapley values evaluate F * F! field orders; beyond 8 fields that is too many."""
DEFAULT_SAMPLES = 25
"""Random field orders of ``shapley-sampled``."""
NO_FIELDS = "not applicable: no feature fields"
NO_FIELDS_EXPOSED = f"{NO_FIELDS} exposed for attribution"
"""Said of a learner that does not open its model at its fields (it may still take features)."""


def _captum() -> Any:
    try:
        import captum.attr
    except ImportError as exc:  # an optional extra
        raise ConfigError(
            "field attributions need Captum: pip install 'coldstart-bench[explain]'"
        ) from exc
    return captum.attr


def fields_of(learner: Any) -> tuple[str, ...]:
    """The feature fields a fitted learner's model takes (empty: it cannot be explained by
    fields)."""
    return learner.feature_fields() if isinstance(learner, ExplainsFields) else ()


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Captum draws field orders from torch's global generator: fork it and seed it, so the same
    seed gives the same attributions and the caller's stream is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def field_attributions(
    view: FieldView, method: str = "ablation", *, samples: int = DEFAULT_SAMPLES, seed: int = 0
) -> torch.Tensor:
    """``[N, F]``: each row's attribution to each field, in rating units."""
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "shapley" and view.n_fields > MAX_EXACT_FIELDS:
        raise ConfigError(
            f"exact Shapley values need at most {MAX_EXACT_FIELDS} fields; the model takes "
            f"{view.n_fields} (use shapley-sampled)"
        )
    n = view.inputs.shape[0]
    if n == 0:
        return torch.zeros(0, view.n_fields)
    attr = _captum()
    mask = view.groups.unsqueeze(0)
    baselines = view.baseline if view.baseline.dim() == 2 else view.baseline.expand(n, -1)
    with torch.no_grad(), _seeded(seed):
        if method == "ablation":
            found = attr.FeatureAblation(view.forward).attribute(
                view.inputs, baselines=baselines, feature_mask=mask
            )
        elif method == "shapley-sampled":
            found = attr.ShapleyValueSampling(view.forward).attribute(
                view.inputs, baselines=baselines, feature_mask=mask, n_samples=samples,
                perturbations_per_eval=view.n_fields,
            )  # fmt: skip
        else:
            found = attr.ShapleyValues(view.forward).attribute(
                view.inputs, baselines=baselines, feature_mask=mask,
                perturbations_per_eval=min(720, _factorial(view.n_fields)),
            )  # fmt: skip
    first = torch.stack([torch.nonzero(view.groups == f)[0, 0] for f in range(view.n_fields)])
    return found[:, first].detach()


def _factorial(n: int) -> int:
    out = 1
    for k in range(2, n + 1):
        out *= k
    return out


def baseline_prediction(view: FieldView) -> torch.Tensor:
    """``[N]``: each row's prediction with every field at its baseline."""
    keep = torch.zeros(view.n_fields, dtype=torch.bool)
    return view.forward(view.masked(keep))


def per_task(view: FieldView, attributions: torch.Tensor, n_tasks: int) -> torch.Tensor:
    """``[T, F]``: the mean absolute attribution of each field over each task's rows."""
    out = torch.zeros(n_tasks, attributions.shape[1])
    counts = torch.bincount(view.task, minlength=n_tasks).clamp(min=1)
    out.index_add_(0, view.task, attributions.abs())
    return out / counts[:, None]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's correlation of two vectors; NaN where either is constant."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def adaptation_shift(
    learner: ExplainsFields, tasks: TaskBatch, method: str = "ablation", *, seed: int = 0
) -> np.ndarray:
    """``[T]``: per task, the rank correlation of its fields' mean absolute attributions before
    and after adapting to its support (1: adaptation left the model's reliance in place)."""
    before_view = learner.field_view(tasks, adapted=False)
    after_view = learner.field_view(tasks, adapted=True)
    before = per_task(
        before_view, field_attributions(before_view, method, seed=seed), tasks.n_tasks
    )
    after = per_task(after_view, field_attributions(after_view, method, seed=seed), tasks.n_tasks)
    return np.array(
        [rank_correlation(before[t].numpy(), after[t].numpy()) for t in range(tasks.n_tasks)]
    )


def _scores(learner: Any, tasks: TaskBatch) -> torch.Tensor:
    """The learner's scores of each task's query items ``[T, Q]`` (its ranking scores for user
    tasks, which need not be clamped to the rating scale; its predictions otherwise)."""
    with torch.no_grad():
        if tasks.axis == "user":
            scores: torch.Tensor = learner.score(tasks.without_queries(), tasks.query_items)
            return scores
        predicted: torch.Tensor = learner.predict(tasks.without_labels())
        return predicted


def without_support(tasks: TaskBatch, position: int) -> TaskBatch:
    """The tasks with support position ``position`` removed (masked out, as padding)."""
    keep = torch.ones_like(tasks.support_mask)
    keep[:, position] = False
    mask = tasks.support_mask & keep
    return replace(
        tasks,
        support_users=torch.where(mask, tasks.support_users, 0),
        support_items=torch.where(mask, tasks.support_items, 0),
        support_ratings=torch.where(mask, tasks.support_ratings, 0.0),
        support_mask=mask,
    )


def leave_one_out(learner: Any, tasks: TaskBatch) -> torch.Tensor:
    """``[T, Q, S]``: each query score minus the score after re-adapting without each support
    rating (0 at padding)."""
    full = _scores(learner, tasks)
    out = torch.zeros(*full.shape, tasks.support_mask.shape[1])
    for s in range(tasks.support_mask.shape[1]):
        present = tasks.support_mask[:, s]
        if not bool(present.any()):
            continue
        dropped = _scores(learner, without_support(tasks, s))
        out[:, :, s] = torch.where(present[:, None], full - dropped, 0.0)
    return out * tasks.query_mask[:, :, None]


def support_attributions(learner: Any, tasks: TaskBatch) -> torch.Tensor:
    """``[T, Q, S]`` by the learner's exact form where it has one, else by re-adaptation."""
    if isinstance(learner, ExplainsSupport):
        exact = learner.support_attributions(tasks)
        return exact * tasks.query_mask[:, :, None]
    return leave_one_out(learner, tasks)
