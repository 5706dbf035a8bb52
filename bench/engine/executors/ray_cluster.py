"""The ``ray`` executor: each cell a Ray task, on a running cluster or on a local one.

Ray is an optional dependency (``pip install 'coldstart-bench[ray]'``), imported only here. The
run's context and each dataset are put into Ray's object store once, and each (dataset, seed)
split once, when its first cell is submitted; the driver then reads each from the store rather
than keep a copy of its own. Tasks receive references, so no task reads files or rebuilds a
split. A cell on a CUDA device asks Ray for one GPU. The cluster's workers must run the
same code as the driver: a task on a worker whose code fingerprint differs fails with a message
saying so, rather than storing results under the driver's fingerprint.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import socket
import sys
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from bench.engine.executors.base import Executor
from bench.engine.executors.process import available_cpus
from bench.errors import ConfigError

if TYPE_CHECKING:
    from bench.data.dataset import Dataset
    from bench.engine.cells import CellFailure, CellJob, RunContext, Workload
    from bench.protocol import Split
    from bench.protocol.episodes import MetaTrain
    from bench.results.records import CellRecord

CONNECT_S = 10.0
"""How long to wait for a cluster's address to accept a connection; Ray itself retries an
unreachable address for many minutes."""


def check_reachable(address: str, timeout_s: float = CONNECT_S) -> None:
    """Refuse a cluster address (``host:port`` or ``ray://host:port``) whose port does not
    accept a TCP connection within ``timeout_s``. ``auto`` and other forms are left to Ray."""
    target = address.removeprefix("ray://")
    host, _, port_text = target.rpartition(":")
    if address == "auto" or not host:
        return
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(
            f"--ray-address {address!r}: expected HOST:PORT (or ray://HOST:PORT, or auto)"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port_text)), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(
            f"could not reach Ray at {address} within {timeout_s:g} s ({reason}); start the "
            "cluster (ray start --head) or correct --ray-address"
        ) from None


TASK_THREADS = 1
"""torch threads per task; each task asks Ray for one CPU."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "--executor ray needs Ray, which is not installed: "
            "pip install 'coldstart-bench[ray]' (or pip install ray)"
        ) from exc
    return ray


_checked_code: dict[str, str] = {}  # per worker process: the driver fingerprint seen, and ours


def _ray_task(
    job: CellJob, context: RunContext, dataset: Dataset, split: tuple[Split, MetaTrain]
) -> CellRecord | CellFailure:
    """One cell on a Ray worker: the same computation as every other executor's."""
    import socket

    import torch

    from bench.devices import resolve_devices
    from bench.engine.cells import CellFailure
    from bench.engine.compute import compute_cell, warm_up
    from bench.engine.splits import SplitCache
    from bench.provenance import code_fingerprint

    if context.fingerprint not in _checked_code:
        _checked_code[context.fingerprint] = code_fingerprint()
    here = _checked_code[context.fingerprint]
    if here != context.fingerprint:
        return CellFailure(
            f"the Ray worker on {socket.gethostname()} runs other code (fingerprint {here}, the "
            f"driver's is {context.fingerprint}); install the same version on every node",
            "",
        )
    torch.set_num_threads(TASK_THREADS)
    cell = job.cell({dataset.content_hash: dataset})
    cache = SplitCache(context.protocol)
    cache.adopt(dataset, cell.seed, *split)
    devices = resolve_devices((cell.device,))
    warm_up(devices[cell.device])
    return compute_cell(cell, job.needed, context, cache, devices)


def _read_from_store(dataset: Dataset, stored: Dataset) -> None:
    """Point the driver's ``dataset`` at the arrays of its copy in the object store, which the
    driver maps without copying: the same values, read-only as the dataset's own arrays are, and
    the driver's own copy is freed. At 10^8 ratings that is gigabytes the machine holds once
    rather than twice."""
    import numpy as np

    for name, value in vars(stored).items():
        if isinstance(value, np.ndarray):
            object.__setattr__(dataset, name, value)  # a frozen dataclass: same values, shared


def return_freed_memory() -> None:
    """Hand the memory the driver has freed back to the operating system: the allocators keep
    freed blocks for reuse (C's heap; Arrow's pool, which holds what the Parquet reader and
    pandas' Arrow-backed columns used), and the workers, which start after the driver has loaded
    and split the data, need it. Where C's allocator has no ``malloc_trim`` (not glibc) that
    part is skipped."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    if "pyarrow" in sys.modules:  # never imported for its own sake
        sys.modules["pyarrow"].default_memory_pool().release_unused()


class RayExecutor(Executor):
    """Cells as Ray tasks. Without ``address`` a local cluster with ``workers`` CPUs (default:
    every available core) is started, and shut down at the end; with one, that cluster is used
    and ``workers`` caps how many cells run at once (default: its CPU count)."""

    resolves_devices_here = False

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.ray = import_ray()
        self.address = address
        self.workers = workers
        self._started_here = False
        self._refs: list[Any] = []

    def start(self, work: Workload) -> None:
        ray = self.ray
        if not ray.is_initialized():
            options: dict[str, Any] = {
                "include_dashboard": False,
                "logging_level": logging.WARNING,
                "log_to_driver": False,
            }
            if self.address is None:
                options["num_cpus"] = self.workers or available_cpus()
            if self.address is not None:
                check_reachable(self.address)
            try:
                ray.init(address=self.address, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or "a local cluster"
                raise ConfigError(f"could not start or reach Ray at {where}: {exc}") from exc
            self._started_here = True
        resources = ray.cluster_resources()
        if any(d.type == "cuda" for d in work.devices.values()) and resources.get("GPU", 0) < 1:
            raise ConfigError(
                "the suite asks for a CUDA device but the Ray cluster has no GPU "
                f"(resources: {', '.join(sorted(resources))})"
            )
        self.slots = self.workers or max(1, int(resources.get("CPU", 1)))
        self._cache = work.cache
        self._datasets = work.datasets
        self._context_ref = ray.put(work.context)
        self._dataset_refs: dict[str, Any] = {}
        for key, dataset in work.datasets.items():
            ref = ray.put(dataset)
            _read_from_store(dataset, ray.get(ref))
            self._dataset_refs[key] = ref
        return_freed_memory()
        self._split_refs: dict[tuple[str, int], Any] = {}
        self._remote = ray.remote(_ray_task)

    def _split_ref(self, dataset_hash: str, seed: int) -> Any:
        key = (dataset_hash, seed)
        if key not in self._split_refs:
            dataset = self._datasets[dataset_hash]
            ref = self.ray.put(self._cache.split(dataset, seed))
            # From here the driver reads the split from the object store, whose arrays it maps
            # without copying, and its own copy is freed: one copy of each split on the machine.
            self._cache.adopt(dataset, seed, *self.ray.get(ref))
            self._split_refs[key] = ref
            return_freed_memory()
        return self._split_refs[key]

    def submit(self, job: CellJob) -> Future[CellRecord | CellFailure]:
        device: str = job.fields["device"]
        ref = self._remote.options(
            num_cpus=1, num_gpus=1 if device.startswith("cuda") else 0
        ).remote(
            job,
            self._context_ref,
            self._dataset_refs[job.dataset_hash],
            self._split_ref(job.dataset_hash, job.fields["seed"]),
        )
        self._refs.append(ref)  # to cancel on an interrupt (cancelling a finished task is a no-op)
        future: Future[CellRecord | CellFailure] = ref.future()
        return future

    def close(self, cancel: bool) -> None:
        if cancel:
            for ref in self._refs:
                with contextlib.suppress(Exception):  # finished or gone: nothing to stop
                    self.ray.cancel(ref, force=True)
        self._refs = []
        if self._started_here:
            self.ray.shutdown()
