"""The dropoutnet learner: without dropout and content it reproduces its warm model, preference
dropout is what makes its content path predict new items, and a new task entity's support becomes
its preference input."""

from __future__ import annotations

import dataclasses

import torch

from bench.evaluation.contract import score
from bench.protocol.episodes import build_tasks, make_meta_train
from bench.protocol.learner_registry import make_learner
from learners.dropoutnet import DropoutNet

from shared import fitted, synthetic_split


def test_the_defaults_follow_the_paper_where_it_is_not_about_scale() -> None:
    config = make_learner("dropoutnet").config
    assert config.dropout == 0.5 and config.content and config.transform
    assert len(config.hidden) == 2 and config.hidden[0] > config.hidden[1]


def test_without_dropout_and_content_it_reduces_to_the_warm_model_on_warm_pairs() -> None:
    data, split, _ = synthetic_split()
    bare = dataclasses.replace(data, user_features=None, item_features=None, content_hash="")
    train = make_meta_train(bare, split)
    # Trained to the end (no early stop), so that the towers come as close as they can.
    learner = fitted("dropoutnet", train, {"dropout": 0.0, "epochs": 15, "patience": 15})
    assert isinstance(learner, DropoutNet)
    assert learner.model.user_content is None and learner.model.item_content is None
    batch = build_tasks(bare, split.scenarios["warm"], 5).without_labels()
    with torch.no_grad():
        towers = learner.predict(batch)
        warm = learner.standardiser.back(learner.warm.predict(learner.standardiser.tasks(batch)))
        biases = fitted("item-mean", train).predict(batch)
    mask = batch.query_mask

    def gap(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(((a - b)[mask] ** 2).mean().sqrt())

    # The towers learn the warm model's scores: within 0.06 stars of them (RMSE; 0.04 measured),
    # while the biases alone are about 0.38 away.
    assert gap(towers, warm) < 0.06 and gap(towers, warm) < gap(biases, warm) / 5


def test_preference_dropout_makes_the_content_path_predict_new_items() -> None:
    data, split, train = synthetic_split()
    metrics = ("rmse", "ndcg@3")
    baseline = score(fitted("item-mean", train), data, split, "item_cold", 5, metrics)
    dropped = score(fitted("dropoutnet", train), data, split, "item_cold", 5, metrics)
    assert dropped["rmse"] < baseline["rmse"] - 0.1
    assert dropped["ndcg@3"] > baseline["ndcg@3"] + 0.1
    # Trained without dropout, the towers lean on preferences that new items do not have.
    kept = score(
        fitted("dropoutnet", train, {"dropout": 0.0}), data, split, "item_cold", 5, metrics
    )
    assert dropped["rmse"] < kept["rmse"] - 0.1


def test_a_new_users_support_becomes_its_preference_input() -> None:
    data, split, train = synthetic_split()
    quick = {"epochs": 2, "hidden": [16], "rank": 4, "embedding_dim": 4}

    def predicted(transform: bool, k: int) -> torch.Tensor:
        learner = fitted("dropoutnet", train, {**quick, "transform": transform})
        batch = build_tasks(data, split.scenarios["user_cold"], k).without_labels()
        with torch.no_grad():
            return learner.predict(batch)

    assert torch.equal(predicted(False, 0), predicted(False, 5))
    assert torch.equal(predicted(True, 0), predicted(False, 0))
    assert not torch.allclose(predicted(True, 5), predicted(True, 0))
