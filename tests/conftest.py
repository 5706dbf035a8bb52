from __future__ import annotations

import pytest

from bench.data import Dataset
from bench.synthetic import SyntheticConfig, generate

SMALL = SyntheticConfig(n_users=240, n_items=160, mean_ratings_per_user=60, seed=7)


@pytest.fixture(scope="session")
def small_dataset() -> Dataset:
    return generate(SMALL, name="synthetic-small")
