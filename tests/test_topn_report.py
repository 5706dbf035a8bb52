"""Top-N metrics reported like every other: the terminal tables, `bench report`, the export of
per-task values, and `bench check`; Kendall's tau between full and sampled ranking per table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.results.analysis import load_results
from bench.results.analysis.views import agreement_metric, view_agreement
from bench.results.report import write_report
from bench.results.terminal import render_terminal

SUITE = """
name = "{name}"
datasets = ["synthetic"]
scenarios = ["warm", "item_cold"]
learners = ["global-mean", "item-mean", "popularity", "mf"]
seeds = 2
ranking = ["query", "full", "sampled"]
negatives = 30
top_k = [5, 20]

[protocol]
name = "cold-random"
support_sizes = [3]
query_size = 6

[dataset.synthetic]
n_users = 160
n_items = 150
{extra}
"""


@pytest.fixture(scope="module")
def ranked_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("topn")
    suite = folder / "ranked.toml"
    suite.write_text(SUITE.format(name="ranked", extra=""), encoding="utf-8")
    store, baseline = folder / "r.sqlite", folder / "baseline.json"
    code = main(
        [
            "baseline",
            "--suite",
            str(suite),
            "--store",
            str(store),
            "--out",
            str(baseline),
            "--no-progress",
        ]
    )
    assert code == 0
    return folder, store, baseline


def test_kendall_tau_and_the_flag_where_the_best_learner_differs() -> None:
    full = {"a": 0.3, "b": 0.2, "c": 0.1}
    agreeing = view_agreement(
        full, {"a": 0.9, "b": 0.5, "c": 0.4}, "recall@20", "recall@20/sampled"
    )
    assert agreeing is not None and agreeing.tau == pytest.approx(1.0) and not agreeing.disagree
    reversed_ = view_agreement(
        full, {"a": 0.1, "b": 0.2, "c": 0.3}, "recall@20", "recall@20/sampled"
    )
    assert reversed_ is not None and reversed_.tau == pytest.approx(-1.0)
    assert reversed_.disagree and "DISAGREE" in reversed_.sentence()
    assert "a (full), c (sampled)" in reversed_.sentence()
    # One swap among three: tau-b = (2 - 1) / 3.
    one_swap = view_agreement(full, {"a": 0.5, "b": 0.1, "c": 0.2}, "m", "m/sampled")
    assert one_swap is not None and one_swap.tau == pytest.approx(1 / 3)
    assert view_agreement({"a": 0.1}, {"a": 0.2}, "m", "m/sampled") is None
    constant = view_agreement({"a": 0.1, "b": 0.1}, {"a": 0.2, "b": 0.3}, "m", "m/sampled")
    assert constant is not None and math.isnan(constant.tau)
    assert agreement_metric(["recall@10", "recall@20", "recall@10/sampled"]) == (
        "recall@10",
        "recall@10/sampled",
    )
    assert agreement_metric(["ndcg@20/full", "ndcg@20/sampled"]) == (
        "ndcg@20/full",
        "ndcg@20/sampled",
    )
    assert agreement_metric(["recall@20", "ndcg@3"]) is None


def _row(learner: str, metric: str, value: float) -> dict[str, Any]:
    return {
        "dataset": "d",
        "protocol": "p@1",
        "scenario": "warm",
        "k": "5",
        "learner": learner,
        "device": "cpu",
        "metric": metric,
        "value": value,
        "n_tasks": 10,
        "n_unscored": 0,
        "seed": 0,
    }


def test_the_terminal_table_names_the_views_and_flags_disagreement() -> None:
    rows = [
        _row("a", "ndcg@3", 0.7),
        _row("b", "ndcg@3", 0.6),
        _row("a", "recall@20", 0.3),
        _row("b", "recall@20", 0.1),
        _row("a", "recall@20/sampled", 0.4),
        _row("b", "recall@20/sampled", 0.6),
    ]
    text = render_terminal(rows, [], ("ndcg@3",), ["a", "b"])
    header = next(line for line in text.splitlines() if line.startswith("| learner"))
    assert [c.strip() for c in header.split("|")[3:6]] == [
        "ndcg@3/query",
        "recall@20",
        "recall@20/sampled",
    ]
    assert (
        "k=5: full vs sampled ranking (recall@20 vs recall@20/sampled): Kendall τ = -1.00" in text
    )
    assert "DISAGREE on the best learner: a (full), b (sampled)" in text
    # Without top-N rows the table is as it was.
    plain = render_terminal(rows[:2], [], ("ndcg@3",), ["a", "b"])
    assert "ndcg@3/query" not in plain and "Kendall" not in plain and "| ndcg@3 " in plain


def test_the_report_and_the_export_carry_the_top_n_metrics(
    ranked_store: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, store, _ = ranked_store
    results = load_results(store)
    written = write_report(results, tmp_path / "out", name="report", formats=["md"])
    text = next(p for p in written if p.suffix == ".md").read_text(encoding="utf-8")
    assert "ndcg@3/query ↑" in text and "recall@20 ↑" in text and "ndcg@20/sampled ↑" in text
    assert "Δ recall@20" in text  # paired with the reference
    assert text.count("Kendall τ") >= 2  # one per table (warm, item_cold), plus the footer
    per_task = results.per_task
    recall = per_task[(per_task["metric"] == "recall@20") & (per_task["scenario"] == "warm")]
    scored = recall["value"].dropna()  # NaN: a task without a liked query item
    assert len(scored) > len(recall) / 2 and scored.between(0, 1).all()


def test_bench_check_gates_the_top_n_metrics(
    ranked_store: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, store, baseline = ranked_store
    suite = folder / "ranked.toml"
    args = ["check", "--baseline", str(baseline), "--store", str(store), "--no-progress"]
    code = main([*args, "--suite", str(suite), "--no-timing", "--format", "json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    topn = [
        v
        for v in document["verdicts"]
        if v["metric"] in ("recall@20", "ndcg@20/full", "hr@5/sampled")
    ]
    assert topn and all(v["verdict"] == "same" for v in topn)
    # mf at rank 1 changes its top-N values: they are compared, not left as incomparable.
    changed = folder / "rank-1.toml"
    changed.write_text(
        SUITE.format(name="rank-1", extra="[learner.mf]\nrank = 1\n"), encoding="utf-8"
    )
    main(
        [
            *args,
            "--suite",
            str(changed),
            "--no-timing",
            "--format",
            "json",
            "--tolerance",
            "recall@20=0",
        ]
    )
    document = json.loads(capsys.readouterr().out)
    mf = [v for v in document["verdicts"] if v["learner"] == "mf" and v["metric"] == "recall@20"]
    assert mf and all(v["verdict"] != "not comparable" and v["n_pairs"] > 0 for v in mf)
    assert any(v["change"] != 0 for v in mf)


def test_a_changed_ndcg_gain_leaves_top_n_comparable() -> None:
    from bench.results.gate.compare import _changed_split
    from bench.results.gate.snapshot import Origin

    old = Origin(1, "d", "p", "exponential", "c")
    new = Origin(1, "d", "p", "linear", "c")
    assert _changed_split(old, new, "cold-random", "ndcg@10").startswith("NDCG gain changed")
    assert _changed_split(old, new, "cold-random", "ndcg@20/full") == ""
    assert _changed_split(old, new, "cold-random", "ndcg@20/sampled") == ""
