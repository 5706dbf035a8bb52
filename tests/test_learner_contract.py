"""Every built-in learner passes the public contract helper, ``bench.evaluation.contract.check_learner``; the
helper itself catches learners that break a rule."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

from bench.evaluation.contract import ContractError, check_learner
from bench.evaluation.contract_tests import LearnerContract
from bench.protocol.budget import Budget
from bench.protocol.episodes import MetaTrain, TaskBatch
from bench.protocol.learner_registry import LEARNERS
from bench.seeding import Seeds
from learners.baselines import BiasBaseline

BUILT_IN = sorted(n for n in LEARNERS.names() if "built in" in LEARNERS.origin(n))


def test_every_built_in_learner_is_listed() -> None:
    assert set(BUILT_IN) >= {"oracle", "global-mean", "item-mean", "mf", "maml", "maml-l2l"}
    assert {"protonet", "fine-tune"} <= set(BUILT_IN)


def test_every_built_in_learner_has_its_contract_class() -> None:
    import test_learner_contract_classes as classes

    covered = {
        getattr(cls, "learner", None)
        for cls in vars(classes).values()
        if isinstance(cls, type) and issubclass(cls, LearnerContract)
    }
    assert set(BUILT_IN) <= covered, sorted(set(BUILT_IN) - covered)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU; none is available here"
)
@pytest.mark.parametrize("name", ["content-map", "dropoutnet", "meta-embedding"])
def test_the_content_learners_keep_the_contract_on_cuda(name: str) -> None:
    report = check_learner(name, device="cuda")
    assert report.metrics[("item_cold", 5)]["rmse"] > 0


def test_bands_hold_for_the_baselines_and_fail_when_violated() -> None:
    # The synthetic ratings' noise alone puts the RMSE floor near 0.65 on a 1-5 scale; the mean
    # rating alone is about 1.0 off.
    check_learner("global-mean", expected={"rmse": (0.85, 1.2)})
    check_learner("mf", expected={"rmse": (0.65, 0.85), "ndcg@3": (0.8, 1.0)})
    with pytest.raises(ContractError, match=r"rmse .* outside \[0.1, 0.2\]"):
        check_learner("global-mean", expected={"rmse": (0.1, 0.2)})
    with pytest.raises(ContractError, match="no metric 'rmsee'"):
        check_learner("global-mean", expected={"rmsee": (0.0, 1.0)})


class ChunkSensitive(BiasBaseline):
    """Breaks a rule: a task's prediction depends on which other tasks share its batch."""

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        return super().predict(tasks).clamp(max=1.0 + tasks.n_tasks / 100)


class GloballySeeded(BiasBaseline):
    """Breaks a rule: its randomness comes from the global generator, not from ``rng``."""

    calls: ClassVar[int] = 0

    def fit(
        self, train: MetaTrain, *, rng: Seeds, device: torch.device, budget: Budget | None = None
    ) -> None:
        super().fit(train, rng=rng, device=device, budget=budget)
        GloballySeeded.calls += 1
        self.offset = 0.01 * GloballySeeded.calls

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        return (super().predict(tasks) - self.offset).clamp(1.0, 5.0)


for _name, _cls in (("test-chunk-sensitive", ChunkSensitive), ("test-unseeded", GloballySeeded)):
    if _name not in LEARNERS:
        LEARNERS.register(_name, _cls)


def test_the_helper_catches_broken_learners() -> None:
    with pytest.raises(ContractError, match="in chunks"):
        check_learner("test-chunk-sensitive")
    with pytest.raises(ContractError, match="same seeds predict differently"):
        check_learner("test-unseeded")
