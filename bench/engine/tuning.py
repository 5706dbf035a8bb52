"""Hyperparameter search inside a cell, on validation tasks only.

A suite gives a learner a search space in a ``[tune.NAME]`` table and the search a budget and an
objective in ``[tune]``::

    [tune]
    trials = 8              # and/or seconds = 300: stop starting trials after that
    objective = "rmse"      # a metric; its direction comes from the metric
    k = "all"               # the support size it is measured at; default the largest

    [tune.mf]
    rank = [8, 16, 32, 64]                      # a list: the choices (a grid)
    reg = {low = 0.01, high = 1.0, log = true}  # a range; an integer field gives an integer range

Each trial fits the learner with one config on the split's training data and scores its
predictions for the split's validation tasks: existing task entities held out of training, whose
tasks are built and scored exactly like the scenarios' test tasks (the same support size, query
construction and metric code, :func:`bench.evaluation.scoring.score`). Test tasks are never built here, so
their labels cannot reach a choice. The cell then fits the best config and is evaluated as usual.

Optuna runs the search. Its sampler is a grid when every dimension is a list and the grid fits the
trial budget, otherwise TPE; either is seeded from the cell's seed tree (``learner/NAME/tune``), and
each trial's sampler anew from its trial number, so a search resumed from its stored trials makes
the same choices as one that ran without a break.
"""

from __future__ import annotations

import math
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.data.dataset import Dataset
from bench.engine.tuning_spec import Dimension as Dimension
from bench.engine.tuning_spec import TuneSpec as TuneSpec
from bench.engine.tuning_spec import load_optuna
from bench.engine.tuning_spec import parse_tuning as parse_tuning
from bench.evaluation.ranking import DEFAULT_TIE_POLICY, THRESHOLD_RELEVANCE, RelevanceRule
from bench.evaluation.scoring import score
from bench.protocol.budget import Budget
from bench.protocol.episodes import MetaTrain, TaskBatch, predict_in_chunks
from bench.protocol.learner_registry import make_learner
from bench.results.records import TrialRecord, TuningRecord
from bench.seeding import Seeds

if typing.TYPE_CHECKING:  # Optuna and torch load where a search runs, not with a report
    import optuna
    import torch


# Searching --------------------------------------------------------------------------------------
# No line per trial, nor per failed trial: the run summary reports the search and the store keeps
# every trial with its error.


def _seed(seeds: Seeds) -> int:
    return int(seeds.sequence.generate_state(1)[0])


def _sampler(spec: TuneSpec, seeds: Seeds, number: int) -> optuna.samplers.BaseSampler:
    """The sampler that proposes trial ``number``: it depends only on the seeds, the number and
    the trials before it, so a resumed search proposes what an unbroken one would."""
    optuna = load_optuna()
    if spec.uses_grid:
        grid = {d.name: [d.label(c) for c in d.choices] for d in spec.space}
        return optuna.samplers.GridSampler(grid, seed=_seed(seeds.child("grid")))
    return optuna.samplers.TPESampler(
        seed=_seed(seeds.child("trial", str(number))), n_startup_trials=spec.startup_trials
    )


class _TrialFailed(Exception):
    """A trial whose config failed (recorded as such); the search goes on."""


@dataclass(frozen=True)
class Tuned:
    """A finished search: the chosen values, the stored summary and every trial."""

    params: dict[str, Any]
    record: TuningRecord
    trials: list[TrialRecord]

    @property
    def failed(self) -> int:
        return sum(t.state == "failed" for t in self.trials)


def search(
    spec: TuneSpec,
    objective: Callable[[dict[str, Any]], float],
    *,
    seeds: Seeds,
    done: Sequence[TrialRecord] = (),
    on_trial: Callable[[TrialRecord], None] = lambda trial: None,
    validation_tasks: int = 0,
    progress: bool = False,
    label: str = "trials",
    report: Callable[[str, int, int], None] | None = None,
) -> Tuned:
    """Run ``objective`` on proposed configs until the budget is spent.

    ``done`` are trials finished earlier (from the store): they are given to the study and count
    towards the budget, trials and seconds alike. ``on_trial`` receives each new trial as soon as
    it finishes (the runner stores it). A trial that raises an exception is recorded as failed and
    the search goes on; an interruption (``KeyboardInterrupt``) ends it, leaving the stored trials
    for the next run."""
    from tqdm import tqdm

    optuna = load_optuna()
    distributions = {d.name: d.distribution() for d in spec.space}
    study = optuna.create_study(direction=spec.direction)
    trials = list(done)
    for t in trials:
        study.add_trial(
            optuna.trial.create_trial(
                state=(
                    optuna.trial.TrialState.COMPLETE
                    if t.state == "complete"
                    else optuna.trial.TrialState.FAIL
                ),
                value=t.value if t.state == "complete" else None,
                params={d.name: d.label(t.params[d.name]) for d in spec.space},
                distributions=distributions,
            )
        )
    bar = tqdm(
        total=spec.max_trials, initial=len(trials), desc=label, unit="trial", leave=False,
        disable=not progress,
    )  # fmt: skip

    def run_trial(trial: Any) -> float:
        params = {d.name: d.suggest(trial) for d in spec.space}
        start = time.perf_counter()
        value: float | None = None
        error = None
        try:
            value = float(objective(params))
            if not math.isfinite(value):
                raise ValueError(f"the objective {spec.objective} is {value}")
        except Exception as exc:  # one config that fails must not end the search
            value, error = None, f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        finished = TrialRecord(
            trial.number,
            params,
            value,
            seconds,
            "complete" if value is not None else "failed",
            error,
        )
        on_trial(finished)
        trials.append(finished)
        if value is None:
            raise _TrialFailed(error)
        return value

    try:
        while spec.max_trials is None or len(trials) < spec.max_trials:
            if spec.seconds is not None and sum(t.seconds for t in trials) >= spec.seconds:
                break
            study.sampler = _sampler(spec, seeds, len(trials))
            if report is not None:  # trial j of m (0: no limit on the number of trials)
                report("trial", len(trials) + 1, spec.max_trials or 0)
            study.optimize(run_trial, n_trials=1, catch=(_TrialFailed,))
            bar.update()
    finally:
        bar.close()
    complete = [t for t in trials if t.state == "complete" and t.value is not None]
    if not complete:
        first = trials[0].error if trials else "no trial ran"
        raise ValueError(f"no trial of the search succeeded (the first: {first})")
    sign = -1.0 if spec.direction == "maximize" else 1.0
    best = min(complete, key=lambda t: (sign * float(t.value or 0.0), t.number))
    record = TuningRecord(
        spec=spec.as_dict(),
        chosen=dict(best.params),
        trials=len(trials),
        best_trial=best.number,
        best_value=float(best.value or 0.0),
        seconds=sum(t.seconds for t in trials),
        validation_tasks=validation_tasks,
    )
    return Tuned(dict(best.params), record, trials)


def validation_objective(
    learner: str,
    fixed: Mapping[str, Any],
    spec: TuneSpec,
    *,
    train: MetaTrain,
    validation: TaskBatch,
    dataset: Dataset,
    device: torch.device,
    seeds: Seeds,
    budget: Budget,
    gain: str,
    tie_policy: str = DEFAULT_TIE_POLICY,
    relevance: RelevanceRule = THRESHOLD_RELEVANCE,
) -> Callable[[dict[str, Any]], float]:
    """The objective of a trial: fit ``learner`` with ``fixed`` and the trial's values on
    ``train``, predict the ``validation`` tasks (labels stay here) and score them.

    It sees the training view and the validation tasks, nothing else of the split: the test
    tasks' labels cannot reach it."""
    import torch

    tasks = validation.without_labels().to(device)
    where = f"validation tasks, k={spec.k}"

    def objective(params: dict[str, Any]) -> float:
        model = make_learner(learner, {**fixed, **params})
        model.fit(train, rng=seeds, device=device, budget=budget)
        with torch.no_grad():
            predicted = predict_in_chunks(model.predict, tasks, model.predict_chunk)
        values = score(
            validation,
            predicted,
            (spec.objective,),
            dataset=dataset,
            like_threshold=train.like_threshold,
            gain=gain,
            learner=learner,
            where=where,
            tie_policy=tie_policy,
            relevance=relevance,
        )
        return values[spec.objective].value

    return objective
