"""Per-task adaptation on the support set, vectorised over tasks with ``torch.func``.

MAML's inner loop and fine-tuning's per-task steps are the same computation: ``steps`` gradient
steps of size ``lr`` on each task's masked support MSE, starting from shared parameters, then a
prediction of the task's query ratings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch.func import functional_call, grad, vmap

from bench.protocol.episodes import TaskBatch
from learners.network.losses import masked_mse
from learners.network.model import Params, RatingNetwork

Adapt = Literal["decision", "all"]


def check_adapt(adapt: str) -> None:
    if adapt not in ("decision", "all"):
        raise ValueError(f"adapt must be 'decision' or 'all', got {adapt!r}")


def adapted_predictions(
    net: RatingNetwork,
    tasks: TaskBatch,
    *,
    lr: float,
    steps: int,
    adapt: Adapt,
    first_order: bool,
    params: Params | None = None,
) -> torch.Tensor:
    """Predicted query ratings ``[T, Q]`` after ``steps`` gradient steps per task on its support.

    Every task is adapted independently: ``vmap`` over tasks of an inner loop of ``grad`` steps
    on the masked support MSE. The starting parameters are ``params`` (by default the network's
    own), so the result stays differentiable with respect to them: the outer (meta) gradient
    flows through the inner loop unless ``first_order`` drops it.
    """
    start = net.group(adapt) if params is None else params

    def inner_steps(loss_of: Callable[..., torch.Tensor], fast: Params, *args: Any) -> Params:
        for _ in range(steps):
            g = grad(loss_of)(fast, *args)
            if first_order:
                g = {k: v.detach() for k, v in g.items()}
            fast = {k: fast[k] - lr * g[k] for k in fast}
        return fast

    if adapt == "decision":
        # The embeddings are shared by every task: compute them once, outside the vmap.
        x_s = net.embed(tasks.support_users, tasks.support_items)
        x_q = net.embed(tasks.query_users, tasks.query_items)
        head = {k.removeprefix("decision."): v for k, v in start.items()}

        def support_loss(
            fast: Params, x: torch.Tensor, r: torch.Tensor, m: torch.Tensor
        ) -> torch.Tensor:
            return masked_mse(functional_call(net.decision, fast, (x,)).squeeze(-1), r, m)

        def one_task(
            x: torch.Tensor, r: torch.Tensor, m: torch.Tensor, xq: torch.Tensor
        ) -> torch.Tensor:
            fast = inner_steps(support_loss, head, x, r, m)
            return functional_call(net.decision, fast, (xq,)).squeeze(-1)

        out: torch.Tensor = vmap(one_task)(x_s, tasks.support_ratings, tasks.support_mask, x_q)
        return out

    def support_loss_all(
        fast: Params, u: torch.Tensor, i: torch.Tensor, r: torch.Tensor, m: torch.Tensor
    ) -> torch.Tensor:
        return masked_mse(functional_call(net, fast, (u, i)), r, m)

    def one_task_all(
        u: torch.Tensor,
        i: torch.Tensor,
        r: torch.Tensor,
        m: torch.Tensor,
        qu: torch.Tensor,
        qi: torch.Tensor,
    ) -> torch.Tensor:
        fast = inner_steps(support_loss_all, dict(start), u, i, r, m)
        result: torch.Tensor = functional_call(net, fast, (qu, qi))
        return result

    out = vmap(one_task_all)(
        tasks.support_users,
        tasks.support_items,
        tasks.support_ratings,
        tasks.support_mask,
        tasks.query_users,
        tasks.query_items,
    )
    return out


def adapt_and_predict(
    net: RatingNetwork, tasks: TaskBatch, *, lr: float, steps: int, adapt: Adapt
) -> torch.Tensor:
    """Label-free query predictions after per-task adaptation, for evaluation: the inner steps
    start from detached copies of the network's parameters, so no outer graph is built."""
    start = {k: v.detach() for k, v in net.group(adapt).items()}
    with torch.enable_grad():
        pred = adapted_predictions(
            net, tasks, lr=lr, steps=steps, adapt=adapt, first_order=True, params=start
        )
    return pred.detach()


def adapted_parameters(
    net: RatingNetwork, tasks: TaskBatch, *, lr: float, steps: int, adapt: Adapt
) -> Params:
    """Each task's parameters after its support steps, stacked over tasks (``[T, ...]`` per name,
    full names as in ``net.named_parameters()``): the same inner loop as
    :func:`adapted_predictions`, stopped before the query."""
    start = {k: v.detach() for k, v in net.group(adapt).items()}

    def inner(loss_of: Callable[..., torch.Tensor], fast: Params, *args: Any) -> Params:
        for _ in range(steps):
            g = grad(loss_of)(fast, *args)
            fast = {k: fast[k] - lr * g[k].detach() for k in fast}
        return fast

    with torch.enable_grad():
        if adapt == "decision":
            x_s = net.embed(tasks.support_users, tasks.support_items).detach()
            head = {k.removeprefix("decision."): v for k, v in start.items()}

            def support_loss(
                fast: Params, x: torch.Tensor, r: torch.Tensor, m: torch.Tensor
            ) -> torch.Tensor:
                return masked_mse(functional_call(net.decision, fast, (x,)).squeeze(-1), r, m)

            def one(x: torch.Tensor, r: torch.Tensor, m: torch.Tensor) -> Params:
                return inner(support_loss, head, x, r, m)

            fast = vmap(one)(x_s, tasks.support_ratings, tasks.support_mask)
            return {f"decision.{k}": v.detach() for k, v in fast.items()}

        def support_loss_all(
            fast: Params, u: torch.Tensor, i: torch.Tensor, r: torch.Tensor, m: torch.Tensor
        ) -> torch.Tensor:
            return masked_mse(functional_call(net, fast, (u, i)), r, m)

        def one_all(u: torch.Tensor, i: torch.Tensor, r: torch.Tensor, m: torch.Tensor) -> Params:
            return inner(support_loss_all, dict(start), u, i, r, m)

        fast = vmap(one_all)(
            tasks.support_users, tasks.support_items, tasks.support_ratings, tasks.support_mask
        )
        return {k: v.detach() for k, v in fast.items()}
