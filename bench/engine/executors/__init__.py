"""Where a run's cells are computed: in the driver's process (``local``), in a pool of worker
processes on this machine (``process``), or as tasks on a Ray cluster (``ray``).

Every executor computes a cell with :func:`bench.engine.runner.compute_cell` and hands back the finished
:class:`~bench.results.store.CellRecord` (or a :class:`~bench.engine.runner.CellFailure`) as a future; the
driver alone writes the store. Workers receive the run's datasets once, not with every cell.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Future
from typing import TYPE_CHECKING

from bench.errors import ConfigError

if TYPE_CHECKING:
    from bench.engine.runner import CellFailure, CellJob, Workload
    from bench.results.store import CellRecord

EXECUTORS = ("local", "process", "ray")


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
        from bench.engine.runner import warm_up

        self._work = work
        for device in work.devices.values():
            warm_up(device)

    def submit(self, job: CellJob) -> Future[CellRecord | CellFailure]:
        from bench.engine.runner import compute_cell

        future: Future[CellRecord | CellFailure] = Future()
        work = self._work
        cell = job.cell(work.datasets)
        future.set_result(compute_cell(cell, job.needed, work.context, work.cache, work.devices))
        return future

    def close(self, cancel: bool) -> None:
        """Nothing to release: the cells ran in this process."""


CLI_NAMES = {"executor": "--executor", "workers": "--workers", "address": "--ray-address"}
"""How ``bench run`` names :func:`make_executor`'s arguments in its messages."""


def make_executor(
    name: str,
    workers: int | None = None,
    address: str | None = None,
    names: dict[str, str] = CLI_NAMES,
) -> Executor:
    """The executor called ``name``; ``workers`` sizes a process pool or caps Ray's concurrency,
    ``address`` names a running Ray cluster. Errors call the arguments by ``names`` (the CLI's
    flags by default)."""
    if name not in EXECUTORS:
        raise ConfigError(
            f"{names['executor']} must be one of {', '.join(EXECUTORS)}, got {name!r}"
        )
    if workers is not None and workers < 1:
        raise ConfigError(f"{names['workers']} must be at least 1, got {workers}")
    if address is not None and name != "ray":
        raise ConfigError(f"{names['address']} needs {names['executor']} ray")
    if name == "local":
        if workers not in (None, 1):
            raise ConfigError(f"{names['workers']} needs {names['executor']} process or ray")
        return LocalExecutor()
    if name == "process":
        from bench.engine.executors.process import ProcessExecutor

        return ProcessExecutor(workers)
    from bench.engine.executors.ray_cluster import RayExecutor

    return RayExecutor(address=address, workers=workers)
