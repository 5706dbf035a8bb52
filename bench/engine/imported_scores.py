"""``bench import --scores``: an outside model's scores for the candidate items of a ranking suite,
checked against the split's candidate sets and ranked by the code that ranks built-in learners.

The file has one row per (task, candidate item) of the suite's grid: ``dataset, seed, scenario,
k, user, item, score`` (higher ranks first), with ids as the exported split spells them. Which
items a task needs scores for (:func:`required_candidates`):

- with the ``full`` view, every full-ranking candidate of the task (the exported ``pool`` minus
  the task's ``excluded`` items); these include the sampled candidates, so a suite that also
  ranks ``sampled`` needs nothing more;
- with ``sampled`` alone, the task's rows of the exported ``sampled`` table (its relevant query
  items and its negatives).

Every required row must be there once with a finite score, and no other row; ties are broken by
the split seed's tie order, exactly as for a built-in learner's scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from bench.data.dataset import Dataset
from bench.engine.candidate_tables import split_candidates
from bench.engine.suite import Suite
from bench.evaluation.topk import Scorer
from bench.protocol import Protocol, Split, SupportSize
from bench.protocol.candidates import CandidateSets
from bench.protocol.episodes import TaskBatch


@dataclass
class RankedGroup:
    """One (dataset, seed)'s ranking views and candidate sets per (scenario, k)."""

    views: tuple[str, ...]
    sets: dict[tuple[str, str], CandidateSets]


def ranking_groups(
    suite: Suite,
    protocol: Protocol,
    groups: list[tuple[Dataset, int, Split]],
    evaluated: list[tuple[str, SupportSize]],
) -> list[RankedGroup]:
    """The candidate sets of every split of the suite that ranks the catalogue (empty sets for a
    dataset that does not)."""
    out = []
    for dataset, seed, split in groups:
        views = suite.ranking_for(dataset, protocol)
        if not {"full", "sampled"} & set(views):
            out.append(RankedGroup(views, {}))
            continue
        negatives = suite.negatives if "sampled" in views else None
        sets = split_candidates(dataset, split, seed, evaluated, negatives)
        out.append(RankedGroup(views, {(s, str(k)): v for (s, k), v in sets.items()}))
    return out


def _task_items(sets: CandidateSets, full: bool) -> tuple[np.ndarray, np.ndarray]:
    """(task index, item) of every candidate a task needs a score for."""
    rows = [sets.candidates(t) if full else sets.sampled(t) for t in range(len(sets))]
    counts = [len(r) for r in rows]
    items = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    return np.repeat(np.arange(len(rows)), counts), items.astype(np.int64)


def required_candidates(
    datasets: list[Dataset],
    seeds: list[int],
    ranked: list[RankedGroup],
    batches: list[dict[tuple[str, str], TaskBatch]],
) -> pd.DataFrame:
    """Every (task, candidate) the suite ranks, keyed like the file, with the task's entity and
    the item as contiguous ids."""
    frames = []
    for index, (dataset, seed, group) in enumerate(zip(datasets, seeds, ranked, strict=True)):
        full = "full" in group.views
        for (scenario, k), sets in group.sets.items():
            task, item = _task_items(sets, full)
            entity = batches[index][(scenario, k)].entities.numpy()[task]
            frames.append(
                pd.DataFrame(
                    {
                        "dataset": dataset.name,
                        "seed": str(seed),
                        "scenario": scenario,
                        "k": k,
                        "user": dataset.raw_ids("user", entity),
                        "item": dataset.raw_ids("item", item),
                        "group": index,
                        "entity": entity,
                        "item_id": item,
                    }
                )
            )
    if not frames:
        return pd.DataFrame(
            columns=["dataset", "seed", "scenario", "k", "user", "item", "group", "entity"]
        )
    return pd.concat(frames, ignore_index=True)


def lookup_scorer(rows: pd.DataFrame, n_items: int) -> Scorer:
    """``score(tasks, candidates)`` answered from one (scenario, k)'s imported rows: a pair the
    file does not score (a task's excluded item, asked for and then masked by the ranking) gets
    -inf."""
    keys = rows["entity"].to_numpy(dtype=np.int64) * n_items + rows["item_id"].to_numpy(
        dtype=np.int64
    )
    order = np.argsort(keys, kind="stable")
    sorted_keys = torch.from_numpy(keys[order])
    values = torch.from_numpy(rows["score"].to_numpy(dtype=np.float64)[order])

    def score(tasks: TaskBatch, candidates: torch.Tensor) -> torch.Tensor:
        grid = candidates if candidates.dim() == 2 else candidates.expand(tasks.n_tasks, -1)
        wanted = tasks.entities.cpu()[:, None] * n_items + grid.cpu()
        if len(sorted_keys) == 0:
            return torch.full(wanted.shape, float("-inf"), dtype=torch.float64)
        at = torch.searchsorted(sorted_keys, wanted).clamp(max=len(sorted_keys) - 1)
        found = sorted_keys[at] == wanted
        return torch.where(found, values[at], torch.tensor(float("-inf"), dtype=torch.float64))

    return score
