"""Explaining a stored run's learners: refit a cell from its recorded config and seed, pick tasks,
compute field and support attributions, and run the sanity checks.

A stored cell records its learner's exact config (after any search), its seed and the run's
resolved suite (dataset options, protocol). Refitting from them on the same data gives the same
model the run evaluated; the refit's RMSE on the chosen scenario is compared with the stored one,
so an explanation says whether it explains the model that was scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.cards import load_dataset
from bench.data.dataset import Dataset
from bench.engine.cells import learner_seeds
from bench.engine.splits import SplitCache
from bench.engine.suite import Suite, suite_from_dict
from bench.errors import ConfigError
from bench.evaluation.attribution import (
    DEFAULT_SAMPLES,
    METHODS,
    NO_FIELDS,
    NO_FIELDS_EXPOSED,
    adaptation_shift,
    field_attributions,
    fields_of,
    support_attributions,
)
from bench.evaluation.contract import score
from bench.evaluation.explanation_checks import (
    CheckResult,
    deletion,
    planted,
    randomisation,
    stability,
    top_fields,
)
from bench.protocol import SupportSize, make_protocol
from bench.protocol.base import SCENARIOS
from bench.protocol.episodes import MetaTrain, TaskBatch
from bench.protocol.explaining import ExplainsFields
from bench.protocol.learner import Learner
from bench.protocol.learner_registry import learner_class, make_learner
from bench.results.store import ResultStore

MAX_TASKS = 1000
"""The most tasks one explanation covers (attributions cost a few model calls per field)."""


@dataclass
class Refit:
    """A stored cell's learner fitted again from its recorded config and seed. The fit is made
    the first time :attr:`learner` is asked for, so that the arguments of an explanation are
    checked against the run's split before it."""

    run_id: str
    learner_name: str
    dataset: Dataset
    seed: int
    config: dict[str, Any]
    cache: SplitCache
    train: MetaTrain
    stored: dict[str, Any]
    """The stored cell row."""
    stored_rmse: dict[tuple[str, str], float] = field(default_factory=dict)
    """The cell's stored RMSE per (scenario, k)."""
    _fitted: Learner | None = field(default=None, repr=False)

    @property
    def learner(self) -> Learner:
        """The learner fitted again on the CPU, as the run fitted it."""
        if self._fitted is None:
            fitted = make_learner(self.learner_name, self.config)
            rng = learner_seeds(self.seed, self.learner_name)
            fitted.fit(self.train, rng=rng, device=torch.device("cpu"))
            self._fitted = fitted
        return self._fitted

    def tasks(self, scenario: str, k: SupportSize) -> TaskBatch:
        return self.cache.tasks(self.dataset, self.seed, scenario, k)


@dataclass
class Explanation:
    """Attributions of one learner's predictions on a sample of one scenario's tasks."""

    run_id: str
    learner: str
    dataset: str
    seed: int
    scenario: str
    k: str
    method: str
    fields: tuple[str, ...]
    entities: list[str]
    """Raw ids of the explained tasks' entities."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    """One per (task, query item): prediction, baseline prediction and each field's attribution."""
    support: list[dict[str, Any]] = field(default_factory=list)
    """One per (task, query item, support rating): how much the rating moved the score."""
    shift: list[float] = field(default_factory=list)
    """Per task: rank correlation of field attributions before and after adaptation."""
    reproduced: dict[str, float] = field(default_factory=dict)
    """The stored and the refit's RMSE on the scenario (NaN where not stored)."""
    not_applicable: str | None = None


def _stored_suite(store: ResultStore, run_id: str) -> Suite:
    runs = [r for r in store.runs() if r["run_id"] == run_id]
    if not runs:
        raise ConfigError(f"--run: no run {run_id!r} in the store {store.path}")
    raw = runs[0]["config"]
    if isinstance(raw, str):
        import json

        raw = json.loads(raw)
    if not isinstance(raw, dict):
        raise ConfigError(f"run {run_id!r} in {store.path} has no readable suite config")
    # Unset optional fields are stored as null; the suite's defaults stand for them.
    settings = {k: v for k, v in raw.items() if k not in ("source", "imported") and v is not None}
    return suite_from_dict(settings, f"run {run_id} of {store.path}")


def latest_run(store: ResultStore) -> str:
    runs = [r for r in store.runs() if r.get("status") in ("finished", "failed", "ok", "done")]
    runs = runs or store.runs()
    if not runs:
        raise ConfigError(f"the store {store.path} holds no run; run a suite first")
    return str(max(runs, key=lambda r: str(r.get("started_at", "")))["run_id"])


def run_cells(store: ResultStore, run_id: str) -> list[dict[str, Any]]:
    keys = store.run_cell_keys([run_id])
    return store.cell_rows(keys) if keys else []


def refit(
    store_path: Path,
    learner: str,
    *,
    run_id: str | None = None,
    dataset: str | None = None,
    seed: int | None = None,
    data_dir: str | None = None,
) -> Refit:
    """Fit ``learner`` again as the stored run fitted it (on CPU)."""
    with ResultStore(store_path) as store:
        run = run_id or latest_run(store)
        suite = _stored_suite(store, run)
        cells = [c for c in run_cells(store, run) if c["learner"] == learner]
        if not cells:
            names = sorted({c["learner"] for c in run_cells(store, run)})
            raise ConfigError(
                f"--learner: run {run} has no cell of {learner!r}; it has {', '.join(names) or 'none'}"
            )
        if dataset is not None:
            cells = [c for c in cells if c["dataset"] == dataset]
            if not cells:
                raise ConfigError(f"--dataset: run {run} has no {learner} cell on {dataset!r}")
        if seed is not None:
            cells = [c for c in cells if int(c["seed"]) == seed]
            if not cells:
                raise ConfigError(f"--seed: run {run} has no {learner} cell with seed {seed}")
        cell = min(cells, key=lambda c: (c["dataset"], int(c["seed"])))
        stored_rmse = {
            (str(m["scenario"]), str(m["k"])): float(m["value"])
            for m in store.metric_rows([cell["cell_key"]])
            if m["metric"] == "rmse"
        }
    data = load_dataset(
        cell["dataset"], suite.dataset.get(cell["dataset"]), data_dir=data_dir or suite.data_dir
    )
    if data.content_hash != cell["dataset_hash"]:
        raise ConfigError(
            f"dataset {cell['dataset']!r} has changed since run {run} (hash {data.content_hash}, "
            f"stored {cell['dataset_hash']}): the refit would not be the model the run scored"
        )
    cache = SplitCache(make_protocol(suite.protocol["name"], suite.protocol))
    _, train = cache.split(data, int(cell["seed"]))
    config = cell["config"] if isinstance(cell["config"], dict) else {}
    return Refit(run, learner, data, int(cell["seed"]), config, cache, train, cell, stored_rmse)


def explainable(name: str, dataset: Dataset | None = None) -> str | None:
    """Why ``name`` cannot be explained by fields (None when it can), without fitting it."""
    cls = learner_class(name)
    if dataset is not None and dataset.user_features is None and dataset.item_features is None:
        return NO_FIELDS
    if issubclass(cls, ExplainsFields):
        return None
    return NO_FIELDS_EXPOSED


def _pick_tasks(
    tasks: TaskBatch, count: int, entity: str | None, seed: int, data: Dataset
) -> TaskBatch:
    if entity is not None:
        raw = data.raw_ids(tasks.axis, tasks.entities.numpy())
        if entity not in raw:
            raise ConfigError(f"--task: {entity!r} is not a task of this scenario")
        return tasks.select(torch.tensor([raw.index(entity)]))
    if count >= tasks.n_tasks:
        return tasks
    chosen = np.sort(np.random.default_rng(seed).choice(tasks.n_tasks, count, replace=False))
    return tasks.select(torch.as_tensor(chosen))


def _default_scenario(refitted: Refit, k: SupportSize) -> str:
    split, _ = refitted.cache.split(refitted.dataset, refitted.seed)
    for scenario in ("user_cold", "item_cold", "user_item_cold", "warm"):
        if len(split.scenarios.get(scenario, ())) > 0:
            return scenario
    raise ConfigError("the run's split has no task in any scenario")


def _default_k(refitted: Refit) -> SupportSize:
    sizes = refitted.cache.protocol.config.support_sizes
    finite = [s for s in sizes if isinstance(s, int)]
    return max(finite) if finite else sizes[0]


def parse_k(text: str | None, refitted: Refit) -> SupportSize:
    if text is None:
        return _default_k(refitted)
    sizes = refitted.cache.protocol.config.support_sizes
    value: SupportSize = text if text == "all" else int(text) if text.isdigit() else -1
    if value not in sizes:
        raise ConfigError(f"--k: the run's protocol has support sizes {list(sizes)}, got {text!r}")
    return value


def chosen_tasks(
    refitted: Refit,
    *,
    scenario: str | None = None,
    k: str | None = None,
    tasks: int = 5,
    task: str | None = None,
    method: str = "ablation",
    seed: int = 0,
) -> tuple[str, SupportSize, TaskBatch]:
    """The scenario, support size and tasks an explanation covers, with each argument checked
    against the run's split (without fitting the learner)."""
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if not 1 <= tasks <= MAX_TASKS:
        raise ConfigError(f"--tasks must lie in 1..{MAX_TASKS}, got {tasks}")
    size = parse_k(k, refitted)
    chosen = scenario or _default_scenario(refitted, size)
    if chosen not in SCENARIOS:
        raise ConfigError(f"--scenario must be one of {', '.join(SCENARIOS)}, got {chosen!r}")
    labelled = refitted.tasks(chosen, size)
    if labelled.n_tasks == 0:
        raise ConfigError(f"--scenario: the run's split has no {chosen} task")
    return chosen, size, _pick_tasks(labelled, tasks, task, seed, refitted.dataset)


def explain(
    refitted: Refit,
    *,
    scenario: str | None = None,
    k: str | None = None,
    tasks: int = 5,
    task: str | None = None,
    method: str = "ablation",
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    fields: bool = True,
) -> Explanation:
    """Attributions of ``refitted``'s predictions on ``tasks`` sampled tasks (or the one task
    ``task``) of ``scenario`` at support size ``k``."""
    chosen, size, picked = chosen_tasks(
        refitted, scenario=scenario, k=k, tasks=tasks, task=task, method=method, seed=seed
    )
    unlabelled = picked.without_labels()
    learner, data = refitted.learner, refitted.dataset
    entities = data.raw_ids(picked.axis, picked.entities.numpy())
    out = Explanation(
        refitted.run_id, refitted.learner_name, data.name, refitted.seed, chosen, str(size),
        method, fields_of(learner), entities,
    )  # fmt: skip
    out.reproduced = _reproduced(refitted, chosen, size)
    other_axis = "item" if picked.axis == "user" else "user"
    query_other = picked.query_items if picked.axis == "user" else picked.query_users
    if fields and out.fields and isinstance(learner, ExplainsFields):
        view = learner.field_view(unlabelled)
        found = field_attributions(view, method, samples=samples, seed=seed)
        prediction = view.forward(view.inputs)
        keep = torch.zeros(view.n_fields, dtype=torch.bool)
        base = view.forward(view.masked(keep))
        for n in range(view.inputs.shape[0]):
            t, p = int(view.task[n]), int(view.position[n])
            out.rows.append({
                "task": entities[t],
                other_axis: data.raw_ids(other_axis, np.array([int(query_other[t, p])]))[0],
                "prediction": float(prediction[n]),
                "baseline_prediction": float(base[n]),
                **{name: float(found[n, f]) for f, name in enumerate(view.fields)},
            })  # fmt: skip
        out.shift = [float(v) for v in adaptation_shift(learner, unlabelled, method, seed=seed)]
    elif fields:
        out.not_applicable = NO_FIELDS
    moved = support_attributions(learner, picked)
    support_other = picked.support_items if picked.axis == "user" else picked.support_users
    for t, p, s in torch.nonzero(moved != 0).tolist():
        out.support.append({
            "task": entities[t],
            other_axis: data.raw_ids(other_axis, np.array([int(query_other[t, p])]))[0],
            f"support_{other_axis}": data.raw_ids(other_axis, np.array([int(support_other[t, s])]))[0],
            "support_rating": float(picked.support_ratings[t, s]),
            "moved": float(moved[t, p, s]),
        })  # fmt: skip
    return out


def _reproduced(refitted: Refit, scenario: str, k: SupportSize) -> dict[str, float]:
    """The stored RMSE of the cell on ``scenario`` at ``k`` and the refit's, computed alike."""
    split, _ = refitted.cache.split(refitted.dataset, refitted.seed)
    found = score(refitted.learner, refitted.dataset, split, scenario, k, ("rmse",))
    stored = refitted.stored_rmse.get((scenario, str(k)), float("nan"))
    return {"stored_rmse": stored, "refit_rmse": float(found["rmse"])}


def check(
    refitted: Refit,
    *,
    scenario: str | None = None,
    k: str | None = None,
    tasks: int = 20,
    method: str = "ablation",
    seeds: Sequence[int] = (1, 2),
    seed: int = 0,
    planted_field: str | None = None,
) -> CheckResult:
    """The sanity checks of ``refitted`` on a sample of tasks; stability refits the learner from
    the learner streams of ``seeds`` on the same split. The planted-field check runs on the field
    ``planted_field`` (``user:age``), else on the one a generated dataset declares."""
    learner = refitted.learner
    if not isinstance(learner, ExplainsFields) or not fields_of(learner):
        raise ConfigError(f"{refitted.learner_name}: {NO_FIELDS}")
    size = parse_k(k, refitted)
    chosen = scenario or _default_scenario(refitted, size)
    labelled = _pick_tasks(refitted.tasks(chosen, size), tasks, None, seed, refitted.dataset)
    unlabelled = labelled.without_labels()
    view = learner.field_view(unlabelled)
    if planted_field is not None and planted_field not in view.fields:
        raise ConfigError(
            f"--planted: the model of {refitted.learner_name} has no field {planted_field!r}; "
            f"it has {', '.join(view.fields)}"
        )
    found = field_attributions(view, method, seed=seed)
    others = [found]
    for other_seed in seeds:
        twin = make_learner(refitted.learner_name, refitted.config)
        twin.fit(
            refitted.train,
            rng=learner_seeds(other_seed, refitted.learner_name),
            device=torch.device("cpu"),
        )
        assert isinstance(twin, ExplainsFields)
        others.append(field_attributions(twin.field_view(unlabelled), method, seed=seed))
    planted_field = planted_field or refitted.dataset.extras.get("planted_field")
    planted_result = None
    if isinstance(planted_field, str) and planted_field in view.fields:
        assert labelled.query_ratings is not None
        labels = labelled.query_ratings[view.task, view.position]
        planted_result = planted(view, found, labels, planted_field)
    shift = adaptation_shift(learner, unlabelled, method, seed=seed)
    finite = shift[~np.isnan(shift)]
    result = CheckResult(
        learner=refitted.learner_name,
        dataset=refitted.dataset.name,
        scenario=chosen,
        method=method,
        n_predictions=int(view.inputs.shape[0]),
        randomisation=randomisation(learner, unlabelled, found, method=method, seed=seed),
        deletion=deletion(view, found, seed=seed),
        stability=stability(others) if seeds else None,
        top_fields=top_fields(view.fields, found, seed=seed),
        adaptation_shift=float(finite.mean()) if len(finite) else None,
        planted=planted_result,
    )
    result.judge()
    return result
