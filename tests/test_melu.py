"""The MeLU learner: content that item-mean cannot see, the paper's defaults, and the field-wise
embeddings of side features (the learner contract runs on it with every built-in learner)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.data.synthetic import SyntheticConfig, generate
from bench.evaluation.contract import score
from bench.protocol import Split, make_protocol
from bench.protocol.episodes import MetaTrain, make_meta_train
from bench.protocol.learner import Learner
from bench.protocol.learner_registry import make_learner
from bench.seeding import Seeds
from learners.melu import MeLU
from learners.network.fields import Field, FieldEmbedding, feature_fields

# Ratings driven by item features: 90% of every latent column's variance is a view of them, and
# item biases are wide. item-mean knows nothing of a new item; a content model does.
CONTENT = SyntheticConfig(
    n_users=300, n_items=200, mean_ratings_per_user=60, feature_share=0.9, item_bias_std=0.8, seed=3
)

ML100K_USER_NAMES = (
    *("age<18", "age>=18", "age>=25"),
    *("gender=F", "gender=M"),
    *("occupation=artist", "occupation=doctor", "occupation=none"),
    *("zip=0", "zip=1", "zip=other"),
)


def test_the_defaults_are_the_papers() -> None:
    config = make_learner("melu").config
    assert (config.embedding_dim, config.hidden) == (32, (64, 64))
    assert (config.inner_lr, config.inner_steps, config.outer_lr) == (5e-6, 1, 5e-5)
    assert (config.meta_batch, config.epochs, config.adapt) == (32, 20, "decision")
    assert not config.embed_ids


@pytest.fixture(scope="module")
def content_split() -> tuple[Split, MetaTrain]:
    data = generate(CONTENT)
    protocol = make_protocol(
        "cold-random", {"support_sizes": [5], "query_size": 5, "new_item_fraction": 0.3}
    )
    split = protocol.split(data, 0)
    return split, make_meta_train(data, split)


def scores(learner: Learner, split: Split) -> dict[str, float]:
    return score(learner, generate(CONTENT), split, "item_cold", 5, ("rmse", "ndcg@3"))


def fitted(name: str, train: MetaTrain, overrides: dict | None = None) -> Learner:
    learner = make_learner(name, overrides)
    learner.fit(train, rng=Seeds(0).child("learner", name), device=torch.device("cpu"))
    return learner


def test_melu_beats_item_mean_on_new_items_from_their_content(
    content_split: tuple[Split, MetaTrain],
) -> None:
    split, train = content_split
    baseline = scores(fitted("item-mean", train), split)
    # item-mean gives every new item the same score, so it ranks them no better than chance.
    # The paper's defaults already rank new items by their content.
    defaults = scores(fitted("melu", train), split)
    assert defaults["ndcg@3"] > baseline["ndcg@3"] + 0.1
    # The paper's global step suits ML-1M's thousands of tasks; on 300 users a larger one learns
    # the item effects within the same 20 epochs, and beats item-mean on RMSE too.
    faster = scores(fitted("melu", train, {"outer_lr": 1e-3}), split)
    assert faster["rmse"] < baseline["rmse"] - 0.1
    assert faster["ndcg@3"] > baseline["ndcg@3"] + 0.1


def test_melu_embeds_content_only_and_adapts_the_decision_layers(
    content_split: tuple[Split, MetaTrain],
) -> None:
    _, train = content_split
    learner = fitted("melu", train, {"meta_steps": 2})
    assert isinstance(learner, MeLU)
    names = [name for name, _ in learner.model.named_parameters()]
    assert not any("other_id" in name for name in names)
    adapted = learner.model.group(learner.config.adapt)
    assert adapted and all(name.startswith("decision.") for name in adapted)
    # An untrained output layer predicts the mean rating: zero weights, the mean as its bias.
    untrained = make_learner("melu")
    untrained.setup(train, rng=Seeds(0), device=torch.device("cpu"))  # type: ignore[attr-defined]
    last = untrained.model.decision[-1]  # type: ignore[attr-defined]
    assert torch.equal(last.weight, torch.zeros_like(last.weight))
    assert float(last.bias.detach()) == pytest.approx(float(train.rating.mean()))


def test_whole_support_trains_as_wide_as_the_widest_validation_task() -> None:
    data = generate(CONTENT)
    split = make_protocol("cold-random", {"support_sizes": ["all"], "query_size": 5}).split(data, 0)
    train = make_meta_train(data, split)
    learner = make_learner("melu")
    assert isinstance(learner, MeLU)
    learner.setup(train, rng=Seeds(0), device=torch.device("cpu"))
    assert train.validation is not None
    widest = int(train.validation.support_mask.sum(1).max())
    assert learner.sizes == [widest]
    batch = learner.sample(train, np.random.default_rng(0))
    assert batch.support_mask.shape == (learner.config.meta_batch, widest)
    assert bool((batch.support_mask.sum(1) > 5).all())  # more than a k-shot support


def test_named_columns_group_into_fields() -> None:
    width = len(ML100K_USER_NAMES)
    features = np.zeros((4, width), dtype=np.float32)
    for row, active in enumerate([(0, 3, 5, 8), (1, 4, 6, 9), (2, 3, 7, 10), (0, 4, 5, 10)]):
        features[row, list(active)] = 1.0
    fields = feature_fields(features, ML100K_USER_NAMES)
    assert [(f.name, f.columns, f.categorical) for f in fields] == [
        ("age", (0, 1, 2), True),
        ("gender", (3, 4), True),
        ("occupation", (5, 6, 7), True),
        ("zip", (8, 9, 10), True),
    ]
    items = np.array([[1, 0, 1, 0.5], [0, 1, 0, 0.7]], dtype=np.float32)
    fields = feature_fields(items, ["genre=Drama", "genre=Comedy", "genre=War", "year_scaled"])
    assert [(f.name, f.columns, f.categorical) for f in fields] == [
        ("genre", (0, 1, 2), True),
        ("year_scaled", (3,), False),
    ]
    unnamed = feature_fields(items)
    assert [(f.columns, f.categorical) for f in unnamed] == [((0, 1, 2), True), ((3,), False)]


def test_a_multi_hot_field_embeds_the_mean_of_its_values() -> None:
    embed = FieldEmbedding([Field("genre", (0, 1, 2), True), Field("year", (3,), False)], dim=4)
    rows = torch.tensor([[1.0, 0.0, 1.0, 0.5], [0.0, 0.0, 0.0, 0.5]])
    out = embed(rows)
    assert out.shape == (2, 8)
    genre_map = embed.maps[0]
    assert isinstance(genre_map, torch.nn.Linear)
    genre = genre_map.weight  # [dim, values]
    assert torch.allclose(out[0, :4], (genre[:, 0] + genre[:, 2]) / 2)
    assert torch.equal(out[1, :4], torch.zeros(4))  # no genre: a zero embedding
    assert torch.allclose(out[:, 4:], embed.maps[1](rows[:, 3:]))


def test_melu_needs_side_features() -> None:
    data = generate(SyntheticConfig(n_users=30, n_items=20, seed=1))
    bare = dataclasses.replace(data, user_features=None, item_features=None, content_hash="")
    reason = MeLU.not_applicable(bare)
    assert reason is not None and "side features" in reason
    assert MeLU.not_applicable(data) is None
