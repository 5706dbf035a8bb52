"""The one training loop of the network learners: optimisation steps, validation every few steps,
early stopping on the validation RMSE, a time budget, and the best parameters restored at the end.

Meta-learners count a step per meta-batch; fine-tuning counts a step per minibatch and validates
once per epoch. The loop knows neither: it calls ``step(i)`` and ``validate()``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Schedule:
    """How long to train and when to check.

    ``steps`` bounds the optimisation steps; validation runs every ``eval_every`` steps (0: never)
    and after the last step; training stops after ``patience`` checks without an improvement of
    more than ``min_improvement``, or once ``deadline`` (a ``time.perf_counter()`` value) passes.
    """

    steps: int
    eval_every: int
    patience: int
    deadline: float | None = None
    min_improvement: float = 1e-5
    progress: Callable[[int, int], None] | None = None
    """Told (i, steps) after each step, for a progress bar."""


@dataclass
class TrainingLog:
    """What happened: steps taken, each validation check, and why training stopped."""

    steps: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    stopped: str = "steps"
    """``steps`` (the schedule's end), ``patience`` (no more improvement) or ``budget``."""


def train_model(
    model: torch.nn.Module,
    step: Callable[[int], Any],
    validate: Callable[[], float] | None,
    schedule: Schedule,
) -> TrainingLog:
    """Run ``step(1) ... step(n)`` under ``schedule``; leave ``model`` in eval mode holding the
    parameters of its best validation check (its last ones when it was never validated)."""
    log = TrainingLog()
    best, best_state, stale = float("inf"), None, 0
    for i in range(1, schedule.steps + 1):
        model.train()
        step(i)
        log.steps = i
        if schedule.progress is not None:
            schedule.progress(i, schedule.steps)
        out_of_time = schedule.deadline is not None and time.perf_counter() > schedule.deadline
        last = i == schedule.steps or out_of_time
        if out_of_time:
            log.stopped = "budget"
        due = schedule.eval_every and (i % schedule.eval_every == 0 or last)
        if validate is not None and due:
            model.eval()
            with torch.no_grad():
                score = validate()
            log.history.append((i, score))
            if score < best - schedule.min_improvement:
                best, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
                log.best_step = i
            else:
                stale += 1
                if stale >= schedule.patience:
                    log.stopped = "patience"
                    break
        if last:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return log
