"""Defaults that carry across datasets: learners on standardised ratings, a like threshold from
the training median when a dataset sets none, a declared NDCG gain, and warm tables that say what
the learners saw."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.data.cards import load_dataset
from bench.data.dataset import Dataset
from bench.data.synthetic import SyntheticConfig, generate
from bench.engine.suite import suite_from_dict
from bench.errors import ConfigError
from bench.evaluation.contract import score
from bench.evaluation.metrics import Queries, evaluate
from bench.protocol import Split, make_protocol
from bench.protocol.base import LIKE_FROM_DATASET, LIKE_FROM_MEDIAN, WARM_HISTORY_NOTE
from bench.protocol.episodes import MetaTrain, build_tasks, make_meta_train
from bench.protocol.learner import Learner
from bench.protocol.learner_registry import LEARNERS, learner_class, make_learner
from bench.results.terminal import render_terminal
from bench.seeding import Seeds

SUPPORT = (1, 5, 10)
SCENARIOS = ("warm", "user_cold", "item_cold", "user_item_cold")


def rescaled(data: Dataset, factor: float, shift: float, scale: tuple[float, float]) -> Dataset:
    """The same ratings on another scale (``factor * r + shift``), no like threshold set and no
    generator truth (the oracle's expectations are on the 1-5 scale)."""
    return dataclasses.replace(
        data,
        rating=factor * data.rating + shift,
        rating_scale=scale,
        like_threshold=math.nan,
        truth=None,
        content_hash="",
    )


@pytest.fixture(scope="module")
def wide() -> tuple[Dataset, Split, MetaTrain]:
    """A small synthetic dataset on a -10..10 scale (1-5 stars times 5, less 15)."""
    base = generate(SyntheticConfig(n_users=200, n_items=120, mean_ratings_per_user=50, seed=11))
    data = rescaled(base, 5.0, -15.0, (-10.0, 10.0))
    split = make_protocol("cold-random", {"support_sizes": SUPPORT, "query_size": 5}).split(data, 0)
    return data, split, make_meta_train(data, split)


def rmse_by_task_set(learner: Learner, data: Dataset, split: Split) -> dict[tuple[str, int], float]:
    return {
        (scenario, k): score(learner, data, split, scenario, k, ("rmse",))["rmse"]
        for scenario in SCENARIOS
        for k in SUPPORT
    }


def fitted(name: str, train: MetaTrain, overrides: dict | None = None) -> Learner:
    learner = make_learner(name, overrides)
    learner.fit(train, rng=Seeds(0).child("learner", name), device=torch.device("cpu"))
    return learner


@pytest.fixture(scope="module")
def global_mean_rmse(wide: tuple[Dataset, Split, MetaTrain]) -> dict[tuple[str, int], float]:
    data, split, train = wide
    return rmse_by_task_set(fitted("global-mean", train), data, split)


# A reference implementation of another learner's algorithm, with that learner's defaults (which
# may add fields, such as maml's CUDA graphs) and its predictions after training
# (tests/test_meta_learners.py): the other learner's case covers its defaults. maml-l2l adapts
# one task at a time and would take half a minute here.
SAME_DEFAULTS_AS = {"maml-l2l": "maml"}


@pytest.mark.parametrize(
    "name", sorted(n for n in LEARNERS.names() if "built in" in LEARNERS.origin(n))
)
def test_no_default_is_worse_than_the_global_mean_on_a_wide_scale(
    name: str,
    wide: tuple[Dataset, Split, MetaTrain],
    global_mean_rmse: dict[tuple[str, int], float],
) -> None:
    data, split, train = wide
    if name in SAME_DEFAULTS_AS:
        other = SAME_DEFAULTS_AS[name]
        assert learner_class(name).algorithm == learner_class(other).algorithm
        own_defaults = dataclasses.asdict(make_learner(name).config)
        other_defaults = dataclasses.asdict(make_learner(other).config)  # may add fields
        assert own_defaults == {key: other_defaults[key] for key in own_defaults}
        return
    if learner_class(name).not_applicable(data):
        assert name == "oracle"  # it needs generator truth on the data's own scale
        return
    measured = rmse_by_task_set(fitted(name, train), data, split)
    worse = {
        key: (value, global_mean_rmse[key])
        for key, value in measured.items()
        if value > global_mean_rmse[key] * (1 + 1e-3)
    }
    assert not worse, f"{name} with its defaults is worse than global-mean: {worse}"


@pytest.mark.parametrize("name", ["mf", "fine-tune"])
def test_standardised_learners_predict_the_same_on_an_affine_rescale(name: str) -> None:
    base = generate(SyntheticConfig(n_users=120, n_items=80, mean_ratings_per_user=40, seed=3))
    base = dataclasses.replace(base, truth=None)
    wider = rescaled(base, 5.0, -15.0, (-10.0, 10.0))
    wider = dataclasses.replace(wider, like_threshold=5.0, content_hash="")
    protocol = make_protocol("cold-random", {"support_sizes": [5], "query_size": 5})
    overrides = {"epochs": 2} if name == "fine-tune" else {}
    predictions = []
    for data in (base, wider):
        split = protocol.split(data, 0)
        learner = fitted(name, make_meta_train(data, split), overrides)
        batch = build_tasks(data, split.scenarios["user_cold"], 5).without_labels()
        with torch.no_grad():
            predictions.append(learner.predict(batch).double())
    assert torch.allclose(5.0 * predictions[0] - 15.0, predictions[1], atol=1e-3)


def test_an_unset_like_threshold_is_the_training_median(
    wide: tuple[Dataset, Split, MetaTrain],
) -> None:
    data, split, train = wide
    median = float(np.median(data.rating[split.train]))
    assert split.like_threshold == train.like_threshold == median
    assert split.summary["like_threshold_source"] == LIKE_FROM_MEDIAN
    liked = float((data.rating[split.train] >= median).mean())
    assert split.summary["like_rate"] == pytest.approx(liked)
    other = make_protocol("cold-random").split(data, 1)
    assert other.like_threshold == float(np.median(data.rating[other.train]))


def test_a_dataset_threshold_wins(small_dataset: Dataset) -> None:
    split = make_protocol("cold-random").split(small_dataset, 0)
    assert split.like_threshold == small_dataset.like_threshold == 4.0
    assert split.summary["like_threshold_source"] == LIKE_FROM_DATASET
    folds = make_protocol("predefined", {"support_sizes": ["all"]})
    assert folds.label.startswith("predefined@")


def test_own_files_without_a_threshold_use_the_median(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,a,-10\n1,b,0\n2,a,10\n2,b,5\n")
    assert math.isnan(load_dataset(f"csv:{path}", {"cache": False}).like_threshold)
    given = load_dataset(f"csv:{path}", {"cache": False, "like_threshold": 0})
    assert given.like_threshold == 0.0
    card = tmp_path / "mine.toml"
    card.write_text(
        'name = "mine"\nparser = "csv"\nlike_threshold = 5\n[options]\npath = "r.csv"\n'
        "cache = false\n"
    )
    assert load_dataset(str(card)).like_threshold == 5.0  # a card's threshold is used


def test_linear_gain_weighs_ratings_as_they_are() -> None:
    actual = np.array([[3.0, 5.0, 1.0]])
    predicted = np.array([[5.0, 4.0, 1.0]])  # ranks the 3 first, then the 5
    mask = np.ones_like(actual, dtype=bool)
    values = {}
    for gain in ("exponential", "linear"):
        queries = Queries(predicted, actual, mask, 4.0, (1.0, 5.0), gain)
        values[gain] = evaluate(queries, ("ndcg@3",))["ndcg@3"].value
    discount = 1 / np.log2([2, 3, 4])
    linear = (np.array([3, 5, 1]) @ discount) / (np.array([5, 3, 1]) @ discount)
    exponential = (np.array([7, 31, 1]) @ discount) / (np.array([31, 7, 1]) @ discount)
    assert values["linear"] == pytest.approx(linear)
    assert values["exponential"] == pytest.approx(exponential)
    with pytest.raises(ValueError, match="NDCG gain"):
        evaluate(Queries(predicted, actual, mask, 4.0, (1.0, 5.0), "cubic"), ("ndcg@3",))


def test_a_suite_declares_its_gain() -> None:
    assert suite_from_dict({"ndcg_gain": "linear"}, "s.toml").ndcg_gain == "linear"
    with pytest.raises(ConfigError, match="ndcg_gain"):
        suite_from_dict({"ndcg_gain": "cubic"}, "s.toml")


def test_the_run_summary_states_gain_threshold_and_like_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(
        'name = "s"\ndatasets = ["synthetic"]\nlearners = ["global-mean"]\nseeds = 1\n'
        'ndcg_gain = "linear"\n[protocol]\nname = "cold-random"\nsupport_sizes = [1, 5]\n'
        "query_size = 5\n[dataset.synthetic]\nn_users = 120\nn_items = 80\n"
    )
    store = str(tmp_path / "r.sqlite")
    assert main(["run", "--suite", str(suite), "--store", store, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "NDCG gain: linear" in out
    assert "like threshold 4 (set by the dataset; like rate " in out
    assert WARM_HISTORY_NOTE in out  # warm at k = 1 and 5: the footer says what learners saw


def test_warm_note_only_under_warm_tables_with_a_finite_k() -> None:
    def row(scenario: str, k: str) -> dict:
        return {
            "dataset": "d",
            "protocol": "p@1",
            "scenario": scenario,
            "learner": "mf",
            "k": k,
            "device": "cpu",
            "metric": "rmse",
            "value": 1.0,
            "n_tasks": 3,
            "n_unscored": 0,
        }

    assert WARM_HISTORY_NOTE in render_terminal([row("warm", "5")], [], ["rmse"])
    assert WARM_HISTORY_NOTE not in render_terminal([row("warm", "all")], [], ["rmse"])
    assert WARM_HISTORY_NOTE not in render_terminal([row("user_cold", "5")], [], ["rmse"])
