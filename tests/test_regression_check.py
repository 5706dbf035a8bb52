"""``bench baseline`` and ``bench check`` end to end on a small synthetic suite.

The runs are real: a regression is planted through a suite override (``mf`` at rank 1 instead
of 16), a changed split through a dataset option, and a protocol version change, a newer file
format and damaged files by editing a written baseline file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.provenance import PROJECT_ROOT
from bench.results.gate.baseline import FORMAT_VERSION, read_baseline

SUITE = """
name = "{name}"
datasets = ["synthetic"]
scenarios = ["warm", "user_cold"]
learners = {learners}
seeds = 2
# The counts below are of the named learners' cells alone.
floors = false

[protocol]
name = "cold-random"
support_sizes = [1, 5]
query_size = 5

[dataset.synthetic]
n_users = {n_users}
n_items = 120
{extra}
"""
RANK_1 = "\n[learner.mf]\nrank = 1\n"


@dataclass(frozen=True)
class Setup:
    folder: Path
    store: Path
    baseline: Path

    def suite(
        self,
        name: str,
        *,
        learners: tuple[str, ...] = ("item-mean", "mf"),
        n_users: int = 200,
        extra: str = "",
    ) -> str:
        path = self.folder / f"{name}.toml"
        text = SUITE.format(
            name=name, learners=json.dumps(list(learners)), n_users=n_users, extra=extra
        )
        path.write_text(text, encoding="utf-8")
        return str(path)

    def edited(self, name: str, edit: Any) -> Path:
        """A copy of the baseline, its JSON document changed by ``edit``."""
        document = json.loads(self.baseline.read_text(encoding="utf-8"))
        edit(document)
        path = self.folder / name
        path.write_text(json.dumps(document), encoding="utf-8")
        return path


def bench(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([*args, "--no-progress"] if args[0] in ("check", "baseline") else list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_json(
    capsys: pytest.CaptureFixture[str], setup: Setup, *args: str, baseline: Path | None = None
) -> tuple[int, dict[str, Any]]:
    code, out, err = bench(
        capsys,
        "check",
        "--baseline",
        str(baseline or setup.baseline),
        "--store",
        str(setup.store),
        "--format",
        "json",
        *args,
    )
    assert out, err
    return code, json.loads(out)


def verdicts(document: dict[str, Any], verdict: str, kind: str = "metric") -> list[dict[str, Any]]:
    return [v for v in document["verdicts"] if v["verdict"] == verdict and v["kind"] == kind]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    folder = tmp_path_factory.mktemp("check")
    made = Setup(folder, folder / "results.sqlite", folder / "baseline.json")
    suite = made.suite("small")
    out = ["--out", str(made.baseline), "--no-progress"]
    code = main(["baseline", "--suite", suite, "--store", str(made.store), *out])
    assert code == 0
    return made


def test_the_baseline_file_holds_every_cell_with_its_provenance(setup: Setup) -> None:
    document = json.loads(setup.baseline.read_text(encoding="utf-8"))
    assert document["format"] == "coldstart-bench baseline"
    assert document["version"] == FORMAT_VERSION
    assert document["suite"] == "small"
    assert document["provenance"]["git"] is not None
    assert len(document["provenance"]["runs"]) == 1
    # 2 learners x 2 scenarios x 2 support sizes x (8 metrics and tied_share), one line each.
    assert len(document["cells"]) == 2 * 2 * 2 * 9  # the 72 metric cells below
    cell = next(
        c
        for c in document["cells"]
        if (c["learner"], c["scenario"], c["k"], c["metric"]) == ("mf", "warm", "1", "rmse")
    )
    assert cell["protocol"] == "cold-random" and cell["protocol_version"] == 2
    assert cell["dataset"] == "synthetic" and cell["device"] == "cpu"
    assert set(cell["seeds"]) == {"0", "1"}
    assert cell["mean"] == pytest.approx(sum(cell["seeds"].values()) / 2)
    assert len(cell["dataset_hash"]) >= 8 and len(cell["protocol_hash"]) >= 8
    for seed, values in cell["per_task"].items():
        tasks = document["tasks"][f"synthetic/cold-random/warm/k=1/seed={seed}"]
        assert len(values) == len(tasks) > 0
    phases = {(t["learner"], t["phase"]) for t in document["timings"]}
    assert phases == {(n, p) for n in ("item-mean", "mf") for p in ("fit", "predict")}
    assert all(t["seconds"] > 0 for t in document["timings"])
    lines = setup.baseline.read_text(encoding="utf-8").splitlines()
    assert sum(line.lstrip().startswith('{"dataset"') for line in lines) == 72 + 4
    # It reads back as written.
    snapshot = read_baseline(setup.baseline)
    assert len(snapshot.cells) == 72 and len(snapshot.timings) == 4


def test_an_unchanged_project_exits_0(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    check = ("check", "--baseline", str(setup.baseline), "--suite", setup.suite("small"))
    # Reusing the stored cells, with timings compared (they are the same cells).
    code, out, _ = bench(capsys, *check, "--store", str(setup.store))
    assert code == 0, out
    assert "0 worse, 0 better, 76 same, 0 new, 0 missing, 0 not comparable" in out
    assert "nothing regressed (exit 0)" in out
    # Recomputed in a fresh store: CPU results repeat exactly.
    fresh = str(setup.folder / "fresh.sqlite")
    code, out, _ = bench(capsys, *check, "--store", fresh, "--no-timing", "--format", "json")
    document = json.loads(out)
    assert code == 0
    assert document["counts"]["same"] == 72 and not document["timing_compared"]
    assert {v["change"] for v in document["verdicts"] if v["change"] is not None} == {0.0}


def test_a_planted_regression_exits_1_and_names_the_worse_cells(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = setup.suite("rank-1", extra=RANK_1)
    args = ("check", "--baseline", str(setup.baseline), "--suite", suite, "--no-timing")
    code, out, _ = bench(capsys, *args, "--store", str(setup.store))
    assert code == 1
    assert "REGRESSED synthetic cold-random@2 user_cold k=5 mf cpu rmse:" in out
    assert "cell(s) regressed (exit 1)" in out
    code, document = check_json(capsys, setup, "--suite", suite, "--no-timing")
    assert code == 1 and document["exit_code"] == 1
    worse = verdicts(document, "worse")
    assert worse and {v["learner"] for v in worse} == {"mf"}
    assert {(v["scenario"], v["metric"]) for v in worse} >= {
        ("warm", "rmse"),
        ("user_cold", "rmse"),
    }
    for v in worse:
        assert v["new"] > v["old"] if v["metric"] in ("rmse", "mae") else v["new"] < v["old"]
        assert abs(v["change"]) > v["allowed"]
        assert v["p_holm"] < 0.05 and v["n_pairs"] > 0
        assert "learner config changed" in v["note"]
    # item-mean did not change.
    assert all(v["verdict"] == "same" for v in document["verdicts"] if v["learner"] == "item-mean")


def test_an_improvement_exits_0_marked_better(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    worse_baseline = setup.folder / "rank-1.json"
    code, _, _ = bench(
        capsys,
        "baseline",
        "--suite",
        setup.suite("rank-1", extra=RANK_1),
        "--store",
        str(setup.store),
        "--out",
        str(worse_baseline),
    )
    assert code == 0
    code, document = check_json(
        capsys, setup, "--suite", setup.suite("small"), "--no-timing", baseline=worse_baseline
    )
    assert code == 0
    better = verdicts(document, "better")
    assert {(v["learner"], v["scenario"], v["k"]) for v in better if v["metric"] == "rmse"} == {
        ("mf", s, k) for s in ("warm", "user_cold") for k in ("1", "5")
    }
    assert not verdicts(document, "worse")


def test_tolerances_from_the_command_line_and_the_suite_are_honoured(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = setup.suite("rank-1", extra=RANK_1)
    # Every metric may move by 0.5: nothing regressed.
    code, document = check_json(
        capsys, setup, "--suite", suite, "--no-timing", "--tolerance", "0.5"
    )
    assert code == 0 and not verdicts(document, "worse")
    assert document["tolerances"]["absolute"] == 0.5
    # rmse may move by 50%: the other metrics still regress, rmse does not.
    code, document = check_json(
        capsys, setup, "--suite", suite, "--no-timing", "--tolerance", "rmse=50%"
    )
    assert code == 1
    worse = {v["metric"] for v in verdicts(document, "worse")}
    assert "rmse" not in worse and "mae" in worse
    # The same through the suite's [check] table.
    tolerant = setup.suite(
        "rank-1-tolerant", extra=RANK_1 + "\n[check]\nabsolute = 0.5\nalpha = 0.01\n"
    )
    code, document = check_json(capsys, setup, "--suite", tolerant, "--no-timing")
    assert code == 0 and not verdicts(document, "worse")
    assert document["tolerances"]["alpha"] == 0.01


def test_timings_are_gated_as_ratios_unless_switched_off(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    def faster_baseline(document: dict[str, Any]) -> None:
        for timing in document["timings"]:
            timing["seconds"] /= 1000

    fast = setup.edited("fast.json", faster_baseline)
    suite = setup.suite("small-no-slack", extra="\n[check]\ntiming_slack = 0.0\n")
    code, document = check_json(capsys, setup, "--suite", suite, baseline=fast)
    assert code == 1
    slow = verdicts(document, "worse", kind="timing")
    assert {(v["learner"], v["metric"]) for v in slow} == {
        (n, m) for n in ("item-mean", "mf") for m in ("fit seconds", "predict seconds")
    }
    assert all(v["change"] > 1.5 and v["allowed"] == 1.5 for v in slow)
    assert not verdicts(document, "worse")  # the metrics themselves are unchanged
    code, document = check_json(capsys, setup, "--suite", suite, "--no-timing", baseline=fast)
    assert code == 0 and not [v for v in document["verdicts"] if v["kind"] == "timing"]
    code, document = check_json(
        capsys, setup, "--suite", suite, "--timing-tolerance", "1e6", baseline=fast
    )
    assert code == 0


def test_a_protocol_version_change_is_not_comparable_and_exits_2(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    def older_protocol(document: dict[str, Any]) -> None:
        for entry in (*document["cells"], *document["timings"]):
            entry["protocol_version"] = 1

    old = setup.edited("protocol-v1.json", older_protocol)
    code, out, _ = bench(
        capsys, "check", "--baseline", str(old), "--suite", setup.suite("small"), "--store",
        str(setup.store),
    )  # fmt: skip
    assert code == 2
    assert "protocol version changed: cold-random@1 -> cold-random@2" in out
    assert "76 not comparable" in out and "0 worse" in out  # 72 metric cells and 4 timings


def test_a_baseline_ranked_in_query_order_leaves_only_the_rating_metrics_comparable(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    def query_order(document: dict[str, Any]) -> None:
        for cell in document["cells"]:
            cell.pop("tie_policy")  # as written before tie policies: read as query order

    old = setup.edited("query-order.json", query_order)
    small = setup.suite("small")  # the store also holds the other suites' cells
    code, document = check_json(capsys, setup, "--suite", small, "--no-timing", baseline=old)
    assert code == 2
    incomparable = verdicts(document, "not comparable")
    assert {v["metric"] for v in incomparable} == {"ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "auc"}
    assert all(v["note"] == "tie policy changed: query-order -> expected" for v in incomparable)
    assert {v["metric"] for v in verdicts(document, "same")} == {
        "rmse", "mae", "accuracy", "tied_share",
    }  # fmt: skip


def test_a_changed_dataset_is_not_comparable(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = setup.suite("more-users", n_users=210)
    code, document = check_json(capsys, setup, "--suite", suite)
    assert code == 2
    incomparable = verdicts(document, "not comparable")
    assert len(incomparable) == 72
    assert all(v["note"].startswith("dataset changed (hash") for v in incomparable)


def test_missing_cells_exit_2_unless_allowed_and_new_cells_pass(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    only_item_mean = setup.suite("item-mean-only", learners=("item-mean",))
    code, document = check_json(capsys, setup, "--suite", only_item_mean, "--no-timing")
    assert code == 2
    assert {v["learner"] for v in verdicts(document, "missing")} == {"mf"}
    assert "missing" in document["outcome"]
    code, _ = check_json(capsys, setup, "--suite", only_item_mean, "--allow-missing")
    assert code == 0
    with_more = setup.suite("with-global-mean", learners=("global-mean", "item-mean", "mf"))
    code, document = check_json(capsys, setup, "--suite", with_more, "--no-timing")
    assert code == 0
    assert {v["learner"] for v in verdicts(document, "new")} == {"global-mean"}


def test_nothing_in_common_exits_2(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    other = setup.suite("global-mean-only", learners=("global-mean",))
    code, out, err = bench(
        capsys, "check", "--baseline", str(setup.baseline), "--suite", other, "--store",
        str(setup.store),
    )  # fmt: skip
    assert code == 2 and out == ""
    assert err.splitlines()[-1].startswith(
        f"error: nothing in common with baseline {setup.baseline}"
    )
    assert "learners item-mean, mf" in err and "learners global-mean" in err


def test_a_store_with_two_versions_of_a_cell_asks_for_a_run(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    bench(capsys, "run", "--suite", setup.suite("rank-1", extra=RANK_1), "--store",
          str(setup.store), "--no-progress")  # fmt: skip
    code, _, err = bench(
        capsys, "check", "--baseline", str(setup.baseline), "--store", str(setup.store)
    )
    assert code == 2
    assert re.search(r"holds \d versions of (mf|item-mean) on synthetic cold-random seed", err)
    assert err.rstrip().endswith("choose one run with --run ID")
    # The run that wrote the baseline, named by the baseline's provenance, compares cleanly.
    (run_id,) = json.loads(setup.baseline.read_text(encoding="utf-8"))["provenance"]["runs"]
    code, document = check_json(capsys, setup, "--run", run_id)
    assert code == 0 and document["counts"]["same"] == 76


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "does not exist"),
        ("not json", "is not valid JSON: Expecting value at line 1, column 1"),
        ("truncated", "(the file ends early: truncated?)"),
        ("newer", f"has format version {FORMAT_VERSION + 1}, newer than this coldstart-bench"),
        ("older", "has format version 0, which this coldstart-bench no longer reads"),
        ("not a baseline", "is not a coldstart-bench baseline"),
        ("bad field", '/accuracy).protocol_version must be an integer, got "two"'),
        ("short per-task list", "do not match its task list"),
    ],
)
def test_an_unusable_baseline_exits_2_with_one_line_naming_it(
    setup: Setup, capsys: pytest.CaptureFixture[str], case: str, expected: str
) -> None:
    path = setup.folder / f"{case.replace(' ', '-')}.json"
    text = setup.baseline.read_text(encoding="utf-8")
    document = json.loads(text)
    if case == "not json":
        path.write_text("<html>not found</html>", encoding="utf-8")
    elif case == "truncated":
        path.write_text(text[: len(text) // 2], encoding="utf-8")
    elif case in ("newer", "older"):
        document["version"] = FORMAT_VERSION + 1 if case == "newer" else 0
        path.write_text(json.dumps(document), encoding="utf-8")
    elif case == "not a baseline":
        path.write_text(json.dumps({"cells": []}), encoding="utf-8")
    elif case == "bad field":
        document["cells"][0]["protocol_version"] = "two"
        path.write_text(json.dumps(document), encoding="utf-8")
    elif case == "short per-task list":
        document["cells"][0]["per_task"]["0"].pop()
        path.write_text(json.dumps(document), encoding="utf-8")
    code, out, err = bench(capsys, "check", "--baseline", str(path), "--store", str(setup.store))
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"error: baseline {path}")
    assert expected in err


def test_a_bad_check_table_is_refused_by_validate(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = setup.suite("bad-check", extra="\n[check]\nrelative = 0.01\ntimings = 2\n")
    code, _, err = bench(capsys, "validate", suite)
    assert code == 2
    assert "[check]: unknown key(s) 'timings'" in err
    suite = setup.suite("bad-metric", extra='\n[check.metric."ndcg@7"]\nabsolute = 0.1\n')
    code, _, err = bench(capsys, "validate", suite)
    assert code == 2 and "ndcg@7" in err
    code, _, err = bench(capsys, "check", "--baseline", str(setup.baseline), "--tolerance", "x=1")
    assert code == 2 and "--tolerance 'x=1'" in err


def test_the_committed_ci_baseline_passes_and_catches_a_worse_mf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = PROJECT_ROOT / "reports" / "baselines" / "ci.json"
    store = str(tmp_path / "ci.sqlite")
    args = ("check", "--baseline", str(baseline), "--store", store, "--no-timing")
    code, out, _ = bench(capsys, *args, "--suite", "ci", "--changes-only")
    assert code == 0, f"{out}\nrefresh the baseline on purpose: make refresh-baseline"
    # 4 learners and the 2 floors x 4 scenarios x 2 support sizes x (8 metrics and tied_share):
    # the floors run by default, so the baseline holds their cells too (none new).
    assert "0 worse, 0 better, 432 same, 0 new, 0 missing" in out
    suite_text = (PROJECT_ROOT / "bench" / "suites" / "ci.toml").read_text(encoding="utf-8")
    worse = tmp_path / "ci-rank-1.toml"
    worse.write_text(suite_text + RANK_1, encoding="utf-8")
    code, out, _ = bench(capsys, *args, "--suite", str(worse))
    assert code == 1
    assert "REGRESSED synthetic cold-random@2 warm k=1 mf cpu rmse:" in out


def test_ci_runs_the_tests_then_the_regression_check() -> None:
    script = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in script.splitlines() if line.strip().startswith("make ")]
    assert commands == ["make test", "make docs", "make regression-check"]
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    target = makefile.split("\nregression-check:", 1)[1].split("\n\n", 1)[0]
    assert "bench check --suite ci --baseline $(CI_BASELINE) --no-timing" in target
    assert "CI_BASELINE := reports/baselines/ci.json" in makefile


def _blank_seed(document: dict[str, Any]) -> None:
    document["cells"][0]["seeds"]["1"] = None


def _blank_per_task(document: dict[str, Any]) -> None:
    cell = document["cells"][0]
    cell["per_task"]["1"] = [None] * len(cell["per_task"]["1"])


def _nan_literal(document: dict[str, Any]) -> None:
    document["cells"][0]["seeds"]["0"] = float("nan")


def _missing_seed(document: dict[str, Any]) -> None:
    del document["cells"][0]["seeds"]["1"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_blank_seed, "seeds.1 must be a finite number"),
        (_blank_per_task, "per_task.1 must hold at least one number"),
        (_nan_literal, "seeds.0 must be a finite number"),
        (_missing_seed, "per_task.1 names a seed that seeds lacks"),
    ],
)
def test_a_baseline_with_a_missing_or_non_finite_value_is_refused_naming_the_cell(
    setup: Setup, capsys: pytest.CaptureFixture[str], edit: Any, expected: str
) -> None:
    """Otherwise the comparison would average the seeds left, and call the cell the same."""
    path = setup.edited(f"{edit.__name__}.json", edit)
    first = json.loads(setup.baseline.read_text(encoding="utf-8"))["cells"][0]
    code, out, err = bench(capsys, "check", "--baseline", str(path), "--store", str(setup.store))
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"error: baseline {path}: cells[0] (")
    assert f"{first['learner']}" in err and first["metric"] in err
    assert expected in err


@pytest.mark.parametrize("part", ["cells", "timings"])
def test_an_entry_without_a_name_is_refused_not_read_as_missing(
    setup: Setup, capsys: pytest.CaptureFixture[str], part: str
) -> None:
    """An empty name matches no stored cell: read as is, the check would report a cell gone
    missing (exit 2 with a table) instead of a damaged file."""

    def unnamed(document: dict[str, Any]) -> None:
        document[part][0]["dataset"] = ""

    path = setup.edited(f"unnamed-{part}.json", unnamed)
    code, out, err = bench(capsys, "check", "--baseline", str(path), "--store", str(setup.store))
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert f"{part}[0]" in err and "dataset must be a non-empty string" in err
