"""Top-N metrics: hand-computed cases (ties, no relevant item, fewer candidates than K), agreement
with ir-measures (trec_eval) on random rankings, and the chunked top-K against the unchunked one."""

from __future__ import annotations

import math

import ir_measures
import numpy as np
import pytest
import torch
from ir_measures import AP, RR, P, R, Success, nDCG

from bench.evaluation.topk import rank_full, rank_sampled, sort_keys, tie_keys
from bench.evaluation.topn import (
    Ranked,
    evaluate_ranked,
    parse_topn_name,
    topn_name,
    topn_names,
)
from bench.evaluation.topn import (
    average_precision as ap,
)
from bench.evaluation.topn import (
    hit_rate as hr,
)
from bench.evaluation.topn import (
    ndcg as ndcg_k,
)
from bench.evaluation.topn import (
    precision as prec,
)
from bench.evaluation.topn import (
    recall as rec,
)
from bench.evaluation.topn import (
    reciprocal_rank as rr,
)
from bench.protocol.candidates import CandidateSets
from bench.protocol.episodes import TaskBatch


def ranked(
    hits: list[list[int]], n_relevant: list[int], n_candidates: list[int] | None = None
) -> Ranked:
    h = np.array(hits, dtype=bool)
    return Ranked(h, np.array(n_relevant), np.array(n_candidates or [h.shape[1]] * len(h)))


def test_hand_computed_values_at_k() -> None:
    # Relevant at ranks 1 and 3 of 4, three relevant items in all (one never ranked).
    r = ranked([[1, 0, 1, 0]], [3])
    assert rec(r, 4)[0] == pytest.approx(2 / 3)
    assert rec(r, 2)[0] == pytest.approx(1 / 3)
    assert prec(r, 4)[0] == pytest.approx(2 / 4)
    assert prec(r, 2)[0] == pytest.approx(1 / 2)
    assert hr(r, 1)[0] == 1.0
    assert rr(r, 4)[0] == 1.0
    assert ap(r, 4)[0] == pytest.approx((1 / 1 + 2 / 3) / 3)
    dcg = 1 + 1 / math.log2(4)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_k(r, 4)[0] == pytest.approx(dcg / ideal)
    # First hit at rank 3: MRR 1/3 at K >= 3, 0 within the top 2.
    late = ranked([[0, 0, 1, 0]], [1])
    assert rr(late, 4)[0] == pytest.approx(1 / 3)
    assert rr(late, 2)[0] == 0.0
    assert hr(late, 2)[0] == 0.0
    assert ndcg_k(late, 4)[0] == pytest.approx(1 / math.log2(4))


def test_recall_divides_by_the_relevant_count_not_by_min_k_relevant() -> None:
    # Five relevant items, both of the top 2 relevant: recall@2 is 2/5 (min(K, R) would give 1).
    r = ranked([[1, 1, 0]], [5])
    assert rec(r, 2)[0] == pytest.approx(0.4)
    # The ideal DCG of NDCG is the one that uses min(K, R): a perfect top 2 scores 1.
    assert ndcg_k(r, 2)[0] == pytest.approx(1.0)
    assert ap(r, 2)[0] == pytest.approx(2 / 5)


def test_a_task_without_relevant_items_is_unscored_and_counted() -> None:
    r = ranked([[0, 0], [1, 0]], [0, 1])
    values = {v.name: v for v in evaluate_ranked(r, "full", (2,))}
    for name in ("recall@2", "precision@2", "ndcg@2/full", "hr@2", "mrr@2", "map@2"):
        assert math.isnan(values[name].per_task[0])
        assert values[name].n_scored == 1 and values[name].n_unscored == 1
    assert values["recall@2"].value == 1.0
    assert values["precision@2"].value == 0.5


def test_fewer_candidates_than_k() -> None:
    # Two candidate items, one relevant and ranked first; K = 5.
    sets = CandidateSets(
        "warm", np.array([3, 8]), (np.array([], dtype=np.int64),), (np.array([8]),)
    )
    tasks = _tasks([4])
    out = rank_full(lambda t, c: torch.tensor([[0.0, 1.0]]), tasks, sets, 5, tie_seed=1)
    assert out.hits.tolist() == [[True, False, False, False, False]]
    assert prec(out, 5)[0] == pytest.approx(1 / 5)  # still divided by K
    assert rec(out, 5)[0] == 1.0 and ndcg_k(out, 5)[0] == 1.0 and ap(out, 5)[0] == 1.0


def test_ties_are_broken_by_the_seeded_order_not_by_item_id() -> None:
    pool = np.arange(40)
    sets = CandidateSets("warm", pool, (np.array([], dtype=np.int64),), (np.array([0]),))
    tasks = _tasks([5])
    firsts = []
    for seed in range(200):
        out = rank_full(lambda t, c: torch.zeros(1, len(c)), tasks, sets, 1, tie_seed=seed)
        firsts.append(bool(out.hits[0, 0]))
    # Item 0 (relevant, lowest id) is first in about 1 of 40 seeds, not always and not never.
    assert 0 < sum(firsts) < 20
    # The tied order is the one the tie keys give, the same for every call.
    keys = tie_keys(7, torch.tensor([5]), torch.as_tensor(pool))[0]
    order = torch.argsort(keys, descending=True)
    hand = rank_full(lambda t, c: torch.zeros(1, len(c)), tasks, sets, 40, tie_seed=7)
    assert int(np.flatnonzero(hand.hits[0])[0]) == int((order == 0).nonzero()[0, 0])


def test_scores_order_before_tie_keys_and_negative_zero_ties_zero() -> None:
    scores = torch.tensor([[1.5, -0.0, 0.0, -2.0, float("-inf"), float("inf")]])
    ties = torch.tensor([[5, 1, 9, 3, 7, 0]])
    keys = sort_keys(scores, ties)
    assert torch.argsort(keys[0], descending=True).tolist() == [5, 0, 2, 1, 3, 4]


def _tasks(entities: list[int]) -> TaskBatch:
    n = len(entities)
    empty = torch.zeros(n, 0, dtype=torch.long)
    return TaskBatch(
        axis="user",
        entities=torch.tensor(entities),
        support_users=empty,
        support_items=empty,
        support_ratings=torch.zeros(n, 0),
        support_mask=torch.zeros(n, 0, dtype=torch.bool),
        query_users=empty,
        query_items=empty,
        query_mask=torch.zeros(n, 0, dtype=torch.bool),
    )


def _random_problem(
    rng: np.random.Generator, n_tasks: int, n_items: int
) -> tuple[CandidateSets, torch.Tensor]:
    pool = np.sort(rng.choice(3 * n_items, size=n_items, replace=False))
    excluded, relevant = [], []
    for _ in range(n_tasks):
        ex = np.sort(rng.choice(pool, size=rng.integers(0, n_items // 3), replace=False))
        rest = np.setdiff1d(pool, ex)
        relevant.append(np.sort(rng.choice(rest, size=rng.integers(0, 6), replace=False)))
        excluded.append(ex)
    # Integer scores from a small range: many ties.
    scores = torch.as_tensor(rng.integers(0, 8, size=(n_tasks, n_items)), dtype=torch.float32)
    return CandidateSets("warm", pool, tuple(excluded), tuple(relevant)), scores


def _scorer(scores: torch.Tensor, pool: np.ndarray):  # type: ignore[no-untyped-def]
    position = {int(item): p for p, item in enumerate(pool)}

    def score(tasks: TaskBatch, items: torch.Tensor) -> torch.Tensor:
        rows = tasks.entities.tolist()
        cols = [position[int(i)] for i in items.tolist()]
        return scores[rows][:, cols]

    return score


def test_chunked_top_k_equals_the_unchunked_one() -> None:
    rng = np.random.default_rng(3)
    sets, scores = _random_problem(rng, 30, 50)
    tasks = _tasks(list(range(30)))
    score = _scorer(scores, sets.pool)
    whole = rank_full(score, tasks, sets, 20, tie_seed=11, budget=10**6)
    for budget in (1, 7, 49, 120):  # pieces of the item axis, and several tasks per chunk
        held: list[int] = []

        def bounded(t: TaskBatch, c: torch.Tensor, held: list[int] = held) -> torch.Tensor:
            held.append(t.n_tasks * c.shape[-1])
            return score(t, c)

        chunked = rank_full(bounded, tasks, sets, 20, tie_seed=11, budget=budget)
        assert np.array_equal(chunked.hits, whole.hits)
        assert max(held) <= budget  # never more scores at once than the budget
    float_scores = torch.as_tensor(rng.random((30, 50)), dtype=torch.float32)
    score = _scorer(float_scores, sets.pool)
    reference = rank_full(score, tasks, sets, 20, tie_seed=0, budget=10**6)
    assert np.array_equal(
        rank_full(score, tasks, sets, 20, tie_seed=0, budget=13).hits, reference.hits
    )


def _our_order(sets: CandidateSets, scores: torch.Tensor, t: int, seed: int) -> list[int]:
    """Task t's candidates in the order the harness ranks them (scores, then tie keys)."""
    keys = sort_keys(
        scores[t : t + 1], tie_keys(seed, torch.tensor([t]), torch.as_tensor(sets.pool))
    )[0]
    order = torch.argsort(keys, descending=True).tolist()
    excluded = set(sets.excluded[t].tolist())
    return [int(sets.pool[p]) for p in order if int(sets.pool[p]) not in excluded]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_values_equal_ir_measures_on_random_rankings_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sets, scores = _random_problem(rng, 40, 60)
    tasks = _tasks(list(range(40)))
    ours = {
        v.name: v.per_task
        for v in evaluate_ranked(
            rank_full(_scorer(scores, sets.pool), tasks, sets, 20, tie_seed=seed, budget=300),
            "full",
            (5, 20),
        )
    }
    qrels, run = {}, {}
    for t in range(40):
        if len(sets.relevant[t]):
            qrels[str(t)] = {str(i): 1 for i in sets.relevant[t]}
            order = _our_order(sets, scores, t, seed)
            run[str(t)] = {str(item): float(len(order) - r) for r, item in enumerate(order)}
    assert len(qrels) > 20
    measures = {
        "recall": R,
        "precision": P,
        "ndcg": nDCG,
        "hr": Success,
        "mrr": RR,
        "map": AP,
    }
    for k in (5, 20):
        names = {m: topn_name(m, k, "full") for m in measures}
        expected = {
            (m.query_id, str(m.measure)): m.value
            for m in ir_measures.iter_calc([measures[m] @ k for m in measures], qrels, run)
        }
        for t in range(40):
            if str(t) not in qrels:
                assert all(math.isnan(ours[n][t]) for n in names.values())
                continue
            for measure, name in names.items():
                theirs = expected[(str(t), str(measures[measure] @ k))]
                assert abs(ours[name][t] - theirs) < 1e-9, (measure, k, t)


def test_sampled_ranking_ranks_relevant_items_among_the_negatives_only() -> None:
    pool = np.arange(10)
    sets = CandidateSets(
        "warm",
        pool,
        (np.array([], dtype=np.int64),),
        (np.array([2]),),
        negatives=np.array([[7, 5, -1]]),
    )
    seen = []

    def score(tasks: TaskBatch, items: torch.Tensor) -> torch.Tensor:
        seen.append(items.clone())
        return items.float()  # higher id first: 7, 5, 2

    out = rank_sampled(score, _tasks([0]), sets, 3, tie_seed=0)
    assert out.hits.tolist() == [[False, False, True]]
    assert out.n_candidates.tolist() == [3]  # the padding is no candidate
    assert sorted(seen[0][0].tolist()[:3]) == [2, 5, 7]


def test_names_say_the_candidate_set() -> None:
    assert topn_name("recall", 20, "full") == "recall@20"
    assert topn_name("recall", 20, "sampled") == "recall@20/sampled"
    assert topn_name("ndcg", 10, "full") == "ndcg@10/full"
    assert parse_topn_name("ndcg@10") is None  # the in-query NDCG keeps its stored name
    assert parse_topn_name("recall@20/full") is None
    assert parse_topn_name("hr@5/sampled") == ("hr", 5, "sampled")
    names = topn_names(("query", "full", "sampled"), (20, 10))
    assert len(names) == 24 and names[0] == "recall@10" and names[-1] == "map@20/sampled"
    assert topn_names(("query",), (10,)) == ()
