"""Contiguous ids and duplicate resolution: the one-pass paths for dense integer ids and files
without duplicates give exactly what sorting gives."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data.loaders.table import contiguous, ratings_table, resolve_duplicates


@pytest.mark.parametrize(
    "raw",
    [
        np.array([5, 3, 5, 9, 3, 4], dtype=np.int64),
        np.array([-2, 7, -2, 0, 7], dtype=np.int64),
        np.array([3, 1, 2], dtype=np.uint32),
        np.array([-128, 127, 0, -128], dtype=np.int8),  # offsets beyond the type's range
        np.array([2**64 - 1, 2**64 - 3], dtype=np.uint64),  # beyond int64: the sorting path
        np.array([0, 10**15, 5, 10**15], dtype=np.int64),  # sparse: the sorting path
        np.random.default_rng(0).integers(-50, 5_000, 20_000),
    ],
)
def test_contiguous_ids_match_a_sort(raw: np.ndarray) -> None:
    ids, code = contiguous(raw)
    expected_ids, expected_code = np.unique(raw, return_inverse=True)
    assert ids.dtype == raw.dtype
    assert np.array_equal(ids, expected_ids)
    assert np.array_equal(code, expected_code.reshape(-1))
    assert np.array_equal(ids[code], raw)


def test_strings_keep_their_text_order() -> None:
    ids, code = contiguous(np.array(["b", "a", "b"]))
    assert ids.tolist() == ["a", "b"] and code.tolist() == [1, 0, 1]


def test_files_without_duplicates_keep_every_row_in_order() -> None:
    user = np.array([0, 1, 0, 2])
    item = np.array([1, 1, 0, 1])
    rating = np.array([1.0, 2.0, 3.0, 4.0])
    rows, values, dropped = resolve_duplicates(
        user, item, rating, np.zeros(4, np.int64), np.arange(1, 5), "error", "f"
    )
    assert dropped == 0 and rows.tolist() == [0, 1, 2, 3] and values is rating


@pytest.mark.parametrize(
    ("policy", "kept", "ratings"),
    [("first", [0, 1, 3], [1.0, 2.0, 4.0]), ("last", [1, 2, 3], [2.0, 3.0, 4.0])],
)
def test_duplicates_are_still_resolved(policy: str, kept: list[int], ratings: list[float]) -> None:
    user, item = np.array([0, 1, 0, 2]), np.array([1, 1, 1, 1])
    rows, values, dropped = resolve_duplicates(
        user, item, np.array([1.0, 2.0, 3.0, 4.0]), np.zeros(4, np.int64), np.arange(1, 5),
        policy, "f",
    )  # fmt: skip
    assert dropped == 1 and rows.tolist() == kept and values.tolist() == ratings


def test_a_table_without_duplicates_holds_every_rating() -> None:
    raw_user = np.array([10, 11, 10, 12])
    raw_item = np.array([7, 7, 8, 9])
    table = ratings_table(
        raw_user, raw_item, np.array([1.0, 2.0, 3.0, 4.0]), None, np.arange(1, 5), where="f"
    )
    assert table.user_ids[table.user].tolist() == raw_user.tolist()
    assert table.item_ids[table.item].tolist() == raw_item.tolist()
    assert table.rating.tolist() == [1.0, 2.0, 3.0, 4.0] and table.duplicates_dropped == 0
