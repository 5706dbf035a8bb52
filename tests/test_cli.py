"""The command line end to end on the shipped ``ci`` suite."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.report import format_mean_ci

SCENARIO_TITLES = [
    f"synthetic · cold-random@1 · {s}" for s in ("warm", "user_cold", "item_cold", "user_item_cold")
]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_run_prints_tables_and_a_rerun_recomputes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "r.sqlite")
    code, first, _ = run_cli(capsys, "run", "--suite", "ci", "--store", store, "--no-progress")
    assert code == 0
    for title in SCENARIO_TITLES:
        assert title in first
    for learner in ("oracle", "global-mean", "item-mean", "mf"):
        assert f"| {learner}" in first
    assert "timing" in first and "8 cell(s) computed, 0 reused" in first

    code, second, _ = run_cli(capsys, "run", "--suite", "ci", "--store", store, "--no-progress")
    assert code == 0
    assert "0 cell(s) computed, 8 reused" in second

    def strip_run_line(text: str) -> str:
        return re.sub(r"run [0-9a-f]+: .*", "", text)

    assert strip_run_line(first) == strip_run_line(second)

    # The exported rows recompute the printed table values.
    code, exported, _ = run_cli(capsys, "export", "--format", "csv", "--store", store)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert {
        "run_id",
        "dataset",
        "protocol",
        "scenario",
        "k",
        "learner",
        "seed",
        "device",
        "metric",
        "value",
        "n_tasks",
    } <= set(rows[0])
    values: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        values[(r["scenario"], r["k"], r["learner"], r["metric"])].append(float(r["value"]))
    cell = format_mean_ci(values[("user_cold", "5", "mf", "rmse")])
    line = next(
        ln
        for ln in first.split("synthetic · cold-random@1 · user_cold")[1].splitlines()
        if ln.startswith("| mf ") and "| 5 " in ln
    )
    assert cell in line
    assert len(values[("user_cold", "5", "mf", "rmse")]) == 2  # two seeds, no duplicates

    code, timings, _ = run_cli(capsys, "export", "--timings", "--store", store)
    timing_rows = list(csv.DictReader(io.StringIO(timings)))
    assert {r["phase"] for r in timing_rows} == {"fit", "adapt+predict"}

    code, as_json, _ = run_cli(capsys, "export", "--format", "json", "--store", store)
    payload = json.loads(as_json)
    assert len(payload["metrics"]) == len(rows) and len(payload["runs"]) == 2
    assert payload["runs"][0]["provenance"]["code_fingerprint"]


def test_flags_override_the_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys,
        "run",
        "--suite",
        "ci",
        "--store",
        str(tmp_path / "r.sqlite"),
        "--no-progress",
        "--learners",
        "item-mean",
        "--scenarios",
        "user_cold",
        "--seeds",
        "1",
    )
    assert code == 0
    assert "· user_cold" in out and "· warm" not in out
    assert "| item-mean" in out and "| mf" not in out
    assert "1 cell(s) computed" in out


def test_bad_input_exits_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        capsys, "run", "--suite", "ci", "--learners", "mff", "--store", str(tmp_path / "r.sqlite")
    )
    assert code == 2 and "did you mean 'mf'" in err
    code, _, err = run_cli(capsys, "run", "--suite", "no-such-suite")
    assert code == 2 and "unknown suite 'no-such-suite'" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("[protocol]\nname = 'cold-random'\nquery_size = 'ten'\n")
    code, _, err = run_cli(capsys, "validate", str(bad))
    assert code == 2 and "query_size" in err
    code, _, err = run_cli(capsys, "export", "--store", str(tmp_path / "missing.sqlite"))
    assert code == 2 and "does not exist" in err


def test_cuda_request_without_a_gpu_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        capsys,
        "run",
        "--suite",
        "ci",
        "--device",
        "cuda",
        "--seeds",
        "1",
        "--learners",
        "item-mean",
        "--store",
        str(tmp_path / "r.sqlite"),
        "--no-progress",
    )
    if torch.cuda.is_available():
        assert code == 0
    else:
        assert code == 2 and "no CUDA GPU is available" in err and "Traceback" not in err


def test_ls_and_validate(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "ls")
    assert code == 0
    for name in ("oracle", "mf", "synthetic", "cold-random", "temporal", "default", "ndcg@10"):
        assert name in out
    code, out, _ = run_cli(capsys, "ls", "learners")
    assert "item-mean" in out.split()
    code, out, _ = run_cli(capsys, "validate", "ci")
    assert code == 0 and "ok" in out


def test_oracle_is_the_floor_and_mf_beats_item_mean_cold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "r.sqlite")
    assert run_cli(capsys, "run", "--suite", "ci", "--store", store, "--no-progress")[0] == 0
    _, exported, _ = run_cli(capsys, "export", "--format", "json", "--store", store)
    means: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in json.loads(exported)["metrics"]:
        if r["metric"] == "rmse":
            means[(r["scenario"], r["k"], r["learner"])].append(r["value"])
    for (scenario, k, learner), vals in means.items():
        if learner != "oracle":
            assert np.mean(means[(scenario, k, "oracle")]) < np.mean(vals), (scenario, k, learner)
    assert np.mean(means[("user_cold", "5", "mf")]) < np.mean(
        means[("user_cold", "5", "item-mean")]
    )
