"""TaNP (Lin et al., "Task-adaptive Neural Process for User Cold-Start Recommendation", WWW 2021),
registered as ``tanp``.

Each task is a stochastic process over its (user, item) pairs (the paper's model section). Pairs
are embedded by the shared network's field-wise content embeddings
(:class:`~learners.network.model.RatingNetwork`, MeLU's inputs; the paper embeds user and item
features the same way). Three parts:

- the *encoder*: every support pair ``(x, y)`` goes through two MLPs whose outputs are averaged over
  the support set: a latent path giving the mean and log-variance of ``q(z | S)`` and a
  deterministic path giving the task embedding ``t``;
- the *customisation module*: ``t`` is softly assigned to ``clusters`` learned task cluster
  memories ``A`` with a Student's t kernel of ``temperature`` degrees of freedom, and the final task
  embedding is ``o = t + c @ A``;
- the *adaptive decoder*: an MLP over ``[x, z]`` whose every hidden layer is modulated by ``o``,
  FiLM-style (``h = tanh(W_g o) * (W x) + tanh(W_b o)``) or with the paper's gating variant.

Training (the paper's objective: the evidence lower bound and the clustering loss) samples ``z``
from the posterior ``q(z | S u Q)`` of the whole task, scores the query ratings, and adds
``KL(q(z | S u Q) || q(z | S))`` and ``cluster_weight`` times ``KL(P || C)``, where ``C`` holds the
batch's soft assignments and ``P`` their sharpened target distribution (as in deep embedded
clustering, held fixed within a step). Prediction decodes with the prior's mean, so it is
deterministic. Nothing adapts by gradient at prediction time: the support set only enters through
the encoder.

Defaults are those the authors released with the paper for its experiments (``train.sh``;
RecBole-MetaRec's TaNP configuration agrees on k, alpha, lambda and the step size): latent paths
of 32 and 16 units and ``z`` of 32, a task embedding of 16 from hidden layers of 32, decoder layers
of 32, 32 and 16, ``k = 10`` clusters, ``alpha = 1`` and ``lambda = 1``, no dropout, Adam at 1e-4
on batches of 32 tasks for 100 epochs. The decoder's output bias starts at zero, the mean of the
standardised ratings.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

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

LOG_VAR_BOUND = 8.0
"""Log-variances are squashed into [-8, 8]: the KL term and ``exp`` stay finite."""


@dataclass(frozen=True)
class TaNPConfig(EpochConfig):
    embedding_dim: int = 32
    """Width of each content field's embedding (the paper's first embedding layer: 32)."""
    hidden: tuple[int, ...] = (32, 32, 16)
    """The decoder's hidden layers (train.sh: 32, 32, 16)."""
    encoder_hidden: tuple[int, ...] = (32, 16)
    """Hidden layers of the latent path's pair encoder (train.sh: 32, 16)."""
    latent_dim: int = 32
    """Width of the aggregated latent representation and of ``z`` (train.sh: 32)."""
    task_hidden: tuple[int, ...] = (32, 32)
    """Hidden layers of the deterministic path's task encoder (train.sh: 32, 32)."""
    task_dim: int = 16
    """Width of the task embedding ``t`` and of each cluster memory (train.sh: 16)."""
    clusters: int = 10
    """Task cluster memories ``k`` in the global pool (train.sh: 10)."""
    temperature: float = 1.0
    """Degrees of freedom ``alpha`` of the Student's t assignment kernel (train.sh: 1)."""
    cluster_weight: float = 1.0
    """Weight ``lambda`` of the clustering loss (train.sh: 1)."""
    modulation: Literal["film", "gating"] = "film"
    """FiLM (the paper's TaNP-FiLM, its released default) or the gating variant (TaNP-Gating)."""
    outer_lr: float = 1e-4
    """Adam's step size (train.sh: 1e-4)."""
    meta_batch: int = 32
    """Tasks per step (train.sh: 32)."""
    epochs: int = 100
    """Passes over the training tasks (the released script's 100)."""
    embed_ids: bool = False
    """Also embed the other side's id (not TaNP: the paper embeds content alone)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        widths = (*self.encoder_hidden, *self.task_hidden, self.latent_dim, self.task_dim)
        if any(w < 1 for w in widths) or not self.hidden:
            raise ValueError("TaNP's layer widths must be positive and the decoder needs a layer")
        if self.clusters < 1 or self.temperature <= 0 or self.cluster_weight < 0:
            raise ValueError("clusters >= 1, temperature > 0 and cluster_weight >= 0 required")
        if self.modulation not in ("film", "gating"):
            raise ValueError(f"modulation must be 'film' or 'gating', got {self.modulation!r}")


def mlp(widths: list[int]) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for n, (a, b) in enumerate(itertools.pairwise(widths)):
        if n:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[T, N, D]`` averaged over the valid positions of N (zero for a task with none)."""
    weight = mask.to(values.dtype).unsqueeze(-1)
    return (values * weight).sum(1) / weight.sum(1).clamp(min=1.0)


class ModulatedDecoder(nn.Module):
    """The decoder ``g``: hidden layers over ``[x, z]``, each modulated by the task embedding."""

    def __init__(self, in_width: int, hidden: tuple[int, ...], task_dim: int, gating: bool) -> None:
        super().__init__()
        widths = [in_width, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        # Per layer: scale and shift from o (and, gated, an alternative eta and its gate delta).
        parts = 4 if gating else 2
        self.modulation = nn.ModuleList(nn.Linear(task_dim, parts * h, bias=False) for h in hidden)
        self.gating = gating
        self.output = nn.Linear(hidden[-1], 1)

    def forward(self, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """Ratings ``[T, Q]`` of inputs ``x`` ``[T, Q, W]`` for task embeddings ``o`` ``[T, D]``."""
        h = x
        for layer, film in zip(self.layers, self.modulation, strict=True):
            parts = film(o).unsqueeze(1).chunk(4 if self.gating else 2, dim=-1)
            gamma, beta = torch.tanh(parts[0]), torch.tanh(parts[1])
            if self.gating:
                eta, delta = torch.tanh(parts[2]), torch.sigmoid(parts[3])
                gamma = gamma * delta + eta * (1 - delta)
                beta = beta * delta + eta * (1 - delta)
            h = torch.relu(gamma * layer(h) + beta)
        out: torch.Tensor = self.output(h).squeeze(-1)
        return out


class TaNPModel(nn.Module):
    """Embeddings, the two encoder paths, the cluster memories and the modulated decoder."""

    def __init__(self, pairs: RatingNetwork, cfg: TaNPConfig, generator: torch.Generator) -> None:
        super().__init__()
        self.pairs = pairs
        width = pairs.input_width
        self.latent = mlp([width + 1, *cfg.encoder_hidden, cfg.latent_dim])
        self.latent_hidden = nn.Linear(cfg.latent_dim, cfg.latent_dim)
        self.latent_stats = nn.Linear(cfg.latent_dim, 2 * cfg.latent_dim)
        self.task = mlp([width + 1, *cfg.task_hidden, cfg.task_dim])
        self.decoder = ModulatedDecoder(
            width + cfg.latent_dim, cfg.hidden, cfg.task_dim, cfg.modulation == "gating"
        )
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear) and not any(module is m for m in pairs.modules()):
                    initialise_linear(module, generator)
            # Xavier-uniform cluster memories, as the released code draws them.
            bound = (6.0 / (cfg.clusters + cfg.task_dim)) ** 0.5
            start = (torch.rand(cfg.clusters, cfg.task_dim, generator=generator) * 2 - 1) * bound
            self.decoder.output.bias.zero_()
        self.memories = nn.Parameter(start)
        self.temperature = cfg.temperature

    def encode(
        self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latent mean and log-variance ``[T, Z]`` and task embedding ``[T, D]`` of a set."""
        xy = torch.cat([x, y.unsqueeze(-1)], dim=-1)
        r = masked_mean(self.latent(xy), mask)
        stats = self.latent_stats(torch.relu(self.latent_hidden(r)))
        mu, log_var = stats.chunk(2, dim=-1)
        log_var = LOG_VAR_BOUND * torch.tanh(log_var / LOG_VAR_BOUND)
        return mu, log_var, masked_mean(self.task(xy), mask)

    def customise(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft cluster assignments ``C`` ``[T, k]`` and the final task embedding ``o``."""
        distance = ((t.unsqueeze(1) - self.memories.unsqueeze(0)) ** 2).sum(-1)
        a = self.temperature
        kernel = (1.0 + distance / a) ** (-(a + 1.0) / 2.0)
        c = kernel / kernel.sum(-1, keepdim=True).clamp(min=1e-12)
        return c, t + c @ self.memories

    def decode(self, x: torch.Tensor, z: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        z = z.unsqueeze(1).expand(*x.shape[:2], z.shape[-1])
        out: torch.Tensor = self.decoder(torch.cat([x, z], dim=-1), o)
        return out


def gaussian_kl(
    mu_q: torch.Tensor, log_var_q: torch.Tensor, mu_p: torch.Tensor, log_var_p: torch.Tensor
) -> torch.Tensor:
    """``KL(N(mu_q, var_q) || N(mu_p, var_p))`` per task, summed over dimensions."""
    ratio = torch.exp(log_var_q - log_var_p)
    gap = (mu_q - mu_p) ** 2 * torch.exp(-log_var_p)
    return 0.5 * (ratio + gap - 1.0 + log_var_p - log_var_q).sum(-1)


def clustering_loss(c: torch.Tensor) -> torch.Tensor:
    """``KL(P || C)`` averaged over tasks, ``P`` the sharpened target of the assignments ``C``."""
    c = c.clamp(min=1e-12)
    with torch.no_grad():
        sharpened = c**2 / c.sum(0, keepdim=True)
        target = sharpened / sharpened.sum(-1, keepdim=True)
    return (target * (target.log() - c.log())).sum(-1).mean()


class TaNP(WholeSupportEpisodes, NetworkFields):
    """TaNP (Lin et al., WWW 2021): a task-adaptive neural process with task cluster memories."""

    config_class = TaNPConfig
    quick_config: ClassVar[Mapping[str, Any]] = {
        "embedding_dim": 8,
        "hidden": (16, 16),
        "meta_steps": 4,
        "meta_batch": 8,
        "eval_every": 2,
        "latent_dim": 8,
        "task_dim": 8,
        "encoder_hidden": (8,),
        "task_hidden": (8,),
    }
    config: TaNPConfig
    model: TaNPModel
    noise: torch.Tensor | None = None

    @classmethod
    def not_applicable(cls, dataset: Any) -> str | None:
        return needs_content(dataset, "TaNP")

    def build(self, train: MetaTrain, generator: torch.Generator) -> TaNPModel:
        cfg = self.config
        pairs = field_embeddings(train, cfg.embedding_dim, generator, embed_ids=cfg.embed_ids)
        return TaNPModel(pairs, cfg, generator)

    def train_step(self, train: MetaTrain, step: int, rng: np.random.Generator) -> None:
        batch = self.sample(train, rng)
        # The reparameterisation noise comes from the learner's own sampling stream.
        draw = rng.standard_normal((batch.n_tasks, self.config.latent_dim))
        self.noise = torch.as_tensor(draw, dtype=torch.float32, device=self.device)
        self.meta_step(batch)
        self.noise = None

    def meta_step(self, batch: TaskBatch) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        return self.step_if_finite(self.meta_loss(batch))

    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        assert batch.query_ratings is not None
        m = self.model
        x_s = m.pairs.embed(batch.support_users, batch.support_items)
        x_q = m.pairs.embed(batch.query_users, batch.query_items)
        mu_p, log_var_p, t = m.encode(x_s, batch.support_ratings, batch.support_mask)
        whole = torch.cat([batch.support_mask, batch.query_mask], dim=1)
        mu_q, log_var_q, _ = m.encode(
            torch.cat([x_s, x_q], dim=1),
            torch.cat([batch.support_ratings, batch.query_ratings], dim=1),
            whole,
        )
        z = mu_q
        if self.noise is not None:
            z = mu_q + self.noise * torch.exp(0.5 * log_var_q)
        c, o = m.customise(t)
        pred = m.decode(x_q, z, o)
        rating = mean_over_tasks(
            masked_mse(pred, batch.query_ratings, batch.query_mask), batch.query_mask
        )
        kl = gaussian_kl(mu_q, log_var_q, mu_p, log_var_p).mean()
        return rating + kl + self.config.cluster_weight * clustering_loss(c)

    def adapt_predict(self, tasks: TaskBatch) -> torch.Tensor:
        m = self.model
        x_s = m.pairs.embed(tasks.support_users, tasks.support_items)
        x_q = m.pairs.embed(tasks.query_users, tasks.query_items)
        mu, _, t = m.encode(x_s, tasks.support_ratings, tasks.support_mask)
        _, o = m.customise(t)
        return m.decode(x_q, mu, o)

    def fields_network(self) -> RatingNetwork:
        return self.model.pairs

    def task_heads(self, tasks: TaskBatch, adapted: bool) -> list[tuple[RatingNetwork, Head]]:
        """Each task's decoder, conditioned on its support set (``adapted``) or on an empty one."""
        m = self.model
        x_s = m.pairs.embed(tasks.support_users, tasks.support_items)
        mask = tasks.support_mask if adapted else torch.zeros_like(tasks.support_mask)
        mu, _, t = m.encode(x_s, tasks.support_ratings, mask)
        _, o = m.customise(t)

        def head_of(n: int) -> Head:
            def head(x: torch.Tensor) -> torch.Tensor:
                flat = x.reshape(1, -1, x.shape[-1])
                return m.decode(flat, mu[n : n + 1], o[n : n + 1]).reshape(x.shape[:-1])

            return head

        return [(m.pairs, head_of(n)) for n in range(tasks.n_tasks)]
