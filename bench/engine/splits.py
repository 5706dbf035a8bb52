"""Splits, training views, task batches and candidate sets, built once per (dataset, seed) and
shared by every cell of that split: each (scenario, k) task batch is built once and moved to each
device once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from bench.data.dataset import Dataset
from bench.protocol import Protocol, Split, SupportSize
from bench.protocol.candidates import CandidateSets, task_candidate_sets
from bench.protocol.episodes import (
    MetaTrain,
    TaskBatch,
    build_tasks,
    make_meta_train,
)
from bench.protocol.perturbation_labels import Perturbation
from bench.protocol.perturbations import perturb
from bench.protocol.training_arms import (
    ShillingAttack,
    TrainingNoise,
    attacked_training,
    noisy_training,
)

if TYPE_CHECKING:
    pass


class SplitCache:
    """Splits, training views and task batches, built once per (dataset, seed) and shared."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self._splits: dict[tuple[str, int], tuple[Split, MetaTrain]] = {}
        self._tasks: dict[tuple[str, int, str, SupportSize], TaskBatch] = {}
        self._on_device: dict[tuple[str, int, str, SupportSize, torch.device], TaskBatch] = {}
        self._candidates: dict[tuple[str, int, str, SupportSize, int | None], CandidateSets] = {}
        self._perturbed: dict[tuple[str, int, str, SupportSize, Perturbation], TaskBatch] = {}
        self._arms: dict[tuple[str, int, str], MetaTrain] = {}

    def split(self, dataset: Dataset, seed: int) -> tuple[Split, MetaTrain]:
        key = (dataset.content_hash, seed)
        if key not in self._splits:
            split = self.protocol.split(dataset, seed)
            split.summary.update(dataset=dataset.name, seed=seed)
            self._splits[key] = (split, make_meta_train(dataset, split))
        return self._splits[key]

    def tasks(self, dataset: Dataset, seed: int, scenario: str, k: SupportSize) -> TaskBatch:
        key = (dataset.content_hash, seed, scenario, k)
        if key not in self._tasks:
            split, _ = self.split(dataset, seed)
            self._tasks[key] = build_tasks(dataset, split.scenarios[scenario], k)
        return self._tasks[key]

    def perturbed(
        self, dataset: Dataset, seed: int, scenario: str, k: SupportSize, perturbation: Perturbation
    ) -> TaskBatch:
        """A scenario's tasks at ``k`` with their support corrupted (queries and labels as they
        are): drawn once per split and shared by every learner."""
        key = (dataset.content_hash, seed, scenario, k, perturbation)
        if key not in self._perturbed:
            tasks = self.tasks(dataset, seed, scenario, k)
            self._perturbed[key] = perturb(
                tasks,
                perturbation,
                seed=seed,
                scenario=scenario,
                entity_ids=dataset.raw_ids(tasks.axis, tasks.entities.numpy()),
                rating_scale=dataset.rating_scale,
                rating_levels=dataset.rating_levels,
            )
        return self._perturbed[key]

    def arm_training(
        self, dataset: Dataset, seed: int, arm: TrainingNoise | ShillingAttack
    ) -> MetaTrain:
        """The split's training view under a training-data arm (noise or fake profiles), built
        once per split and shared by every learner."""
        key = (dataset.content_hash, seed, arm.tag)
        if key not in self._arms:
            _, train = self.split(dataset, seed)
            if isinstance(arm, TrainingNoise):
                self._arms[key] = noisy_training(train, arm, seed)
            else:
                self._arms[key] = attacked_training(train, arm, seed)
        return self._arms[key]

    def validation(self, dataset: Dataset, seed: int, k: SupportSize) -> TaskBatch:
        """The split's validation tasks at support size ``k``, built like a scenario's tasks."""
        key = (dataset.content_hash, seed, "validation", k)
        if key not in self._tasks:
            split, _ = self.split(dataset, seed)
            self._tasks[key] = build_tasks(dataset, split.validation, k)
        return self._tasks[key]

    def unlabelled(
        self, dataset: Dataset, seed: int, scenario: str, k: SupportSize, device: torch.device
    ) -> TaskBatch:
        """The tasks without their query labels, moved to ``device`` once for every learner."""
        key = (dataset.content_hash, seed, scenario, k, device)
        if key not in self._on_device:
            labelled = self.tasks(dataset, seed, scenario, k)
            self._on_device[key] = labelled.without_labels().to(device)
        return self._on_device[key]

    def candidates(
        self, dataset: Dataset, seed: int, scenario: str, k: SupportSize, negatives: int | None
    ) -> CandidateSets:
        """The candidate sets of a scenario's tasks at ``k`` (with ``negatives`` sampled ones per
        task, when given): the same for every learner of the split."""
        key = (dataset.content_hash, seed, scenario, k, negatives)
        if key not in self._candidates:
            split, train = self.split(dataset, seed)
            self._candidates[key] = task_candidate_sets(
                scenario,
                self.tasks(dataset, seed, scenario, k),
                train,
                n_items=dataset.n_items,
                n_users=dataset.n_users,
                new_items=split.new_items,
                negatives=negatives,
                seed=seed,
                k_label=str(k),
            )
        return self._candidates[key]

    def adopt(self, dataset: Dataset, seed: int, split: Split, train: MetaTrain) -> None:
        """Use a split built elsewhere (a Ray task receives the driver's)."""
        self._splits[(dataset.content_hash, seed)] = (split, train)

    def drop(self, dataset: Dataset, seed: int) -> None:
        self._splits.pop((dataset.content_hash, seed), None)
        for key in [k for k in self._tasks if k[:2] == (dataset.content_hash, seed)]:
            del self._tasks[key]
        for moved in [k for k in self._on_device if k[:2] == (dataset.content_hash, seed)]:
            del self._on_device[moved]
        for corrupted in [k for k in self._perturbed if k[:2] == (dataset.content_hash, seed)]:
            del self._perturbed[corrupted]
        for armed in [k for k in self._arms if k[:2] == (dataset.content_hash, seed)]:
            del self._arms[armed]
        for drawn in [k for k in self._candidates if k[:2] == (dataset.content_hash, seed)]:
            del self._candidates[drawn]
