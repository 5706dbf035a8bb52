"""The executor interface, and the one that computes each cell in the driver's own process."""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Future
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.engine.cells import CellFailure, CellJob, Workload
    from bench.results.records import CellRecord


class Executor(ABC):
    """Computes cells for the driver; at most :attr:`slots` are handed over at a time."""

    slots: int = 1
    resolves_devices_here: bool = True
    """Whether the run's devices must exist on the driver's machine (a Ray cluster's GPUs need
    not)."""

    @abstractmethod
    def start(self, work: Workload) -> None:
        """Prepare the workers for the run's cells."""

    @abstractmethod
    def submit(self, job: CellJob) -> Future[CellRecord | CellFailure]:
        """Start computing a cell."""

    @abstractmethod
    def close(self, cancel: bool) -> None:
        """Release the workers; with ``cancel``, stop the cells still being computed."""


class LocalExecutor(Executor):
    """Each cell computed in the driver's process, one after another, when it is submitted."""

    def start(self, work: Workload) -> None:
        from bench.engine.compute import warm_up

        self._work = work
        for device in work.devices.values():
            warm_up(device)

    def submit(self, job: CellJob) -> Future[CellRecord | CellFailure]:
        from bench.engine.compute import compute_cell

        future: Future[CellRecord | CellFailure] = Future()
        work = self._work
        cell = job.cell(work.datasets)
        future.set_result(compute_cell(cell, job.needed, work.context, work.cache, work.devices))
        return future

    def close(self, cancel: bool) -> None:
        """Nothing to release: the cells ran in this process."""
