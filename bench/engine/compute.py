"""Computing one cell, wherever an executor runs it: an optional search on validation tasks, one
fit, then adapt-and-predict (chunked by the learner's ``predict_chunk``, here and nowhere else) and
scoring on every (scenario, k). Every executor calls :func:`compute_cell`; nothing here touches the
store.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import torch

from bench.data.dataset import Dataset
from bench.engine.attack_metrics import mean_prediction_row, target_rows
from bench.engine.cells import (
    PROGRESS_SINKS,
    TRIAL_SINKS,
    Cell,
    CellFailure,
    RunContext,
    learner_seeds,
    tie_seed,
)
from bench.engine.plan import RunPlan
from bench.engine.robustness import COLD_SCENARIOS, perturbation_of
from bench.engine.splits import SplitCache
from bench.engine.suite import Suite
from bench.engine.tuning import Tuned, TuneSpec, search, validation_objective
from bench.evaluation.floors import scoring_tie_policy
from bench.evaluation.metrics import (
    RANKING_VERSION,
    Queries,
    evaluate,
    recorded_metrics,
)
from bench.evaluation.scoring import scored_queries
from bench.evaluation.timing import timed
from bench.evaluation.topk import Scorer, topn_values
from bench.protocol import SupportSize
from bench.protocol.candidates import CandidateSets
from bench.protocol.episodes import (
    TaskBatch,
    predict_in_chunks,
)
from bench.protocol.learner import Learner
from bench.protocol.learner_registry import make_learner
from bench.protocol.perturbation_labels import ATTACKER_KINDS, parse_label
from bench.protocol.slices import split_attributes
from bench.protocol.training_arms import attack_targets
from bench.results.records import FIT_SCOPE, CellRecord, Evaluation, Predictions, TrialRecord

WARMUP_TASKS = 8


def warm_up(device: torch.device) -> None:
    """Run the kernels most learners use once, so one-off library start-up is not timed."""
    generator = torch.Generator().manual_seed(0)  # a private generator: the global one is untouched
    a = torch.randn(64, 8, 8, generator=generator, dtype=torch.float64).to(device)
    torch.linalg.solve(a @ a.transpose(1, 2) + torch.eye(8, device=device, dtype=a.dtype), a)
    x = torch.randn(256, 64, generator=generator).to(device).requires_grad_()
    w = torch.randn(32, 64, generator=generator).to(device)
    torch.nn.functional.linear(x, w).relu().sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tune_cell(
    cell: Cell,
    spec: TuneSpec,
    plan: RunPlan,
    cache: SplitCache,
    device: torch.device,
    progress: bool,
    on_trial: Callable[[TrialRecord], None],
) -> Tuned:
    """Search the cell's learner config on its split's validation tasks, resuming from the
    trials already stored under the cell's key (``cell.done_trials``); ``on_trial`` receives
    each new trial as it finishes."""
    split, train = cache.split(cell.dataset, cell.seed)
    validation = cache.validation(cell.dataset, cell.seed, spec.k)
    if validation.n_tasks == 0:
        raise ValueError(
            f"tuning {cell.learner} needs validation tasks, but the split of {cell.dataset.name} "
            f"seed {cell.seed} has none (validation_fraction = "
            f"{split.config.validation_fraction:g}, or too few entities can form a task)"
        )
    suite = plan.suite
    seeds = learner_seeds(cell.seed, cell.learner)
    objective = validation_objective(
        cell.learner,
        dict(plan.learner(cell.learner).config),
        spec,
        train=train,
        validation=validation,
        dataset=cell.dataset,
        device=device,
        seeds=seeds,
        budget=cell.budget,
        gain=suite.ndcg_gain,
        tie_policy=suite.tie_policy,
        relevance=split.config.relevance_rule,
    )
    return search(
        spec,
        objective,
        seeds=seeds.child("tune"),
        done=list(cell.done_trials),
        on_trial=on_trial,
        validation_tasks=validation.n_tasks,
        progress=progress,
        label=f"tuning {cell.learner} seed {cell.seed}",
        report=cell.budget.progress,
    )


def run_cell(
    cell: Cell,
    plan: RunPlan,
    cache: SplitCache,
    run_id: str,
    fingerprint: str,
    needed: list[tuple[str, SupportSize]],
    device: torch.device,
    tuned: Tuned | None = None,
) -> CellRecord:
    """Fit the cell's learner (with the config a search chose, when ``tuned``) and evaluate it
    on the ``needed`` (scenario, k) pairs."""
    suite = plan.suite
    overrides = {**plan.learner(cell.learner).table, **(tuned.params if tuned else {})}
    learner = make_learner(cell.learner, overrides)
    split, train = cache.split(cell.dataset, cell.seed)
    settings = plan.robustness
    if cell.arm:  # fitted on training data with noise or fake profiles; tested on clean tasks
        assert settings is not None
        train = cache.arm_training(cell.dataset, cell.seed, settings.arms[cell.arm])
    record = CellRecord(
        cell_key=cell.key,
        run_id=run_id,
        dataset=cell.dataset.name,
        dataset_hash=cell.dataset.content_hash,
        protocol=cell.protocol.label,
        protocol_hash=cell.protocol.config.fingerprint(),
        learner=cell.learner,
        config_hash=cell.config_hash or learner.config_hash,
        config=learner.config_dict(),
        seed=cell.seed,
        device=cell.device,
        code_fingerprint=fingerprint,
        split_summary={**split.summary, "load_report": cell.dataset.extras.get("load_report", {})},
        dataset_info={
            "rating_scale": list(cell.dataset.rating_scale),
            "like_threshold": train.like_threshold,
            "ndcg_gain": suite.ndcg_gain,
            "tie_policy": scoring_tie_policy(cell.learner, suite.tie_policy),
            "relevance": split.config.relevance_rule.label,
            "ranking_version": RANKING_VERSION,
            "task_axis": split.config.task_axis,
            **(plan.ranking_key(cell.dataset) or {}),
        },
        tuning=tuned.record if tuned else None,
        trials=tuned.trials if tuned else [],
    )
    if cell.arm:
        record.dataset_info["training_arm"] = cell.arm
        _, clean_train = cache.split(cell.dataset, cell.seed)
        record.split_summary["training_arm"] = {
            "arm": cell.arm,
            "train_ratings": len(train.rating),
            "clean_train_ratings": len(clean_train.rating),
            "train_users": int(clean_train.known_users.sum()),
            "fake_profiles": int(train.n_users - clean_train.n_users),
        }
    targets = None
    if settings is not None and settings.targets and split.config.task_axis == "user":
        _, clean_train = cache.split(cell.dataset, cell.seed)
        pool = settings.attacks[0].target_pool
        targets = attack_targets(clean_train, settings.targets, cell.seed, pool)
        record.split_summary["attack_targets"] = cell.dataset.raw_ids("item", targets)
    if plan.slices:
        record.split_summary["slices"] = stored_slices(cell.dataset, split, needed, plan.slices)
    if device.type == "cuda":
        torch.empty(1, device=device)  # create the CUDA context outside the timed region
    seeds = learner_seeds(cell.seed, cell.learner)
    with timed("fit", device) as fit_time:
        learner.fit(train, rng=seeds, device=device, budget=cell.budget)
    record.timings.append(fit_time.row(FIT_SCOPE, FIT_SCOPE))

    for scenario, k in needed:
        # A perturbed evaluation (``user_cold~flip@0.2``) uses the clean scenario's tasks with
        # their support corrupted; the learner stays as fitted.
        clean, perturbation = perturbation_of(plan.robustness, scenario)
        if cell.arm:  # ``user_cold~train-flip@0.1``: the clean tasks, another fit
            clean = parse_label(scenario)[0]
        labelled = cache.tasks(cell.dataset, cell.seed, clean, k)
        if perturbation is not None:
            labelled = cache.perturbed(cell.dataset, cell.seed, clean, k, perturbation)
        k_label = str(k)
        entities = cell.dataset.raw_ids(labelled.axis, labelled.entities.numpy())
        lengths = labelled.query_mask.sum(1).tolist()
        record.evaluations.append(Evaluation(scenario, k_label, entities, lengths))
        if labelled.n_tasks == 0:
            continue
        if perturbation is None:
            tasks = cache.unlabelled(cell.dataset, cell.seed, clean, k, device)
        else:
            tasks = labelled.without_labels().to(device)
        chunk = learner.predict_chunk
        if perturbation is None:  # a perturbed evaluation follows a warm one
            with torch.no_grad():
                predict_in_chunks(learner.predict, tasks.select(slice(0, WARMUP_TASKS)), chunk)
        with torch.no_grad(), timed("adapt+predict", device, labelled.n_tasks) as t:
            predicted = predict_in_chunks(learner.predict, tasks, chunk)
        record.timings.append(t.row(scenario, k_label))
        cold = perturbation is None and scenario in COLD_SCENARIOS
        if cold and bool(labelled.support_mask.any()):
            unchanged = support_ignored(learner, tasks, predicted, labelled.support_mask)
            record.dataset_info.setdefault("support_ignored", {})[f"{scenario}/{k_label}"] = (
                unchanged
            )
        queries = scored_queries(
            labelled,
            predicted,
            dataset=cell.dataset,
            like_threshold=train.like_threshold,
            gain=suite.ndcg_gain,
            learner=cell.learner,
            where=f"{scenario}, k={k_label}",
            tie_policy=scoring_tie_policy(cell.learner, suite.tie_policy),
            relevance=split.config.relevance_rule,
        )
        if settings is not None and set(settings.kinds) & set(ATTACKER_KINDS):
            record.metrics.append(
                mean_prediction_row(queries.predicted, queries.mask, scenario, k_label)
            )
        views = plan.ranking_views(cell.dataset)
        in_query = suite.metrics if "query" in views else rating_metrics(suite.metrics)
        for name, value in evaluate(queries, recorded_metrics(in_query)).items():
            record.metrics.append(
                (
                    scenario,
                    k_label,
                    name,
                    value.value,
                    value.n_scored,
                    value.n_unscored,
                    value.per_task,
                )
            )
        if {"full", "sampled"} & set(views):
            # Timed apart, so a report can say what ranking the catalogue adds to a cell.
            with timed("rank", device, labelled.n_tasks) as ranked:
                rows = _ranked_rows(
                    cell, suite, cache, learner, clean, k, views, tasks, record, scenario
                )
            record.metrics.extend(rows)
            record.timings.append(ranked.row(scenario, k_label))
        sets = None
        if targets is not None and perturbation is None:
            sets = cache.candidates(cell.dataset, cell.seed, clean, k, None)
        if sets is not None and targets is not None and np.isin(targets, sets.pool).any():
            with torch.no_grad():
                record.metrics.extend(
                    target_rows(
                        learner.score,
                        tasks.without_queries(),
                        sets,
                        targets,
                        tie_seed=tie_seed(cell.seed),
                        learner=cell.learner,
                        label=scenario,
                        k_label=k_label,
                    )
                )
        if suite.keep_predictions:
            record.predictions.append(
                kept_predictions(cell.dataset, scenario, k_label, labelled, queries)
            )
    return record


def stored_slices(
    dataset: Dataset,
    split: Any,
    needed: list[tuple[str, SupportSize]],
    attributes: tuple[str, ...],
) -> dict[str, dict[str, Any]]:
    """The task entities' slice attributes of the clean scenarios evaluated (the same for every
    k), as stored in the cell's split summary."""
    scenarios = sorted({scenario for scenario, _ in needed if scenario in split.scenarios})
    return {
        scenario: {
            key: values for key, values in table.items() if key == "entities" or key in attributes
        }
        for scenario, table in split_attributes(dataset, split, scenarios).items()
    }


def support_ignored(
    learner: Learner, tasks: TaskBatch, predicted: torch.Tensor, support_mask: torch.Tensor
) -> float:
    """The share of the tasks with a support set whose query predictions stay the same when the
    support is taken away (every support rating masked out); 1.0: the learner ignores it."""
    blank = replace(
        tasks,
        support_mask=torch.zeros_like(tasks.support_mask),
        support_ratings=torch.zeros_like(tasks.support_ratings),
    )
    with torch.no_grad():
        without = predict_in_chunks(learner.predict, blank, learner.predict_chunk)
    mask = tasks.query_mask
    gap = torch.where(mask, (without - predicted).abs(), torch.zeros_like(predicted))
    scale = torch.where(mask, predicted.abs(), torch.zeros_like(predicted)).amax(1).clamp(min=1.0)
    same = (gap.amax(1) <= 1e-6 * scale).cpu()
    has_support = support_mask.any(1)
    return float(same[has_support].float().mean())


def rating_metrics(names: tuple[str, ...]) -> tuple[str, ...]:
    """The metrics that do not rank a task's query (kept when a suite drops the query view)."""
    return tuple(n for n in names if not n.startswith("ndcg@"))


def _ranked_rows(
    cell: Cell,
    suite: Suite,
    cache: SplitCache,
    learner: Any,
    scenario: str,
    k: SupportSize,
    views: tuple[str, ...],
    tasks: TaskBatch,
    record: CellRecord,
    label: str | None = None,
) -> list[tuple[Any, ...]]:
    """The top-N metric rows of one (scenario, k), ranking the catalogue with ``learner.score``;
    a perturbed evaluation (stored under ``label``) ranks the clean scenario's candidate sets."""
    negatives = suite.negatives if "sampled" in views else None
    sets = cache.candidates(cell.dataset, cell.seed, scenario, k, negatives)
    with torch.no_grad():
        return topn_rows(
            learner.score,
            tasks.without_queries(),
            sets,
            suite,
            cell.seed,
            cell.learner,
            scenario,
            k,
            views,
            record,
            label,
        )


def topn_rows(
    score: Scorer,
    tasks: TaskBatch,
    sets: CandidateSets,
    suite: Suite,
    seed: int,
    learner: str,
    scenario: str,
    k: SupportSize,
    views: tuple[str, ...],
    record: CellRecord,
    label: str | None = None,
) -> list[tuple[Any, ...]]:
    """The top-N metric rows of one (scenario, k) from ``score`` (a learner's, or imported
    scores), ranked with the split seed's tie order; the candidate sets' sizes and the
    negatives' digest go into the cell's split summary; the rows are stored under ``label`` (a
    perturbed evaluation's) where one is given."""
    values = topn_values(
        score, tasks, sets, views, suite.top_k, tie_seed=tie_seed(seed), learner=learner
    )
    sizes = sets.n_candidates
    negatives = suite.negatives if "sampled" in views else None
    record.split_summary.setdefault("ranking", {})[f"{scenario} k={k}"] = {
        "pool": len(sets.pool),
        "candidates_mean": float(sizes.mean()) if len(sizes) else 0.0,
        "tasks_without_relevant": int((sets.n_relevant == 0).sum()),
        **(
            {"negatives": negatives, "negatives_digest": sets.negatives_digest()}
            if negatives
            else {}
        ),
    }
    k_label = str(k)
    return [
        (label or scenario, k_label, v.name, v.value, v.n_scored, v.n_unscored, v.per_task)
        for v in values
    ]


def compute_cell(
    cell: Cell,
    needed: tuple[tuple[str, SupportSize], ...],
    context: RunContext,
    cache: SplitCache,
    devices: Mapping[str, torch.device],
) -> CellRecord | CellFailure:
    """One cell, computed where the executor runs it; every executor calls this. An exception
    becomes a :class:`CellFailure` (one failed cell must not stop the others); an interrupt is
    not caught.

    This may run in another process or on another machine: it must not touch the store. Whatever
    a cell produces (a tuning search's trials included) travels back inside its record; in the
    driver's process a search also hands each trial to the run's :data:`TRIAL_SINKS` entry."""
    finished: list[TrialRecord] = []
    sink = TRIAL_SINKS.get(context.run_id)
    report = PROGRESS_SINKS.get(context.run_id)
    if report is not None:  # in the driver's process: the fit and the search tell its bar
        cell = replace(cell, budget=replace(cell.budget, progress=partial(report, cell)))

    def keep(trial: TrialRecord) -> None:
        finished.append(trial)
        if sink is not None:
            sink(cell.key, trial)

    try:
        device = devices[cell.device]
        tuned = None
        if cell.tuning is not None:
            tuned = tune_cell(
                cell, cell.tuning, context.plan, cache, device, context.progress, keep
            )
        return run_cell(
            cell,
            context.plan,
            cache,
            context.run_id,
            context.fingerprint,
            list(needed),
            device,
            tuned,
        )
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        return CellFailure(message, traceback.format_exc(), tuple(finished))


def kept_predictions(
    dataset: Dataset, scenario: str, k: str, tasks: TaskBatch, queries: Queries
) -> Predictions:
    """The query ratings and predictions of one evaluation, in the dataset's own ids."""
    mask = queries.mask
    users = dataset.raw_ids("user", tasks.query_users.numpy()[mask])
    items = dataset.raw_ids("item", tasks.query_items.numpy()[mask])
    return Predictions(scenario, k, users, items, queries.actual[mask], queries.predicted[mask])
