"""Ranking the catalogue: candidate sets and sampled negatives from the split, the suite's ranking
keys in the cell key, the learner's ``score`` (its default, the batched ones, never the query),
the runner's stored top-N rows, and popularity against a constant on MovieLens 100K."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from test_cell_key import assert_all_keys_change, base_suite, keys_of

from bench.data.cards import load_dataset
from bench.data.dataset import Dataset
from bench.engine.cells import learner_seeds
from bench.engine.runner import run_suite
from bench.engine.splits import SplitCache
from bench.engine.suite import suite_from_dict
from bench.errors import ConfigError
from bench.evaluation.contract import ContractError, check_learner
from bench.protocol import make_protocol
from bench.protocol.episodes import TaskBatch
from bench.protocol.learner import score_by_predict
from bench.protocol.learner_registry import LEARNERS, make_learner
from bench.results.store import ResultStore
from learners.baselines import GlobalMean

from real_formats import real_data_dir

PROTOCOL: dict[str, Any] = {"name": "cold-random", "support_sizes": [2, 5], "query_size": 6}


@pytest.fixture(scope="module")
def cache() -> tuple[SplitCache, Dataset]:
    dataset = load_dataset("synthetic", {"n_users": 200, "n_items": 150})
    return SplitCache(make_protocol("cold-random", PROTOCOL)), dataset


SCENARIO_KS = [(s, k) for s in ("warm", "user_cold", "item_cold", "user_item_cold") for k in (2, 5)]


@pytest.mark.parametrize(("scenario", "k"), SCENARIO_KS)
def test_candidates_keep_out_training_and_support_items(
    cache: tuple[SplitCache, Dataset], scenario: str, k: int
) -> None:
    splits, dataset = cache
    split, train = splits.split(dataset, 0)
    tasks = splits.tasks(dataset, 0, scenario, k)
    sets = splits.candidates(dataset, 0, scenario, k, 30)
    assert len(sets) == tasks.n_tasks > 0
    trained = {(u, i) for u, i in zip(train.user.tolist(), train.item.tolist(), strict=True)}
    for t in range(len(sets)):
        user = int(tasks.entities[t])
        candidates = set(sets.candidates(t).tolist())
        support = set(tasks.support_items[t][tasks.support_mask[t]].tolist())
        assert not candidates & support
        assert not any((user, i) in trained for i in candidates)
        if scenario in ("item_cold", "user_item_cold"):
            assert all(split.new_items[i] for i in candidates)
        else:  # the whole catalogue but the user's own training and support items
            own = {i for (u, i) in trained if u == user} | support
            assert candidates == set(range(dataset.n_items)) - own
        # Relevant: the liked query items, every one of them a candidate.
        q = tasks.query_mask[t]
        ratings = tasks.query_ratings[t][q].numpy()  # type: ignore[index]
        liked = set(tasks.query_items[t][q].numpy()[ratings >= train.like_threshold].tolist())
        assert set(sets.relevant[t].tolist()) == liked
        assert liked <= candidates
        # Negatives: distinct candidates that are not relevant.
        negatives = sets.negatives[t][sets.negatives[t] >= 0]  # type: ignore[index]
        assert len(set(negatives.tolist())) == len(negatives)
        assert set(negatives.tolist()) <= candidates - liked
        assert len(negatives) == min(30, len(candidates - liked))
    assert sets.n_candidates.tolist() == [len(sets.candidates(t)) for t in range(len(sets))]


def test_negatives_are_fixed_per_seed_and_change_with_it(cache: tuple[SplitCache, Dataset]) -> None:
    _, dataset = cache
    first = SplitCache(make_protocol("cold-random", PROTOCOL)).candidates(dataset, 0, "warm", 2, 30)
    again = SplitCache(make_protocol("cold-random", PROTOCOL)).candidates(dataset, 0, "warm", 2, 30)
    other = SplitCache(make_protocol("cold-random", PROTOCOL)).candidates(dataset, 1, "warm", 2, 30)
    assert first.negatives is not None and again.negatives is not None
    assert np.array_equal(first.negatives, again.negatives)
    assert first.negatives_digest() == again.negatives_digest() != other.negatives_digest()


def test_suite_ranking_keys_are_checked() -> None:
    for bad, message in (
        ({"ranking": ["full", "top"]}, "unknown view"),
        ({"ranking": []}, "empty"),
        ({"ranking": ["full", "full"]}, "twice"),
        ({"negatives": 0}, "'negatives' must be a whole number"),
        ({"negatives": True}, "'negatives' must be a whole number"),
        ({"top_k": [10, 0]}, "'top_k' entries"),
        ({"top_k": [10, 10]}, "cut-off twice"),
        ({"negatives": 10**9}, "from 1 to 100,000"),
        ({"top_k": [10**6]}, "from 1 to 10,000"),
        ({"top_k": ["10"]}, "'top_k' entries"),
        ({"ranking": "full,query"}, None),
        ({"top_k": 10}, "'top_k' must be a list"),
        ({"ranking": ["query"], "shown_metrics": ["rmse", "recall@20"]}, "not produced"),
        ({"shown_metrics": ["recall@30"]}, "not produced"),
    ):
        if message is None:  # a comma-separated string is a list, as for every list key
            assert base_suite(**bad).ranking == ("full", "query")
            continue
        with pytest.raises(ConfigError, match=message):
            base_suite(**bad)
    item_tasks = {**PROTOCOL, "task_axis": "item"}
    with pytest.raises(ConfigError, match="needs user tasks"):
        base_suite(ranking=["full"], protocol=item_tasks)
    assert base_suite(protocol=item_tasks).ranking is None  # the default ranks in-query there


def test_ranking_settings_change_the_cell_key_and_in_query_only_keeps_it() -> None:
    plain = base_suite()
    assert keys_of(plain) == keys_of(base_suite(ranking=["query"]))  # synthetic default
    full = base_suite(ranking=["query", "full"])
    assert_all_keys_change(plain, full)
    assert_all_keys_change(full, base_suite(ranking=["query", "full"], top_k=[5]))
    sampled = base_suite(ranking=["query", "sampled"])
    assert_all_keys_change(full, sampled)
    assert_all_keys_change(sampled, base_suite(ranking=["query", "sampled"], negatives=50))
    # The number of negatives does not matter where nothing is sampled.
    assert keys_of(full) == keys_of(base_suite(ranking=["query", "full"], negatives=50))


def _fitted(name: str, splits: SplitCache, dataset: Dataset) -> Any:
    _, train = splits.split(dataset, 0)
    learner = make_learner(name)
    learner.fit(train, rng=learner_seeds(0, name), device=torch.device("cpu"))
    return learner


@pytest.mark.parametrize("name", ["global-mean", "item-mean", "mf", "popularity"])
def test_batched_scores_order_like_the_predictions(
    cache: tuple[SplitCache, Dataset], name: str
) -> None:
    splits, dataset = cache
    learner = _fitted(name, splits, dataset)
    tasks = splits.tasks(dataset, 0, "user_cold", 2).without_queries()
    items = torch.arange(dataset.n_items)
    batched = learner.score(tasks, items)
    by_predict = score_by_predict(learner.predict, tasks, items, 997, 13)
    assert batched.shape == by_predict.shape == (tasks.n_tasks, dataset.n_items)
    if name == "popularity":  # predictions are the counts mapped onto the scale
        assert torch.equal(
            torch.argsort(batched[0], stable=True), torch.argsort(by_predict[0], stable=True)
        )
    else:  # the batched score is the unclamped prediction
        low, high = dataset.rating_scale
        assert torch.allclose(batched.clamp(low, high), by_predict, atol=1e-5)
    # Per-task candidates score like the shared ones.
    grid = torch.stack(
        [
            torch.randperm(dataset.n_items, generator=torch.Generator().manual_seed(t))[:20]
            for t in range(tasks.n_tasks)
        ]
    )
    assert torch.allclose(learner.score(tasks, grid), torch.gather(batched, 1, grid), atol=1e-5)


class QuerySpy(GlobalMean):
    """Records what ``score`` receives; scores by the base default (through predict)."""

    seen: ClassVar[list[TaskBatch]] = []

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        assert tasks.query_ratings is None
        return super().predict(tasks) + tasks.query_items.float() * 1e-3

    def score(self, tasks: TaskBatch, candidates: torch.Tensor) -> torch.Tensor:
        QuerySpy.seen.append(tasks)
        return super(GlobalMean, self).score(tasks, candidates)


if "test-query-spy" not in LEARNERS:
    LEARNERS.register("test-query-spy", QuerySpy)


def _suite(**changes: Any) -> Any:
    raw: dict[str, Any] = {
        "learners": ["global-mean", "test-query-spy"],
        "seeds": 1,
        "protocol": dict(PROTOCOL),
        "dataset": {"synthetic": {"n_users": 120, "n_items": 150}},
        "ranking": ["query", "full", "sampled"],
        "negatives": 20,
        "top_k": [5, 10],
    }
    raw.update(changes)
    return suite_from_dict(raw, "test")


def test_the_runner_stores_top_n_rows_per_task_and_scores_never_see_the_query(
    tmp_path: Any,
) -> None:
    QuerySpy.seen.clear()
    with ResultStore(tmp_path / "r.db") as store:
        outcome = run_suite(_suite(), store, progress=False, log=lambda _: None)
        rows = store.metric_rows(outcome.cell_keys, with_per_task=True)
        summaries = store.cell_summaries(outcome.cell_keys)
    assert not outcome.failed
    assert QuerySpy.seen and all(
        t.query_ratings is None and t.query_items.shape[1] == 0 for t in QuerySpy.seen
    )
    names = {r["metric"] for r in rows}
    assert {"recall@10", "ndcg@10/full", "map@5", "recall@10/sampled", "ndcg@3"} <= names
    for r in rows:
        # Stored per task: one value per task of the (scenario, k), NaN only where unscored.
        assert len(r["per_task"]) == r["n_tasks"] + r["n_unscored"]
        assert int(np.isnan(np.asarray(r["per_task"], dtype=float)).sum()) == r["n_unscored"]
    # Both learners, and the 2 floor learners run beside them, ranked the same candidate sets
    # and the same sampled negatives.
    ranking = [summary["ranking"] for summary in summaries.values()]
    assert len(ranking) == 4 and all(r == ranking[0] for r in ranking)
    warm = ranking[0]["warm k=2"]
    assert warm["pool"] == 150 and warm["negatives"] == 20 and len(warm["negatives_digest"]) == 16


def test_query_labels_do_not_change_the_scores(cache: tuple[SplitCache, Dataset]) -> None:
    splits, dataset = cache
    learner = _fitted("mf", splits, dataset)
    tasks = splits.tasks(dataset, 0, "warm", 5)
    assert tasks.query_ratings is not None
    shuffled = TaskBatch(
        **{**tasks.__dict__, "query_ratings": torch.flip(tasks.query_ratings, [1])}
    )
    items = torch.arange(dataset.n_items)
    assert torch.equal(
        learner.score(tasks.without_queries(), items),
        learner.score(shuffled.without_queries(), items),
    )


@pytest.mark.real_data
def test_popularity_beats_a_constant_on_ml100k_warm_full_ranking(tmp_path: Any) -> None:
    data_dir = real_data_dir("ml-100k")
    suite = suite_from_dict(
        {
            "datasets": ["ml-100k"],
            "learners": ["global-mean", "popularity"],
            "scenarios": ["warm"],
            "seeds": 1,
            "protocol": {"name": "melu", "support_sizes": ["all"], "query_size": 10},
            "data_dir": str(data_dir),
        },
        "test",
    )
    assert suite.ranking is None  # the default ranks the catalogue on real data
    with ResultStore(tmp_path / "r.db") as store:
        outcome = run_suite(suite, store, progress=False, log=lambda _: None)
        rows = store.metric_rows(outcome.cell_keys)
    recall = {r["learner"]: r for r in rows if r["metric"] == "recall@20"}
    assert recall["popularity"]["n_tasks"] > 100
    assert recall["popularity"]["value"] > recall["global-mean"]["value"] + 0.1
    assert recall["global-mean"]["value"] < 0.05  # a constant ranks ~1,600 items at random


class ScoresByPosition(GlobalMean):
    """Scores a candidate by where it stands in the list, not by what it is: a broken score."""

    def score(self, tasks: TaskBatch, candidates: torch.Tensor) -> torch.Tensor:
        width = candidates.shape[-1]
        return torch.arange(width, dtype=torch.float32).expand(tasks.n_tasks, width)


if "test-scores-by-position" not in LEARNERS:
    LEARNERS.register("test-scores-by-position", ScoresByPosition)


def test_the_learner_contract_checks_scores() -> None:
    check_learner("popularity")
    with pytest.raises(ContractError, match="candidates given per task differ"):
        check_learner("test-scores-by-position")


def test_run_grid_takes_the_ranking_keys(tmp_path: Any) -> None:
    from bench import api

    results = api.run_grid(
        learners=["popularity"],
        seeds=1,
        scenarios=["warm"],
        protocol=dict(PROTOCOL),
        datasets={"synthetic": {"n_users": 80, "n_items": 60}},
        ranking=("query", "sampled"),
        negatives=10,
        top_k=(5,),
        store=tmp_path / "g.sqlite",
        progress=False,
    )
    names = set(results.metrics["metric"])
    assert "recall@5/sampled" in names and "recall@5" not in names and "ndcg@3" in names
    with pytest.raises(ConfigError, match=r"api\.run_grid\(\): 'negatives'"):
        api.run_grid(learners=["popularity"], ranking=["sampled"], negatives=0, progress=False)


def test_scoring_through_predict_sees_each_task_once_when_its_candidates_fit(
    cache: tuple[SplitCache, Dataset],
) -> None:
    splits, dataset = cache
    tasks = splits.tasks(dataset, 0, "warm", 2).without_queries()
    calls: list[tuple[list[int], int]] = []

    def predict(batch: TaskBatch) -> torch.Tensor:
        assert batch.query_ratings is None
        calls.append((batch.entities.tolist(), batch.query_items.shape[1]))
        return batch.query_items.float()

    items = torch.arange(50)
    scores = score_by_predict(predict, tasks, items, pairs=200, task_chunk=13)
    assert torch.equal(scores, items.float().expand(tasks.n_tasks, -1))
    seen = [e for entities, _ in calls for e in entities]
    assert sorted(seen) == sorted(tasks.entities.tolist())  # one predict per task
    assert all(len(e) * width <= 200 and width == 50 for e, width in calls)
    calls.clear()
    score_by_predict(predict, tasks, items, pairs=20, task_chunk=13)  # 50 > 20: in pieces
    assert len(calls) == 3 * tasks.n_tasks and max(w for _, w in calls) == 20


def test_a_process_pool_ranks_like_the_local_executor(tmp_path: Any) -> None:
    from bench.engine.executors.process import ProcessExecutor

    from executor_grid import assert_same_rows, grid, run_on

    ranked = grid(ranking=["query", "full", "sampled"], negatives=15, top_k=[3, 10], seeds=1)
    local = run_on(tmp_path / "local.sqlite", ranked)
    pooled = run_on(tmp_path / "pool.sqlite", ranked, ProcessExecutor(workers=2))
    assert local.exit_code == pooled.exit_code == 0 and pooled.computed == 3
    assert_same_rows(tmp_path / "local.sqlite", tmp_path / "pool.sqlite")
    with ResultStore(tmp_path / "pool.sqlite") as store:
        names = {r["metric"] for r in store.metric_rows()}
    assert {"recall@10", "mrr@3/sampled"} <= names
