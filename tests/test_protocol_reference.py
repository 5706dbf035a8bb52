"""The cold-start protocol against an independent reconstruction of what it must produce: the
exact training set, the validation entities, the eligible tasks and the summary it reports; plus
its parameter checks and the presets' factories."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bench.data import Dataset
from bench.errors import ConfigError
from bench.protocol import (
    PROTOCOLS,
    SCENARIOS,
    ColdStartProtocol,
    Protocol,
    ProtocolConfig,
    Split,
    TaskSet,
    _preset,
    make_protocol,
    split_entities,
)

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
    # Validation entities that became validation tasks; any other stays in training.
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

    keep = ~task_new[task_of] & ~other_new[other_of] & ~validation[task_of]
    if cfg.drop_filtered:
        keep &= active[task_of]
    train = set(np.flatnonzero(keep).tolist())
    train -= {int(r) for q in split.scenarios["warm"].queries for r in q}
    # Entities drawn for validation that did not become validation tasks are not told apart from
    # the others: they are neither scenario tasks nor counted as ineligible.
    n_drawn = round(cfg.validation_fraction * int((~task_new & active).sum()))
    return {
        "left_out": n_drawn - len(split.validation),
        "active": active,
        "eligible": eligible,
        "ineligible": ineligible,
        "train": train,
        "min_pool": min_pool,
        "validation_pool": ~task_new & active,
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
    # Validation: the requested share of the existing, active task entities, less those whose
    # pool is too small or that max_tasks leaves out.
    left_out = expected["left_out"]
    assert left_out >= 0 and (cfg.max_tasks is not None or left_out <= 3)
    if cfg.max_tasks is not None:
        assert len(split.validation) == min(cfg.max_tasks, len(split.validation) + left_out)
    assert expected["validation_pool"][split.validation.entities].all()
    assert (np.diff(split.validation.entities) > 0).all()
    for scenario in SCENARIOS:
        taskset = split.scenarios[scenario]
        assert taskset.scenario == scenario and taskset.axis == cfg.task_axis
        chosen = set(taskset.entities.tolist())
        eligible = expected["eligible"][scenario]
        assert chosen <= eligible, scenario
        # Only entities drawn for validation are missing (none of them is a new entity).
        task_is_new = NEWNESS[scenario][0 if cfg.task_axis == "user" else 1]
        slack = 0 if task_is_new else left_out
        if cfg.max_tasks is None:
            assert len(eligible) - slack <= len(chosen), scenario
        else:
            assert min(cfg.max_tasks, len(eligible) - slack) <= len(chosen) <= cfg.max_tasks
        assert (np.diff(taskset.entities) > 0).all()
        assert taskset.entities.dtype == np.int64
        for pool, query in zip(taskset.pools, taskset.queries, strict=True):
            assert len(query) == cfg.query_size and len(pool) + len(query) >= expected["min_pool"]
    summary = split.summary
    axis = cfg.task_axis
    for scenario in SCENARIOS:
        computed = expected["ineligible"][scenario]
        reported = summary["scenarios"][scenario]["ineligible"]
        assert computed - left_out <= reported <= computed, scenario
        expected["ineligible"][scenario] = reported
    assert summary == {
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
    }


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
    assert cfg.query_size == 3 and temporal.label == "temporal@1"
    assert make_protocol("cold-random").config == ProtocolConfig()
    assert make_protocol("cold-random", None).config == ProtocolConfig()
    assert temporal.scenarios == SCENARIOS


def test_a_preset_merges_overrides_over_its_defaults() -> None:
    factory = _preset(name="custom", order="time", query_size=4)
    protocol = factory({"query_size": 6, "support_sizes": [1, "all"]})
    assert isinstance(protocol, ColdStartProtocol)
    assert protocol.config == ProtocolConfig(
        name="custom", order="time", query_size=6, support_sizes=(1, "all")
    )
    assert isinstance(protocol.config.support_sizes, tuple)
    assert factory(None).config == ProtocolConfig(name="custom", order="time", query_size=4)
    listed = _preset(name="listed", support_sizes=[3, 4])({})
    assert listed.config.support_sizes == (3, 4)
    with pytest.raises(
        ConfigError, match=r"unknown field 'bogus' in \[protocol\] for ProtocolConfig"
    ):
        factory({"bogus": 1})
    with pytest.raises(ConfigError, match=r"field 'query_size' in \[protocol\] expects"):
        factory({"query_size": "six"})


def test_the_base_protocol_is_abstract(small_dataset: Dataset) -> None:
    with pytest.raises(NotImplementedError):
        Protocol(ProtocolConfig()).split(small_dataset, 0)
    assert Protocol(ProtocolConfig(version=2)).label == "cold-random@2"
