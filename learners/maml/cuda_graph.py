"""One meta-training step captured as a CUDA graph and replayed.

A vectorised meta-step is a few hundred small kernels; at a few hundred tasks per batch the GPU
waits on Python and kernel launches, not on arithmetic. Capturing the whole step (meta-loss,
backward pass and optimiser update) once and replaying it launches it as one unit. The captured
step reads its input from fixed buffers, so each new batch is copied into them first; batches must
keep the captured shapes (the episode sampler's are fixed for a given meta-batch size).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields

import torch

from bench.protocol.episodes import TaskBatch

WARMUP_STEPS = 3


def _tensor_fields(batch: TaskBatch) -> dict[str, torch.Tensor]:
    return {
        f.name: getattr(batch, f.name)
        for f in fields(batch)
        if isinstance(getattr(batch, f.name), torch.Tensor)
    }


class GraphedMetaStep:
    """Replays ``loss_fn(batch).backward(); optimizer.step()`` from a CUDA graph.

    The optimiser must have been built with ``capturable=True``. Capturing needs a few eager
    warm-up steps; their effect on the parameters and optimiser state is undone afterwards, so
    graphed training follows the same trajectory as eager training.
    """

    def __init__(
        self,
        loss_fn: Callable[[TaskBatch], torch.Tensor],
        optimizer: torch.optim.Optimizer,
        params: Sequence[torch.nn.Parameter],
        template: TaskBatch,
    ) -> None:
        self.static = _tensor_fields(template)
        self.static = {k: v.clone() for k, v in self.static.items()}
        self.batch = TaskBatch(axis=template.axis, **self.static)  # type: ignore[arg-type]
        saved = [p.detach().clone() for p in params]

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                optimizer.zero_grad(set_to_none=True)
                loss_fn(self.batch).backward()
                optimizer.step()
        torch.cuda.current_stream().wait_stream(side)

        self.graph = torch.cuda.CUDAGraph()
        optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.loss = loss_fn(self.batch)
            self.loss.backward()
            optimizer.step()

        with torch.no_grad():
            for param, value in zip(params, saved, strict=True):
                param.copy_(value)
            for state in optimizer.state.values():
                for value in state.values():
                    if isinstance(value, torch.Tensor):
                        value.zero_()

    def fits(self, batch: TaskBatch) -> bool:
        return (
            batch.axis == self.batch.axis
            and all(
                value.shape == self.static[name].shape and value.dtype == self.static[name].dtype
                for name, value in _tensor_fields(batch).items()
            )
            and set(_tensor_fields(batch)) == set(self.static)
        )

    def step(self, batch: TaskBatch) -> float:
        for name, value in _tensor_fields(batch).items():
            self.static[name].copy_(value, non_blocking=True)
        self.graph.replay()
        return float(self.loss.detach())
