"""``maml-l2l``: MAML with learn2learn's ``MAML`` wrapper, one ``clone()``/``adapt()`` per task; the
reference implementation that ``maml`` must agree with."""

from __future__ import annotations

import contextlib
import io
from types import ModuleType
from typing import Any

import torch

from bench.errors import RegistryError
from bench.protocol.episodes import MetaTrain, TaskBatch
from bench.seeding import Seeds
from learners.maml.base import MAMLBase

INSTALL_HINT = (
    "learn2learn is not installed in this environment; install it with `make setup` "
    "(or scripts/install_learn2learn.sh .venv/bin/python)"
)


def import_learn2learn() -> ModuleType:
    """Import learn2learn on first use, with a clear message when it is missing."""
    try:
        # learn2learn imports gym, which prints a deprecation banner on import; keep output clean.
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            import learn2learn
    except ImportError as exc:
        raise RegistryError(f"{INSTALL_HINT} ({exc})") from exc
    return learn2learn


class Learn2LearnMAML(MAMLBase):
    """MAML with learn2learn's per-task clone()/adapt() loop: the reference for maml."""

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        import_learn2learn()  # fail at construction, with the install hint, when it is missing

    def setup(self, train: MetaTrain, *, rng: Seeds, device: torch.device) -> None:
        super().setup(train, rng=rng, device=device)
        cfg = self.config
        # With adapt = "decision" only the decision layers are wrapped, so adapt() touches them
        # alone; the embeddings stay shared by all clones and learn in the outer loop.
        wrapped = self.model.decision if cfg.adapt == "decision" else self.model
        self.maml = import_learn2learn().algorithms.MAML(
            wrapped, lr=cfg.inner_lr, first_order=cfg.first_order
        )

    def _task_outputs(self, batch: TaskBatch, with_labels: bool) -> list[torch.Tensor]:
        """Per task: the query predictions (or its query loss when ``with_labels``)."""
        cfg = self.config
        out = []
        for t in range(batch.n_tasks):
            s = batch.support_mask[t]
            q = batch.query_mask[t]
            learner = self.maml.clone()
            su, si, sr = (
                batch.support_users[t][s],
                batch.support_items[t][s],
                batch.support_ratings[t][s],
            )
            qu, qi = batch.query_users[t][q], batch.query_items[t][q]
            if cfg.adapt == "decision":
                x_s, x_q = self.model.embed(su, si), self.model.embed(qu, qi)
                for _ in range(cfg.inner_steps):
                    if len(sr):
                        learner.adapt(torch.mean((learner(x_s).squeeze(-1) - sr) ** 2))
                pred = learner(x_q).squeeze(-1)
            else:
                for _ in range(cfg.inner_steps):
                    if len(sr):
                        learner.adapt(torch.mean((learner(su, si) - sr) ** 2))
                pred = learner(qu, qi)
            if with_labels:
                assert batch.query_ratings is not None
                out.append(torch.mean((pred - batch.query_ratings[t][q]) ** 2))
            else:
                full = torch.zeros(q.shape, dtype=pred.dtype, device=pred.device)
                out.append(full.masked_scatter(q, pred))
        return out

    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        has_query = batch.query_mask.any(1)
        losses = self._task_outputs(batch, with_labels=True)
        kept = [loss for loss, ok in zip(losses, has_query.tolist(), strict=True) if ok]
        if not kept:
            return torch.zeros((), device=batch.query_mask.device, requires_grad=True)
        return torch.stack(kept).sum() / len(kept)

    def adapt_predict(self, tasks: TaskBatch) -> torch.Tensor:
        with torch.enable_grad():
            preds = self._task_outputs(tasks, with_labels=False)
        if not preds:
            return torch.zeros(tasks.query_items.shape, device=self.device)
        return torch.stack(preds).detach()
