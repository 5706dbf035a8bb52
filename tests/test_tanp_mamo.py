"""TaNP and MAMO: the papers' defaults, new items ranked from content that item-mean cannot see,
finite predictions that tell query items apart, the parts of each model doing what their papers
say, and a training step that cannot turn the parameters into NaN."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from bench.data.dataset import Dataset
from bench.data.synthetic import SyntheticConfig, generate
from bench.evaluation.contract import score
from bench.protocol import SCENARIOS, Split, make_protocol
from bench.protocol.episodes import MetaTrain, TaskBatch, build_tasks, make_meta_train
from bench.protocol.learner import Learner
from bench.protocol.learner_registry import make_learner
from bench.seeding import Seeds
from learners.mamo import MAMO
from learners.tanp import TaNP, clustering_loss, gaussian_kl

from shared import QUICK

# Ratings driven by item features (as in the MeLU test): item-mean knows nothing of a new item.
CONTENT = SyntheticConfig(
    n_users=300, n_items=200, mean_ratings_per_user=60, feature_share=0.9, item_bias_std=0.8, seed=3
)
CPU = torch.device("cpu")
NAMES = ("tanp", "mamo")


@pytest.fixture(scope="module")
def content() -> tuple[Dataset, Split, MetaTrain]:
    data = generate(CONTENT)
    protocol = make_protocol(
        "cold-random", {"support_sizes": [0, 5], "query_size": 5, "new_item_fraction": 0.3}
    )
    split = protocol.split(data, 0)
    return data, split, make_meta_train(data, split)


def fitted(name: str, train: MetaTrain, overrides: dict[str, Any] | None = None) -> Learner:
    learner = make_learner(name, overrides)
    learner.fit(train, rng=Seeds(0).child("learner", name), device=CPU)
    return learner


@pytest.fixture(scope="module")
def trained(content: tuple[Dataset, Split, MetaTrain]) -> dict[str, Learner]:
    """Each learner fitted with its defaults, and item-mean."""
    _, _, train = content
    return {name: fitted(name, train) for name in (*NAMES, "item-mean")}


def test_the_defaults_are_the_papers() -> None:
    tanp = make_learner("tanp").config
    assert (tanp.embedding_dim, tanp.hidden, tanp.encoder_hidden) == (32, (32, 32, 16), (32, 16))
    assert (tanp.latent_dim, tanp.task_hidden, tanp.task_dim) == (32, (32, 32), 16)
    assert (tanp.clusters, tanp.temperature, tanp.cluster_weight) == (10, 1.0, 1.0)
    assert (tanp.outer_lr, tanp.meta_batch, tanp.epochs, tanp.modulation) == (1e-4, 32, 100, "film")
    mamo = make_learner("mamo").config
    assert (mamo.memories, mamo.profile_rate, mamo.bias_rate) == (3, 0.5, 0.05)
    assert (mamo.preference_rate, mamo.tau, mamo.local_lr, mamo.local_steps) == (0.1, 0.01, 0.01, 3)
    assert mamo.first_order and not tanp.embed_ids and not mamo.embed_ids


@pytest.mark.parametrize("name", NAMES)
def test_beats_item_mean_on_new_items_from_their_content(
    name: str, content: tuple[Dataset, Split, MetaTrain], trained: dict[str, Learner]
) -> None:
    data, split, _ = content
    metrics = ("rmse", "ndcg@3")
    baseline = score(trained["item-mean"], data, split, "item_cold", 5, metrics)
    learner = score(trained[name], data, split, "item_cold", 5, metrics)
    # item-mean scores every new item alike: it ranks them no better than chance.
    assert learner["ndcg@3"] > baseline["ndcg@3"] + 0.1, (learner, baseline)
    assert learner["rmse"] < baseline["rmse"] - 0.1, (learner, baseline)


@pytest.mark.parametrize("name", NAMES)
def test_predictions_are_finite_and_differ_between_query_items(
    name: str, content: tuple[Dataset, Split, MetaTrain], trained: dict[str, Learner]
) -> None:
    data, split, _ = content
    for scenario in SCENARIOS:
        for k in (0, 5):
            tasks = build_tasks(data, split.scenarios[scenario], k).without_labels()
            with torch.no_grad():
                pred = trained[name].predict(tasks)
            valid = pred[tasks.query_mask]
            assert bool(torch.isfinite(valid).all()), (scenario, k)
            if name == "tanp" and k == 0:
                # Without support TaNP's modulation is one fixed vector that scales the pair's
                # features down (the paper never predicts there): nearly one rating per task.
                continue
            # A constant per task (what NaN-filled or collapsed models give) ranks nothing.
            spread = torch.where(tasks.query_mask, pred, torch.nan)
            per_task = np.nanstd(spread.double().numpy(), axis=1)
            several = tasks.query_mask.sum(1).numpy() >= 2
            assert (per_task[several] > 1e-3).mean() > 0.95, (scenario, k)


@pytest.mark.parametrize("name", NAMES)
def test_the_support_ratings_change_the_predictions(
    name: str, content: tuple[Dataset, Split, MetaTrain], trained: dict[str, Learner]
) -> None:
    data, split, _ = content
    tasks = build_tasks(data, split.scenarios["user_cold"], 5).without_labels()
    flipped = dataclasses.replace(tasks, support_ratings=6.0 - tasks.support_ratings)
    with torch.no_grad():
        before, after = trained[name].predict(tasks), trained[name].predict(flipped)
    assert float((before - after)[tasks.query_mask].abs().mean()) > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_a_non_finite_step_is_skipped_and_the_parameters_stay(
    name: str, content: tuple[Dataset, Split, MetaTrain]
) -> None:
    _, _, train = content
    learner = make_learner(name, QUICK[name])
    assert isinstance(learner, TaNP | MAMO)
    learner.setup(train, rng=Seeds(0), device=CPU)
    batch: TaskBatch = learner.sample(train, np.random.default_rng(0))
    assert batch.query_ratings is not None
    poisoned = dataclasses.replace(
        batch, query_ratings=torch.full_like(batch.query_ratings, float("nan"))
    )
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    loss = learner.meta_step(poisoned)
    assert np.isnan(loss) and learner.skipped_steps == 1
    after = learner.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert np.isfinite(learner.meta_step(batch))
    changed = learner.model.state_dict()
    assert any(not torch.equal(before[k], changed[k]) for k in before)


# TaNP's parts -----------------------------------------------------------------------------------


def test_the_kl_term_is_the_gaussian_kl() -> None:
    gen = torch.Generator().manual_seed(0)
    mu_q, mu_p = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    lv_q, lv_p = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    q = torch.distributions.Normal(mu_q, (0.5 * lv_q).exp())
    p = torch.distributions.Normal(mu_p, (0.5 * lv_p).exp())
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    assert torch.allclose(gaussian_kl(mu_q, lv_q, mu_p, lv_p), expected, atol=1e-5)
    assert torch.allclose(gaussian_kl(mu_q, lv_q, mu_q, lv_q), torch.zeros(4), atol=1e-6)


def test_the_clustering_target_sharpens_the_assignments() -> None:
    # Assignments already one-hot are their own target: nothing to learn.
    sharp = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert float(clustering_loss(sharp)) == pytest.approx(0.0, abs=1e-6)
    soft = torch.tensor([[0.6, 0.4], [0.3, 0.7]], requires_grad=True)
    loss = clustering_loss(soft)
    assert float(loss.detach()) > 0
    (g,) = torch.autograd.grad(loss, soft)
    # The gradient pushes each task towards its nearest cluster.
    assert g[0, 0] < g[0, 1] and g[1, 1] < g[1, 0]


def test_tanp_assigns_each_task_to_the_cluster_memories(
    content: tuple[Dataset, Split, MetaTrain], trained: dict[str, Learner]
) -> None:
    data, split, _ = content
    learner = trained["tanp"]
    assert isinstance(learner, TaNP)
    tasks = learner.standardiser.tasks(build_tasks(data, split.scenarios["user_cold"], 5))
    m = learner.model
    with torch.no_grad():
        x = m.pairs.embed(tasks.support_users, tasks.support_items)
        _, _, t = m.encode(x, tasks.support_ratings, tasks.support_mask)
        c, o = m.customise(t)
    assert c.shape == (tasks.n_tasks, learner.config.clusters)
    assert torch.allclose(c.sum(-1), torch.ones(tasks.n_tasks), atol=1e-5)
    assert torch.allclose(o, t + c @ m.memories)
    # The nearest memory gets the largest share (the Student's t kernel falls with distance).
    nearest = torch.cdist(t, m.memories).argmin(-1)
    assert torch.equal(c.argmax(-1), nearest)


# MAMO's parts -----------------------------------------------------------------------------------


def test_mamo_writes_its_memories_in_training_and_only_reads_them_in_prediction(
    content: tuple[Dataset, Split, MetaTrain],
) -> None:
    data, split, train = content
    learner = make_learner("mamo", QUICK["mamo"])
    assert isinstance(learner, MAMO)
    learner.setup(train, rng=Seeds(0), device=CPU)
    m = learner.model
    names = ("profile_memory", "bias_memory", "preference_memory")
    start = {n: getattr(m, n).clone() for n in names}
    # The output layer starts at zero: the memory layer has a gradient from the second step on.
    for seed in range(3):
        learner.meta_step(learner.sample(train, np.random.default_rng(seed)))
    written = {n: getattr(m, n).clone() for n in names}
    assert all(not torch.equal(start[n], written[n]) for n in names)
    tasks = build_tasks(data, split.scenarios["user_cold"], 5).without_labels()
    learner.predict(tasks)
    assert all(torch.equal(written[n], getattr(m, n)) for n in names)


def test_mamo_personalises_the_start_from_the_memories(
    content: tuple[Dataset, Split, MetaTrain],
) -> None:
    _, _, train = content
    learner = make_learner("mamo", {**QUICK["mamo"], "tau": 0.5})
    assert isinstance(learner, MAMO)
    learner.setup(train, rng=Seeds(0), device=CPU)
    m = learner.model
    entities = torch.arange(6)
    a = m.attention(m.task_profile(entities))
    assert torch.allclose(a.sum(-1), torch.ones(6), atol=1e-6) and bool((a > 0).all())
    start = m.personalised_start(a, 0.5)
    phi = m.global_params()
    bias = a @ m.bias_memory
    n = phi["user.0.weight"].numel()
    expected = phi["user.0.weight"] - 0.5 * bias[:, :n].reshape(6, *phi["user.0.weight"].shape)
    assert torch.allclose(start["user.0.weight"], expected)
    mixed = torch.einsum("tk,kij->tij", a, m.preference_memory)
    assert torch.allclose(start["memory.weight"], mixed)
    assert torch.equal(start["output.weight"][0], phi["output.weight"])


def test_mamo_local_update_fits_the_support(content: tuple[Dataset, Split, MetaTrain]) -> None:
    data, split, train = content
    learner = make_learner("mamo", {**QUICK["mamo"], "local_lr": 0.1, "local_steps": 5})
    assert isinstance(learner, MAMO)
    learner.setup(train, rng=Seeds(0), device=CPU)
    for seed in range(5):
        learner.meta_step(learner.sample(train, np.random.default_rng(seed)))
    tasks = learner.standardiser.tasks(build_tasks(data, split.scenarios["user_cold"], 5))
    # Predicting the support itself: after the local update it is fitted better than before.
    own = dataclasses.replace(
        tasks,
        query_users=tasks.support_users,
        query_items=tasks.support_items,
        query_mask=tasks.support_mask,
    )
    adapted = learner.adapt_predict(own)
    unadapted = make_learner("mamo", {**QUICK["mamo"], "local_steps": 0})
    unadapted.setup(train, rng=Seeds(0), device=CPU)  # type: ignore[attr-defined]
    unadapted.model.load_state_dict(learner.model.state_dict())  # type: ignore[attr-defined]
    plain = unadapted.adapt_predict(own)  # type: ignore[attr-defined]
    mask = tasks.support_mask

    def err(pred: torch.Tensor) -> float:
        return float(((pred - tasks.support_ratings)[mask] ** 2).mean())

    assert err(adapted) < err(plain)


# Devices ----------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize("name", NAMES)
def test_fits_and_predicts_on_cuda_as_on_the_cpu(
    name: str, content: tuple[Dataset, Split, MetaTrain]
) -> None:
    data, split, train = content
    tasks = build_tasks(data, split.scenarios["item_cold"], 5).without_labels()
    predictions = []
    for device in (CPU, torch.device("cuda")):
        learner = make_learner(name, QUICK[name])
        learner.fit(train, rng=Seeds(0).child("learner", name), device=device)
        with torch.no_grad():
            pred = learner.predict(tasks.to(device))
        assert pred.device.type == device.type
        predictions.append(pred.cpu())
    assert torch.allclose(predictions[0], predictions[1], atol=1e-2)


def test_both_need_side_features() -> None:
    data = generate(SyntheticConfig(n_users=30, n_items=20, seed=1))
    bare = dataclasses.replace(data, user_features=None, item_features=None, content_hash="")
    for cls in (TaNP, MAMO):
        reason = cls.not_applicable(bare)
        assert reason is not None and "side features" in reason
        assert cls.not_applicable(data) is None


def test_training_tasks_take_the_evaluated_support_sizes_empty_included(
    content: tuple[Dataset, Split, MetaTrain],
) -> None:
    _, _, train = content
    learner = make_learner("tanp", QUICK["tanp"])
    assert isinstance(learner, TaNP)
    learner.setup(train, rng=Seeds(0), device=CPU)
    assert learner.sizes == [0, 5]
    batch = learner.sample(train, np.random.default_rng(0))
    counts = batch.support_mask.sum(1)
    assert set(counts.tolist()) == {0, 5}
    assert batch.support_mask.shape[1] == 5
