"""Field and support attributions, and their sanity checks, on a small planted dataset:
ratings = mean + beta * g(user age) + low-rank term + noise, with fields that carry nothing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from bench.data.dataset import Dataset
from bench.data.planted import PlantedConfig, generate_planted
from bench.evaluation.attribution import (
    METHODS,
    adaptation_shift,
    baseline_prediction,
    field_attributions,
    fields_of,
    leave_one_out,
    support_attributions,
)
from bench.evaluation.explanation_checks import (
    PLANTED_MIN,
    RANDOMISATION_MAX,
    deletion,
    planted,
    randomisation,
)
from bench.protocol import make_protocol
from bench.protocol.episodes import TaskBatch, build_tasks, make_meta_train
from bench.protocol.explaining import FieldView
from bench.protocol.learner import Learner
from bench.protocol.learner_registry import learner_class, make_learner
from bench.seeding import Seeds

pytest.importorskip("captum")  # the explain extra; CI installs it with dev

PLANTED = "user:age"
NOISE = "user:zip"
SMALL = {"embedding_dim": 8, "hidden": (16, 16)}
CONFIGS = {
    "fine-tune": {**SMALL, "epochs": 10},
    # The paper's step sizes suit thousands of tasks; on 400 users larger ones learn in 20 epochs.
    "melu": {**SMALL, "epochs": 20, "outer_lr": 5e-3, "inner_lr": 1e-3},
}


def split_of(data: Dataset) -> tuple[object, object]:
    protocol = make_protocol("cold-random", {"support_sizes": [10], "query_size": 10})
    split = protocol.split(data, 0)
    return split, make_meta_train(data, split)


@pytest.fixture(scope="module")
def planted_data() -> Dataset:
    return generate_planted(PlantedConfig(seed=0))


@pytest.fixture(scope="module")
def setting(planted_data: Dataset) -> tuple[object, TaskBatch]:
    split, train = split_of(planted_data)
    tasks = build_tasks(planted_data, split.scenarios["user_cold"], 10).select(slice(0, 20))  # type: ignore[attr-defined]
    return train, tasks


def fit(name: str, train: object, seed: int = 0, overrides: dict | None = None) -> Learner:
    learner = make_learner(name, {**CONFIGS.get(name, {}), **(overrides or {})})
    learner.fit(train, rng=Seeds(seed).child("learner", name), device=torch.device("cpu"))  # type: ignore[arg-type]
    return learner


@pytest.fixture(scope="module")
def fitted(setting: tuple[object, TaskBatch]) -> dict[str, Learner]:
    train, _ = setting
    return {name: fit(name, train) for name in ("fine-tune", "melu", "mf")}


def view_of(learner: Learner, tasks: TaskBatch) -> FieldView:
    return learner.field_view(tasks.without_labels())  # type: ignore[attr-defined]


def labels_of(view: FieldView, tasks: TaskBatch) -> torch.Tensor:
    assert tasks.query_ratings is not None
    return tasks.query_ratings[view.task, view.position]


@pytest.mark.parametrize("name", ["fine-tune", "melu"])
def test_the_view_predicts_what_the_learner_predicts(name: str, fitted, setting) -> None:
    _, tasks = setting
    view = view_of(fitted[name], tasks)
    predicted = fitted[name].predict(tasks.without_labels())[view.task, view.position]
    inside = (predicted > 1.0) & (predicted < 5.0)  # predict clamps to the scale, the view not
    assert int(inside.sum()) > 100
    assert torch.allclose(view.forward(view.inputs)[inside], predicted[inside], atol=1e-4)


@pytest.mark.parametrize("name", ["tanp", "mamo", "meta-embedding", "dropoutnet"])
def test_models_that_decode_pairs_their_own_way_open_their_fields(name: str, setting) -> None:
    train, tasks = setting
    learner = make_learner(name, dict(learner_class(name).quick_config))
    learner.fit(train, rng=Seeds(0).child("learner", name), device=torch.device("cpu"))  # type: ignore[arg-type]
    unlabelled = tasks.select(slice(0, 6)).without_labels()
    view = view_of(learner, unlabelled)
    assert PLANTED in view.fields and NOISE in view.fields
    predicted = learner.predict(unlabelled)[view.task, view.position]
    inside = (predicted > 1.0) & (predicted < 5.0)
    assert torch.allclose(view.forward(view.inputs)[inside], predicted[inside], atol=1e-4)
    before = view_of_unadapted(learner, unlabelled)
    assert not torch.allclose(before.forward(before.inputs), view.forward(view.inputs))
    assert bool((field_attributions(view).abs().sum(1) > 0).all())


def view_of_unadapted(learner: Learner, tasks: TaskBatch) -> FieldView:
    return learner.field_view(tasks, adapted=False)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["fine-tune", "melu"])
@pytest.mark.parametrize("method", ["ablation", "shapley-sampled"])
def test_the_planted_field_is_used_and_ranks_first(name: str, method: str, fitted, setting) -> None:
    _, tasks = setting
    view = view_of(fitted[name], tasks)
    attributions = field_attributions(view, method)
    found = planted(view, attributions, labels_of(view, tasks), PLANTED)
    assert found["rmse_rise"] > 0.2  # the model uses the planted field ...
    assert found["top1_rate"] >= PLANTED_MIN  # ... and the attributions say so


@pytest.mark.parametrize("name", ["fine-tune", "melu"])
def test_the_noise_field_ranks_last_or_near_nothing(name: str, fitted, setting) -> None:
    _, tasks = setting
    view = view_of(fitted[name], tasks)
    magnitude = field_attributions(view).abs()
    noise = magnitude[:, view.fields.index(NOISE)]
    last = noise <= magnitude.min(1).values
    small = noise <= 0.1 * magnitude.max(1).values
    assert bool((last | small).all())


@pytest.mark.parametrize("method", METHODS)
def test_a_field_the_model_never_receives_gets_exactly_zero(method: str, fitted, setting) -> None:
    _, tasks = setting
    view = view_of(fitted["melu"], tasks.select(slice(0, 4)))
    blind = view.fields.index("item:era")
    columns = view.groups == blind

    def without_era(x: torch.Tensor) -> torch.Tensor:
        baseline = view.baseline.repeat(x.shape[0] // view.inputs.shape[0], 1)
        return view.forward(torch.where(columns, baseline, x))

    attributions = field_attributions(replace(view, forward=without_era), method, samples=5)
    assert bool((attributions[:, blind] == 0).all())
    assert float(attributions.abs().sum()) > 0


def test_exact_shapley_values_sum_to_the_change_from_the_baseline(fitted, setting) -> None:
    _, tasks = setting
    view = view_of(fitted["melu"], tasks.select(slice(0, 4)))
    assert view.n_fields <= 8
    shapley = field_attributions(view, "shapley")
    gap = view.forward(view.inputs) - baseline_prediction(view)
    assert torch.allclose(shapley.sum(1), gap, atol=1e-4)
    # Ablation is not complete in general: the check above is not true of any attribution.
    sampled = field_attributions(view, "shapley-sampled", samples=50)
    assert (sampled - shapley).abs().max() < 0.1 * shapley.abs().max()


def test_one_ablation_recomputed_by_hand(fitted, setting) -> None:
    _, tasks = setting
    view = view_of(fitted["fine-tune"], tasks.select(slice(0, 3)))
    f = view.fields.index(PLANTED)
    keep = torch.ones(view.n_fields, dtype=torch.bool)
    keep[f] = False
    by_hand = view.forward(view.inputs) - view.forward(view.masked(keep))
    assert torch.allclose(field_attributions(view, "ablation")[:, f], by_hand, atol=1e-5)


@pytest.mark.parametrize("name", ["fine-tune", "melu"])
def test_randomised_weights_give_other_attributions(name: str, fitted, setting) -> None:
    _, tasks = setting
    learner = fitted[name]
    trained = field_attributions(view_of(learner, tasks))
    found = randomisation(learner, tasks.without_labels(), trained)
    assert set(found) == {"all", *(f"top-{k}" for k in range(1, len(learner.parameter_layers)))}
    assert max(found.values()) < RANDOMISATION_MAX


def test_ratings_shuffled_across_users_lose_the_planted_lead(planted_data: Dataset) -> None:
    order = np.random.default_rng(0).permutation(planted_data.n_ratings)
    shuffled = replace(planted_data, rating=planted_data.rating[order], content_hash="")
    split, train = split_of(shuffled)
    tasks = build_tasks(shuffled, split.scenarios["user_cold"], 10).select(slice(0, 20))  # type: ignore[attr-defined]
    view = view_of(fit("fine-tune", train), tasks)
    found = planted(view, field_attributions(view), labels_of(view, tasks), PLANTED)
    assert found["top1_rate"] < 0.5


@pytest.mark.parametrize("name", ["fine-tune", "melu"])
def test_deletion_in_attribution_order_beats_random_order(name: str, fitted, setting) -> None:
    _, tasks = setting
    view = view_of(fitted[name], tasks)
    found = deletion(view, field_attributions(view))
    assert found["gain_low"] > 0
    assert found["ranked_area"] > found["random_area"]


def test_the_same_seed_gives_identical_attributions(fitted, setting) -> None:
    train, tasks = setting
    again = fit("melu", train)
    first = field_attributions(view_of(fitted["melu"], tasks), "shapley-sampled", seed=3)
    second = field_attributions(view_of(again, tasks), "shapley-sampled", seed=3)
    assert torch.equal(first, second)
    other = field_attributions(view_of(again, tasks), "shapley-sampled", samples=3, seed=4)
    assert not torch.equal(first, other)


def test_mf_support_attributions_equal_the_closed_form(fitted, setting) -> None:
    _, tasks = setting
    mf = fitted["mf"]
    exact = support_attributions(mf, tasks)
    refitted = leave_one_out(mf, tasks)
    assert float(exact.abs().max()) > 0.01
    assert torch.allclose(exact, refitted, atol=1e-4)
    assert fields_of(make_learner("item-mean")) == ()  # no fields: no field attributions


def test_mf_fields_act_through_the_prior_of_a_new_user_only(fitted, setting) -> None:
    _, tasks = setting
    mf = fitted["mf"]
    unlabelled = tasks.without_labels()
    view = view_of(mf, tasks)
    scores = mf.score(unlabelled.without_queries(), unlabelled.query_items)
    assert torch.allclose(view.forward(view.inputs), scores[view.task, view.position], atol=1e-4)
    attributions = field_attributions(view)
    # Query items are known in user_cold: their fields never reach the model.
    items = [f for f, name in enumerate(view.fields) if name.startswith("item:")]
    assert items and bool((attributions[:, items] == 0).all())
    found = planted(view, attributions, labels_of(view, tasks), PLANTED)
    assert found["rmse_rise"] > 0.05 and found["top1_rate"] >= PLANTED_MIN


def test_support_attributions_by_readaptation(fitted, setting) -> None:
    _, tasks = setting
    found = support_attributions(fitted["fine-tune"], tasks.select(slice(0, 4)))
    assert found.shape == (4, tasks.query_mask.shape[1], tasks.support_mask.shape[1])
    assert float(found.abs().sum()) > 0
    assert bool((found[:, :, ~tasks.support_mask[:4].any(0)] == 0).all())


def test_adaptation_shift_is_one_without_adaptation(setting) -> None:
    train, tasks = setting
    still = fit("fine-tune", train, overrides={"finetune_steps": 0})
    assert np.allclose(adaptation_shift(still, tasks.select(slice(0, 5))), 1.0)
    moving = fit("fine-tune", train, overrides={"finetune_steps": 30, "finetune_lr": 0.2})
    assert float(np.nanmin(adaptation_shift(moving, tasks.select(slice(0, 5))))) < 1.0


@pytest.mark.parametrize("name", ["protonet", "maml"])
def test_episodic_learners_open_their_fields(name: str) -> None:
    # Episodic training draws tasks of support + query ratings from training users: more ratings.
    data = generate_planted(PlantedConfig(n_users=150, ratings_per_user=60, seed=1))
    split, train = split_of(data)
    tasks = build_tasks(data, split.scenarios["user_cold"], 10).select(slice(0, 6))  # type: ignore[attr-defined]
    learner = make_learner(name, dict(learner_class(name).quick_config))
    learner.fit(train, rng=Seeds(0).child("learner", name), device=torch.device("cpu"))  # type: ignore[arg-type]
    unlabelled = tasks.without_labels()
    view = view_of(learner, unlabelled)
    predicted = learner.predict(unlabelled)[view.task, view.position]
    inside = (predicted > 1.0) & (predicted < 5.0)
    assert int(inside.sum()) > 0
    assert torch.allclose(view.forward(view.inputs)[inside], predicted[inside], atol=1e-4)
    before = view_of_unadapted(learner, unlabelled)
    assert not torch.allclose(before.forward(before.inputs), view.forward(view.inputs))
