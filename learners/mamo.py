"""MAMO (Dong et al., "MAMO: Memory-Augmented Meta-Optimization for Cold-start Recommendation",
KDD 2020), registered as ``mamo``.

The recommender (paper, the model section): the task entity's profile ``p_u`` (its content fields,
embedded field by field by the shared :class:`~learners.network.model.RatingNetwork`) and the other
side's profile ``p_i`` pass through their own embedding MLPs to ``e_u`` and ``e_i``; the rating
model takes ``[e_u, e_i]`` through a *memory layer* (a square linear layer), ``hidden`` layers and
the output. Two kinds of memory personalise where MAML starts from one global point:

- *feature-specific memories*: a profile memory ``M_P`` (``memories`` rows of profile width) and an
  embedding memory ``M_U`` (one row per slot, of the size of the user embedding MLP's parameters).
  A task's attention over the slots is the softmax of the cosine similarity of ``p_u`` to the rows
  of ``M_P``; its user embedding MLP starts from ``phi_u - tau * a @ M_U``, a personalised bias;
- a *task-specific memory* ``M_UI`` (one square matrix per slot) gives the memory layer's weights,
  ``a @ M_UI``: the fast weights that carry what similar users preferred.

Local update: ``local_steps`` gradient steps of size ``rho`` on the support MSE adapt the embedding
MLPs and the rating model (vectorised over tasks with ``torch.func``; each task's gradient is
clipped to norm 5, as the released code clips). Global update: the query loss after the local
update trains the global parameters (first-order by default, as the released code computes it; the
content field embeddings learn here only). The memories are not trained by gradient: after each
meta-batch every task writes to them in batch order, each slot ``k`` moving towards the task's value
by the slot's rate times the task's attention ``a_k``: ``M_P`` towards ``p_u`` at ``alpha``, ``M_U``
towards ``g_u``, the query gradient of the task's adapted user embedding MLP, at ``beta``, and
``M_UI`` towards the task's adapted memory layer at ``gamma``. (The paper writes
``rate * a (x) value + (1 - rate) * M``, the same rule where attention is one-hot; with attention
spread over the slots it shrinks every slot towards ``a_k`` times its value, and the memory layer's
weights towards zero, so the rating would stop depending on the pair.)
Prediction reads the memories and never writes them, so a task's prediction depends on its own
support alone.

Defaults are those the authors released with the paper (``configs.py`` of the MAMO code):
``memories`` (n_k) 3, ``alpha`` 0.5, ``beta`` 0.05, ``gamma`` 0.1, ``tau`` 0.01, local step ``rho``
0.01 taken 3 times, embedding MLPs of two layers, leaky ReLU. Departures: ratings are
regressed (MSE on standardised ratings, as RecBole-MetaRec's MAMO does) rather than classified
into rating levels, and the global step uses Adam (``outer_lr`` 1e-3, RecBole's default; the
released code's plain step of 0.05 on a sum of task gradients has no counterpart at this batch
size); embeddings are 32 wide per field, RecBole-MetaRec's ML-100K setting (the released code's 100
is for one embedding per field of ML-1M and Book-Crossing). The output layer starts at zero, so
the untrained model predicts the mean rating.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.func import grad, vmap
from torch.nn import functional as F

from bench.protocol.episodes import MetaTrain, TaskBatch
from learners.network.episodic import EpochConfig, WholeSupportEpisodes
from learners.network.explain import Head, NetworkFields
from learners.network.losses import masked_mse, mean_over_tasks
from learners.network.model import (
    RatingNetwork,
    field_embeddings,
    initialise_linear,
    needs_content,
)

Params = dict[str, torch.Tensor]
CLIP_NORM = 5.0
"""Largest norm of one task's local gradient (the released code clips at 5)."""


@dataclass(frozen=True)
class MAMOConfig(EpochConfig):
    embedding_dim: int = 32
    """Width of each content field's embedding and of ``e_u`` and ``e_i``."""
    hidden: tuple[int, ...] = (32,)
    """Hidden layers of the rating model after the memory layer (released: one, ``e_u``'s width)."""
    memories: int = 3
    """Memory slots ``n_k`` (released configuration: 3)."""
    profile_rate: float = 0.5
    """``alpha``: how fast the profile memory follows each task's profile (released: 0.5)."""
    bias_rate: float = 0.05
    """``beta``: how fast the embedding memory follows query gradients (released: 0.05)."""
    preference_rate: float = 0.1
    """``gamma``: how fast the task memory follows adapted memory layers (released: 0.1)."""
    tau: float = 0.01
    """Scale of the personalised bias on the user embedding MLP's start (released: 0.01)."""
    local_lr: float = 0.01
    """``rho``: the local update's step size (released: 0.01)."""
    local_steps: int = 3
    """Local updates per task (released: 3)."""
    first_order: bool = True
    """Drop second-order terms of the global update, as the released code does."""
    outer_lr: float = 1e-3
    meta_batch: int = 32
    epochs: int = 30
    """Passes over the training tasks (RecBole-MetaRec's MAMO configuration gives 30; the released
    code runs 3 over a hundred users)."""
    embed_ids: bool = False
    """Also embed the other side's id (not MAMO: the paper embeds content alone)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.memories < 1 or self.local_steps < 0 or self.local_lr < 0 or self.tau < 0:
            raise ValueError("memories >= 1, local_steps >= 0, local_lr >= 0 and tau >= 0 required")
        for name in ("profile_rate", "bias_rate", "preference_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")


def leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


def two_layers(params: Params, name: str, x: torch.Tensor) -> torch.Tensor:
    hidden = leaky(F.linear(x, params[f"{name}.0.weight"], params[f"{name}.0.bias"]))
    return F.linear(hidden, params[f"{name}.1.weight"], params[f"{name}.1.bias"])


def rating_model(params: Params, p_u: torch.Tensor, p_i: torch.Tensor) -> torch.Tensor:
    """Ratings ``[N]`` of one task's pairs: its profile ``p_u`` ``[W_u]`` (embedded once) with the
    other side's profiles ``p_i`` ``[N, W_i]``, under parameters ``params``."""
    e_u = two_layers(params, "user", p_u).expand(*p_i.shape[:-1], -1)
    e_i = two_layers(params, "item", p_i)
    h = F.linear(torch.cat([e_u, e_i], -1), params["memory.weight"], params["memory.bias"])
    n_hidden = sum(1 for name in params if name.startswith("hidden.") and name.endswith("weight"))
    for n in range(n_hidden):
        h = leaky(F.linear(h, params[f"hidden.{n}.weight"], params[f"hidden.{n}.bias"]))
    return F.linear(h, params["output.weight"], params["output.bias"]).squeeze(-1)


class MAMOModel(nn.Module):
    """Profile embeddings, the global parameters ``phi`` and the three memories (buffers)."""

    profile_memory: torch.Tensor
    bias_memory: torch.Tensor
    preference_memory: torch.Tensor

    def __init__(
        self, profiles: RatingNetwork, cfg: MAMOConfig, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.profiles = profiles
        task_module = profiles.embedding["task_features"] if profiles.has_task_features else None
        self.task_width = getattr(task_module, "width", 0)
        other_width = profiles.input_width - self.task_width
        d = cfg.embedding_dim

        def two_layers(width: int) -> nn.Sequential:
            middle = max(width // 2, 1)
            return nn.Sequential(nn.Linear(width, middle), nn.Linear(middle, d))

        widths = [2 * d, *cfg.hidden]
        hidden = [nn.Linear(a, b) for a, b in itertools.pairwise(widths)]
        self.phi = nn.ModuleDict(
            {
                "user": two_layers(self.task_width),
                "item": two_layers(other_width),
                "memory": nn.Linear(2 * d, 2 * d),
                "hidden": nn.Sequential(*hidden),
                "output": nn.Linear(widths[-1], 1),
            }
        )
        with torch.no_grad():
            for module in self.phi.modules():
                if isinstance(module, nn.Linear):
                    initialise_linear(module, generator)
            output = self.phi["output"]
            assert isinstance(output, nn.Linear)
            output.weight.zero_()
            output.bias.zero_()
        k = cfg.memories
        n_user = sum(p.numel() for p in self.phi["user"].parameters())
        self.register_buffer("profile_memory", torch.randn(k, self.task_width, generator=generator))
        self.register_buffer("bias_memory", 0.05 * torch.randn(k, n_user, generator=generator))
        # Every slot starts from the memory layer's own initial weights: the slots part as tasks
        # write their adapted weights.
        memory = self.phi["memory"]
        assert isinstance(memory, nn.Linear)
        self.register_buffer("preference_memory", memory.weight.detach().repeat(k, 1, 1).clone())

    def task_profile(self, entities: torch.Tensor) -> torch.Tensor:
        """``[T, task_width]``: each task entity's embedded profile ``p_u``."""
        if not self.task_width:
            return self.profile_memory.new_zeros(len(entities), 0)
        embed = self.profiles.embedding["task_features"]
        out: torch.Tensor = embed(self.profiles.task_table[entities])
        return out

    def global_params(self) -> Params:
        return {name: p for name, p in self.phi.named_parameters()}

    def attention(self, p_u: torch.Tensor) -> torch.Tensor:
        """``[T, k]``: softmax over the slots of the cosine similarity of each profile."""
        if self.task_width == 0:
            return torch.full(
                (p_u.shape[0], self.profile_memory.shape[0]),
                1.0 / self.profile_memory.shape[0],
                device=p_u.device,
            )
        similarity = F.cosine_similarity(
            p_u.unsqueeze(1), self.profile_memory.unsqueeze(0), dim=-1, eps=1e-6
        )
        return torch.softmax(similarity, dim=-1)

    def personalised_start(self, a: torch.Tensor, tau: float) -> Params:
        """Per task ``[T, ...]``: the user MLP shifted by the personalised bias, the memory layer
        from the task memory, every other global parameter as it is."""
        phi = self.global_params()
        tasks = a.shape[0]
        start = {name: p.unsqueeze(0).expand(tasks, *p.shape) for name, p in phi.items()}
        bias = a @ self.bias_memory  # [T, n_user]
        offset = 0
        for name, p in phi.items():
            if name.startswith("user."):
                piece = bias[:, offset : offset + p.numel()].reshape(tasks, *p.shape)
                start[name] = p.unsqueeze(0) - tau * piece
                offset += p.numel()
        start["memory.weight"] = torch.einsum("tk,kij->tij", a, self.preference_memory)
        return start


def _clipped(g: Params) -> Params:
    norm = torch.sqrt(torch.stack([(v**2).sum() for v in g.values()]).sum() + 1e-12)
    scale = torch.clamp(CLIP_NORM / norm, max=1.0)
    return {k: v * scale for k, v in g.items()}


class MAMO(WholeSupportEpisodes, NetworkFields):
    """MAMO (Dong et al., KDD 2020): memory-personalised starts of a locally updated model."""

    config_class = MAMOConfig
    quick_config: ClassVar[Mapping[str, Any]] = {
        "embedding_dim": 8,
        "meta_steps": 4,
        "meta_batch": 8,
        "eval_every": 2,
        "hidden": (8,),
        "local_steps": 1,
    }
    config: MAMOConfig
    model: MAMOModel

    @classmethod
    def not_applicable(cls, dataset: Any) -> str | None:
        return needs_content(dataset, "MAMO")

    def build(self, train: MetaTrain, generator: torch.Generator) -> MAMOModel:
        cfg = self.config
        profiles = field_embeddings(train, cfg.embedding_dim, generator, embed_ids=cfg.embed_ids)
        return MAMOModel(profiles, cfg, generator)

    def _other(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[T, N, W_i]``: the other side's profile of each pair."""
        x = self.model.profiles.embed(users, items)
        return x[..., : x.shape[-1] - self.model.task_width]

    def _adapt(
        self, tasks: TaskBatch, *, first_order: bool, labels: bool
    ) -> tuple[torch.Tensor, torch.Tensor, Params, Params]:
        """Query predictions after the local update, the attention, the adapted parameters and,
        with ``labels``, each task's query gradient of its adapted parameters."""
        m, cfg = self.model, self.config
        e_s = self._other(tasks.support_users, tasks.support_items)
        e_q = self._other(tasks.query_users, tasks.query_items)
        p_u = m.task_profile(tasks.entities.to(e_s.device))
        a = m.attention(p_u)
        start = m.personalised_start(a, cfg.tau)

        def pair_loss(
            fast: Params, u: torch.Tensor, e: torch.Tensor, r: torch.Tensor, mask: torch.Tensor
        ) -> torch.Tensor:
            return masked_mse(rating_model(fast, u, e), r, mask)

        def local(
            fast: Params, u: torch.Tensor, e: torch.Tensor, r: torch.Tensor, mask: torch.Tensor
        ) -> Params:
            for _ in range(cfg.local_steps):
                g = _clipped(grad(pair_loss)(fast, u, e, r, mask))
                if first_order:
                    g = {k: v.detach() for k, v in g.items()}
                fast = {k: fast[k] - cfg.local_lr * g[k] for k in fast}
            return fast

        adapted = vmap(local)(start, p_u, e_s, tasks.support_ratings, tasks.support_mask)
        pred = vmap(rating_model)(adapted, p_u, e_q)
        query_grads: Params = {}
        if labels:
            assert tasks.query_ratings is not None
            detached = {k: v.detach() for k, v in adapted.items()}
            query_grads = vmap(grad(pair_loss))(
                detached, p_u.detach(), e_q.detach(), tasks.query_ratings, tasks.query_mask
            )
        return pred, a, adapted, query_grads

    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        loss, _ = self._meta_loss_and_writes(batch)
        return loss

    def _meta_loss_and_writes(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, Any]]:
        assert batch.query_ratings is not None
        pred, a, adapted, query_grads = self._adapt(
            batch, first_order=self.config.first_order, labels=True
        )
        per_task = masked_mse(pred, batch.query_ratings, batch.query_mask)
        writes = {"attention": a.detach(), "adapted": adapted, "grads": query_grads}
        return mean_over_tasks(per_task, batch.query_mask), writes

    def meta_step(self, batch: TaskBatch) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss, writes = self._meta_loss_and_writes(batch)
        value = self.step_if_finite(loss)
        if not np.isnan(value):
            self.write_memories(batch, writes)
        return value

    @torch.no_grad()
    def write_memories(self, batch: TaskBatch, writes: dict[str, Any]) -> None:
        """Each task of the batch writes to the three memories in turn: every slot moves towards
        the task's value by its rate times the task's attention to it."""
        m, cfg = self.model, self.config
        a = writes["attention"]
        user_grads = torch.cat(
            [
                writes["grads"][name].reshape(batch.n_tasks, -1)
                for name, _ in m.phi.named_parameters()
                if name.startswith("user.")
            ],
            dim=1,
        )
        layers = writes["adapted"]["memory.weight"].detach()
        profiles = m.task_profile(batch.entities.to(a.device)).detach()
        has_query = batch.query_mask.any(1)
        for t in range(batch.n_tasks):
            if not bool(has_query[t]) or not bool(torch.isfinite(user_grads[t]).all()):
                continue
            for memory, rate, value in (
                (m.profile_memory, cfg.profile_rate, profiles[t]),
                (m.bias_memory, cfg.bias_rate, user_grads[t]),
                (m.preference_memory, cfg.preference_rate, layers[t]),
            ):
                step = (rate * a[t]).reshape(-1, *([1] * value.dim()))
                memory.add_(step * (value.unsqueeze(0) - memory))

    def adapt_predict(self, tasks: TaskBatch) -> torch.Tensor:
        with torch.enable_grad():
            pred, _, _, _ = self._adapt(tasks, first_order=True, labels=False)
        return pred.detach()

    def fields_network(self) -> RatingNetwork:
        return self.model.profiles

    def task_heads(self, tasks: TaskBatch, adapted: bool) -> list[tuple[RatingNetwork, Head]]:
        """Each task's rating model: its parameters after the memory-personalised start and the
        local update (``adapted``), or the global parameters before either."""
        m = self.model
        if adapted:
            with torch.enable_grad():
                _, _, params, _ = self._adapt(tasks, first_order=True, labels=False)
            per_task = [{k: v[n].detach() for k, v in params.items()} for n in range(tasks.n_tasks)]
        else:
            phi = {k: v.detach() for k, v in m.global_params().items()}
            per_task = [phi] * tasks.n_tasks
        task_width = m.task_width

        def head_of(params: Params) -> Head:
            def head(x: torch.Tensor) -> torch.Tensor:
                # The pair embedding ends with the task entity's profile (RatingNetwork.embed).
                split = x.shape[-1] - task_width
                return rating_model(params, x[..., split:], x[..., :split])

            return head

        return [(m.profiles, head_of(p)) for p in per_task]
