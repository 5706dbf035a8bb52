"""The meta-learners: maml agrees with learn2learn's MAML, protonet handles missing classes,
fine-tuning helps on the support set, configs are checked, and runs are reproducible."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bench.data.dataset import Dataset
from bench.errors import ConfigError, RegistryError
from bench.protocol import Split, make_protocol
from bench.protocol.episodes import MetaTrain, TaskBatch, build_tasks, make_meta_train
from bench.protocol.learner import Learner
from bench.protocol.learner_registry import make_learner
from bench.seeding import Seeds
from learners.network import masked_mse, mixed_support

META_LEARNERS = ("maml-l2l", "maml", "protonet", "fine-tune")
SMALL_NET: dict[str, Any] = {"embedding_dim": 8, "hidden": [16, 16]}
QUICK: dict[str, dict[str, Any]] = {
    "maml-l2l": {**SMALL_NET, "meta_steps": 6, "meta_batch": 8, "eval_every": 3},
    "maml": {**SMALL_NET, "meta_steps": 6, "meta_batch": 8, "eval_every": 3},
    "protonet": {**SMALL_NET, "meta_steps": 6, "meta_batch": 8, "eval_every": 3, "proto_dim": 8},
    "fine-tune": {**SMALL_NET, "epochs": 1},
}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def split(small_dataset: Dataset) -> Split:
    protocol = make_protocol(
        "cold-random", {"name": "cold-random", "support_sizes": [1, 5, 10], "query_size": 10}
    )
    return protocol.split(small_dataset, 0)


@pytest.fixture(scope="module")
def train(small_dataset: Dataset, split: Split) -> MetaTrain:
    return make_meta_train(small_dataset, split)


@pytest.fixture(scope="module")
def cold_tasks(small_dataset: Dataset, split: Split) -> TaskBatch:
    return build_tasks(small_dataset, split.scenarios["user_cold"], 5)


def meta_batch(train: MetaTrain, n_tasks: int = 12, seed: int = 1) -> TaskBatch:
    """Training tasks with mixed support sizes, so padding and masks are exercised."""
    batch = train.sampler.sample(np.random.default_rng(seed), n_tasks, 10, 10)
    return mixed_support(batch, [1, 5, 10], np.random.default_rng(seed + 1))


def fitted(name: str, train: MetaTrain, seed: int = 0, **overrides: Any) -> Learner:
    learner = make_learner(name, {**QUICK[name], **overrides})
    learner.fit(train, rng=Seeds(seed), device=CPU)
    return learner


@pytest.mark.parametrize("adapt", ["decision", "all"])
@pytest.mark.parametrize("first_order", [False, True])
def test_maml_meta_gradients_equal_learn2learn(
    train: MetaTrain, adapt: str, first_order: bool
) -> None:
    overrides = {**SMALL_NET, "adapt": adapt, "first_order": first_order, "inner_steps": 2}
    vectorised = make_learner("maml", overrides)
    reference = make_learner("maml-l2l", overrides)
    for learner in (vectorised, reference):
        learner.setup(train, rng=Seeds(3), device=CPU)  # type: ignore[attr-defined]
    batch = meta_batch(train)
    losses = []
    for learner in (vectorised, reference):
        loss = learner.meta_loss(batch)  # type: ignore[attr-defined]
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    ours = dict(vectorised.model.named_parameters())  # type: ignore[attr-defined]
    theirs = dict(reference.model.named_parameters())  # type: ignore[attr-defined]
    assert ours.keys() == theirs.keys()
    for name, param in theirs.items():
        assert param.grad is not None and ours[name].grad is not None, name
        scale = param.grad.norm().clamp(min=1e-8)
        assert float((ours[name].grad - param.grad).norm() / scale) < 1e-4, name
    # The inner loop matters: second-order terms reach the embeddings only through it.
    if adapt == "decision" and not first_order:
        embedding_grad = ours["embedding.other_id.weight"].grad
        assert embedding_grad is not None and float(embedding_grad.abs().sum()) > 0


def test_maml_and_learn2learn_agree_after_training(
    train: MetaTrain, small_dataset: Dataset, split: Split
) -> None:
    overrides = {"meta_steps": 20, "meta_batch": 16, "eval_every": 5, **SMALL_NET}
    vectorised = fitted("maml", train, **overrides)
    reference = fitted("maml-l2l", train, **overrides)
    for scenario in ("user_cold", "warm"):
        tasks = build_tasks(small_dataset, split.scenarios[scenario], 5)
        assert tasks.query_ratings is not None
        with torch.no_grad():
            ours = vectorised.predict(tasks.without_labels())
            theirs = reference.predict(tasks.without_labels())
        mask = tasks.query_mask
        assert torch.allclose(ours[mask], theirs[mask], atol=1e-3)
        rmse = [
            float(masked_mse(p, tasks.query_ratings, mask).mean().sqrt()) for p in (ours, theirs)
        ]
        assert rmse[0] == pytest.approx(rmse[1], abs=1e-4)


def test_training_lowers_the_validation_error(train: MetaTrain) -> None:
    learner = fitted("maml", train, meta_steps=30, eval_every=5, patience=10)
    history = learner.history  # type: ignore[attr-defined]
    untrained = make_learner("maml", QUICK["maml"])
    untrained.setup(train, rng=Seeds(0), device=CPU)  # type: ignore[attr-defined]
    assert train.validation is not None
    before = untrained.validation_rmse(train.validation)  # type: ignore[attr-defined]
    assert min(score for _, score in history) < before


@pytest.mark.parametrize("classes", ["levels", "like"])
def test_protonet_missing_class_falls_back_to_global_prototype(
    train: MetaTrain, classes: str
) -> None:
    learner = make_learner("protonet", {**QUICK["protonet"], "classes": classes})
    learner.setup(train, rng=Seeds(0), device=CPU)  # type: ignore[attr-defined]
    batch = meta_batch(train, n_tasks=4)
    # Every support rating at the top of the scale: all other classes are missing.
    top = float(train.rating_scale[1])
    batch = replace(batch, support_ratings=torch.full_like(batch.support_ratings, top))
    model = learner.model  # type: ignore[attr-defined]
    with torch.no_grad():
        protos = learner.prototypes(batch)  # type: ignore[attr-defined]
        pred = learner.predict(batch.without_labels())
    n_classes = len(model.class_values)
    assert protos.shape == (4, n_classes, model.global_prototypes.shape[1])
    for c in range(n_classes - 1):
        assert torch.equal(protos[:, c], model.global_prototypes[c].expand(4, -1))
    assert not torch.allclose(protos[:, -1], model.global_prototypes[-1].expand(4, -1))
    assert pred.shape == batch.query_items.shape and torch.isfinite(pred).all()
    # A task without any support rating predicts from the global prototypes alone.
    empty = replace(batch, support_mask=torch.zeros_like(batch.support_mask))
    with torch.no_grad():
        assert torch.equal(
            learner.prototypes(empty),  # type: ignore[attr-defined]
            model.global_prototypes.expand(4, -1, -1),
        )


def test_protonet_rejects_a_zero_prior_weight() -> None:
    with pytest.raises(ConfigError, match="prior_weight"):
        make_learner("protonet", {"prior_weight": 0.0})


def test_fine_tune_improves_on_the_support_set(train: MetaTrain, cold_tasks: TaskBatch) -> None:
    learner = fitted("fine-tune", train)
    # Ask for predictions on the support ratings themselves.
    on_support = replace(
        cold_tasks,
        query_users=cold_tasks.support_users,
        query_items=cold_tasks.support_items,
        query_mask=cold_tasks.support_mask,
        query_ratings=None,
    )
    # The network works on standardised ratings: compare in those units.
    on_support = learner.standardiser.tasks(on_support)  # type: ignore[attr-defined]
    target = learner.standardiser.tasks(cold_tasks).support_ratings  # type: ignore[attr-defined]
    mask = cold_tasks.support_mask
    before = learner.adapt_predict(on_support, steps=0)  # type: ignore[attr-defined]
    after = learner.adapt_predict(on_support)  # type: ignore[attr-defined]
    assert float(masked_mse(after, target, mask).mean()) < 0.95 * float(
        masked_mse(before, target, mask).mean()
    )


@pytest.mark.parametrize("name", META_LEARNERS)
def test_builds_with_defaults_and_rejects_unknown_fields(name: str) -> None:
    learner = make_learner(name)
    assert learner.config_dict()["embedding_dim"] > 0
    with pytest.raises(ConfigError, match="no_such_field"):
        make_learner(name, {"no_such_field": 1})


@pytest.mark.parametrize("name", META_LEARNERS)
def test_predictions_have_the_query_shape_and_are_reproducible(
    name: str, train: MetaTrain, cold_tasks: TaskBatch
) -> None:
    predictions = []
    for _ in range(2):
        learner = fitted(name, train, seed=5)
        with torch.no_grad():
            predictions.append(learner.predict(cold_tasks.without_labels()))
    pred = predictions[0]
    assert pred.shape == cold_tasks.query_items.shape
    assert torch.isfinite(pred).all()
    assert torch.equal(predictions[0], predictions[1])
    other = fitted(name, train, seed=6)
    with torch.no_grad():
        assert not torch.equal(other.predict(cold_tasks.without_labels()), pred)


def test_core_runs_without_learn2learn() -> None:
    code = (
        "import sys; sys.modules['learn2learn'] = None\n"
        "import bench.engine.runner, bench.cli, learners\n"
        "from bench.protocol.learner_registry import make_learner\n"
        "from bench.errors import RegistryError\n"
        "make_learner('maml')\n"
        "try:\n"
        "    make_learner('maml-l2l')\n"
        "except RegistryError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "make setup" in done.stdout and "install_learn2learn.sh" in done.stdout


def test_missing_learn2learn_is_a_registry_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from learners.maml.reference import import_learn2learn

    monkeypatch.setitem(sys.modules, "learn2learn", None)
    with pytest.raises(RegistryError, match="make setup"):
        import_learn2learn()


@pytest.mark.parametrize("name", META_LEARNERS)
def test_item_as_task(name: str, small_dataset: Dataset) -> None:
    protocol = make_protocol(
        "cold-random",
        {"name": "cold-random", "task_axis": "item", "support_sizes": [1, 5], "query_size": 5},
    )
    item_split = protocol.split(small_dataset, 0)
    learner = fitted(name, make_meta_train(small_dataset, item_split))
    tasks = build_tasks(small_dataset, item_split.scenarios["item_cold"], 5)
    assert tasks.axis == "item" and tasks.n_tasks > 0
    with torch.no_grad():
        pred = learner.predict(tasks.without_labels())
    assert pred.shape == tasks.query_items.shape
    assert torch.isfinite(pred[tasks.query_mask]).all()


def test_maml_implementations_give_the_same_rows_through_the_runner(tmp_path: Path) -> None:
    """Both MAML learners declare the algorithm "maml", so the runner gives them the same random
    streams and they store the same numbers (to float rounding), though neither is seeded by hand."""
    from bench import api

    config = {**SMALL_NET, "meta_steps": 6, "meta_batch": 8, "eval_every": 3}
    results = api.run_grid(
        datasets={"synthetic": {"n_users": 60, "n_items": 40, "min_ratings_per_user": 10}},
        learners={"maml": config, "maml-l2l": config},
        protocol={"name": "cold-random", "support_sizes": [3], "query_size": 4},
        scenarios=["warm", "user_cold"],
        seeds=2,
        metrics=["rmse", "mae"],
        store=tmp_path / "maml.sqlite",
        progress=False,
    )
    scored = results.metrics[results.metrics["metric"].isin(["rmse", "mae"])]
    rows = scored.pivot_table(
        index=["seed", "scenario", "k", "metric"], columns="learner", values="value"
    )
    assert len(rows) == 2 * 2 * 2
    assert np.allclose(rows["maml"], rows["maml-l2l"], atol=1e-4)
    # Streams are shared by algorithm, not by accident: each seed still differs.
    by_seed = rows["maml"].unstack("seed")
    assert not np.allclose(by_seed[0], by_seed[1])
