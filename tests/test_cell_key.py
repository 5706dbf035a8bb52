"""A cell's key holds everything that can change its results: a change to any dataset option,
protocol parameter, learner config field, seed, device or the code makes a new key, and the runner
then computes the cell instead of reusing a stored one."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.data.cards import load_dataset
from bench.data.synthetic import SyntheticConfig
from bench.engine.cells import cell_key, iter_cells
from bench.engine.runner import run_suite
from bench.engine.suite import Suite, suite_from_dict
from bench.engine.tuning import Dimension, TuneSpec
from bench.evaluation.metrics import DEFAULT_GAIN
from bench.protocol import ProtocolConfig, make_protocol
from bench.protocol.budget import Budget
from bench.protocol.learner_registry import LEARNERS, learner_class
from bench.results.store import ResultStore

from real_formats import shipped_card, write_ml100k

BASE_DATA: dict[str, Any] = {"n_users": 60, "n_items": 40, "min_ratings_per_user": 10}
BASE_PROTOCOL: dict[str, Any] = {"name": "cold-random", "support_sizes": [1, 3], "query_size": 4}


def base_suite(**changes: Any) -> Suite:
    raw: dict[str, Any] = {
        "name": "keys",
        "learners": ["global-mean", "item-mean"],
        "seeds": 1,
        "protocol": dict(BASE_PROTOCOL),
        "dataset": {"synthetic": dict(BASE_DATA)},
    }
    raw.update(changes)
    return suite_from_dict(raw, "test")


def keys_of(suite: Suite, fingerprint: str = "code") -> dict[tuple[str, int, str], str]:
    protocol = make_protocol(suite.protocol["name"], suite.protocol)
    datasets = [load_dataset(n, suite.dataset.get(n)) for n in suite.datasets]
    return {
        (c.learner, c.seed, c.device): c.key
        for c in iter_cells(datasets, protocol, suite, fingerprint)
    }


def assert_all_keys_change(before: Suite, after: Suite) -> None:
    old, new = keys_of(before), keys_of(after)
    assert set(old) == set(new) and old
    for cell, key in old.items():
        assert new[cell] != key, cell


# Every protocol parameter --------------------------------------------------------------------

PROTOCOL_CHANGES: dict[str, Any] = {
    "version": 7,
    "task_axis": "item",
    "user_split": "temporal",
    "item_split": "attribute:release_year",
    "new_user_fraction": 0.3,
    "new_item_fraction": 0.35,
    "user_cutoff": 3.0,
    "item_cutoff": 2001.0,
    "min_ratings": 3,
    "max_ratings": 400,
    "drop_filtered": True,
    "support_sizes": [1, 3, "all"],
    "query_size": 5,
    "validation_fraction": 0.2,
    "order": "time",
    "max_tasks": 30,
    "relevance": "top:3",
    "relevance_ties": "include",
}


def test_every_protocol_parameter_has_a_case() -> None:
    fields = {f.name for f in dataclasses.fields(ProtocolConfig)} - {"name"}
    assert fields == set(PROTOCOL_CHANGES)


@pytest.mark.parametrize(("field", "value"), sorted(PROTOCOL_CHANGES.items()))
def test_a_protocol_parameter_changes_the_key(field: str, value: Any) -> None:
    assert_all_keys_change(base_suite(), base_suite(protocol={**BASE_PROTOCOL, field: value}))


def test_another_protocol_changes_the_key() -> None:
    assert_all_keys_change(base_suite(), base_suite(protocol={**BASE_PROTOCOL, "name": "temporal"}))


# Every dataset option ------------------------------------------------------------------------


def changed(value: Any, annotation: Any = None) -> Any:
    """A different valid value of the same kind."""
    if typing.get_origin(annotation) is typing.Literal:
        return next(v for v in typing.get_args(annotation) if v != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return round(value * 1.5 + 0.05, 6)
    if isinstance(value, tuple):
        return [*value, value[-1]] if value else [8]
    raise AssertionError(f"no change defined for {value!r}")


SYNTHETIC_CHANGES = {
    f.name: changed({**dataclasses.asdict(SyntheticConfig()), **BASE_DATA}[f.name])
    for f in dataclasses.fields(SyntheticConfig)
}
SYNTHETIC_CHANGES["max_ratings_per_user"] = 20  # the default does not bind with 40 items


@pytest.mark.parametrize(("option", "value"), sorted(SYNTHETIC_CHANGES.items()))
def test_a_dataset_option_changes_the_key(option: str, value: Any) -> None:
    assert_all_keys_change(
        base_suite(), base_suite(dataset={"synthetic": {**BASE_DATA, option: value}})
    )


def test_a_file_dataset_option_that_changes_only_its_folds_changes_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Picking other predefined folds leaves the ratings alone but changes every split."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "parsed"))
    write_ml100k(tmp_path / "data" / "ml-100k", n_users=12, n_items=10)
    card = shipped_card("ml-100k", tmp_path / "cards")
    first = load_dataset(str(card), {"folds": ["u1"]}, data_dir=tmp_path / "data")
    second = load_dataset(str(card), {"folds": ["u2"]}, data_dir=tmp_path / "data")
    protocol = make_protocol("predefined")
    assert protocol.split(first, 0).train.tolist() != protocol.split(second, 0).train.tolist()
    args = ("global-mean", "cfg", 0, "cpu", "code")
    assert cell_key(first, protocol, *args) != cell_key(second, protocol, *args)


# Every learner config field ------------------------------------------------------------------


def learner_cases() -> list[tuple[str, str, Any]]:
    cases = []
    for name in sorted(n for n in LEARNERS.names() if "built in" in LEARNERS.origin(n)):
        # The config class's defaults, as make_learner builds them, without building the learner
        # (maml-l2l's would import learn2learn and torchvision while the tests are collected).
        config = learner_class(name).config_class()
        hints = typing.get_type_hints(type(config))
        for f in dataclasses.fields(config):
            cases.append((name, f.name, changed(getattr(config, f.name), hints[f.name])))
    return cases


@pytest.mark.parametrize(("learner", "field", "value"), learner_cases())
def test_a_learner_config_field_changes_the_key(learner: str, field: str, value: Any) -> None:
    # Without the floors, whose keys do not hold another learner's config.
    before = base_suite(learners=[learner], floors=False)
    after = base_suite(learners=[learner], learner={learner: {field: value}}, floors=False)
    assert_all_keys_change(before, after)


def test_a_fit_time_budget_changes_the_key() -> None:
    def mf(**config: Any) -> Suite:
        return base_suite(learners=["mf"], learner={"mf": config}, floors=False)

    assert_all_keys_change(mf(), mf(max_fit_seconds=30))
    assert_all_keys_change(mf(max_fit_seconds=30), mf(max_fit_seconds=60))


def test_every_configurable_learner_has_cases() -> None:
    covered = {name for name, _, _ in learner_cases()}
    assert {"item-mean", "mf", "maml", "maml-l2l", "protonet", "fine-tune"} <= covered


# Seed, device, code --------------------------------------------------------------------------


def test_seed_device_and_code_each_change_the_key() -> None:
    keys = keys_of(base_suite(seeds=[0, 1]))
    assert keys[("item-mean", 0, "cpu")] != keys[("item-mean", 1, "cpu")]
    assert keys[("item-mean", 0, "cpu")] != keys[("global-mean", 0, "cpu")]
    dataset = load_dataset("synthetic", BASE_DATA)
    protocol = make_protocol("cold-random", BASE_PROTOCOL)
    args = (dataset, protocol, "item-mean", "cfg")
    reference = cell_key(*args, 0, "cpu", "code")
    assert cell_key(*args, 0, "cuda", "code") != reference
    assert cell_key(*args, 0, "cpu", "other code") != reference
    assert cell_key(*args, 0, "cpu", "code") == reference  # and nothing else moves it


def test_the_tie_policy_changes_the_key() -> None:
    reference = keys_of(base_suite())
    for policy in ("query-order", "lower-position-first"):
        changed = keys_of(base_suite(tie_policy=policy))
        assert not set(changed.values()) & set(reference.values()), policy
    assert keys_of(base_suite(tie_policy="expected")) == reference  # the default, named


def test_same_content_under_another_name_is_another_cell() -> None:
    dataset = load_dataset("synthetic", BASE_DATA)
    renamed = replace(dataset, name="synthetic-copy")
    protocol = make_protocol("cold-random", BASE_PROTOCOL)
    args = ("item-mean", "cfg", 0, "cpu", "code")
    assert cell_key(dataset, protocol, *args) != cell_key(renamed, protocol, *args)


def test_the_key_ignores_what_cannot_change_a_cell() -> None:
    reference = keys_of(base_suite())
    assert keys_of(base_suite(name="renamed", shown_metrics=["rmse"])) == reference
    assert keys_of(base_suite(learners=["item-mean", "global-mean"])) == reference
    assert keys_of(base_suite(scenarios=["warm"])) == reference


# End to end: a changed parameter is computed, never reused -------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"protocol": {**BASE_PROTOCOL, "query_size": 6}},
        {"dataset": {"synthetic": {**BASE_DATA, "noise": 0.9}}},
        {"learner": {"item-mean": {"user_shrinkage": 1.0}}},
        {"seeds": [4]},
    ],
    ids=["protocol", "dataset", "learner", "seed"],
)
def test_a_changed_grid_is_computed_not_reused(changes: dict[str, Any], tmp_path: Path) -> None:
    # One learner and no floors, so that each run has one cell.
    alone = {"learners": ["item-mean"], "floors": False}
    with ResultStore(tmp_path / "s.sqlite") as store:
        first = run_suite(base_suite(**alone), store, progress=False)
        second = run_suite(base_suite(**alone, **changes), store, progress=False)
        assert (first.computed, second.computed, second.reused) == (1, 1, 0)
        assert not set(first.cell_keys) & set(second.cell_keys)
        again = run_suite(base_suite(**alone, **changes), store, progress=False)
        assert (again.computed, again.reused) == (0, 1)


def test_an_unlimited_budget_is_no_budget() -> None:
    dataset = load_dataset("synthetic", BASE_DATA)
    protocol = make_protocol("cold-random", BASE_PROTOCOL)
    args = (dataset, protocol, "mf", "cfg", 0, "cpu", "code")
    assert cell_key(*args, Budget()) == cell_key(*args) == cell_key(*args, None)
    assert cell_key(*args, Budget(max_seconds=5.0)) != cell_key(*args)
    assert len(cell_key(*args)) == 24


def test_a_search_and_each_of_its_settings_change_the_key() -> None:
    dataset = load_dataset("synthetic", BASE_DATA)
    protocol = make_protocol("cold-random", BASE_PROTOCOL)
    args = (dataset, protocol, "mf", "cfg", 0, "cpu", "code", None, DEFAULT_GAIN)
    search = TuneSpec((Dimension("rank", choices=(2, 4)),), "rmse", 3, trials=4)
    others = [
        replace(search, space=(Dimension("rank", choices=(2, 8)),)),
        replace(search, objective="mae"),
        replace(search, k=1),
        replace(search, trials=5),
        replace(search, seconds=60.0),
    ]
    keys = [cell_key(*args), cell_key(*args, search), *(cell_key(*args, o) for o in others)]
    assert len(set(keys)) == len(keys)
    assert cell_key(*args, replace(search)) == keys[1]  # an equal search, the same cell
