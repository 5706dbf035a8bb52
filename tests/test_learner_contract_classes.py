"""The contract's test class, inherited once per built-in learner with each learner's own quick
config: every rule is its own test id and the learner is fitted once per class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import pytest

from bench.evaluation.contract import ContractError
from bench.evaluation.contract_tests import LearnerContract


class TestOracle(LearnerContract):
    learner = "oracle"


class TestGlobalMean(LearnerContract):
    learner = "global-mean"
    expected: ClassVar[Mapping[str, tuple[float, float]]] = {"rmse": (0.85, 1.2)}


class TestItemMean(LearnerContract):
    learner = "item-mean"


class TestMF(LearnerContract):
    learner = "mf"
    expected: ClassVar[Mapping[str, tuple[float, float]]] = {
        "rmse": (0.65, 0.85),
        "ndcg@3": (0.8, 1.0),
    }


class TestMFHuber(LearnerContract):
    learner = "mf-huber"
    expected: ClassVar[Mapping[str, tuple[float, float]]] = {
        "rmse": (0.65, 0.85),
        "ndcg@3": (0.8, 1.0),
    }


class TestMAML(LearnerContract):
    learner = "maml"


class TestMAMLLearn2Learn(LearnerContract):
    learner = "maml-l2l"


class TestProtonet(LearnerContract):
    learner = "protonet"


class TestFineTune(LearnerContract):
    learner = "fine-tune"


class TestMeLU(LearnerContract):
    learner = "melu"


class TestPopularity(LearnerContract):
    learner = "popularity"


class TestContentMap(LearnerContract):
    learner = "content-map"


class TestDropoutNet(LearnerContract):
    learner = "dropoutnet"


class TestMetaEmbedding(LearnerContract):
    learner = "meta-embedding"


class TestTaNP(LearnerContract):
    learner = "tanp"


class TestMAMO(LearnerContract):
    learner = "mamo"


class TestFloorRandom(LearnerContract):
    learner = "floor-random"


class TestFloorConstant(LearnerContract):
    learner = "floor-constant"


class TestABandThatFails(LearnerContract):
    """A band the learner cannot meet fails its own test and no other."""

    learner = "global-mean"
    expected: ClassVar[Mapping[str, tuple[float, float]]] = {"rmse": (0.1, 0.2)}

    def test_bands(self, contract_fit, contract_report) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(ContractError, match=r"rmse .* outside \[0.1, 0.2\]"):
            super().test_bands(contract_fit, contract_report)
