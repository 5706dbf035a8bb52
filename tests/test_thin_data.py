"""Thin data is named: scenarios resting on few tasks or one seed, and scenarios with no task, are
warned about on the command line and in every report; support and query sizes are set from the
command line and the API without a suite file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import api
from bench.cli import main
from bench.results.analysis.columns import COVERAGE_COLUMNS
from bench.results.analysis.thin import MIN_TASKS, thin_data


def coverage(rows: list[tuple[str, int, int, int]]) -> pd.DataFrame:
    """Coverage rows from (scenario, seed, tasks, left out)."""
    frame = pd.DataFrame(
        [
            {
                "dataset": "d",
                "protocol": "p@1",
                "seed": seed,
                "scenario": scenario,
                "task_axis": "user",
                "tasks": tasks,
                "left_out": left,
                "min_pool": 8,
                "outside_activity_filter": 0,
                "validation_tasks": 0,
                "audit": "",
            }
            for scenario, seed, tasks, left in rows
        ]
    )
    return frame[list(COVERAGE_COLUMNS)]


def test_plenty_of_tasks_on_several_seeds_gives_no_warning() -> None:
    rows = [("warm", s, MIN_TASKS, 0) for s in range(3)]
    assert thin_data(coverage(rows)) == []


def test_each_kind_of_thin_data_is_named_with_what_the_interval_means() -> None:
    rows = [
        ("warm", 0, MIN_TASKS - 1, 0),  # one task short of the threshold, on one seed of two
        ("warm", 1, 200, 0),
        ("user_cold", 0, 500, 0),  # many tasks, one seed with none
        ("user_cold", 1, 0, 40),
        ("item_cold", 0, 0, 12),  # nothing anywhere
        ("item_cold", 1, 0, 11),
    ]
    notes = {n.scenario: n for n in thin_data(coverage(rows))}
    assert set(notes) == {"warm", "user_cold", "item_cold"}
    assert notes["warm"].text.startswith(f"{MIN_TASKS - 1} tasks on a seed (fewer than 30)")
    assert "the ± interval over 2 seeds spans 12.7 standard errors" in notes["warm"].text
    assert notes["user_cold"].text.startswith(
        "no task on seed 1 (40 candidates left out on seed 1: fewer than 8 ratings in their "
        "pool); values from seed 0"
    )
    assert "one seed only: no interval is shown" in notes["user_cold"].text
    assert notes["item_cold"].empty and not notes["warm"].empty
    assert notes["item_cold"].text == (
        "no task on any seed (12 candidates left out on seed 0: fewer than 8 ratings in their "
        "pool); it has no table"
    )
    only = thin_data(coverage(rows), scenarios=["warm"])
    assert [n.scenario for n in only] == ["warm"]


def small_csv(folder: Path) -> Path:
    """100 users x 80 items, 2,000 ratings: the size of a first bring-your-own file."""
    rng = np.random.default_rng(3)
    cells = rng.choice(100 * 80, size=2000, replace=False)
    lines = ["user,item,rating"]
    lines += [f"u{c // 80},i{c % 80},{rng.integers(1, 6)}" for c in cells]
    path = folder / "mine.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_small_own_file_is_sized_on_the_command_line_and_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = small_csv(tmp_path)
    store = tmp_path / "s.sqlite"
    code = main(
        ["run", "--suite", "ci", "--datasets", f"csv:{data}", "--learners", "global-mean",
         "--seeds", "2", "--support-sizes", "1,3", "--query-size", "14", "--store", str(store),
         "--no-progress"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "fewer than 17 ratings in their pool" in out  # 3 + 14: the sizes reached the protocol
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warnings, err
    empty = [w for w in warnings if "no task on any seed" in w]
    assert empty and all(w.endswith("it has no table") for w in empty)
    assert any("fewer than 30" in w for w in warnings)

    out_dir = tmp_path / "report"
    code = main(
        ["report", "--store", str(store), "--out", str(out_dir), "--reference", "global-mean",
         "--format", "md,html,csv,json"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    markdown = (out_dir / "report.md").read_text(encoding="utf-8")
    assert "## Thin data" in markdown and "it has no table" in markdown
    assert "⚠ Thin data:" in markdown  # next to a thin scenario's own table as well
    assert "Thin data" in (out_dir / "report.html").read_text(encoding="utf-8")
    listed = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))["thin_data"]
    assert {n["scenario"] for n in listed if n["empty"]} == {
        w.split(" · ")[2].split(":")[0] for w in empty
    }
    table = pd.read_csv(out_dir / "report.csv")
    assert table["thin_data"].fillna("").str.contains("fewer than 30").any()


def test_the_api_sizes_support_and_query_as_the_command_line_does(tmp_path: Path) -> None:
    results = api.run(
        "ci",
        store=tmp_path / "s.sqlite",
        learners=["global-mean"],
        datasets=["synthetic"],
        seeds=1,
        scenarios=["warm"],
        support_sizes=[1, 3],
        query_size=5,
        progress=False,
    )
    assert set(results.coverage["min_pool"]) == {8}
    assert sorted(set(results.metrics["k"].astype(str))) == ["1", "3"]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--support-sizes", "1,x"], "expected sizes such as 1,3,5"),
        (["--query-size", "0"], "--query-size"),
    ],
)
def test_bad_sizes_are_usage_errors(
    capsys: pytest.CaptureFixture[str], flags: list[str], expected: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["run", "--suite", "ci", *flags])
    assert raised.value.code == 2 and expected in capsys.readouterr().err
