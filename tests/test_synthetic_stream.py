"""The streaming generator: exactly the ratings asked for, distinct pairs, the same file for a
seed, and blocks no larger than asked."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench.data.cards import load_dataset
from bench.data.synthetic_stream import StreamConfig, blocks, write_parquet


def test_the_file_holds_exactly_the_ratings_asked_for_as_distinct_pairs(tmp_path: Path) -> None:
    config = StreamConfig(n_ratings=5000, n_users=60, n_items=400, block_users=25, seed=3)
    assert write_parquet(config, tmp_path / "r.parquet") == 5000
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.column_names == ["user_id", "item_id", "rating", "timestamp"]
    user = table.column("user_id").to_numpy()
    item = table.column("item_id").to_numpy()
    assert len(np.unique(user * 400 + item)) == 5000
    assert set(np.unique(table.column("rating").to_numpy())) <= {1, 2, 3, 4, 5}
    assert user.max() < 60 and item.max() < 400
    assert pq.ParquetFile(tmp_path / "r.parquet").metadata.num_row_groups == 3  # 25+25+10 users
    again = tmp_path / "again.parquet"
    write_parquet(config, again)
    assert pq.read_table(again).equals(table)
    write_parquet(replace(config, seed=4), again)
    assert not pq.read_table(again).equals(table)
    data = load_dataset(f"parquet:{tmp_path / 'r.parquet'}")  # the loader reads it as it is
    assert data.n_ratings == 5000 and data.rating_scale == (1.0, 5.0)


def test_blocks_hold_at_most_the_users_asked_for() -> None:
    config = StreamConfig(n_ratings=3000, n_users=90, n_items=200, block_users=40)
    sizes = [len(np.unique(block["user_id"])) for block in blocks(config)]
    assert sizes == [40, 40, 10]


def test_more_ratings_than_half_the_matrix_are_refused() -> None:
    with pytest.raises(ValueError, match="at most half the items"):
        StreamConfig(n_ratings=1001, n_users=10, n_items=200)
