"""Support perturbations at test time: nested strengths, the same corrupted support for every
learner, queries and training untouched, strength 0 equal to the clean run, and bad settings
refused before anything runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from bench.data.synthetic import SyntheticConfig, generate
from bench.engine.runner import run_suite
from bench.engine.splits import SplitCache
from bench.engine.suite import suite_from_dict
from bench.errors import ConfigError
from bench.protocol import make_protocol
from bench.protocol.episodes import TaskBatch
from bench.protocol.learner_registry import LEARNERS
from bench.protocol.perturbation_labels import (
    KINDS,
    Perturbation,
    corrupted_count,
    parse_label,
    scenario_label,
)
from bench.protocol.perturbations import corrupted_positions, perturb
from bench.results.analysis import load_results
from bench.results.store import ResultStore
from learners.baselines import GlobalMean

SCALE = (1.0, 5.0)
LEVELS = np.arange(1.0, 6.0)


def tasks(n_tasks: int = 30, k: int = 10, seed: int = 0) -> TaskBatch:
    """Tasks with ``k`` support ratings on a 1-5 scale (the last task has three fewer)."""
    rng = np.random.default_rng(seed)
    mask = np.ones((n_tasks, k), dtype=bool)
    mask[-1, k - 3 :] = False
    ratings = np.where(mask, rng.integers(1, 6, (n_tasks, k)), 0).astype(np.float32)
    items = np.where(mask, rng.integers(1, 50, (n_tasks, k)), 0)
    users = np.where(mask, np.arange(n_tasks)[:, None], 0)
    query = rng.integers(1, 50, (n_tasks, 4))
    return TaskBatch(
        axis="user",
        entities=torch.arange(n_tasks),
        support_users=torch.as_tensor(users),
        support_items=torch.as_tensor(items),
        support_ratings=torch.as_tensor(ratings),
        support_mask=torch.as_tensor(mask),
        query_users=torch.arange(n_tasks)[:, None].expand(n_tasks, 4).clone(),
        query_items=torch.as_tensor(query),
        query_mask=torch.ones(n_tasks, 4, dtype=torch.bool),
        query_ratings=torch.as_tensor(rng.integers(1, 6, (n_tasks, 4)).astype(np.float32)),
    )


def corrupt(batch: TaskBatch, kind: str, strength: float, seed: int = 0) -> TaskBatch:
    return perturb(
        batch,
        Perturbation(kind, strength),
        seed=seed,
        scenario="user_cold",
        entity_ids=[str(e) for e in batch.entities.tolist()],
        rating_scale=SCALE,
        rating_levels=LEVELS,
    )


def changed(clean: TaskBatch, dirty: TaskBatch) -> np.ndarray:
    """Per support position: whether the rating moved (kinds other than drop)."""
    return (clean.support_ratings != dirty.support_ratings).numpy()


def test_round_half_up_gives_an_exact_count() -> None:
    assert [corrupted_count(p, 5) for p in (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)] == [0, 1, 1, 2, 3, 5]
    assert corrupted_count(0.05, 10) == 1 and corrupted_count(0.04, 10) == 0


def positions(batch: TaskBatch, kind: str, strength: float, seed: int = 0) -> np.ndarray:
    hit, _ = corrupted_positions(
        batch.support_mask.numpy(),
        Perturbation(kind, strength),
        seed,
        "user_cold",
        [str(e) for e in batch.entities.tolist()],
        batch.support_ratings.numpy().astype(np.float64),
    )
    return hit


@pytest.mark.parametrize("kind", KINDS)
def test_exact_counts_and_nested_strengths(kind: str) -> None:
    clean = tasks()
    n = clean.support_mask.sum(1).numpy()
    previous = np.zeros(clean.support_mask.shape, dtype=bool)
    for strength in (0.1, 0.2, 0.5, 0.8, 1.0):
        hit = positions(clean, kind, strength)
        expected = [corrupted_count(strength, int(v)) for v in n]
        assert hit.sum(1).tolist() == expected
        assert not (hit & ~clean.support_mask.numpy()).any()
        assert (previous <= hit).all()  # a lower strength's ratings are among a higher one's
        previous = hit


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "drop"])
def test_values_move_only_where_chosen_and_stay_nested(kind: str) -> None:
    clean = tasks()
    before = None
    for strength in (0.2, 0.5, 1.0):
        dirty = corrupt(clean, kind, strength)
        hit = torch.as_tensor(positions(clean, kind, strength))
        assert torch.equal(dirty.support_ratings[~hit], clean.support_ratings[~hit])
        if before is not None:  # what a lower strength corrupted keeps its new value
            kept = torch.as_tensor(positions(clean, kind, before[0]))
            assert torch.equal(dirty.support_ratings[kept], before[1].support_ratings[kept])
        before = (strength, dirty)
        assert torch.equal(dirty.query_ratings, clean.query_ratings)
        assert torch.equal(dirty.query_items, clean.query_items)
        assert torch.equal(dirty.support_mask, clean.support_mask)
        assert torch.equal(dirty.support_items, clean.support_items)
        values = dirty.support_ratings[clean.support_mask]
        assert ((values >= 1) & (values <= 5)).all()


def test_reverse_and_outlier_values() -> None:
    clean = tasks()
    mask = clean.support_mask
    full = corrupt(clean, "reverse", 1.0)
    assert torch.equal(full.support_ratings[mask], 6 - clean.support_ratings[mask])
    extreme = corrupt(clean, "outlier", 1.0).support_ratings[mask]
    expected = torch.where(clean.support_ratings[mask] < 3, 5.0, 1.0)
    assert torch.equal(extreme, expected)
    flipped = corrupt(clean, "flip", 1.0).support_ratings[mask]
    assert set(flipped.tolist()) <= set(LEVELS.tolist())


def test_push_raises_the_lowest_ratings_to_the_maximum() -> None:
    clean = tasks()
    for strength in (0.2, 0.5):
        dirty = corrupt(clean, "push", strength)
        hit = torch.as_tensor(positions(clean, "push", strength))
        assert (dirty.support_ratings[hit] == SCALE[1]).all()
        for t in range(clean.n_tasks):  # no unchosen rating lies below a chosen one
            mask = clean.support_mask[t]
            chosen = clean.support_ratings[t][hit[t]]
            others = clean.support_ratings[t][mask & ~hit[t]]
            if len(chosen) and len(others):
                assert chosen.max() <= others.min()
    with pytest.raises(ValueError, match="support ratings"):
        corrupted_positions(
            clean.support_mask.numpy(), Perturbation("push", 0.2), 0, "user_cold", ["0"] * 30
        )


def test_drop_removes_exactly_m_and_keeps_order() -> None:
    clean = tasks()
    previous = None
    for strength in (0.2, 0.5, 1.0):
        dirty = corrupt(clean, "drop", strength)
        n = clean.support_mask.sum(1)
        m = torch.tensor([corrupted_count(strength, int(v)) for v in n])
        assert torch.equal(dirty.support_mask.sum(1), n - m)
        # padding stays at the end, and the kept ratings are a subsequence of the clean ones
        for t in range(clean.n_tasks):
            kept = dirty.support_items[t][dirty.support_mask[t]].tolist()
            left = iter(clean.support_items[t][clean.support_mask[t]].tolist())
            assert all(item in left for item in kept)
            assert not dirty.support_mask[t, int(dirty.support_mask[t].sum()) :].any()
            if previous is not None:  # nested: what a higher strength keeps, a lower one kept
                assert set(kept) <= set(
                    previous.support_items[t][previous.support_mask[t]].tolist()
                )
        assert torch.equal(dirty.query_ratings, clean.query_ratings)
        previous = dirty


def test_strength_zero_is_the_identity_and_a_seed_changes_the_draw() -> None:
    clean = tasks()
    assert corrupt(clean, "flip", 0.0) is clean
    one = corrupt(clean, "reverse", 0.3, seed=0)
    other = corrupt(clean, "reverse", 0.3, seed=1)
    again = corrupt(clean, "reverse", 0.3, seed=0)
    assert torch.equal(one.support_ratings, again.support_ratings)
    assert not torch.equal(one.support_ratings, other.support_ratings)


def test_support_size_k_is_a_prefix_at_every_strength() -> None:
    """A position's draws do not depend on k: the corruption of a k=5 support is that of the
    first five positions' own draws (the chosen set differs, the new values do not)."""
    clean = tasks(k=10)
    short = replace(
        clean,
        support_users=clean.support_users[:, :5],
        support_items=clean.support_items[:, :5],
        support_ratings=clean.support_ratings[:, :5],
        support_mask=clean.support_mask[:, :5],
    )
    long_all = corrupt(clean, "gauss", 1.0).support_ratings[:, :5]
    short_all = corrupt(short, "gauss", 1.0).support_ratings
    assert torch.equal(long_all, short_all)


def test_labels_round_trip() -> None:
    p = Perturbation("flip", 0.2)
    assert scenario_label("user_cold", p) == "user_cold~flip@0.2"
    assert parse_label("user_cold~flip@0.2") == ("user_cold", "flip", 0.2)
    assert parse_label("user_cold") == ("user_cold", None, 0.0)
    assert scenario_label("user_cold", Perturbation("flip", 0.0)) == "user_cold"


# Runs on synthetic data --------------------------------------------------------------------


def suite_dict(**extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "robust-test",
        "datasets": ["synthetic"],
        "scenarios": ["warm", "user_cold"],
        "learners": ["global-mean", "item-mean", "mf"],
        "seeds": 2,
        "protocol": {"name": "cold-random", "support_sizes": [5], "query_size": 5},
        "dataset": {"synthetic": {"n_users": 120, "n_items": 80}},
        "learner": {"mf": {"rank": 4, "iterations": 3}},
    }
    raw.update(extra)
    return raw


ROBUST = {"kinds": ["flip", "drop", "outlier"], "strengths": [0, 0.4, 1.0]}


def run(tmp_path: Path, name: str, **extra: Any) -> Any:
    path = tmp_path / f"{name}.sqlite"
    with ResultStore(path) as store:
        outcome = run_suite(suite_from_dict(suite_dict(**extra), name), store, progress=False)
    assert not outcome.failed
    return load_results(path)


def rows(frame: Any, scenario: str) -> list[tuple[Any, ...]]:
    part = frame[frame["scenario"] == scenario]
    keys = ["scenario", "k", "learner", "seed", "metric", "value"]
    return sorted(map(tuple, part[keys].itertuples(index=False, name=None)))


def test_strength_zero_rows_equal_a_run_without_perturbation(tmp_path: Path) -> None:
    plain = run(tmp_path, "plain")
    robust = run(tmp_path, "robust", robustness=ROBUST)
    for scenario in ("warm", "user_cold"):
        assert rows(robust.metrics, scenario) == rows(plain.metrics, scenario)
    labels = set(robust.metrics["scenario"])
    assert {"user_cold~flip@0.4", "user_cold~drop@1", "user_cold~outlier@0.4"} <= labels
    assert not any(label.startswith("warm~") for label in labels)
    assert set(plain.cells["cell_key"]).isdisjoint(robust.cells["cell_key"])
    # one fit per cell, however many perturbed evaluations
    fits = robust.timings[robust.timings["phase"] == "fit"]
    assert len(fits) == len(robust.cells)
    # a learner that ignores its support set does not move at any strength
    blind = robust.metrics[robust.metrics["learner"] == "global-mean"]
    rmse = blind[blind["metric"] == "rmse"].groupby("seed")["value"]
    clean = blind[(blind["metric"] == "rmse") & blind["scenario"].str.startswith("user_cold")]
    assert (clean.groupby("seed")["value"].nunique() == 1).all()
    assert rmse.size().min() > 1
    # mf uses its support: outliers everywhere hurt it
    mf = robust.metrics[(robust.metrics["learner"] == "mf") & (robust.metrics["metric"] == "rmse")]
    by = mf.groupby("scenario")["value"].mean()
    assert by["user_cold~outlier@1"] > by["user_cold"]


def test_every_learner_sees_the_same_corrupted_support() -> None:
    """The corrupted batch depends on the split and the perturbation, never on a learner: two
    caches (two workers) derive identical tensors, and training and query are untouched."""
    dataset = generate(SyntheticConfig(n_users=120, n_items=80, seed=0))
    protocol = make_protocol("cold-random", {"support_sizes": [5], "query_size": 5})
    one, two = SplitCache(protocol), SplitCache(protocol)
    p = Perturbation("flip", 0.6)
    a = one.perturbed(dataset, 3, "user_cold", 5, p)
    b = two.perturbed(dataset, 3, "user_cold", 5, p)
    clean = one.tasks(dataset, 3, "user_cold", 5)
    assert torch.equal(a.support_ratings, b.support_ratings)
    assert not torch.equal(a.support_ratings, clean.support_ratings)
    assert torch.equal(a.query_ratings, clean.query_ratings)
    assert torch.equal(a.query_items, clean.query_items)
    _, train = one.split(dataset, 3)
    _, train_after = two.split(dataset, 3)
    assert np.array_equal(train.rating, train_after.rating)
    assert np.array_equal(train.rating, dataset.rating[protocol.split(dataset, 3).train])
    other_seed = one.perturbed(dataset, 4, "user_cold", 5, p)
    assert other_seed.n_tasks > 0


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"kinds": ["noise"], "strengths": [0.2]}, "robustness.kinds: unknown kind 'noise'"),
        ({"kinds": ["flip"], "strengths": [1.5]}, "robustness.strengths: 1.5 lies outside [0, 1]"),
        ({"kinds": ["flip"], "strengths": [-0.1]}, "outside [0, 1]"),
        ({"kinds": ["flip"], "strengths": [0.05]}, "corrupts round(0.05 × k) = 0 ratings"),
        ({"kinds": ["flip"], "strengths": [0.2], "level": 1}, "unknown key(s) 'level'"),
        ({"kinds": ["flip"], "strengths": []}, "robustness.strengths must be"),
    ],
)
def test_bad_settings_are_refused(table: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        suite_from_dict(suite_dict(robustness=table), "suite.toml")
    assert words in str(caught.value)
    assert str(caught.value).startswith("suite.toml")


BAD_TABLES = {
    'kinds = ["noise"], strengths = [0.2]': "robustness.kinds: unknown kind 'noise'; allowed: gauss",
    'kinds = ["flip"], strengths = [0, 1.2]': "robustness.strengths: 1.2 lies outside [0, 1]",
    'kinds = ["flip"], strengths = [0.05]': "corrupts round(0.05 × k) = 0 ratings",
}


@pytest.mark.parametrize("table", BAD_TABLES)
def test_validate_and_run_exit_2_and_write_nothing(
    table: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main

    suite = tmp_path / "bad.toml"
    suite.write_text(
        'name = "bad"\ndatasets = ["synthetic"]\nscenarios = ["user_cold"]\n'
        'learners = ["item-mean"]\nseeds = 1\n'
        f"robustness = {{ {table} }}\n"
        '[protocol]\nname = "cold-random"\nsupport_sizes = [5]\nquery_size = 5\n',
        encoding="utf-8",
    )
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(suite) in err and BAD_TABLES[table] in err
    store = tmp_path / "results.sqlite"
    assert main(["run", "--suite", str(suite), "--store", str(store), "--no-progress"]) == 2
    assert BAD_TABLES[table] in capsys.readouterr().err
    assert not store.exists()


class Recording(GlobalMean):
    """global-mean that keeps every support set it is asked to predict from."""

    seen: ClassVar[dict[str, list[torch.Tensor]]] = {}

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        key = type(self).__name__
        self.seen.setdefault(key, []).append(
            torch.where(tasks.support_mask, tasks.support_ratings, -1.0).clone()
        )
        return super().predict(tasks)


class RecordingToo(Recording):
    """The same recorder under a second name: a second learner of the same run."""


for _name, _cls in (("test-recording", Recording), ("test-recording-too", RecordingToo)):
    if _name not in LEARNERS:
        LEARNERS.register(_name, _cls)


def test_two_learners_receive_identical_corrupted_supports(tmp_path: Path) -> None:
    Recording.seen.clear()
    raw = suite_dict(
        learners=["test-recording", "test-recording-too"],
        scenarios=["user_cold"],
        seeds=1,
        robustness={"kinds": ["flip", "drop"], "strengths": [0.4, 1.0]},
        learner={},
    )
    with ResultStore(tmp_path / "r.sqlite") as store:
        assert not run_suite(suite_from_dict(raw, "s"), store, progress=False).failed
    one, two = Recording.seen["Recording"], Recording.seen["RecordingToo"]
    assert len(one) == len(two) > 4  # clean and four perturbed evaluations, with warm-ups
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)
    assert len({tuple(t.flatten().tolist()) for t in one}) > 4  # the corruptions differ
