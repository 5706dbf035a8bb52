"""Matrix factorisation: the sparse normal equations and solves against direct computation, the
ALS sweeps as exact block minimisation, the fold-in, the precision and the thread scope."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch

from bench.data.dataset import Dataset
from bench.errors import ConfigError
from bench.protocol import Split, make_protocol
from bench.protocol.episodes import MetaTrain, build_tasks, make_meta_train
from bench.protocol.learner_registry import make_learner
from bench.seeding import Seeds
from learners.als import (
    SideRatings,
    by_cholesky,
    index_dtype,
    ridge_solve,
    ridge_system,
    torch_threads,
    truncated_svd,
)
from learners.mf import MatrixFactorisation, MFConfig

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def split(small_dataset: Dataset) -> Split:
    protocol = make_protocol("cold-random", {"support_sizes": [3], "query_size": 5})
    return protocol.split(small_dataset, 0)


@pytest.fixture(scope="module")
def train(small_dataset: Dataset, split: Split) -> MetaTrain:
    return make_meta_train(small_dataset, split)


def fitted(
    train: MetaTrain, seed: int = 0, *, sweeps: int | None = None, **overrides: object
) -> MatrixFactorisation:
    """An mf fitted on ``train``. ``sweeps=0`` gives the model as it starts: the config refuses
    0 sweeps, so the test sets them on the built learner."""
    learner = make_learner("mf", {"rank": 4, **overrides})
    assert isinstance(learner, MatrixFactorisation)
    if sweeps is not None:
        object.__setattr__(learner.config, "iterations", sweeps)
    learner.fit(train, rng=Seeds(seed).child("learner", "mf"), device=CPU)
    return learner


def random_ratings(
    rng: np.random.Generator, n_users: int, n_items: int, n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pairs = rng.choice(n_users * n_items, size=n, replace=False)
    user = torch.as_tensor(pairs // n_items)
    item = torch.as_tensor(pairs % n_items)
    return user, item, torch.as_tensor(rng.normal(size=n))


def test_normal_equations_equal_the_sum_of_per_rating_outer_products() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, rank = 9, 7, 3
    user, item, rating = random_ratings(
        rng, n_users - 1, n_items, 40
    )  # the last user rates nothing
    items = torch.as_tensor(rng.normal(size=(n_items, rank + 1)))
    gram, rhs = SideRatings.build(user, item, rating, n_users, n_items).normal_equations(items)
    design = torch.cat([items[:, :-1], torch.ones(n_items, 1, dtype=items.dtype)], 1)
    for u in range(n_users):
        rated = item[user == u]
        x = design[rated]
        target = rating[user == u] - items[rated, -1]
        torch.testing.assert_close(gram[u].tril(), (x.T @ x).tril())
        torch.testing.assert_close(rhs[u], x.T @ target)
    assert not gram[n_users - 1].any() and not rhs[n_users - 1].any()
    assert not gram.triu(1).any()  # only the lower triangle is filled


def test_ridge_solve_matches_a_dense_solve_per_system_and_with_a_shared_matrix() -> None:
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.normal(size=(5, 12, 4)))
    gram = x.transpose(1, 2) @ x
    rhs = torch.as_tensor(rng.normal(size=(5, 4)))
    prior = torch.as_tensor(rng.normal(size=(5, 4)))
    reg = torch.as_tensor([0.5, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    solved = ridge_solve(gram, rhs, reg, prior)
    for b in range(5):
        system = gram[b] + reg[b] * torch.eye(4, dtype=torch.float64)
        torch.testing.assert_close(
            solved[b], torch.linalg.solve(system, rhs[b] + reg[b] * prior[b])
        )
    shared = ridge_solve(gram[0], rhs, 2.0)  # one matrix, five right-hand sides
    expected = torch.linalg.solve(gram[0] + 2.0 * torch.eye(4, dtype=torch.float64), rhs.T).T
    torch.testing.assert_close(shared, expected)
    assert torch.equal(gram, x.transpose(1, 2) @ x)  # the input is left as it was


def test_ridge_solve_reads_the_lower_triangle_and_falls_back_to_least_squares() -> None:
    gram = torch.zeros(2, 3, 3, dtype=torch.float64)
    gram[0] = torch.tensor([[2.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    rhs = torch.tensor([[2.0, 4.0, 6.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    symmetric = gram[0] + gram[0].tril(-1).T
    expected = torch.linalg.solve(symmetric + torch.eye(3, dtype=torch.float64), rhs[0])
    torch.testing.assert_close(ridge_solve(gram, rhs, 1.0)[0], expected)
    # Without a penalty the empty second system is singular: least squares gives zero there.
    solved = ridge_solve(gram, rhs, 0.0)
    torch.testing.assert_close(solved[0], torch.linalg.solve(symmetric, rhs[0]))
    torch.testing.assert_close(solved[1], torch.zeros(3, dtype=torch.float64))


def svd_of_dense(
    dense: np.ndarray, rank: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``truncated_svd`` of a dense matrix, given as mf gives it: both sides' sparse views."""
    n_rows, n_cols = dense.shape
    row_ids, col_ids = np.nonzero(np.ones_like(dense))
    values = torch.as_tensor(dense[row_ids, col_ids])
    rows, cols = torch.as_tensor(row_ids), torch.as_tensor(col_ids)
    by_row = SideRatings.build(rows, cols, values, n_rows, n_cols)
    by_col = SideRatings.build(cols, rows, values, n_cols, n_rows)
    return truncated_svd(by_row.matrix(values), by_col.matrix(values), rank, gen)


def test_truncated_svd_finds_the_leading_singular_values_and_pads_a_small_matrix() -> None:
    rng = np.random.default_rng(2)
    dense = rng.normal(size=(30, 3)) @ np.diag([9.0, 5.0, 2.0]) @ rng.normal(size=(3, 20))
    dense += 0.01 * rng.normal(size=dense.shape)
    gen = torch.Generator().manual_seed(0)
    left, singular, right = svd_of_dense(dense, 3, gen)
    expected = torch.linalg.svdvals(torch.as_tensor(dense))[:3]
    torch.testing.assert_close(singular, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(left * singular @ right.T, torch.as_tensor(dense), atol=0.1, rtol=0)

    left, singular, right = svd_of_dense(dense, 25, gen)
    assert left.shape == (30, 25) and right.shape == (20, 25) and singular.shape == (25,)
    assert not singular[20:].any() and not left[:, 20:].any() and not right[:, 20:].any()


def objective(learner: MatrixFactorisation, train: MetaTrain) -> float:
    """The penalised squared error that each ALS half-step minimises exactly."""
    cfg = learner.config
    u, i = torch.as_tensor(train.user), torch.as_tensor(train.item)
    users, items = learner.users, learner.items
    pred = learner.mean + users[u, -1] + items[i, -1] + (users[u, :-1] * items[i, :-1]).sum(1)
    ratings = learner.standardiser.forward(train.rating)  # mf fits standardised ratings
    error = ((torch.as_tensor(ratings, dtype=users.dtype) - pred) ** 2).sum()
    user_reg = cfg.reg_floor + cfg.reg * torch.bincount(u, minlength=train.n_users)
    item_reg = cfg.reg_floor + cfg.reg * torch.bincount(i, minlength=train.n_items)
    known_u, known_i = learner.known_users, learner.known_items
    penalty = (user_reg[known_u] * (users[known_u] ** 2).sum(1)).sum()
    penalty += (item_reg[known_i] * (items[known_i] ** 2).sum(1)).sum()
    return float(error + penalty)


@pytest.mark.parametrize("init", ["svd", "random"])
def test_every_sweep_lowers_the_objective_by_exact_user_and_item_solves(
    train: MetaTrain, init: str
) -> None:
    values = [
        objective(fitted(train, iterations=n, init=init, dtype="float64"), train)
        for n in (1, 2, 3, 5)
    ]
    assert all(later < earlier for earlier, later in itertools.pairwise(values))

    # Sweep 3 solves each user given the items of sweep 2, then each item given those users.
    before = fitted(train, iterations=2, init=init, dtype="float64")
    after = fitted(train, iterations=3, init=init, dtype="float64")
    for user in np.flatnonzero(train.known_users)[:25]:
        rows = train.user == user
        expected = exact_solve(after, before.items, train.item[rows], train.rating[rows])
        torch.testing.assert_close(after.users[user], expected)
    for item in np.flatnonzero(train.known_items)[:25]:
        rows = train.item == item
        expected = exact_solve(after, after.users, train.user[rows], train.rating[rows])
        torch.testing.assert_close(after.items[item], expected)


def exact_solve(
    learner: MatrixFactorisation, other: torch.Tensor, rated: np.ndarray, ratings: np.ndarray
) -> torch.Tensor:
    """One entity's ridge solution given the other side's parameters, computed directly (on the
    standardised ratings that mf fits)."""
    cfg = learner.config
    x = torch.cat([other[rated, :-1], torch.ones(len(rated), 1, dtype=other.dtype)], 1)
    standardised = learner.standardiser.forward(ratings)
    target = torch.as_tensor(standardised, dtype=other.dtype) - learner.mean - other[rated, -1]
    penalty = cfg.reg_floor + cfg.reg * len(rated)
    return torch.linalg.solve(x.T @ x + penalty * torch.eye(x.shape[1]), x.T @ target)


def test_fold_in_is_the_ridge_solve_on_the_support_centred_on_the_prior(
    small_dataset: Dataset, split: Split, train: MetaTrain
) -> None:
    learner = fitted(train, dtype="float64")
    labelled = build_tasks(small_dataset, split.scenarios["user_cold"], 3)
    with torch.no_grad():
        pred = learner.predict(labelled.without_labels())
    lam = learner.config.fold_in_reg
    for t in range(0, labelled.n_tasks, 17):
        user = int(labelled.entities[t])
        assert not learner.known_users[user]
        support = labelled.support_items[t][labelled.support_mask[t]]
        q = learner.items[support]
        x = torch.cat([q[:, :-1], torch.ones(len(support), 1, dtype=torch.float64)], 1)
        scaler = learner.standardiser  # mf fits and folds in on standardised ratings
        target = labelled.support_ratings[t][labelled.support_mask[t]].double()
        target = (target - scaler.mean) / scaler.std - learner.mean - q[:, -1]
        system = x.T @ x + lam * torch.eye(x.shape[1], dtype=torch.float64)
        own = torch.linalg.solve(system, x.T @ target + lam * learner.user_prior[user])
        query = labelled.query_items[t][labelled.query_mask[t]]
        other = learner.items[query]
        expected = learner.mean + own[-1] + other[:, -1] + other[:, :-1] @ own[:-1]
        expected = expected * scaler.std + scaler.mean
        low, high = small_dataset.rating_scale
        torch.testing.assert_close(
            pred[t][labelled.query_mask[t]], expected.clamp(low, high).float()
        )


def test_precision_follows_the_config_and_float32_agrees_with_float64(
    small_dataset: Dataset, split: Split, train: MetaTrain
) -> None:
    single, double = fitted(train, dtype="float32"), fitted(train, dtype="float64")
    assert single.users.dtype == torch.float32 and double.users.dtype == torch.float64
    tasks = build_tasks(small_dataset, split.scenarios["user_cold"], 3).without_labels()
    with torch.no_grad():
        gap = (single.predict(tasks) - double.predict(tasks))[tasks.query_mask].abs().max()
    assert float(gap) < 1e-3


def test_the_same_seed_gives_the_same_model(train: MetaTrain) -> None:
    first, second = fitted(train, seed=3), fitted(train, seed=3)
    assert torch.equal(first.users, second.users) and torch.equal(first.items, second.items)


def test_fit_runs_on_the_configured_threads_and_restores_the_setting(train: MetaTrain) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert fitted(train, threads=1).fit_threads == 1
        assert torch.get_num_threads() == 2
        assert fitted(train, threads=0).fit_threads == 2  # 0: torch's own setting
        with pytest.raises(RuntimeError, match="inside"), torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("field", "value"), [("dtype", "float16"), ("init", "zeros")])
def test_a_value_outside_a_fields_choices_is_named(field: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"field '{field}' in \\[learner.mf\\] expects"):
        make_learner("mf", {field: value})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"threads": -1}, "threads must be non-negative"),
        ({"rank": 0}, "rank and iterations must be at least 1"),
        ({"iterations": 0}, "rank and iterations must be at least 1"),
        ({"reg": -0.1}, "penalties must be non-negative"),
        ({"reg_floor": -0.1}, "penalties must be non-negative"),
        ({"fold_in_reg": -0.1}, "penalties must be non-negative"),
        ({"feature_reg": -0.1}, "penalties must be non-negative"),
    ],
)
def test_bad_config_is_a_clear_error(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_learner("mf", overrides)
    assert str(info.value) == f"invalid MFConfig in [learner.mf]: {message}"


def test_the_smallest_valid_config_is_accepted() -> None:
    edge = {"rank": 1, "iterations": 1, "reg": 0.0, "reg_floor": 0.0, "threads": 0}
    learner = make_learner("mf", {**edge, "fold_in_reg": 0.0, "feature_reg": 0.0})
    assert isinstance(learner, MatrixFactorisation) and learner.config.rank == 1
    # The config checks its precision itself too, for code that builds it directly.
    with pytest.raises(ValueError, match=re.escape("one of ['float32', 'float64'], got 'half'")):
        MFConfig(dtype="half")  # type: ignore[arg-type]


def test_the_svd_start_is_the_best_rank_r_fit_of_the_residuals(train: MetaTrain) -> None:
    learner = fitted(train, sweeps=0, init="svd", dtype="float64")
    users, items = learner.users.numpy(), learner.items.numpy()
    ratings = learner.standardiser.forward(train.rating).astype(np.float64)
    # With no sweep the biases are the bias model's; the factors must be the truncated SVD of
    # what the biases leave, computed here densely with NumPy.
    residual = np.zeros((train.n_users, train.n_items))
    np.add.at(
        residual,
        (train.user, train.item),
        ratings - learner.mean - users[train.user, -1] - items[train.item, -1],
    )
    left, singular, right = np.linalg.svd(residual, full_matrices=False)
    rank = learner.config.rank
    best = (left[:, :rank] * singular[:rank]) @ right[:rank]
    known = np.ix_(train.known_users, train.known_items)
    product = users[:, :-1] @ items[:, :-1].T
    gap = np.linalg.norm(product[known] - best[known]) / np.linalg.norm(best[known])
    assert gap < 1e-2  # a randomised SVD: close, not exact, where singular values crowd
    # Both sides carry the square root of the singular values.
    norms = np.sort(np.linalg.norm(users[train.known_users, :-1], axis=0))[::-1]
    np.testing.assert_allclose(norms, np.sqrt(singular[:rank]), rtol=1e-2)


def test_the_random_start_is_seeded_scaled_and_in_the_configured_precision(
    train: MetaTrain,
) -> None:
    start = fitted(train, seed=5, sweeps=0, init="random")
    again = fitted(train, seed=5, sweeps=0, init="random")
    other = fitted(train, seed=6, sweeps=0, init="random")
    assert start.users.dtype == torch.float32 and start.items.dtype == torch.float32
    assert torch.equal(start.users, again.users) and torch.equal(start.items, again.items)
    assert not torch.equal(start.users, other.users)
    for std in (0.1, 0.5):
        wide = fitted(train, sweeps=0, init="random", init_std=std)
        factors = torch.cat([wide.users[wide.known_users, :-1], wide.items[wide.known_items, :-1]])
        assert abs(float(factors.std()) / std - 1.0) < 0.1
    assert fitted(train, sweeps=0, init="random", dtype="float64").users.dtype == torch.float64


def test_side_ratings_are_the_same_from_sorted_and_shuffled_input() -> None:
    rng = np.random.default_rng(4)
    user, item, rating = random_ratings(rng, 9, 7, 40)
    order = np.lexsort((item.numpy(), user.numpy()))  # grouped by user: the fast path
    grouped = SideRatings.build(user[order], item[order], rating[order], 9, 7)
    shuffled = SideRatings.build(user, item, rating, 9, 7)
    for side in (grouped, shuffled):  # integers (floats would be inexact past 2**24), 32 bits
        assert {side.crow.dtype, side.cols.dtype, side.order.dtype} == {torch.int32}
    assert grouped.count.dtype == rating.dtype
    torch.testing.assert_close(grouped.count, shuffled.count)
    dense = np.zeros((9, 7))
    dense[user.numpy(), item.numpy()] = rating.numpy()
    for side, values in ((grouped, rating[order]), (shuffled, rating)):
        np.testing.assert_allclose(side.matrix(values).to_dense().numpy(), dense)


def test_32_bit_indices_give_the_products_of_64_bit_ones_exactly() -> None:
    rng = np.random.default_rng(5)
    user, item, rating = random_ratings(rng, 300, 200, 6000)
    for values in (rating, rating.float()):
        side = SideRatings.build(user, item, values, 300, 200)
        dense = torch.randn(200, 7, generator=torch.Generator().manual_seed(0)).to(values.dtype)
        crow, cols = side.crow.long(), side.cols.long()
        wide, ones = (
            torch.sparse_csr_tensor(crow, cols, v, side.shape, check_invariants=True)
            for v in (values[side.order.long()], torch.ones_like(side.values))
        )
        assert side.crow.dtype == torch.int32
        with torch_threads(2):
            assert torch.equal(side.matrix(values) @ dense, wide @ dense)
            assert torch.equal(side.pattern @ dense, ones @ dense)


@pytest.mark.parametrize("floor", [1.0, 0.0])  # 0: entities without ratings cannot be factored
def test_solving_a_block_of_entities_at_a_time_gives_the_whole_batchs_values(floor: float) -> None:
    rng = np.random.default_rng(6)
    user, item, rating = random_ratings(rng, 120, 90, 2000)
    user[user == 7] = 8  # user 7 has no ratings
    side = SideRatings.build(user, item, rating.float(), 120, 90)
    other = torch.randn(90, 5, generator=torch.Generator().manual_seed(1))
    reg = floor + 0.05 * side.count
    whole = ridge_solve(*side.normal_equations(other), reg)
    for block in (1, 7, 50, 120, 1000):
        assert torch.equal(side.solve(other, reg, block=block), whole), block
    gram, _ = side.normal_equations(other)
    assert (floor == 0.0) == (by_cholesky(*ridge_system(gram, whole, reg)) is None)


def test_indices_widen_to_64_bits_only_where_a_position_passes_32() -> None:
    assert index_dtype(2**31 - 1, 10, 10) == torch.int32
    assert index_dtype(2**31, 10, 10) == torch.int64
    assert index_dtype(5, 10, 2**31) == torch.int64


def test_truncated_svd_pads_a_matrix_one_direction_short_of_the_rank() -> None:
    rng = np.random.default_rng(3)
    dense = rng.normal(size=(6, 4))
    left, singular, right = svd_of_dense(dense, 5, torch.Generator().manual_seed(0))
    assert left.shape == (6, 5) and right.shape == (4, 5) and singular.shape == (5,)
    np.testing.assert_allclose(singular[:4].numpy(), np.linalg.svd(dense, compute_uv=False))
    assert singular[4] == 0 and not left[:, 4].any() and not right[:, 4].any()
