"""The cold-start protocol against an independent reconstruction of what it must produce: the
exact training set, the validation entities, the eligible tasks and the summary it reports; plus
its parameter checks and the presets' factories."""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from bench.data.dataset import Dataset
from bench.errors import ConfigError, DataError, RegistryError
from bench.protocol import (
    PROTOCOLS,
    SCENARIOS,
    Protocol,
    ProtocolConfig,
    Split,
    TaskSet,
    make_protocol,
)
from bench.protocol.base import split_like_threshold
from bench.protocol.cold_start import ColdStartProtocol, split_entities
from bench.protocol.presets import preset_config

NEWNESS = {
    "warm": (False, False),
    "user_cold": (True, False),
    "item_cold": (False, True),
    "user_item_cold": (True, True),
}


def reconstruct(dataset: Dataset, split: Split) -> dict[str, Any]:
    """What the split must hold, worked out from its entity masks and the definition."""
    cfg = split.config
    by_user = cfg.task_axis == "user"
    task_of = dataset.user if by_user else dataset.item
    other_of = dataset.item if by_user else dataset.user
    task_new = split.new_users if by_user else split.new_items
    other_new = split.new_items if by_user else split.new_users
    n_task = len(task_new)
    activity = np.bincount(task_of, minlength=n_task)
    active = activity >= cfg.min_ratings
    if cfg.max_ratings is not None:
        active &= activity <= cfg.max_ratings
    validation = np.zeros(n_task, dtype=bool)
    validation[split.validation.entities] = True
    finite = [k for k in cfg.support_sizes if isinstance(k, int)]
    min_pool = cfg.query_size + (max(finite) if finite else 1)

    eligible: dict[str, set[int]] = {}
    ineligible: dict[str, int] = {}
    for scenario, (user_new, item_new) in NEWNESS.items():
        task_is_new, pool_is_new = (user_new, item_new) if by_user else (item_new, user_new)
        candidates = np.flatnonzero((task_new == task_is_new) & active & ~validation)
        sizes = [
            int(((task_of == e) & (other_new[other_of] == pool_is_new)).sum()) for e in candidates
        ]
        eligible[scenario] = {
            int(e) for e, n in zip(candidates, sizes, strict=True) if n >= min_pool
        }
        ineligible[scenario] = sum(n < min_pool for n in sizes)

    # Validation is drawn from the existing, active entities that can form a task.
    existing_pool = np.array(
        [int(((task_of == e) & ~other_new[other_of]).sum()) for e in range(n_task)]
    )
    can_validate = ~task_new & active & (existing_pool >= min_pool)
    n_validation = round(cfg.validation_fraction * int(can_validate.sum()))
    if cfg.max_tasks is not None:
        n_validation = min(n_validation, cfg.max_tasks)

    keep = ~task_new[task_of] & ~other_new[other_of] & ~validation[task_of]
    train = set(np.flatnonzero(keep).tolist())
    train -= {int(r) for q in split.scenarios["warm"].queries for r in q}
    of_active = {r for r in train if active[task_of[r]]}
    ratings = dataset.rating[sorted(of_active if cfg.drop_filtered else train)]
    return {
        "active": active,
        "eligible": eligible,
        "ineligible": ineligible,
        "train": of_active if cfg.drop_filtered else train,
        "train_variants": {
            "filter chooses tasks only": len(train),
            "filtered entities dropped": len(of_active),
        },
        "like_rate": float((ratings >= dataset.like_threshold).mean()),
        "min_pool": min_pool,
        "can_validate": can_validate,
        "n_validation": n_validation,
    }


PARAMS: list[dict[str, Any]] = [
    {},
    {"task_axis": "item", "new_item_fraction": 0.3},
    {"min_ratings": 40, "max_ratings": 90, "drop_filtered": True, "validation_fraction": 0.25},
    {"support_sizes": ["all"], "query_size": 7, "min_ratings": 30},
    {"support_sizes": [2, "all", 9], "max_tasks": 5, "order": "time"},
    {"user_split": "temporal", "item_split": "attribute:release_year", "item_cutoff": 2008.0},
]


@pytest.mark.parametrize("params", PARAMS)
def test_split_matches_its_reconstruction(params: dict[str, Any], small_dataset: Dataset) -> None:
    split = make_protocol("cold-random", params).split(small_dataset, 3)
    cfg = split.config
    expected = reconstruct(small_dataset, split)
    assert set(split.train.tolist()) == expected["train"]
    assert (np.diff(split.train) > 0).all()  # sorted, no duplicates
    # Validation: the requested share of the entities that can form a task, at most max_tasks.
    assert len(split.validation) == expected["n_validation"]
    assert expected["can_validate"][split.validation.entities].all()
    assert (np.diff(split.validation.entities) > 0).all()
    for scenario in SCENARIOS:
        taskset = split.scenarios[scenario]
        assert taskset.scenario == scenario and taskset.axis == cfg.task_axis
        chosen = set(taskset.entities.tolist())
        eligible = expected["eligible"][scenario]
        if cfg.max_tasks is None:
            assert chosen == eligible, scenario
        else:
            assert chosen <= eligible and len(chosen) == min(cfg.max_tasks, len(eligible))
        assert (np.diff(taskset.entities) > 0).all()
        assert taskset.entities.dtype == np.int64
        for pool, query in zip(taskset.pools, taskset.queries, strict=True):
            assert len(query) == cfg.query_size and len(pool) + len(query) >= expected["min_pool"]
    summary = split.summary
    axis = cfg.task_axis
    variants = {}
    if not expected["active"].all():
        variants = {"train_ratings_variants": expected["train_variants"]}
    assert summary == {
        **variants,
        "new_users": int(split.new_users.sum()),
        "existing_users": int((~split.new_users).sum()),
        "new_items": int(split.new_items.sum()),
        "existing_items": int((~split.new_items).sum()),
        f"{axis}s_outside_activity_filter": int((~expected["active"]).sum()),
        "validation_tasks": len(split.validation),
        "min_pool": expected["min_pool"],
        "scenarios": {
            s: {"tasks": len(split.scenarios[s]), "ineligible": expected["ineligible"][s]}
            for s in SCENARIOS
        },
        "train_ratings": len(split.train),
        "like_threshold": dataset_threshold(small_dataset),
        "like_threshold_source": "set by the dataset",
        "like_rate": pytest.approx(expected["like_rate"]),
    }


def dataset_threshold(dataset: Dataset) -> float:
    assert dataset.like_threshold == 4.0  # the synthetic data declare theirs
    return 4.0


def test_the_random_order_is_a_seeded_shuffle_of_each_pool(small_dataset: Dataset) -> None:
    params = {"support_sizes": ["all"], "query_size": 5}
    a = make_protocol("cold-random", params).split(small_dataset, 0)
    b = make_protocol("cold-random", params).split(small_dataset, 1)
    ts = a.scenarios["warm"]
    rows = [np.concatenate([p, q]) for p, q in zip(ts.pools, ts.queries, strict=True)]
    assert not all((np.diff(r) > 0).all() for r in rows)  # not simply the file order
    assert any(not np.array_equal(np.sort(x), x) for x in ts.pools), (
        "pools should not be sorted rows"
    )
    assert not np.array_equal(a.new_users, b.new_users)


def test_random_entity_split_takes_the_exact_share(small_dataset: Dataset) -> None:
    rng = np.random.default_rng(0)
    args = {"entity": small_dataset.user, "timestamp": small_dataset.timestamp, "attributes": {}}
    new = split_entities("random", 240, 0.3, None, rng=rng, side="user", **args)
    assert new.dtype == bool and new.shape == (240,) and new.sum() == 72
    none = split_entities("random", 240, 0.0, None, rng=rng, side="user", **args)
    assert not none.any()
    again = split_entities(
        "random", 240, 0.3, None, rng=np.random.default_rng(0), side="user", **args
    )
    assert np.array_equal(new, again)


def test_temporal_entity_split_breaks_ties_at_random() -> None:
    entity = np.array([0, 1, 2, 3, 0, 1])
    timestamp = np.array([5, 5, 5, 1, 9, 2])  # first times: 5, 2, 5, 1
    args = {"entity": entity, "timestamp": timestamp, "attributes": {}, "side": "item"}
    seen = set()
    for seed in range(20):
        new = split_entities("temporal", 4, 0.25, None, rng=np.random.default_rng(seed), **args)
        assert new.sum() == 1 and (new[0] or new[2])  # one of the two latest first ratings
        seen.add(int(np.flatnonzero(new)[0]))
    assert seen == {0, 2}
    assert not split_entities("temporal", 4, 0.0, None, rng=np.random.default_rng(0), **args).any()
    half = split_entities("temporal", 4, 0.5, None, rng=np.random.default_rng(0), **args)
    assert half.tolist() == [True, False, True, False]


def test_attribute_entity_split() -> None:
    years = np.array([1990.0, 2000.0, 2005.0, np.nan, 2010.0])
    args = {"entity": np.zeros(1, dtype=int), "timestamp": np.zeros(1, dtype=int), "side": "item"}
    rng = np.random.default_rng(0)
    attrs = {"year": years}
    cut = split_entities("attribute:year", 5, 0.2, 2000.0, attributes=attrs, rng=rng, **args)
    assert cut.tolist() == [False, True, True, False, True]
    # Without a cut-off: the quantile that makes the requested share new (NaN never new).
    share = split_entities("attribute:year", 5, 0.25, None, attributes=attrs, rng=rng, **args)
    assert share.tolist() == [False, False, False, False, True]
    with pytest.raises(ConfigError) as info:
        split_entities("attribute:age", 5, 0.2, None, attributes=attrs, rng=rng, **args)
    assert str(info.value) == (
        "item_split 'attribute:age': the dataset has no item attribute 'age' (it has: year)"
    )
    with pytest.raises(ConfigError, match=r"no user attribute 'age' \(it has: none\)"):
        split_entities(
            "attribute:age", 5, 0.2, None, attributes={}, rng=rng, **{**args, "side": "user"}
        )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"task_axis": "users"}, "task_axis must be 'user' or 'item', got 'users'"),
        ({"order": "sorted"}, "order must be 'random' or 'time', got 'sorted'"),
        (
            {"user_split": "x"},
            "user_split must be 'random', 'temporal' or 'attribute:NAME', got 'x'",
        ),
        (
            {"item_split": "y"},
            "item_split must be 'random', 'temporal' or 'attribute:NAME', got 'y'",
        ),
        ({"new_user_fraction": 1.0}, "new_user_fraction must lie in [0, 1), got 1.0"),
        ({"new_item_fraction": -0.1}, "new_item_fraction must lie in [0, 1), got -0.1"),
        ({"validation_fraction": 2.0}, "validation_fraction must lie in [0, 1), got 2.0"),
        ({"support_sizes": ()}, "support_sizes must not be empty"),
        (
            {"support_sizes": (1, "some")},
            "support_sizes entries must be integers >= 0 or 'all', got 'some'",
        ),
        (
            {"support_sizes": (2, -1)},
            "support_sizes entries must be integers >= 0 or 'all', got -1",
        ),
        (
            {"support_sizes": (1.5,)},
            "support_sizes entries must be integers >= 0 or 'all', got 1.5",
        ),
        ({"query_size": 0}, "query_size must be at least 1, got 0"),
    ],
)
def test_bad_parameters_are_named_with_their_value(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ProtocolConfig(**params)
    assert str(info.value) == message


def test_valid_edge_values_are_accepted() -> None:
    config = ProtocolConfig(
        new_user_fraction=0.0,
        new_item_fraction=0.0,
        validation_fraction=0.0,
        support_sizes=(0, "all"),
        query_size=1,
        user_split="attribute:age",
        item_split="temporal",
        order="time",
        task_axis="item",
    )
    assert config.max_finite_support == 0 and config.label == "cold-random@1"


def test_config_properties() -> None:
    assert ProtocolConfig(support_sizes=(1, "all", 20, 5)).max_finite_support == 20
    assert ProtocolConfig(support_sizes=("all",)).max_finite_support == 1
    assert ProtocolConfig(name="temporal", version=3).label == "temporal@3"
    base = ProtocolConfig()
    assert base.fingerprint() == ProtocolConfig().fingerprint()
    assert len(base.fingerprint()) == 16
    assert base.fingerprint() != ProtocolConfig(query_size=11).fingerprint()


def test_task_set_support_is_a_prefix_of_the_pool() -> None:
    pool = np.array([7, 3, 9, 1])
    ts = TaskSet("warm", "user", np.array([4]), (pool,), (np.array([2]),))
    assert len(ts) == 1
    assert ts.support(0, 2).tolist() == [7, 3]
    assert ts.support(0, "all").tolist() == [7, 3, 9, 1]
    assert ts.support(0, 0).tolist() == [] and ts.support(0, 10).tolist() == [7, 3, 9, 1]


def test_presets_and_make_protocol() -> None:
    assert {"cold-random", "temporal", "melu", "predefined"} <= set(PROTOCOLS.names())
    temporal = make_protocol("temporal", {"name": "ignored", "query_size": 3})
    assert isinstance(temporal, ColdStartProtocol) and isinstance(temporal, Protocol)
    cfg = temporal.config
    assert (cfg.name, cfg.user_split, cfg.item_split, cfg.order) == (
        "temporal",
        "temporal",
        "temporal",
        "time",
    )
    assert cfg.query_size == 3 and temporal.label == "temporal@2"
    assert make_protocol("cold-random").config == ProtocolConfig(version=2)
    assert make_protocol("cold-random", None).config == ProtocolConfig(version=2)
    assert temporal.scenarios == SCENARIOS


def test_a_preset_merges_overrides_over_its_defaults() -> None:
    defaults = {"name": "custom", "order": "time", "query_size": 4}
    config = preset_config(defaults, {"query_size": 6, "support_sizes": [1, "all"]}, "[here]")
    assert config == ProtocolConfig(
        name="custom", order="time", query_size=6, support_sizes=(1, "all")
    )
    assert isinstance(config.support_sizes, tuple)
    assert preset_config(defaults, None, "[here]") == ProtocolConfig(
        name="custom", order="time", query_size=4
    )
    assert preset_config({"support_sizes": [3, 4]}, {}, "x").support_sizes == (3, 4)
    assert defaults == {"name": "custom", "order": "time", "query_size": 4}  # left as it was
    with pytest.raises(ConfigError, match=r"unknown field 'bogus' in \[here\] for ProtocolConfig"):
        preset_config(defaults, {"bogus": 1}, "[here]")
    with pytest.raises(ConfigError, match=r"field 'query_size' in \[protocol\] expects"):
        make_protocol("cold-random", {"query_size": "six"})


def test_the_base_protocol_is_abstract(small_dataset: Dataset) -> None:
    with pytest.raises(NotImplementedError):
        Protocol(ProtocolConfig()).split(small_dataset, 0)
    assert Protocol(ProtocolConfig(version=2)).label == "cold-random@2"


# Presets that read the dataset: MeLU's card defaults and predefined folds ----------------------


def with_extras(dataset: Dataset, **extras: Any) -> Dataset:
    return replace(dataset, extras={**dataset.extras, **extras}, content_hash="")


# melu-paper reads the same [protocol.melu] card table as melu.
@pytest.mark.parametrize("name", ["melu", "melu-paper"])
def test_melu_takes_the_cards_defaults_unless_the_suite_sets_them(
    small_dataset: Dataset, name: str
) -> None:
    card = {"melu": {"item_cutoff": 2012, "support_sizes": [2, "all"]}, "other": {"x": 1}}
    dataset = with_extras(small_dataset, protocol_defaults=card)
    split = make_protocol(name, {"min_ratings": 20}).split(dataset, 0)
    assert split.config.item_cutoff == 2012 and split.config.support_sizes == (2, "all")
    assert split.config.min_ratings == 20 and split.config.max_ratings == 100
    years = small_dataset.item_attributes["release_year"]
    assert np.array_equal(split.new_items, years >= 2012)
    assert split.summary["dataset_defaults"] == {"item_cutoff": 2012, "support_sizes": (2, "all")}
    explicit = make_protocol(name, {"item_cutoff": 2005, "min_ratings": 20}).split(dataset, 0)
    assert explicit.config.item_cutoff == 2005 and explicit.config.support_sizes == (2, "all")
    assert explicit.summary["dataset_defaults"] == {"support_sizes": (2, "all")}
    plain = make_protocol(name, {"min_ratings": 20}).split(small_dataset, 0)
    assert plain.summary["dataset_defaults"] == {} and plain.config.item_cutoff is None
    assert plain.config == make_protocol(name, {"min_ratings": 20}).config
    assert plain.config.name == name
    bad = with_extras(small_dataset, protocol_defaults={"melu": {"cutof": 1, "zz": 2}})
    with pytest.raises(ConfigError) as info:
        make_protocol(name).split(bad, 0)
    assert str(info.value) == (
        "dataset 'synthetic-small': [protocol.melu] has unknown field(s) cutof, zz"
    )


def test_melu_defaults() -> None:
    config = make_protocol("melu").config
    assert (config.name, config.user_split, config.item_split) == (
        "melu",
        "random",
        "attribute:release_year",
    )
    assert (config.new_user_fraction, config.new_item_fraction) == (0.2, 0.2)
    assert (config.min_ratings, config.max_ratings, config.drop_filtered) == (13, 100, False)
    assert config.version == 2
    paper = make_protocol("melu-paper").config
    assert (paper.name, paper.version, paper.drop_filtered) == ("melu-paper", 1, True)
    assert (config.support_sizes, config.query_size) == (("all",), 10)
    with pytest.raises(ConfigError, match=r"in \[protocol\] \(melu\)"):
        make_protocol("melu", {"bogus": 1})
    with pytest.raises(ConfigError, match=r"in \[protocol\] \(melu-paper\)"):
        make_protocol("melu-paper", {"bogus": 1})


def folds_of(dataset: Dataset, n: int = 3) -> dict[str, dict[str, np.ndarray]]:
    part = np.random.default_rng(5).integers(0, n, size=dataset.n_ratings)
    rows = np.arange(dataset.n_ratings)
    return {f"f{i}": {"train": rows[part != i], "test": rows[part == i]} for i in range(n)}


@pytest.mark.parametrize("axis", ["user", "item"])
def test_predefined_folds_against_their_files(small_dataset: Dataset, axis: str) -> None:
    folds = folds_of(small_dataset)
    dataset = with_extras(small_dataset, folds=folds, fold_names=["f2", "f0", "f1"])
    split = make_protocol("predefined", {"task_axis": axis, "order": "time"}).split(dataset, 0)
    fold = folds["f2"]  # seed 0 runs the first fold named
    task_of = dataset.user if axis == "user" else dataset.item
    assert split.train.tolist() == sorted(fold["train"].tolist())
    warm = split.scenarios["warm"]
    assert set(split.scenarios) == {"warm"} and len(split.validation) == 0
    assert warm.entities.tolist() == sorted(set(task_of[fold["test"]].tolist()))
    for t, entity in enumerate(warm.entities):
        own_test = fold["test"][task_of[fold["test"]] == entity]
        own_train = fold["train"][task_of[fold["train"]] == entity]
        assert sorted(warm.queries[t].tolist()) == sorted(own_test.tolist())
        assert sorted(warm.pools[t].tolist()) == sorted(own_train.tolist())
        assert (np.diff(dataset.timestamp[warm.queries[t]]) >= 0).all()  # time order
        assert (np.diff(dataset.timestamp[warm.pools[t]]) >= 0).all()
    lengths = [len(q) for q in warm.queries]
    assert split.summary == {
        "fold": "f2",
        "new_users": 0,
        "existing_users": dataset.n_users,
        "new_items": 0,
        "existing_items": dataset.n_items,
        "validation_tasks": 0,
        "min_pool": 0,
        "train_ratings": len(fold["train"]),
        "query_lengths": {
            "min": min(lengths),
            "max": max(lengths),
            "single_rating_tasks": sum(n == 1 for n in lengths),
        },
        "scenarios": {"warm": {"tasks": len(warm), "ineligible": 0}},
        "like_threshold": 4.0,
        "like_threshold_source": "set by the dataset",
        "like_rate": pytest.approx(float((dataset.rating[fold["train"]] >= 4.0).mean())),
    }
    assert split.like_threshold == 4.0  # the split carries the threshold it was described with
    assert not split.new_users.any() and not split.new_items.any()
    assert split.new_users.shape == (dataset.n_users,) and split.new_items.shape == (
        dataset.n_items,
    )
    assert split.config.support_sizes == ("all",) and split.config.validation_fraction == 0.0
    assert make_protocol("predefined").scenarios == ("warm",)


def test_predefined_folds_filtered_and_capped(small_dataset: Dataset) -> None:
    dataset = with_extras(small_dataset, folds=folds_of(small_dataset))  # names from the folds
    activity = np.bincount(dataset.user, minlength=dataset.n_users)
    split = make_protocol("predefined", {"min_ratings": 40, "max_ratings": 80}).split(dataset, 1)
    assert split.summary["fold"] == "f1"
    entities = split.scenarios["warm"].entities
    assert ((activity[entities] >= 40) & (activity[entities] <= 80)).all()
    assert len(entities) == int(((activity >= 40) & (activity <= 80)).sum())
    capped = make_protocol("predefined", {"max_tasks": 7}).split(dataset, 1)
    capped_entities = capped.scenarios["warm"].entities
    assert len(capped_entities) == 7 and (np.diff(capped_entities) > 0).all()
    queries = capped.scenarios["warm"].queries
    assert all((dataset.user[q] == e).all() for q, e in zip(queries, capped_entities, strict=True))
    assert capped.summary["scenarios"]["warm"]["tasks"] == 7


def test_predefined_fold_errors(small_dataset: Dataset) -> None:
    protocol = make_protocol("predefined")
    with pytest.raises(ConfigError) as info:
        protocol.split(small_dataset, 0)
    assert str(info.value) == (
        "protocol 'predefined': dataset 'synthetic-small' has no predefined folds"
    )
    dataset = with_extras(small_dataset, folds=folds_of(small_dataset, 2))
    with pytest.raises(ConfigError) as info:
        protocol.split(dataset, 2)
    assert str(info.value) == (
        "protocol 'predefined': seed 2 selects a fold, but 'synthetic-small' has 2 (f0, f1); "
        "use seeds 0..1"
    )
    with pytest.raises(ConfigError, match="seed -1 selects a fold"):
        protocol.split(dataset, -1)
    overlapping = {"f0": {"train": np.arange(0, 60), "test": np.arange(50, 70)}}
    with pytest.raises(DataError) as err:
        protocol.split(with_extras(small_dataset, folds=overlapping), 0)
    assert str(err.value) == "fold f0: test ratings also appear in its training file"
    with pytest.raises(ConfigError, match=r"in \[protocol\] \(predefined\)"):
        make_protocol("predefined", {"bogus": 1})


def hand_made_folds() -> Dataset:
    """Three users (a fourth has no rating) and six rated items of seven; fold ``a`` holds plain
    lists, fold ``b`` is empty."""
    user = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    item = [0, 1, 2, 4, 0, 3, 5, 1, 2, 5, 4]
    folds = {
        "a": {"train": [0, 2, 4, 6, 7, 8, 10], "test": [1, 3, 5, 9]},
        "b": {"train": [], "test": []},
    }
    return Dataset(
        name="hand-folds",
        user=np.asarray(user),
        item=np.asarray(item),
        rating=np.asarray([5, 3, 4, 2, 1, 2, 5, 4, 3, 1, 5], dtype=np.float32),
        timestamp=np.arange(1, 12),
        n_users=4,
        n_items=7,
        rating_scale=(1.0, 5.0),
        like_threshold=4.0,
        extras={"folds": folds, "fold_names": ["a", "b"]},
    )


@pytest.mark.parametrize(
    ("axis", "entities", "pools", "queries", "single"),
    [
        ("user", [0, 1, 2], [{0, 2}, {4, 6}, {7, 8, 10}], [{1, 3}, {5}, {9}], 2),
        ("item", [1, 3, 4, 5], [{7}, set(), {10}, {6}], [{1}, {5}, {3}, {9}], 4),
    ],
)
def test_predefined_folds_on_a_hand_made_table(
    axis: str,
    entities: list[int],
    pools: list[set[int]],
    queries: list[set[int]],
    single: int,
) -> None:
    dataset = hand_made_folds()
    protocol = make_protocol("predefined", {"task_axis": axis})
    assert protocol.config.name == "predefined" and protocol.label == "predefined@1"
    split = protocol.split(dataset, 0)
    warm = split.scenarios["warm"]
    assert warm.scenario == "warm" and warm.axis == axis and warm.entities.dtype == np.int64
    assert warm.entities.tolist() == entities
    assert [set(p.tolist()) for p in warm.pools] == pools
    assert [set(q.tolist()) for q in warm.queries] == queries
    assert split.train.tolist() == [0, 2, 4, 6, 7, 8, 10] and split.train.dtype == np.int64
    lengths = [len(q) for q in queries]
    assert split.summary["query_lengths"] == {
        "min": min(lengths),
        "max": max(lengths),
        "single_rating_tasks": single,
    }
    validation = split.validation
    assert (validation.scenario, validation.axis, len(validation)) == ("validation", axis, 0)
    assert validation.entities.dtype == np.int64
    assert validation.pools == () and validation.queries == ()
    assert split.new_users.dtype == bool and split.new_items.dtype == bool
    assert split.new_users.shape == (4,) and split.new_items.shape == (7,)
    # The empty fold: no task, an empty training set, zero-length summaries.
    empty = protocol.split(dataset, 1)
    assert len(empty.scenarios["warm"]) == 0 and len(empty.train) == 0
    assert empty.train.dtype == np.int64
    assert empty.summary["fold"] == "b" and empty.summary["train_ratings"] == 0
    assert empty.summary["query_lengths"] == {"min": 0, "max": 0, "single_rating_tasks": 0}


def test_predefined_task_order_is_seeded_and_random_unless_by_time(small_dataset: Dataset) -> None:
    dataset = with_extras(small_dataset, folds=folds_of(small_dataset))
    random_order = make_protocol("predefined", {"order": "random"})
    a, b = random_order.split(dataset, 1), random_order.split(dataset, 1)
    for x, y in zip(a.scenarios["warm"].pools, b.scenarios["warm"].pools, strict=True):
        assert np.array_equal(x, y)
    time = dataset.timestamp
    in_time = [(np.diff(time[p]) >= 0).all() for p in a.scenarios["warm"].pools]
    assert not all(in_time)
    capped = make_protocol("predefined", {"max_tasks": 9})
    assert np.array_equal(
        capped.split(dataset, 2).scenarios["warm"].entities,
        capped.split(dataset, 2).scenarios["warm"].entities,
    )


def test_card_defaults_cannot_set_the_protocols_name_or_version(small_dataset: Dataset) -> None:
    for field, value in (("name", "other"), ("version", 9)):
        dataset = with_extras(small_dataset, protocol_defaults={"melu": {field: value}})
        with pytest.raises(ConfigError, match=rf"\[protocol.melu\] has unknown field\(s\) {field}"):
            make_protocol("melu").split(dataset, 0)


def test_melu_with_card_defaults_is_reproducible(small_dataset: Dataset) -> None:
    dataset = with_extras(small_dataset, protocol_defaults={"melu": {"item_cutoff": 2010}})
    protocol = make_protocol("melu", {"min_ratings": 20})
    a, b = protocol.split(dataset, 4), protocol.split(dataset, 4)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.new_users, b.new_users)


def test_protocol_factories_are_checked() -> None:
    if "test-not-callable" not in PROTOCOLS:
        PROTOCOLS.register("test-not-callable", 42)  # type: ignore[arg-type]
        PROTOCOLS.register("test-not-a-protocol", lambda overrides: "a string")
    with pytest.raises(RegistryError) as info:
        make_protocol("test-not-callable")
    assert str(info.value) == "protocol 'test-not-callable' resolves to 42, which is not callable"
    with pytest.raises(RegistryError) as info:
        make_protocol("test-not-a-protocol")
    assert str(info.value) == (
        "protocol 'test-not-a-protocol' built 'a string', which is not a Protocol"
    )
    with pytest.raises(ConfigError, match=r"unknown field 'bogus' in \[protocol\] for"):
        make_protocol("temporal", {"bogus": 1})


def with_user_attributes(dataset: Dataset, **attributes: np.ndarray) -> Dataset:
    return replace(dataset, user_attributes=attributes, content_hash="")


def test_user_attribute_split_and_its_errors(small_dataset: Dataset) -> None:
    age = np.arange(small_dataset.n_users) % 60 + 15
    dataset = with_user_attributes(small_dataset, age=age, zone=age % 3)
    split = make_protocol(
        "cold-random", {"user_split": "attribute:age", "user_cutoff": 50.0}
    ).split(dataset, 0)
    assert np.array_equal(split.new_users, age >= 50)
    with pytest.raises(ConfigError) as info:
        make_protocol("cold-random", {"user_split": "attribute:height"}).split(dataset, 0)
    assert str(info.value) == (
        "user_split 'attribute:height': the dataset has no user attribute 'height' "
        "(it has: age, zone)"
    )
    with pytest.raises(ConfigError) as info:
        make_protocol("cold-random", {"item_split": "attribute:genre"}).split(dataset, 0)
    assert str(info.value) == (
        "item_split 'attribute:genre': the dataset has no item attribute 'genre' "
        "(it has: release_year)"
    )


def test_an_attribute_name_may_hold_a_colon() -> None:
    values = np.array([1.0, 5.0, 9.0])
    args = {"entity": np.zeros(1, dtype=int), "timestamp": np.zeros(1, dtype=int), "side": "item"}
    new = split_entities(
        "attribute:year:first",
        3,
        0.2,
        5.0,
        attributes={"year:first": values, "year": -values, "first": -values},
        rng=np.random.default_rng(0),
        **args,
    )
    assert new.tolist() == [False, True, True]


def test_entities_without_any_rating_and_scenarios_without_tasks() -> None:
    dataset = hand_made_folds()  # user 3 and item 6 have no rating
    split = make_protocol(
        "cold-random", {"support_sizes": [1], "query_size": 1, "validation_fraction": 0.0}
    ).split(dataset, 0)
    assert split.summary["users_outside_activity_filter"] == 0
    big = make_protocol("cold-random", {"support_sizes": [50], "query_size": 5}).split(dataset, 0)
    for scenario in SCENARIOS:
        taskset = big.scenarios[scenario]
        assert len(taskset) == 0 and taskset.entities.dtype == np.int64, scenario
    items = make_protocol("cold-random", {"task_axis": "item", "min_ratings": 1}).split(dataset, 0)
    assert items.summary["items_outside_activity_filter"] == 1


def test_a_dataset_without_a_threshold_likes_at_its_training_median(
    small_dataset: Dataset,
) -> None:
    protocol = make_protocol("cold-random", {"query_size": 3})
    outside = np.ones(len(small_dataset.rating), dtype=bool)
    outside[protocol.split(small_dataset, 1).train] = False
    # Every rating outside training made 5, so the median of all ratings is not the training one
    # (the split does not depend on the rating values).
    rating = np.where(outside, np.float32(5.0), small_dataset.rating)
    unset = replace(small_dataset, rating=rating, like_threshold=float("nan"))
    split = protocol.split(unset, 1)
    assert not outside[split.train].any()
    training = sorted(float(r) for r in unset.rating[split.train])
    half = len(training) // 2
    median = training[half] if len(training) % 2 else (training[half - 1] + training[half]) / 2
    assert median != statistics.median(float(r) for r in unset.rating)  # training, not all
    assert split.like_threshold == median
    assert split.summary["like_threshold"] == median
    assert split.summary["like_threshold_source"] == "median of the training ratings"
    assert split.summary["like_rate"] == pytest.approx(
        sum(r >= median for r in training) / len(training)
    )
    # A split that left its threshold unresolved gets the same one; a resolved one is kept.
    assert split_like_threshold(unset, replace(split, like_threshold=None)) == median
    assert split_like_threshold(unset, replace(split, like_threshold=2.5)) == 2.5
    assert split_like_threshold(small_dataset, replace(split, like_threshold=None)) == 4.0
    # With no training rating at all, the median of every rating stands in.
    nothing = replace(split, train=np.zeros(0, dtype=np.int64), like_threshold=None)
    assert split_like_threshold(unset, nothing) == statistics.median(float(r) for r in unset.rating)


def test_an_entity_with_exactly_the_minimum_pool_can_validate() -> None:
    # query 1 + support 1: a task needs 2 ratings; user 0 has exactly 2, user 1 three, user 2 one.
    dataset = Dataset(
        name="pools",
        user=np.asarray([0, 0, 1, 1, 1, 2]),
        item=np.asarray([0, 1, 0, 1, 2, 2]),
        rating=np.asarray([1, 2, 3, 4, 5, 3], dtype=np.float32),
        timestamp=np.arange(6),
        n_users=3,
        n_items=3,
        rating_scale=(1.0, 5.0),
        like_threshold=4.0,
    )
    params = {
        "new_user_fraction": 0.0,
        "new_item_fraction": 0.0,
        "validation_fraction": 0.9,
        "support_sizes": [1],
        "query_size": 1,
        "min_ratings": 1,
    }
    split = make_protocol("cold-random", params).split(dataset, 0)
    assert split.summary["min_pool"] == 2
    assert split.validation.entities.tolist() == [0, 1]
    assert split.summary["validation_tasks"] == 2
