"""The learner contract, as a helper that any learner's own tests call.

``check_learner("my-learner", {"epochs": 1})`` builds the registered learner, fits it on a small
synthetic split and checks what the harness relies on; it raises :class:`ContractError` (an
``AssertionError``, so pytest reports it as a failure) naming the learner and the broken rule:

- the default config builds, round-trips through a plain dict and hashes stably;
- ``fit`` leaves the training data as it was;
- ``predict`` returns the query's shape on the fitting device, finite and within the rating scale,
  in every scenario, with no support ratings (k = 0) and with some;
- predicting tasks in chunks gives the same ratings as all at once (the runner chunks);
- ``score`` gives every (task, candidate) a number, the same for candidates shared by all tasks
  as for the same candidates given per task, and never reads the query (it gets none);
- a pickled fitted learner predicts the same;
- two fits from the same seeds predict identically;
- with ``expected``, each named metric lies in its band on the ``user_cold`` tasks at k = 5.

Each rule is also a function of its own (``rule_*``), and :mod:`bench.evaluation.contract_tests`
turns them into a test class to inherit, one test per rule with the fit shared.

Stability: stable.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.config import build_config, config_hash
from bench.data.dataset import Dataset
from bench.data.synthetic import SyntheticConfig, generate
from bench.devices import resolve_device
from bench.evaluation.metrics import DEFAULT_METRICS, Queries, evaluate
from bench.protocol import SCENARIOS, Split, SupportSize, make_protocol
from bench.protocol.base import split_like_threshold
from bench.protocol.episodes import (
    MetaTrain,
    TaskBatch,
    build_tasks,
    make_meta_train,
    predict_in_chunks,
)
from bench.protocol.learner import Learner
from bench.protocol.learner_registry import learner_class, make_learner
from bench.seeding import Seeds

CONTRACT_DATA = SyntheticConfig(n_users=240, n_items=160, mean_ratings_per_user=60, seed=7)
"""The small synthetic dataset the contract runs on (a few seconds for any learner)."""
SUPPORT_SIZES = (0, 5)
QUERY_SIZE = 5
BAND_SCENARIO = "user_cold"
BAND_K = 5


class ContractError(AssertionError):
    """A learner broke the contract; the message names the learner and the rule."""


@dataclass
class ContractReport:
    """What the check measured: metric values per (scenario, k) of the first fit."""

    learner: str
    metrics: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)


def contract_dataset() -> Dataset:
    return generate(CONTRACT_DATA, name="contract-synthetic")


def _require(condition: bool, learner: str, rule: str) -> None:
    if not condition:
        raise ContractError(f"learner {learner!r}: {rule}")


def _config_round_trips(name: str) -> None:
    default = make_learner(name)
    as_dict = dataclasses.asdict(default.config)
    try:
        rebuilt = build_config(type(default.config), as_dict)
    except Exception as exc:
        raise ContractError(
            f"learner {name!r}: its default config does not rebuild: {exc}"
        ) from exc
    _require(rebuilt == default.config, name, "its config changes when rebuilt from a dict")
    _require(config_hash(rebuilt) == default.config_hash, name, "its config hash is not stable")


def _fitted(
    name: str, overrides: Mapping[str, Any] | None, train: MetaTrain, device: torch.device
) -> Learner:
    learner = make_learner(name, dict(overrides or {}))
    learner.fit(train, rng=Seeds(0).child("learner", name), device=device)
    return learner


def _predict(learner: Learner, tasks: TaskBatch) -> torch.Tensor:
    with torch.no_grad():
        return learner.predict(tasks)


def _check_predictions(
    name: str, learner: Learner, labelled: TaskBatch, device: torch.device, where: str
) -> torch.Tensor:
    tasks = labelled.without_labels().to(device)
    pred = _predict(learner, tasks)
    shape = tuple(tasks.query_items.shape)
    _require(
        tuple(pred.shape) == shape,
        name,
        f"{where}: predictions {tuple(pred.shape)}, expected {shape}",
    )
    _require(
        pred.device.type == device.type,
        name,
        f"{where}: predictions on {pred.device}, not {device}",
    )
    valid = pred[tasks.query_mask].float()
    _require(bool(torch.isfinite(valid).all()), name, f"{where}: non-finite predictions")
    return pred


def score(
    learner: Learner,
    dataset: Dataset,
    split: Split,
    scenario: str,
    k: SupportSize,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
) -> dict[str, float]:
    """The metrics of a learner fitted on the CPU, on one scenario's tasks at support size ``k``
    (for a plug-in's own tests of what its learner achieves)."""
    batch = build_tasks(dataset, split.scenarios[scenario], k)
    pred = _predict(learner, batch.without_labels())
    assert batch.query_ratings is not None
    queries = Queries(
        pred.double().cpu().numpy(),
        batch.query_ratings.double().numpy(),
        batch.query_mask.numpy(),
        split_like_threshold(dataset, split),
        dataset.rating_scale,
    )
    return {name: value.value for name, value in evaluate(queries, metrics).items()}


def _check_scores(name: str, learner: Learner, tasks: TaskBatch, n_items: int) -> None:
    bare = tasks.without_queries()
    items = torch.arange(n_items, device=bare.entities.device)
    with torch.no_grad():
        shared = learner.score(bare, items)
        reversed_ = learner.score(bare, items.flip(0).expand(bare.n_tasks, -1).contiguous())
    shape = (bare.n_tasks, n_items)
    _require(tuple(shared.shape) == shape, name, f"scores {tuple(shared.shape)}, expected {shape}")
    _require(not bool(torch.isnan(shared).any()), name, "NaN scores")
    _require(
        torch.allclose(reversed_.flip(1), shared, atol=1e-5),
        name,
        "scores of candidates given per task differ from the same candidates shared by all tasks",
    )


@dataclass
class ContractFit:
    """A learner fitted on the contract's split, with what the rules compare against."""

    name: str
    overrides: Mapping[str, Any] | None
    device: torch.device
    dataset: Dataset
    split: Split
    train: MetaTrain
    before: dict[str, np.ndarray]
    learner: Learner


def quick_overrides(name: str) -> dict[str, Any]:
    """The config overrides the learner declares to keep its contract check quick."""
    return dict(learner_class(name).quick_config)


def fit_for_contract(
    name: str, overrides: Mapping[str, Any] | None = None, device: str = "cpu"
) -> ContractFit:
    """Fit the registered learner ``name`` once on the contract's small synthetic split."""
    cls = learner_class(name)
    _require(issubclass(cls, Learner), name, "is not a bench.protocol.learner.Learner subclass")
    torch_device = resolve_device(device)
    dataset = contract_dataset()
    if cls.not_applicable(dataset):
        raise ContractError(
            f"learner {name!r} does not run on synthetic data: the contract needs it"
        )
    protocol = make_protocol(
        "cold-random", {"support_sizes": SUPPORT_SIZES, "query_size": QUERY_SIZE}
    )
    split: Split = protocol.split(dataset, 0)
    train = make_meta_train(dataset, split)
    before = {f: getattr(train, f).copy() for f in ("user", "item", "rating", "timestamp")}
    learner = _fitted(name, overrides, train, torch_device)
    return ContractFit(name, overrides, torch_device, dataset, split, train, before, learner)


def rule_config_round_trips(name: str) -> None:
    """The default config builds, round-trips through a plain dict and hashes stably."""
    _config_round_trips(name)


def rule_fit_leaves_training_data(fit: ContractFit) -> None:
    """``fit`` leaves the training data as it was."""
    for array, values in fit.before.items():
        _require(
            np.array_equal(getattr(fit.train, array), values),
            fit.name,
            f"fit changed the training {array}",
        )


def rule_predictions_in_every_scenario(fit: ContractFit) -> ContractReport:
    """Predictions have the query's shape, lie on the fitting device, are finite and within the
    rating scale in every scenario, with and without support ratings; returns the metrics."""
    report = ContractReport(fit.name)
    low, high = fit.dataset.rating_scale
    for scenario in SCENARIOS:
        for k in SUPPORT_SIZES:
            labelled = build_tasks(fit.dataset, fit.split.scenarios[scenario], k)
            where = f"{scenario}, k={k}"
            pred = _check_predictions(fit.name, fit.learner, labelled, fit.device, where)
            valid = pred[labelled.query_mask.to(pred.device)].float()
            _require(
                bool(((valid >= low - 1e-5) & (valid <= high + 1e-5)).all()),
                fit.name,
                f"{where}: predictions outside the rating scale [{low}, {high}]",
            )
            assert labelled.query_ratings is not None
            queries = Queries(
                pred.float().cpu().numpy().astype(np.float64),
                labelled.query_ratings.numpy().astype(np.float64),
                labelled.query_mask.numpy(),
                fit.train.like_threshold,
                fit.dataset.rating_scale,
            )
            values = evaluate(queries)
            report.metrics[(scenario, k)] = {m: v.value for m, v in values.items()}
    return report


def _band_tasks(fit: ContractFit) -> tuple[TaskBatch, torch.Tensor]:
    tasks = build_tasks(fit.dataset, fit.split.scenarios[BAND_SCENARIO], BAND_K).without_labels()
    tasks = tasks.to(fit.device)
    return tasks, _predict(fit.learner, tasks)


def rule_chunks_predict_alike(fit: ContractFit) -> None:
    """Predicting tasks in chunks gives the same ratings as all at once (the runner chunks)."""
    tasks, whole = _band_tasks(fit)
    chunked = predict_in_chunks(fit.learner.predict, tasks, max(1, tasks.n_tasks // 3))
    _require(
        torch.allclose(whole, chunked, atol=1e-5),
        fit.name,
        "predicting tasks in chunks gives other ratings than predicting them all at once",
    )


def rule_scores_rank_candidates(fit: ContractFit) -> None:
    """``score`` gives a number per (task, candidate), the same for candidates shared by all
    tasks as for the same candidates given per task (full ranking passes them either way)."""
    tasks, _ = _band_tasks(fit)
    _check_scores(fit.name, fit.learner, tasks, fit.dataset.n_items)


def rule_pickle_round_trips(fit: ContractFit) -> None:
    """A pickled fitted learner predicts the same (process and Ray workers send learners)."""
    tasks, whole = _band_tasks(fit)
    copy = pickle.loads(pickle.dumps(fit.learner))
    _require(
        torch.allclose(whole, _predict(copy, tasks), atol=1e-6),
        fit.name,
        "a pickled fitted learner predicts differently",
    )


def rule_same_seeds_same_predictions(fit: ContractFit) -> None:
    """Two fits from the same seeds predict identically (on the CPU; closely on a GPU)."""
    tasks, whole = _band_tasks(fit)
    again = _predict(_fitted(fit.name, fit.overrides, fit.train, fit.device), tasks)
    same = torch.equal(whole, again) if fit.device.type == "cpu" else torch.allclose(whole, again)
    _require(
        same,
        fit.name,
        "two fits from the same seeds predict differently (is randomness drawn from `rng`?)",
    )


def rule_bands(
    fit: ContractFit, report: ContractReport, expected: Mapping[str, tuple[float, float]]
) -> None:
    """Each named metric lies in its band on the ``user_cold`` tasks at k = 5."""
    measured = report.metrics[(BAND_SCENARIO, BAND_K)]
    for metric, (lo, hi) in expected.items():
        if metric not in measured:
            raise ContractError(
                f"learner {fit.name!r}: no metric {metric!r} to check a band on "
                f"(known: {', '.join(measured)})"
            )
        value = measured[metric]
        _require(
            lo <= value <= hi,
            fit.name,
            f"{metric} {value:.4f} on {BAND_SCENARIO} at k={BAND_K} is outside [{lo}, {hi}]",
        )


def check_learner(
    name: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    expected: Mapping[str, tuple[float, float]] | None = None,
    device: str = "cpu",
) -> ContractReport:
    """Check the registered learner ``name`` (config ``overrides`` keep it quick; None takes the
    learner's own ``quick_config``); see the module docstring for the rules. ``expected`` maps
    metric names to ``(low, high)`` bands."""
    if overrides is None:
        overrides = quick_overrides(name)
    rule_config_round_trips(name)
    fit = fit_for_contract(name, overrides, device)
    rule_fit_leaves_training_data(fit)
    report = rule_predictions_in_every_scenario(fit)
    rule_chunks_predict_alike(fit)
    rule_scores_rank_candidates(fit)
    rule_pickle_round_trips(fit)
    rule_same_seeds_same_predictions(fit)
    rule_bands(fit, report, expected or {})
    return report
