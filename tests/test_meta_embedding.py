"""The meta-embedding learner: the paper's meta objective, generated embeddings for unseen ids only,
and new items predicted from their content better than item-mean and than a zero embedding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.evaluation.contract import score
from bench.protocol.episodes import EpisodeSampler, build_tasks, make_meta_train
from bench.protocol.learner_registry import make_learner
from learners.meta_embedding import MetaEmbedding

from shared import fitted, synthetic_split


def test_the_defaults_are_the_papers() -> None:
    config = make_learner("meta-embedding").config
    assert (config.alpha, config.cold_lr, config.generator_lr) == (0.1, 1e-4, 1e-3)
    assert config.output_scale == 0.2


def test_only_unseen_ids_get_generated_embeddings() -> None:
    data, split, train = synthetic_split()
    learner = fitted("meta-embedding", train, {"epochs": 3, "meta_steps": 20})
    assert isinstance(learner, MetaEmbedding)
    # The same network pre-trained from the same streams, without a generator.
    base = fitted("fine-tune", train, {"epochs": 3}, stream="meta-embedding")
    unseen = torch.as_tensor(~train.known_items)
    table = learner.model.embedding["other_id"].weight.detach()
    base_table = base.model.embedding["other_id"].weight.detach()
    assert torch.equal(table[~unseen], base_table[~unseen])
    ids = torch.nonzero(unseen).squeeze(1)
    with torch.no_grad():
        generated = learner.generator(learner.content_embedding(ids))
    assert torch.equal(table[unseen], generated) and bool(generated.abs().sum() > 0)
    assert bool((learner.model.other_known == 1).all())
    assert learner.generator_log.steps == 20
    warm = build_tasks(data, split.scenarios["warm"], 5).without_labels()
    with torch.no_grad():
        assert torch.equal(learner.predict(warm), base.predict(warm))


def test_batch_a_reaches_the_warm_up_loss_only_through_the_warm_up_step() -> None:
    _, _, train = synthetic_split()
    sampler = EpisodeSampler(train.user, train.item, train.rating, "item", train.n_items)
    batch = sampler.sample(np.random.default_rng(0), 8, 10, 10)
    shuffled = dataclasses.replace(batch, support_ratings=batch.support_ratings.flip(1))

    def losses(overrides: dict) -> tuple[float, float]:
        learner = fitted("meta-embedding", train, {"epochs": 1, "meta_steps": 0, **overrides})
        assert isinstance(learner, MetaEmbedding)
        return float(learner.meta_loss(batch).detach()), float(learner.meta_loss(shuffled).detach())

    # alpha = 0 leaves the warm-up loss alone: batch a counts through the step on the embedding.
    stepped = losses({"alpha": 0.0, "cold_lr": 0.5})
    assert stepped[0] != pytest.approx(stepped[1], rel=1e-6)
    unstepped = losses({"alpha": 0.0, "cold_lr": 0.0})
    assert unstepped[0] == pytest.approx(unstepped[1], rel=1e-6)


def test_meta_embedding_beats_item_mean_and_a_zero_embedding_on_new_items() -> None:
    data, split, train = synthetic_split()
    metrics = ("rmse", "ndcg@3")
    baseline = score(fitted("item-mean", train), data, split, "item_cold", 5, metrics)
    generated = score(fitted("meta-embedding", train), data, split, "item_cold", 5, metrics)
    assert generated["rmse"] < baseline["rmse"] - 0.1
    assert generated["ndcg@3"] > baseline["ndcg@3"] + 0.1
    zero = score(
        fitted("fine-tune", train, stream="meta-embedding"), data, split, "item_cold", 5, metrics
    )
    assert generated["rmse"] < zero["rmse"] - 0.01


def test_it_needs_the_features_of_the_side_whose_ids_it_generates() -> None:
    data, split, _ = synthetic_split()
    no_items = dataclasses.replace(data, item_features=None, content_hash="")
    with pytest.raises(ValueError, match="item id embeddings from item features"):
        fitted("meta-embedding", make_meta_train(no_items, split), {"epochs": 1})
    bare = dataclasses.replace(no_items, user_features=None, content_hash="")
    reason = MetaEmbedding.not_applicable(bare)
    assert reason is not None and "side features" in reason
