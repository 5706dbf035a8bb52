"""Sizes and depths from files elsewhere are bounded where they are read: each oversized or
over-nested input is one error line, never a MemoryError, RecursionError or a run of nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from untrusted import bench, refused

from bench.engine.suite import MAX_SEEDS, suite_from_dict
from bench.errors import BenchError, ConfigError, StoreError
from bench.limits import MAX_ID_CHARS, MAX_JSON_DEPTH, MAX_LINE_CHARS

TINY = 'learners = ["global-mean"]\nscenarios = ["warm"]\nseeds = 1\n'


def suite_file(folder: Path, text: str) -> Path:
    path = folder / "s.toml"
    path.write_text(text)
    return path


def csv_run(tmp_path: Path, content: str) -> str:
    data = tmp_path / "r.csv"
    data.write_text(content)
    suite = suite_file(tmp_path, TINY + f'datasets = ["csv:{data}"]\n')
    outcome = bench("run", "--suite", suite, "--no-progress", "--store", tmp_path / "s.sqlite")
    return refused(outcome, str(data))


def test_a_csv_line_longer_than_the_bound_is_refused_unread(tmp_path: Path) -> None:
    line = csv_run(tmp_path, "user,item,rating\n1,2," + "5" * (MAX_LINE_CHARS + 10) + "\n")
    assert f"line 2: longer than {MAX_LINE_CHARS} characters" in line


def test_a_csv_whose_first_line_is_too_long_is_refused(tmp_path: Path) -> None:
    line = csv_run(tmp_path, "u" * (2 * MAX_LINE_CHARS) + "\n1,2,3\n")
    assert "line 1: longer than" in line


def test_an_id_longer_than_the_bound_is_refused(tmp_path: Path) -> None:
    rows = "".join(f"{u},{i},3\n" for u in range(20) for i in range(20))
    line = csv_run(tmp_path, "user,item,rating\n" + "x" * 100_000 + ",1,4\n" + rows)
    assert f"column 'user' holds a value of 100000 characters; at most {MAX_ID_CHARS}" in line


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 2, 50_000])
def test_deep_nesting_in_a_suite_is_refused(tmp_path: Path, depth: int) -> None:
    suite = suite_file(tmp_path, TINY + "[check]\nx = " + "[" * depth + "]" * depth + "\n")
    refused(bench("validate", suite), f"nest deeper than {MAX_JSON_DEPTH} levels")


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 2, 50_000])
def test_deep_nesting_in_a_baseline_is_refused(tmp_path: Path, depth: int) -> None:
    baseline = tmp_path / "b.json"
    baseline.write_text(
        '{"format": "coldstart-bench-baseline", "x": ' + "[" * depth + "]" * depth + "}"
    )
    outcome = bench("check", "--baseline", baseline, "--store", tmp_path / "none.sqlite")
    refused(outcome, f"baseline {baseline}", f"nest deeper than {MAX_JSON_DEPTH} levels")


def test_deep_nesting_in_a_card_is_refused(tmp_path: Path) -> None:
    card = tmp_path / "deep.toml"
    card.write_text('name = "deep"\nparser = "synthetic"\nx = ' + "{a = " * 5000 + "1" + "}" * 5000)
    refused(
        bench("run", "--datasets", card, "--no-progress"), f"dataset card {card}", "nest deeper"
    )


def test_a_synthetic_dataset_of_a_billion_users_is_refused(tmp_path: Path) -> None:
    suite = suite_file(tmp_path, TINY + "[dataset.synthetic]\nn_users = 1000000000\n")
    outcome = bench("run", "--suite", suite, "--no-progress", "--store", tmp_path / "s.sqlite")
    refused(outcome, "n_users must lie in [1, 1000000], got 1000000000")


def test_a_synthetic_dataset_of_too_many_ratings_is_refused(tmp_path: Path) -> None:
    suite = suite_file(
        tmp_path,
        TINY
        + "[dataset.synthetic]\nn_users = 1000000\nn_items = 1000000\nmax_ratings_per_user = 100000\n",
    )
    outcome = bench("run", "--suite", suite, "--no-progress", "--store", tmp_path / "s.sqlite")
    refused(outcome, "n_users x max_ratings_per_user allows")


def test_a_list_of_two_million_seeds_is_refused() -> None:
    with pytest.raises(ConfigError, match=f"'seeds' lists 2000000 seeds; at most {MAX_SEEDS}"):
        suite_from_dict({"seeds": list(range(2_000_000))}, "s.toml")


def test_a_seed_list_over_the_bound_in_a_file_is_one_line(tmp_path: Path) -> None:
    seeds = ", ".join(map(str, range(MAX_SEEDS + 1)))
    suite = suite_file(tmp_path, f'learners = ["global-mean"]\nseeds = [{seeds}]\n')
    refused(bench("validate", suite), f"lists {MAX_SEEDS + 1} seeds")


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        (
            "support_sizes = [1000000000]",
            "support_sizes entries must be at most 100000, got 1000000000",
        ),
        ("support_sizes = [" + ", ".join(map(str, range(500))) + "]", "support_sizes lists 500"),
        ("query_size = 1000000000", "query_size must be at most 100000"),
        ("support_sizes = [true]", "support_sizes entries"),
    ],
)
def test_support_and_query_sizes_are_bounded(tmp_path: Path, table: str, fragment: str) -> None:
    suite = suite_file(tmp_path, TINY + f'[protocol]\nname = "cold-random"\n{table}\n')
    refused(bench("validate", suite), fragment)


def test_a_name_longer_than_an_id_may_be_is_refused(tmp_path: Path) -> None:
    suite = suite_file(tmp_path, f'learners = ["{"m" * 100_000}"]\n')
    refused(bench("validate", suite), "holds a name of 100000 characters")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--learners", ","), "no learners: the grid would be empty"),
        (("--datasets", ","), "no datasets: the grid would be empty"),
        (("--scenarios", " , "), "no scenarios: the grid would be empty"),
    ],
)
def test_an_empty_grid_from_flags_is_an_error(
    tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    outcome = bench(
        "run", "--suite", "ci", *args, "--no-progress", "--store", tmp_path / "s.sqlite"
    )
    refused(outcome, fragment)
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize("key", ["learners", "datasets", "scenarios", "seeds"])
def test_an_empty_grid_in_a_suite_is_an_error(tmp_path: Path, key: str) -> None:
    suite = suite_file(tmp_path, f"{key} = []\n")
    refused(bench("validate", suite), str(suite))


def test_a_suite_file_too_large_to_be_one_is_refused(tmp_path: Path) -> None:
    suite = tmp_path / "big.toml"
    with open(suite, "wb") as handle:
        handle.truncate(65 << 20)  # sparse: no disk used
    refused(bench("validate", suite), "is larger than 64 MiB")


def test_a_lease_longer_than_the_maximum_is_refused(tmp_path: Path) -> None:
    from bench.engine.runner import run_suite
    from bench.engine.suite import load_suite
    from bench.results.store import ResultStore

    with ResultStore(tmp_path / "s.sqlite") as store, pytest.raises(StoreError, match="lease"):
        run_suite(load_suite("ci"), store, lease_s=1e9, progress=False)


def test_json_of_the_bound_depth_still_reads(tmp_path: Path) -> None:
    from bench.limits import load_json

    deep = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert json.dumps(load_json(deep, "x")) == deep.replace("][", "], [")
    wide = json.dumps([[i] for i in range(3 * MAX_JSON_DEPTH)])  # many brackets, two levels
    assert load_json(wide.encode(), "x") == [[i] for i in range(3 * MAX_JSON_DEPTH)]


@pytest.mark.parametrize("as_bytes", [False, True])
def test_json_past_the_bound_is_refused(as_bytes: bool) -> None:
    from bench.limits import load_json

    deep = "[" * (MAX_JSON_DEPTH + 2) + "]" * (MAX_JSON_DEPTH + 2)
    with pytest.raises(BenchError, match=f"x: values nest deeper than {MAX_JSON_DEPTH}"):
        load_json(deep.encode() if as_bytes else deep, "x")


def test_a_support_size_no_entity_can_fill_is_an_empty_grid(tmp_path: Path) -> None:
    suite = suite_file(
        tmp_path, TINY + '[protocol]\nname = "cold-random"\nsupport_sizes = [50000]\n'
    )
    outcome = bench("run", "--suite", suite, "--no-progress", "--store", tmp_path / "s.sqlite")
    refused(outcome, "nothing to run: a task needs 50010 ratings of one user")
    assert not (tmp_path / "s.sqlite").exists() or "1 cell(s) computed" not in outcome.out
