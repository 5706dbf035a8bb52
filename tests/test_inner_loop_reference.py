"""MAML's vectorised inner loop (``adapted_predictions``) against the same steps done another way:
closed-form gradient steps in numpy for a linear decision layer, a plain per-task autograd loop for
a deeper network, and the exact second-order meta-gradient of one step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.protocol.episodes import TaskBatch, batch_from_rows
from learners.network import (
    RatingNetwork,
    adapt_and_predict,
    adapted_predictions,
    check_adapt,
    masked_mse,
    mean_over_tasks,
)

N_USERS, N_ITEMS = 5, 7
# Ratings by (user, item), and for each task the rows of its support and query.
USERS = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3])
ITEMS = np.array([1, 2, 3, 4, 0, 5, 6, 1, 3, 5, 6, 0, 2, 4])
RATINGS = np.array([4, 2, 5, 3, 1, 4, 2, 5, 5, 3, 1, 4, 2, 3], dtype=np.float32)
SUPPORTS = [np.array([0, 1, 2]), np.array([4]), np.array([7, 8, 9, 10]), np.array([], dtype=int)]
QUERIES = [np.array([3]), np.array([5, 6]), np.array([11]), np.array([12, 13])]


def network(hidden: tuple[int, ...], features: bool = False, seed: int = 0) -> RatingNetwork:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = RatingNetwork(
        "user",
        N_USERS,
        N_ITEMS,
        rng.normal(size=(N_USERS, 2)) if features else None,
        rng.normal(size=(N_ITEMS, 3)) if features else None,
        np.ones(N_USERS, dtype=bool),
        np.array([True] * 6 + [False]),  # item 6 is unseen: its id embeds to zero
        embedding_dim=4,
        hidden=hidden,
        output_bias=3.0,
    )
    with torch.no_grad():  # a larger head makes the steps visible
        for p in net.decision.parameters():
            p.mul_(3.0)
    return net


def tasks() -> TaskBatch:
    return batch_from_rows(USERS, ITEMS, RATINGS, "user", np.array([0, 1, 2, 3]), SUPPORTS, QUERIES)


def numpy_steps(
    x_s: np.ndarray, r: np.ndarray, theta: np.ndarray, lr: float, steps: int
) -> np.ndarray:
    """Gradient steps on mean((X theta - r)^2) with X = [x, 1]."""
    design = np.hstack([x_s, np.ones((len(x_s), 1))])
    for _ in range(steps):
        if len(r):
            theta = theta - lr * 2.0 / len(r) * design.T @ (design @ theta - r)
    return theta


@pytest.mark.parametrize("steps", [0, 1, 3])
def test_linear_head_steps_match_the_closed_form_gradient(steps: int) -> None:
    net = network(hidden=())
    batch = tasks()
    lr = 0.07
    with torch.no_grad():
        predicted = adapted_predictions(
            net, batch, lr=lr, steps=steps, adapt="decision", first_order=True
        ).numpy()
    layer = net.decision[0]
    theta = np.concatenate([layer.weight.detach().numpy()[0], layer.bias.detach().numpy()])
    theta = theta.astype(np.float64)
    for t in range(batch.n_tasks):
        s, q = batch.support_mask[t], batch.query_mask[t]
        with torch.no_grad():
            x_s = net.embed(batch.support_users[t][s], batch.support_items[t][s]).double().numpy()
            x_q = net.embed(batch.query_users[t][q], batch.query_items[t][q]).double().numpy()
        adapted = numpy_steps(x_s, batch.support_ratings[t][s].double().numpy(), theta, lr, steps)
        expected = np.hstack([x_q, np.ones((len(x_q), 1))]) @ adapted
        assert predicted[t, q.numpy()] == pytest.approx(expected, rel=1e-4, abs=1e-4), t
        if steps and s.any():
            assert not np.allclose(adapted, theta)  # the steps did move the head


def per_task_autograd(
    net: RatingNetwork, batch: TaskBatch, lr: float, steps: int, adapt: str
) -> list[torch.Tensor]:
    """The inner loop written plainly: one task at a time, unpadded, with torch.autograd."""
    names = [n for n, _ in net.named_parameters() if adapt == "all" or n.startswith("decision.")]
    out = []
    for t in range(batch.n_tasks):
        s, q = batch.support_mask[t], batch.query_mask[t]
        su, si, sr = (
            batch.support_users[t][s],
            batch.support_items[t][s],
            batch.support_ratings[t][s],
        )
        params = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters()}
        for _ in range(steps):
            if len(sr) == 0:
                break
            pred = torch.func.functional_call(net, params, (su, si))
            loss = ((pred - sr) ** 2).mean()
            grads = torch.autograd.grad(loss, [params[n] for n in names])
            for n, g in zip(names, grads, strict=True):
                params[n] = params[n] - lr * g
        out.append(
            torch.func.functional_call(
                net, params, (batch.query_users[t][q], batch.query_items[t][q])
            ).detach()
        )
    return out


def first_order_from_detached(
    net: RatingNetwork, batch: TaskBatch, adapt: str, steps: int
) -> torch.Tensor:
    """``adapted_predictions`` with step size 0.05 from detached copies of the parameters."""
    start = {k: v.detach() for k, v in net.group(adapt).items()}
    return adapted_predictions(
        net,
        batch,
        lr=0.05,
        steps=steps,
        adapt=adapt,  # type: ignore[arg-type]
        first_order=True,
        params=start,
    ).detach()


@pytest.mark.parametrize("adapt", ["decision", "all"])
@pytest.mark.parametrize("features", [False, True])
def test_deep_network_steps_match_a_plain_per_task_loop(adapt: str, features: bool) -> None:
    net = network(hidden=(6, 5), features=features, seed=1)
    batch = tasks()
    predicted = first_order_from_detached(net, batch, adapt, steps=2)
    expected = per_task_autograd(net, batch, 0.05, 2, adapt)
    without = first_order_from_detached(net, batch, adapt, steps=0)
    for t in range(batch.n_tasks):
        q = batch.query_mask[t]
        assert torch.allclose(predicted[t][q], expected[t], rtol=1e-4, atol=1e-5), t
        if batch.support_mask[t].any():
            assert not torch.allclose(predicted[t][q], without[t][q], atol=1e-4), t
        else:
            assert torch.allclose(predicted[t][q], without[t][q]), t


@pytest.mark.parametrize("first_order", [False, True])
def test_one_step_meta_gradient_is_exact(first_order: bool) -> None:
    """For a linear head, one inner step is theta' = theta - lr H theta + lr (2/n) X^T r with
    H = (2/n) X^T X; the query loss's gradient in theta is (I - lr H) g(theta') in full MAML and
    g(theta') in first-order MAML."""
    net = network(hidden=())
    batch = tasks()
    lr = 0.05
    predicted = adapted_predictions(
        net, batch, lr=lr, steps=1, adapt="decision", first_order=first_order
    )
    assert batch.query_ratings is not None
    loss = mean_over_tasks(
        masked_mse(predicted, batch.query_ratings, batch.query_mask), batch.query_mask
    )
    net.zero_grad()
    loss.backward()
    layer = net.decision[0]
    got = np.concatenate([layer.weight.grad.numpy()[0], layer.bias.grad.numpy()])  # type: ignore[union-attr]

    theta = np.concatenate([layer.weight.detach().numpy()[0], layer.bias.detach().numpy()])
    theta = theta.astype(np.float64)
    expected = np.zeros_like(theta)
    n_tasks = 0
    for t in range(batch.n_tasks):
        s, q = batch.support_mask[t], batch.query_mask[t]
        if not q.any():
            continue
        n_tasks += 1
        with torch.no_grad():
            x_s = net.embed(batch.support_users[t][s], batch.support_items[t][s]).double().numpy()
            x_q = net.embed(batch.query_users[t][q], batch.query_items[t][q]).double().numpy()
        design_s = np.hstack([x_s, np.ones((len(x_s), 1))])
        design_q = np.hstack([x_q, np.ones((len(x_q), 1))])
        r_s = batch.support_ratings[t][s].double().numpy()
        r_q = batch.query_ratings[t][q].double().numpy()
        adapted = numpy_steps(x_s, r_s, theta, lr, 1)
        g = 2.0 / len(r_q) * design_q.T @ (design_q @ adapted - r_q)
        if not first_order and len(r_s):
            hessian = 2.0 / len(r_s) * design_s.T @ design_s
            g = (np.eye(len(theta)) - lr * hessian) @ g
        expected += g
    expected /= n_tasks
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_masked_losses() -> None:
    pred = torch.tensor([[1.0, 2.0, 9.0], [0.0, 0.0, 0.0], [3.0, 3.0, 3.0]])
    target = torch.tensor([[2.0, 4.0, 0.0], [5.0, 5.0, 5.0], [1.0, 3.0, 5.0]])
    mask = torch.tensor([[True, True, False], [False, False, False], [True, True, True]])
    per_task = masked_mse(pred, target, mask)
    assert per_task.tolist() == pytest.approx([(1 + 4) / 2, 0.0, (4 + 0 + 4) / 3])
    # The task without valid positions does not count in the mean.
    assert float(mean_over_tasks(per_task, mask)) == pytest.approx((2.5 + 8 / 3) / 2)
    assert float(mean_over_tasks(per_task, torch.zeros_like(mask))) == 0.0


@pytest.mark.parametrize("adapt", ["decision", "all"])
def test_evaluation_adapts_without_an_outer_graph(adapt: str) -> None:
    net = network(hidden=(6,), features=True, seed=2)
    batch = tasks()
    expected = first_order_from_detached(net, batch, adapt, steps=2)
    with torch.no_grad():  # as in evaluation: adaptation still takes its gradient steps
        got = adapt_and_predict(net, batch, lr=0.05, steps=2, adapt=adapt)  # type: ignore[arg-type]
        unadapted = adapt_and_predict(net, batch, lr=0.05, steps=0, adapt=adapt)  # type: ignore[arg-type]
    assert not got.requires_grad
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got, unadapted)
    assert all(p.grad is None for p in net.parameters())


def test_adapt_setting_is_checked() -> None:
    check_adapt("decision")
    check_adapt("all")
    with pytest.raises(ValueError) as info:
        check_adapt("embedding")
    assert str(info.value) == "adapt must be 'decision' or 'all', got 'embedding'"


def test_the_inner_loop_starts_from_the_parameters_it_is_given() -> None:
    net = network(hidden=(4,), seed=3)
    batch = tasks()
    shifted = {k: v.detach() + 0.1 for k, v in net.group("decision").items()}
    given = adapted_predictions(
        net, batch, lr=0.05, steps=1, adapt="decision", first_order=True, params=shifted
    ).detach()
    with torch.no_grad():
        for name, value in net.group("decision").items():
            value.copy_(shifted[name])
    own = adapted_predictions(net, batch, lr=0.05, steps=1, adapt="decision", first_order=True)
    assert torch.allclose(given, own.detach(), atol=1e-6)


def test_a_mean_over_the_one_task_with_ratings() -> None:
    per_task = torch.tensor([0.7, 3.0, 5.0])
    mask = torch.tensor([[False, False], [True, False], [False, False]])
    assert float(mean_over_tasks(per_task, mask)) == pytest.approx(3.0)
