"""``bench export --predictions`` and ``--per-task``: every stored metric is recomputed from the
exported predictions by implementations independent of ``bench.evaluation.metrics`` (scikit-learn, whose
NDCG averages over tied predictions as the default ``expected`` tie policy does; AUC by the
Mann-Whitney rank-sum identity on SciPy's tie-averaged ranks, where a tie counts half) and agrees
to 1e-9; Parquet round-trips."""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata
from sklearn.metrics import mean_absolute_error, mean_squared_error, ndcg_score

from bench.cli import main
from bench.errors import BenchError
from bench.evaluation.floors import FLOORS
from bench.results.analysis import compare_to_reference, load_results
from bench.results.export import rows_of, write_parquet

TOLERANCE = 1e-9
KEYS = ["cell_key", "scenario", "k"]


def export(capsys: pytest.CaptureFixture[str], store: Path, *flags: str) -> pd.DataFrame:
    assert main(["export", "--store", str(store), *flags]) == 0
    text = capsys.readouterr().out
    return pd.read_csv(io.StringIO(text), dtype={"k": str, "entity": str, "user": str, "item": str})


def mean_ndcg_at(tasks: list[tuple[np.ndarray, np.ndarray]], k: int) -> float:
    """The mean over ``tasks`` (ratings, predictions) of NDCG@k with gains 2^r - 1, equal
    predictions scored by the mean over their orders (scikit-learn's tie-averaged DCG); a task
    with no gain scores 1. scikit-learn is asked once per query length, with one row per task."""
    by_length: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    total, count = 0.0, 0
    for ratings, predictions in tasks:
        gains = 2.0 ** np.asarray(ratings, dtype=float) - 1
        if not gains.any():
            total, count = total + 1.0, count + 1
        else:
            by_length.setdefault(len(gains), []).append((gains, predictions))
    for rows in by_length.values():
        gains = np.stack([g for g, _ in rows])
        predicted = np.stack([np.asarray(p, dtype=float) for _, p in rows])
        total += float(ndcg_score(gains, predicted, k=k)) * len(rows)
        count += len(rows)
    return total / count if count else math.nan


def rank_sum_auc(like: np.ndarray, predictions: np.ndarray) -> float:
    """AUC as the Mann-Whitney U of the liked items' predictions over the others', scaled to
    0..1: the liked items' rank sum less its least possible value, over the pairs."""
    ranks = rankdata(predictions)  # ties share their average rank: a tied pair counts half
    liked, other = int(like.sum()), int((~like).sum())
    return float((ranks[like].sum() - liked * (liked + 1) / 2) / (liked * other))


def recompute(group: pd.DataFrame) -> dict[str, float]:
    """Every metric of one evaluation from its exported predictions."""
    group = group.sort_values(["entity", "position"], kind="stable")
    rating = group["rating"].to_numpy()
    prediction = group["prediction"].to_numpy()
    threshold = group["like_threshold"].iat[0]
    margin = (group["rating_max"].iat[0] - group["rating_min"].iat[0]) / 8
    liked, predicted_like = rating >= threshold, prediction >= threshold - margin
    out = {
        "rmse": math.sqrt(mean_squared_error(rating, prediction)),
        "mae": mean_absolute_error(rating, prediction),
        "accuracy": float(np.mean(liked == predicted_like)),
    }
    entity = group["entity"].to_numpy()
    starts = np.flatnonzero(entity[1:] != entity[:-1]) + 1  # rows are sorted by task
    tasks = list(zip(np.split(rating, starts), np.split(prediction, starts), strict=True))
    ranked = [(r, p) for r, p in tasks if len(r) >= 2]
    for k in (1, 3, 5, 10):
        out[f"ndcg@{k}"] = mean_ndcg_at(ranked, k)
    aucs = []
    for ratings, predictions in tasks:
        like = ratings >= threshold
        if like.any() and not like.all():
            aucs.append(rank_sum_auc(like, predictions))
    out["auc"] = float(np.mean(aucs)) if aucs else math.nan
    tied = [float(np.ptp(p) == 0) for _, p in ranked]
    out["tied_share"] = float(np.mean(tied)) if tied else math.nan
    return out


def test_every_metric_is_recomputed_from_the_exported_predictions(
    run_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    predictions = export(capsys, run_store, "--predictions")
    assert {"entity", "position", "user", "item", "rating", "prediction"} <= set(predictions)
    metrics = export(capsys, run_store)
    stored = metrics.set_index([*KEYS, "metric"])["value"]
    compared = 0
    for key, group in predictions.groupby(KEYS, sort=False):
        for metric, value in recompute(group).items():
            expected = stored.loc[(*key, metric)]
            if math.isnan(value):
                assert math.isnan(expected), (key, metric)
            else:
                assert abs(value - expected) <= TOLERANCE, (key, metric, value, expected)
            compared += 1
    # (7 learners and the 2 floors) x 2 seeds x 4 scenarios x 2 support sizes, 8 metrics and
    # tied_share each: the floors' values too follow from their predictions.
    compared_learners = metrics[metrics["cell_key"].isin(predictions["cell_key"])]["learner"]
    assert set(compared_learners) >= set(FLOORS)
    assert compared == 9 * 2 * 4 * 2 * 9


def test_per_task_values_are_keyed_by_the_users_own_ids_and_match_the_predictions(
    run_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    per_task = export(capsys, run_store, "--per-task")
    predictions = export(capsys, run_store, "--predictions")
    # A user-as-task protocol: each task's entity is the user of every query rating.
    assert (predictions["entity"] == predictions["user"]).all()
    mae = per_task[per_task["metric"] == "mae"].set_index([*KEYS, "entity"])
    errors = (predictions["rating"] - predictions["prediction"]).abs()
    by_task = errors.groupby([predictions[c] for c in [*KEYS, "entity"]]).agg(["mean", "size"])
    joined = mae.join(by_task, how="inner")
    assert len(joined) == len(mae) == len(by_task)
    assert np.allclose(joined["value"], joined["mean"], rtol=0, atol=TOLERANCE)
    assert (joined["n_ratings"] == joined["size"]).all()
    # Two learners on the same split pair up on (seed, scenario, k, entity).
    rmse = per_task[per_task["metric"] == "rmse"]
    one, twin = rmse[rmse["learner"] == "item-mean"], rmse[rmse["learner"] == "item-mean-twin"]
    paired = one.merge(twin, on=["seed", "scenario", "k", "entity"], suffixes=("", "_twin"))
    assert len(paired) == len(one) and (paired["value"] == paired["value_twin"]).all()
    # ... and two learners that predict alike are never marked different.
    versus = compare_to_reference(load_results(run_store), "item-mean")
    twins = versus[versus["learner"] == "item-mean-twin"]
    assert len(twins) == 4 * 2 * 9 and set(twins["verdict"]) == {"same"}
    assert (twins["p_holm"] == 1.0).all()


def test_parquet_export_round_trips(
    run_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "per-task.parquet"
    code = main(
        ["export", "--per-task", "--format", "parquet", "-o", str(path), "--store", str(run_store)]
    )
    assert code == 0
    from_parquet = pd.read_parquet(path)
    from_csv = export(capsys, run_store, "--per-task")
    assert len(from_parquet) == len(from_csv)
    assert np.allclose(from_parquet["value"], from_csv["value"], equal_nan=True, rtol=0, atol=0)
    assert list(from_parquet["entity"][:5]) == list(from_csv["entity"][:5])


def test_export_errors_are_clear(
    run_store: Path,
    planted_store: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = main(["export", "--predictions", "--store", str(planted_store)])
    assert code == 2 and "keep_predictions = true" in capsys.readouterr().err
    code = main(["export", "--per-task", "--format", "parquet", "--store", str(run_store)])
    assert code == 2 and "--output PATH" in capsys.readouterr().err
    code = main(["export", "--run", "nope", "--store", str(run_store)])
    assert code == 2 and "--run: no run 'nope'" in capsys.readouterr().err
    frame = rows_of(load_results(run_store), "metrics")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    target = tmp_path / "x.parquet"
    with pytest.raises(BenchError, match=r"needs pyarrow.*coldstart-bench\[parquet\]"):
        write_parquet(frame, target)
    assert not target.exists()
