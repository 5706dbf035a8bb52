"""``maml``'s CUDA-graph meta-step follows the eager one exactly. The comparison needs a GPU and is
skipped without one; on CPU the only claim is that the option is inert."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data.dataset import Dataset
from bench.protocol import make_protocol
from bench.protocol.episodes import make_meta_train
from bench.protocol.learner_registry import make_learner
from bench.seeding import Seeds

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU; none is available here"
)


def test_the_option_is_inert_on_cpu(small_dataset: Dataset) -> None:
    protocol = make_protocol("cold-random", {"support_sizes": [1, 5], "query_size": 5})
    train = make_meta_train(small_dataset, protocol.split(small_dataset, 0))
    learner = make_learner("maml", {"cuda_graph": True, "meta_batch": 4})
    learner.setup(train, rng=Seeds(0), device=torch.device("cpu"))  # type: ignore[attr-defined]
    assert not learner.uses_cuda_graph()  # type: ignore[attr-defined]
    learner.meta_step(learner.sample(train, np.random.default_rng(1)))  # type: ignore[attr-defined]
    assert learner.graphed is None  # type: ignore[attr-defined]


@needs_cuda
def test_graphed_meta_steps_match_eager_ones(small_dataset: Dataset) -> None:
    device = torch.device("cuda")
    protocol = make_protocol("cold-random", {"support_sizes": [1, 5], "query_size": 5})
    train = make_meta_train(small_dataset, protocol.split(small_dataset, 0))
    eager = make_learner("maml", {"cuda_graph": False, "meta_batch": 16})
    graphed = make_learner("maml", {"cuda_graph": True, "meta_batch": 16})
    for learner in (eager, graphed):
        learner.setup(train, rng=Seeds(0), device=device)  # type: ignore[attr-defined]
    assert graphed.uses_cuda_graph()  # type: ignore[attr-defined]
    assert not eager.uses_cuda_graph()  # type: ignore[attr-defined]

    rng_eager, rng_graphed = np.random.default_rng(1), np.random.default_rng(1)
    for _ in range(6):
        loss_eager = eager.meta_step(eager.sample(train, rng_eager))  # type: ignore[attr-defined]
        loss_graphed = graphed.meta_step(graphed.sample(train, rng_graphed))  # type: ignore[attr-defined]
        assert loss_graphed == pytest.approx(loss_eager, rel=1e-4)
    for (name, a), b in zip(
        eager.model.named_parameters(),  # type: ignore[attr-defined]
        graphed.model.parameters(),  # type: ignore[attr-defined]
        strict=True,
    ):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), name
