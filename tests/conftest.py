from __future__ import annotations

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
    monkeypatch.setattr(bench.results.store, "_ATTEMPT_S", 0.05)


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
