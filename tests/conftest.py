from __future__ import annotations

import gc
import os
from collections.abc import Generator

import pytest

import bench.results.store
from bench.data.dataset import Dataset
from bench.data.synthetic import SyntheticConfig, generate

SMALL = SyntheticConfig(n_users=240, n_items=160, mean_ratings_per_user=60, seed=7)
REQUIRE_REAL_DATA = "BENCH_REQUIRE_REAL_DATA"
"""Set to 1 (as CI does) to turn a skipped ``real_data`` test into a failure."""


@pytest.fixture(scope="session")
def small_dataset() -> Dataset:
    return generate(SMALL, name="synthetic-small")


@pytest.fixture()
def short_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's own wait per attempt cut to 50 ms, so a busy store is retried within a second."""
    monkeypatch.setattr(bench.results.store.opening, "_ATTEMPT_S", 0.05)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """With BENCH_REQUIRE_REAL_DATA=1 a real-data test may not be skipped: CI has the data."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if (
        report.skipped
        and item.get_closest_marker("real_data") is not None
        and os.environ.get(REQUIRE_REAL_DATA) == "1"
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"a real-data test was skipped although {REQUIRE_REAL_DATA}=1: {reason}"


# `make test` runs the tests on every core with pytest-xdist (`--dist loadgroup`). Tests that share
# something costly or exclusive go to one worker as a group: a Ray cluster, the browser, and any
# module- or session-wide fixture (a fitted learner, a planted store, the real datasets), which is
# then built once rather than once per worker. Everything else is dealt out test by test.
_EXCLUSIVE_MODULES = {"test_executor_ray.py": "ray", "test_report_browser.py": "browser"}
_CHEAP_SHARED_FIXTURES = {"small_dataset", "make_cell"}


def xdist_group_of(item: pytest.Item) -> str | None:
    """The group a test runs in under pytest-xdist, or None to run it anywhere."""
    module = item.nodeid.split("::")[0]
    exclusive = _EXCLUSIVE_MODULES.get(module.rsplit("/", 1)[-1])
    if exclusive:
        return exclusive
    info = getattr(item, "_fixtureinfo", None)
    shared: list[str] = []
    for name, definitions in sorted((info.name2fixturedefs if info else {}).items()):
        definition = definitions[-1]
        if name in _CHEAP_SHARED_FIXTURES or definition.scope == "function":
            continue
        if definition.baseid == "":
            continue  # pytest's own and plugins' (tmp_path_factory, ...)
        if definition.scope == "module" or definition.baseid.endswith(".py"):
            return module
        shared.append(f"{definition.baseid or 'tests'}::{name}")
    return shared[0] if shared else None


def _with_group_suffix(item: pytest.Item, group: str) -> None:
    """Give the test the id pytest-xdist's worker gives a grouped test (``<nodeid>@<group>``),
    the id its ``loadgroup`` scheduler groups by, when the worker could not.

    pytest-xdist 3.8 writes the id to ``item._nodeid``, which pytest 9.2 no longer reads (it keeps
    a structured ``item._id``): there every grouped test kept its plain id and was dealt out alone
    (pytest-dev/pytest-xdist#1386)."""
    suffixed = f"{item.nodeid}@{group}"
    if item.nodeid.endswith(f"@{group}"):
        return  # the worker did it
    if hasattr(item, "_id"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(suffixed)
    else:
        item._nodeid = suffixed


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every test module and the libraries they import are collected by now and live to the end:
    frozen, they are left out of the many garbage collections the tests' own allocations start
    (about 3% of the tests' CPU time otherwise)."""
    gc.collect()
    gc.freeze()


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Generator[None, None, None]:
    # Marks first, so that pytest-xdist's worker hook (which runs inside this wrapper) sees them.
    groups: dict[pytest.Item, str] = {}
    for item in items:
        group = xdist_group_of(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
            groups[item] = group
    yield
    if config.getoption("loadgroup", default=False):  # set on a pytest-xdist worker
        for item in items:
            if item in groups:
                _with_group_suffix(item, groups[item])
