"""The ``process`` executor: a pool of worker processes on this machine.

Workers are forked from a ``forkserver`` that imports torch and the engine once per driver process
(when its first pool starts), so a worker starts in a fraction of a second rather than importing
torch again; the server computes nothing, so no torch thread pool is ever forked (forking a
process that has started one can deadlock).
Where the platform has no forkserver, workers are started with ``spawn`` (a fresh interpreter
each). Each worker receives the run's context and datasets once, when it starts, builds its own
splits (they are deterministic in the seed), and runs torch on its share of the machine's cores,
so that N workers do not each start a thread per core. Workers ignore Ctrl-C: the driver stops
them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.engine.executors.base import Executor

if TYPE_CHECKING:
    import torch

    from bench.data.dataset import Dataset
    from bench.engine.cells import CellFailure, CellJob, RunContext, Workload
    from bench.engine.splits import SplitCache
    from bench.results.records import CellRecord


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    """torch threads for each of ``workers`` processes sharing ``cpus`` cores (at least one)."""
    return max(1, (cpus or available_cpus()) // workers)


@dataclass
class _Worker:
    context: RunContext
    datasets: dict[str, Dataset]
    cache: SplitCache
    devices: dict[str, torch.device]


PRELOAD = ("torch", "bench.engine.compute", "bench.engine.splits", "bench.devices")
"""What the forkserver imports once for every worker it forks."""

_WATCH_S = 0.5  # how often a worker checks that its driver still runs
_worker: _Worker | None = None  # this worker process's state, set by _start_worker


def start_method() -> multiprocessing.context.BaseContext:
    """``forkserver`` with :data:`PRELOAD` imported where the platform has it, else ``spawn``."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(PRELOAD))
        return context
    return multiprocessing.get_context("spawn")


def _watch_driver(driver: int) -> None:
    """End this worker as soon as its driver is gone: a driver killed with SIGKILL cannot shut its
    pool down, and its workers would otherwise live on, each holding its datasets and models in
    memory. The worker's parent is the driver under ``spawn`` and the forkserver (which ends with
    the driver) otherwise; either leaving, or the driver's process ending, ends the worker."""
    parent = os.getppid()
    while os.getppid() == parent and _running(driver):
        time.sleep(_WATCH_S)
    os._exit(1)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal sent: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user (the pid was reused)
        return False
    return True


def _adopt_environment(environ: dict[str, str]) -> None:
    """Take the driver's environment at the pool's start. A spawned worker inherits it; one forked
    from a forkserver would instead inherit the server's, from when an earlier pool of the same
    process started it (multiprocessing already carries the working folder across)."""
    os.environ.clear()
    os.environ.update(environ)


def _start_worker(
    context: RunContext,
    datasets: dict[str, Dataset],
    threads: int,
    driver: int,
    environ: dict[str, str],
) -> None:
    _adopt_environment(environ)
    threading.Thread(target=_watch_driver, args=(driver,), daemon=True).start()
    import torch

    from bench.devices import resolve_devices
    from bench.engine.compute import warm_up
    from bench.engine.splits import SplitCache

    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    devices = resolve_devices(context.plan.devices)
    for device in devices.values():
        warm_up(device)
    _worker = _Worker(context, datasets, SplitCache(context.protocol), devices)


_StartArgs = tuple["RunContext", dict[str, "Dataset"], int, int, dict[str, str]]
""":func:`_start_worker`'s arguments."""


def _compute(job: CellJob) -> CellRecord | CellFailure:
    from bench.engine.compute import compute_cell

    assert _worker is not None, "the worker was not started"
    cell = job.cell(_worker.datasets)
    return compute_cell(cell, job.needed, _worker.context, _worker.cache, _worker.devices)


class ProcessExecutor(Executor):
    """``workers`` processes (default: one per available core)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or available_cpus()
        self.slots = self.workers
        self._pool: ProcessPoolExecutor | None = None
        self._start_args: _StartArgs | None = None

    def start(self, work: Workload) -> None:
        threads = threads_per_worker(self.workers)
        self._start_args = (work.context, work.datasets, threads, os.getpid(), dict(os.environ))
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        assert self._start_args is not None
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=start_method(),
            initializer=_start_worker,
            initargs=self._start_args,
        )

    def submit(self, job: CellJob) -> Future[CellRecord | CellFailure]:
        assert self._pool is not None, "start() first"
        try:
            return self._pool.submit(_compute, job)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): its cells fail; later cells get a new pool.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(_compute, job)

    def close(self, cancel: bool) -> None:
        if self._pool is None:
            return
        if cancel:
            # Running cells cannot be cancelled through the pool; stop their processes.
            processes = list(getattr(self._pool, "_processes", {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            for process in processes:
                process.join()
        else:
            self._pool.shutdown(wait=True)
        self._pool = None
