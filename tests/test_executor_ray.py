"""The Ray executor on a real local cluster (two CPUs, started once for the module): the same rows
as the local executor, cell for cell; the datasets travel through the object store, and the
driver then reads them from there rather than keep its own copy; a cluster without the devices a
suite asks for is refused before any cell runs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.data.synthetic import SyntheticConfig, generate
from bench.engine.cells import Workload
from bench.engine.executors.ray_cluster import RayExecutor
from bench.engine.splits import SplitCache
from bench.errors import ConfigError
from bench.protocol import make_protocol
from bench.results.store import ResultStore

from executor_grid import assert_same_rows, grid, run_on

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("local") / "s.sqlite"
    assert run_on(path, grid()).computed == 6
    return path


def test_ray_stores_the_local_executors_rows_cell_for_cell(
    cluster: None, local_store: Path, tmp_path: Path
) -> None:
    path = tmp_path / "ray.sqlite"
    executor = RayExecutor()
    outcome = run_on(path, grid(), executor)
    assert (outcome.computed, outcome.exit_code) == (6, 0)
    assert executor.slots == 2  # the cluster's CPUs
    assert ray.is_initialized()  # a cluster it did not start is left running
    # One object per dataset and per (dataset, seed) split, put once for all six cells.
    assert len(executor._dataset_refs) == 1 and len(executor._split_refs) == 2
    assert_same_rows(local_store, path)
    with ResultStore(path) as store:
        assert store.claims() == []


def test_a_suite_on_cuda_needs_a_cluster_with_a_gpu(cluster: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="asks for a CUDA device but the Ray cluster has no GPU"):
        run_on(tmp_path / "s.sqlite", grid(devices=["cuda"]), RayExecutor())
    with ResultStore(tmp_path / "s.sqlite") as store:
        assert store.runs() == []  # refused before the run was recorded


def test_the_driver_keeps_no_copy_of_what_it_put_in_the_object_store(cluster: None) -> None:
    dataset = generate(SyntheticConfig(n_users=60, n_items=40, mean_ratings_per_user=20, seed=2))
    cache = SplitCache(make_protocol("cold-random", {"support_sizes": [1], "query_size": 2}))
    own = {name: getattr(dataset, name) for name in ("user", "item", "rating", "timestamp")}
    split, train = cache.split(dataset, 0)
    own_train, own_new_users = train.rating, split.new_users
    executor = RayExecutor()
    executor.start(Workload(None, {dataset.content_hash: dataset}, cache, {}))  # type: ignore[arg-type]
    executor._split_ref(dataset.content_hash, 0)
    stored_split, stored_train = cache.split(dataset, 0)
    pairs = [*((own[n], getattr(dataset, n)) for n in own), (own_train, stored_train.rating)]
    pairs.append((own_new_users, stored_split.new_users))
    for before, now in pairs:  # the same values, in the store's memory, read-only
        np.testing.assert_array_equal(before, now)
        assert not np.shares_memory(before, now) and not now.flags.writeable
    executor.close(cancel=False)
