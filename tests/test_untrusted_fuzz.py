"""Fuzzing the command line with files from elsewhere: suites, baselines and delimited data files
of any content, hostile shapes included (deep nesting, huge numbers, long lines and ids). Every
command either runs normally or exits with status 2 and one error line; no traceback escapes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from untrusted import Outcome, bench

from bench.limits import MAX_ID_CHARS, MAX_JSON_DEPTH, MAX_LINE_CHARS

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
TINY_SUITE = (
    'name = "tiny"\ndatasets = ["synthetic"]\nlearners = ["global-mean"]\nscenarios = ["warm"]\n'
    'seeds = 1\n[protocol]\nname = "cold-random"\nsupport_sizes = [1]\nquery_size = 3\n'
    "[dataset.synthetic]\nn_users = 120\nn_items = 80\n"
)


NOT_COMPARABLE = "not comparable: refresh the baseline if the change is intended (exit 2)"
"""How ``bench check`` ends a finished comparison that found cells it cannot compare (a baseline
row whose protocol or dataset hash differs from the store's): exit 2 with its verdict line."""


def normal_or_refused(
    outcome: Outcome, normal: tuple[int, ...] = (0,), *, compared: bool = False
) -> None:
    """A normal run, or a refusal of exactly one error line (the property under test). With
    ``compared``, exit 2 may also be a check that finished and found cells not comparable."""
    event(f"exit {outcome.code}")
    assert "Traceback" not in outcome.err, outcome.err[-3000:]
    if compared and outcome.code == 2 and outcome.out.rstrip().endswith(NOT_COMPARABLE):
        assert not any(line.startswith("error: ") for line in outcome.err.splitlines())
        event("finished: not comparable")
    elif outcome.code == 2:
        assert outcome.error  # exactly one error line, the last one
    else:
        assert outcome.code in normal, (outcome.code, outcome.err[-3000:])


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


HOSTILE_VALUES = (
    nested(MAX_JSON_DEPTH + 1),
    nested(3000),
    "9" * 400,
    "1e400",
    "-1",
    "nan",
    "inf",
    '"' + "x" * (MAX_ID_CHARS + 1) + '"',
    '"../../etc/passwd"',
    '"/etc/passwd"',
    '"<script>alert(1)</script>"',
    "[" + ", ".join(["7"] * 20_001) + "]",
    "true",
    "{}",
    "[]",
    '""',
)
SUITE_KEYS = (
    "name", "datasets", "learners", "scenarios", "seeds", "devices", "metrics", "shown_metrics",
    "ndcg_gain", "keep_predictions", "data_dir", "description",
)  # fmt: skip
TABLE_KEYS = ("support_sizes", "query_size", "name", "n_users", "n_items", "absolute", "seed")


def toml_value() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(HOSTILE_VALUES),
        st.integers(-(10**20), 10**20).map(str),
        st.text(max_size=20).map(json.dumps),
        st.lists(st.integers(-5, 10**10).map(str), max_size=6).map(lambda v: f"[{', '.join(v)}]"),
    )


def suite_texts() -> st.SearchStrategy[bytes]:
    line = st.tuples(st.sampled_from(SUITE_KEYS), toml_value()).map(lambda kv: f"{kv[0]} = {kv[1]}")
    table = st.tuples(
        st.sampled_from(["protocol", "dataset.synthetic", "learner.global-mean", "check", "tune"]),
        st.lists(st.tuples(st.sampled_from(TABLE_KEYS), toml_value()), max_size=3),
    ).map(lambda t: f"[{t[0]}]\n" + "".join(f"{k} = {v}\n" for k, v in t[1]))
    text = st.tuples(st.lists(line, max_size=5), st.lists(table, max_size=2)).map(
        lambda t: TINY_SUITE.split("[protocol]")[0] + "\n".join(t[0]) + "\n" + "".join(t[1])
    )
    return st.one_of(text.map(str.encode), st.binary(max_size=200))


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_CACHE_DIR", str(Path(tmp) / "cache"))
        yield Path(tmp)


@FUZZ
@given(content=suite_texts())
def test_a_suite_file_of_any_content_validates_or_is_one_error_line(
    workdir: Path, content: bytes
) -> None:
    path = workdir / "fuzzed.toml"
    path.write_bytes(content)
    normal_or_refused(bench("validate", path))


@pytest.fixture(scope="module")
def checked(workdir: Path) -> tuple[Path, Path, dict[str, Any]]:
    """A store with the tiny suite's results, and its baseline as a document."""
    suite = workdir / "tiny.toml"
    suite.write_text(TINY_SUITE)
    store, baseline = workdir / "s.sqlite", workdir / "tiny.json"
    made = bench("baseline", "--suite", suite, "--store", store, "--out", baseline, "--no-progress")
    assert made.code == 0, made.err
    return store, suite, json.loads(baseline.read_text())


def json_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(allow_nan=False),
        st.text(max_size=12),
        st.sampled_from(["x" * 5000, "nan", "-1"]),
    )
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=8,
    )


def mutated(document: Any, data: st.DataObject) -> Any:
    """``document`` with one value somewhere replaced by another JSON value."""
    if isinstance(document, dict) and document and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(document)))
        return {**document, key: mutated(document[key], data)}
    if isinstance(document, list) and document and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(document) - 1))
        return [*document[:i], mutated(document[i], data), *document[i + 1 :]]
    return data.draw(json_values())


@FUZZ
@given(data=st.data())
def test_a_baseline_of_any_content_checks_or_is_one_error_line(
    workdir: Path, checked: tuple[Path, Path, dict[str, Any]], data: st.DataObject
) -> None:
    store, _, document = checked
    kind = data.draw(st.sampled_from(["mutated", "deep", "bytes"]))
    if kind == "mutated":
        content = json.dumps(mutated(document, data)).encode()
    elif kind == "deep":
        depth = data.draw(st.sampled_from([MAX_JSON_DEPTH + 1, 5000, 200_000]))
        content = (
            json.dumps({**document, "tasks": "HOLE"})
            .replace('"HOLE"', nested(depth, "{}"))
            .encode()
        )
    else:
        content = data.draw(st.binary(max_size=300))
    path = workdir / "fuzzed.json"
    path.write_bytes(content)
    outcome = bench("check", "--baseline", path, "--store", store)
    normal_or_refused(outcome, normal=(0, 1), compared=True)


def test_a_baseline_row_of_another_protocol_is_not_comparable_rather_than_refused(
    workdir: Path, checked: tuple[Path, Path, dict[str, Any]]
) -> None:
    # found by the fuzzing above: a timing row whose protocol hash was emptied
    store, _, document = checked
    rows = [{**document["timings"][0], "protocol_hash": ""}, *document["timings"][1:]]
    path = workdir / "other-protocol.json"
    path.write_text(json.dumps({**document, "timings": rows}))
    outcome = bench("check", "--baseline", path, "--store", store)
    assert outcome.code == 2 and outcome.out.rstrip().endswith(NOT_COMPARABLE)
    assert "1 not comparable" in outcome.out.splitlines()[-1]
    assert not any(line.startswith("error: ") for line in outcome.err.splitlines())


FIELDS = (
    "1", "2", "3", "5", "0", "-1", "3.5", "nan", "inf", "1e400", "", '"', '"a,b"', "user", "item",
    "rating", "x" * (MAX_ID_CHARS + 1), "\ufeff", "99999999999999999999",
)  # fmt: skip


def csv_texts() -> st.SearchStrategy[str]:
    row = st.lists(
        st.one_of(st.sampled_from(FIELDS), st.integers(0, 40).map(str)), min_size=0, max_size=5
    )
    sep = st.sampled_from([",", "\t", ";", " "])
    body = st.tuples(st.lists(row, max_size=60), sep).map(
        lambda t: "\n".join(t[1].join(r) for r in t[0])
    )
    dense = st.integers(0, 10**6).map(  # enough ratings for a split, sometimes with a bad line
        lambda s: (
            "user,item,rating\n"
            + "".join(f"{u},{i},{1 + (u * i + s) % 5}\n" for u in range(30) for i in range(25))
        )
    )
    long_line = st.just("user,item,rating\n1,2," + "3" * (MAX_LINE_CHARS + 1) + "\n")
    return st.one_of(body, st.tuples(dense, body).map("".join), long_line)


@settings(FUZZ, max_examples=12)
@given(content=csv_texts())
def test_a_data_file_of_any_content_runs_or_is_one_error_line(
    workdir: Path, checked: tuple[Path, Path, dict[str, Any]], content: str
) -> None:
    data = workdir / "fuzzed.csv"
    data.write_text(content, encoding="utf-8")
    _, suite, _ = checked
    store = workdir / "csv.sqlite"
    outcome = bench(
        "run",
        "--suite",
        suite,
        "--datasets",
        f"csv:{data}",
        "--no-progress",
        "--store",
        store,
        "--fresh",
    )
    normal_or_refused(outcome)
