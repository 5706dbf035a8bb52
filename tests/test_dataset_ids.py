"""A dataset's ids as text, and the generator's kept datasets: the fast paths give what the
plain ones gave."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import bench.data.dataset
from bench.data.dataset import Dataset
from bench.data.synthetic import SyntheticConfig, generate


def with_ids(user_ids: np.ndarray | None, item_ids: np.ndarray | None) -> Dataset:
    rng = np.random.default_rng(3)
    return Dataset(
        name="ids",
        user=rng.integers(0, 5, size=40),
        item=rng.integers(0, 4, size=40),
        rating=rng.integers(1, 6, size=40).astype(np.float32),
        timestamp=np.arange(40),
        n_users=5,
        n_items=4,
        rating_scale=(1.0, 5.0),
        like_threshold=4.0,
        user_ids=user_ids,
        item_ids=item_ids,
    )


CASES = {
    "contiguous": (None, None),
    "numbers": (np.array([10, 7, 99, 3, 12]), np.array([501, 500, 2, 77])),
    "text": (np.array(["ann", "bo", "é", "d 4", "x"], dtype=object), np.array(list("wxyz"))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_id_column_names_each_rating_as_raw_ids_does(case: str) -> None:
    data = with_ids(*CASES[case])
    for side, ids in (("user", data.user), ("item", data.item)):
        table = data.user_ids if side == "user" else data.item_ids
        plain = [str(v) for v in (ids if table is None else table[ids]).tolist()]
        assert data.raw_ids(side, ids) == plain
        column = data.raw_id_column(side, ids)
        assert column.tolist() == plain
        assert column.dtype == pd.Series(plain, dtype="str").dtype


def test_an_id_column_in_several_chunks_equals_one_in_a_single_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = with_ids(*CASES["text"])
    whole = data.raw_id_column("user", data.user)
    monkeypatch.setattr(bench.data.dataset, "ID_COLUMN_BLOCK", 7)
    fresh = dataclasses.replace(data)
    chunked = fresh.raw_id_column("user", fresh.user)
    assert chunked.tolist() == whole.tolist()
    assert fresh.raw_id_column("user", np.zeros(0, dtype=np.int64)).tolist() == []


def test_an_id_outside_the_dataset_is_an_error_not_a_wrapped_id() -> None:
    data = with_ids(*CASES["numbers"])
    with pytest.raises(IndexError, match=r"user ids must lie in 0\.\.4"):
        data.raw_ids("user", np.array([0, 5]))
    with pytest.raises(IndexError, match=r"item ids must lie in 0\.\.3"):
        data.raw_ids("item", np.array([-1]))
    with pytest.raises(IndexError, match=r"item ids must lie in 0\.\.3"):
        data.raw_id_column("item", np.array([4]))
    with pytest.raises(ValueError, match="side must be"):
        data.raw_ids("task", np.array([0]))


def test_a_kept_generated_dataset_is_the_one_generated_and_each_caller_owns_its_extras() -> None:
    config = SyntheticConfig(n_users=30, n_items=20, mean_ratings_per_user=8, seed=41)
    first = generate(config, name="kept")
    first.extras["load_report"] = {"source": "first caller"}
    again = generate(config, name="kept")
    assert "load_report" not in again.extras
    assert again.content_hash == first.content_hash
    for name in ("user", "item", "rating", "timestamp", "user_features", "item_features"):
        assert np.array_equal(getattr(again, name), getattr(first, name))
        assert not getattr(again, name).flags.writeable
    other = generate(dataclasses.replace(config, seed=42), name="kept")
    assert other.content_hash != first.content_hash
    renamed = generate(config, name="another")
    assert renamed.name == "another"
    assert renamed.content_hash == first.content_hash  # the hash is of the contents alone
    assert first.name == "kept"
