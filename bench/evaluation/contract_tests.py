"""The learner contract as a pytest class to inherit: one test per rule, the fit shared.

In a plug-in's tests::

    from bench.evaluation.contract_tests import LearnerContract

    class TestMyLearner(LearnerContract):
        learner = "my-learner"          # its registered name
        overrides = {"epochs": 1}       # optional; default: the learner's own quick_config
        expected = {"rmse": (0.6, 0.9)} # optional bands on user_cold at k = 5

Each rule of :mod:`bench.evaluation.contract` is then its own test id (``test_pickle_round_trips``
and so on), so a failure names the rule; the learner is fitted once per class.

Stability: stable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from bench.evaluation.contract import (
    ContractFit,
    ContractReport,
    fit_for_contract,
    quick_overrides,
    rule_bands,
    rule_chunks_predict_alike,
    rule_config_round_trips,
    rule_fit_leaves_training_data,
    rule_pickle_round_trips,
    rule_predictions_in_every_scenario,
    rule_same_seeds_same_predictions,
    rule_scores_rank_candidates,
)


class LearnerContract:
    learner: ClassVar[str]
    overrides: ClassVar[Mapping[str, Any] | None] = None
    expected: ClassVar[Mapping[str, tuple[float, float]]] = {}
    device: ClassVar[str] = "cpu"

    @pytest.fixture(scope="class")
    @classmethod
    def contract_fit(cls) -> ContractFit:
        overrides = cls.overrides if cls.overrides is not None else quick_overrides(cls.learner)
        return fit_for_contract(cls.learner, overrides, cls.device)

    @pytest.fixture(scope="class")
    @classmethod
    def contract_report(cls, contract_fit: ContractFit) -> ContractReport:
        return rule_predictions_in_every_scenario(contract_fit)

    def test_config_round_trips(self) -> None:
        rule_config_round_trips(self.learner)

    def test_fit_leaves_training_data(self, contract_fit: ContractFit) -> None:
        rule_fit_leaves_training_data(contract_fit)

    def test_predictions_in_every_scenario(self, contract_report: ContractReport) -> None:
        assert contract_report.metrics

    def test_chunks_predict_alike(self, contract_fit: ContractFit) -> None:
        rule_chunks_predict_alike(contract_fit)

    def test_scores_rank_candidates(self, contract_fit: ContractFit) -> None:
        rule_scores_rank_candidates(contract_fit)

    def test_pickle_round_trips(self, contract_fit: ContractFit) -> None:
        rule_pickle_round_trips(contract_fit)

    def test_same_seeds_same_predictions(self, contract_fit: ContractFit) -> None:
        rule_same_seeds_same_predictions(contract_fit)

    def test_bands(self, contract_fit: ContractFit, contract_report: ContractReport) -> None:
        rule_bands(contract_fit, contract_report, self.expected)
