"""Where a run's cells are computed: in the driver's process (``local``), in a pool of worker
processes on this machine (``process``), or as tasks on a Ray cluster (``ray``).

Every executor computes a cell with :func:`bench.engine.compute.compute_cell` and hands back the finished
:class:`~bench.results.store.CellRecord` (or a :class:`~bench.engine.cells.CellFailure`) as a future; the
driver alone writes the store. Workers receive the run's datasets once, not with every cell.
"""

from __future__ import annotations

from bench.engine.executors.base import Executor, LocalExecutor
from bench.errors import ConfigError

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "make_executor"]

EXECUTORS = ("local", "process", "ray")


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
