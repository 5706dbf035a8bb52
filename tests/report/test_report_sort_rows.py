"""``sort_rows`` orders a frame by table, scenario, k, the learners' order, device and metric."""

from __future__ import annotations

import pandas as pd

from bench.results.analysis.summary import sort_rows


def test_sort_rows_orders_by_its_keys() -> None:
    rows = [
        ("d", "p", "item_cold", "all", "mf", "cpu", "rmse"),
        ("d", "p", "user_cold", "10", "maml", "cpu", "mae"),
        ("d", "p", "user_cold", "5", "other", "cpu", "rmse"),
        ("d", "p", "user_cold", "5", "maml", "cuda", "rmse"),
        ("d", "p", "user_cold", "5", "maml", "cpu", "mae"),
        ("d", "p", "user_cold", "5", "mf", "cpu", "recall@20_full"),
        ("d", "p", "user_cold", "5", "mf", "cpu", "rmse"),
        ("c", "p", "warm", "5", "mf", "cpu", "rmse"),
    ]
    columns = ["dataset", "protocol", "scenario", "k", "learner", "device", "metric"]
    frame = pd.DataFrame(rows, columns=columns)
    shuffled = frame.iloc[[3, 6, 0, 7, 2, 5, 1, 4]].reset_index(drop=True)
    ordered = sort_rows(shuffled, ["mf", "maml", "mf"])
    assert list(ordered.itertuples(index=False, name=None)) == [
        ("c", "p", "warm", "5", "mf", "cpu", "rmse"),
        ("d", "p", "user_cold", "5", "mf", "cpu", "rmse"),
        ("d", "p", "user_cold", "5", "mf", "cpu", "recall@20_full"),
        ("d", "p", "user_cold", "5", "maml", "cpu", "mae"),
        ("d", "p", "user_cold", "5", "maml", "cuda", "rmse"),
        ("d", "p", "user_cold", "5", "other", "cpu", "rmse"),
        ("d", "p", "user_cold", "10", "maml", "cpu", "mae"),
        ("d", "p", "item_cold", "all", "mf", "cpu", "rmse"),
    ]
    assert sort_rows(frame.iloc[:0], ["mf"]).empty
