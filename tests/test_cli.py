"""The command line end to end on the shipped ``ci`` suite."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.provenance import PROJECT_ROOT

SCENARIO_TITLES = [
    f"synthetic · cold-random@2 · {s}" for s in ("warm", "user_cold", "item_cold", "user_item_cold")
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
    # The suite's learners and the floor learners every suite with a ranking metric runs.
    for learner in ("oracle", "global-mean", "item-mean", "mf", "floor-random", "floor-constant"):
        assert f"| {learner}" in first
    assert "timing" in first and "12 cell(s) computed, 0 reused" in first

    code, second, _ = run_cli(capsys, "run", "--suite", "ci", "--store", store, "--no-progress")
    assert code == 0
    assert "0 cell(s) computed, 12 reused" in second

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
    # Mean and 95% t-interval of two seeds, by hand: t(0.975, 1 degree of freedom) = 12.7062.
    first_seed, second_seed = values[("user_cold", "5", "mf", "rmse")]
    mean = (first_seed + second_seed) / 2
    half = 12.7062047 * abs(first_seed - second_seed) / math.sqrt(2) / math.sqrt(2)
    cell = f"{mean:.4f} ±{half:.4f}"
    line = next(
        ln
        for ln in first.split("synthetic · cold-random@2 · user_cold")[1].splitlines()
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
        "--no-floors",
    )
    assert code == 0
    assert "· user_cold" in out and "· warm" not in out
    assert "| item-mean" in out and "| mf" not in out and "| floor-" not in out
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


def test_flag_errors_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "r.sqlite")
    code, _, err = run_cli(capsys, "run", "--suite", "ci", "--device", "gpu", "--store", store)
    assert code == 2 and err.startswith("error: --device:") and "'gpu'" in err
    assert "ci.toml" not in err
    code, _, err = run_cli(capsys, "run", "--suite", "ci", "--learners", "mff", "--store", store)
    assert code == 2 and "--learners: unknown learner 'mff'" in err
    code, _, err = run_cli(capsys, "run", "--suite", "ci", "--scenarios", "cold", "--store", store)
    assert code == 2 and "--scenarios: unknown scenario 'cold'" in err
    with pytest.raises(SystemExit) as exited:
        main(["run", "--suite", "ci", "--seeds", "0"])
    assert exited.value.code == 2 and "--seeds" in capsys.readouterr().err


def test_ls_describes_every_entry(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "ls", "learners")
    assert code == 0
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert "matrix factorisation" in lines["mf"]
    assert all(description.strip() for description in lines.values())
    for what, name, words in (
        ("protocols", "melu", "release year"),
        ("suites", "ci", "continuous integration"),
        ("metrics", "rmse", "root mean squared error"),
        ("datasets", "ml-100k", "MovieLens 100K"),
    ):
        _, out, _ = run_cli(capsys, "ls", what)
        line = next(ln for ln in out.splitlines() if ln.split()[0] == name)
        assert words in line, (what, line)


def test_tables_explain_their_symbols_and_splits_name_their_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "r.sqlite")
    code, out, _ = run_cli(
        capsys, "run", "--suite", "ci", "--learners", "item-mean", "--store", store, "--no-progress"
    )
    assert code == 0
    tables = sum(line.startswith("| learner ") for line in out.splitlines())
    assert tables == 4 and out.count("cold-random@2: protocol name@version") == tables
    assert "a-b: the range over seeds or folds" in out  # item_cold task counts differ by seed
    assert "peak memory: on CPU the peak resident memory (RSS) of the whole process" in out
    assert "auc: " in out and "(query without both a liked and a disliked rating)" in out
    assert "split synthetic seed 0:" in out and "split synthetic seed 1:" in out


def test_export_of_an_unknown_run_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "r.sqlite")
    assert run_cli(capsys, "run", "--suite", "ci", "--learners", "global-mean", "--seeds", "1",
                   "--store", store, "--no-progress")[0] == 0  # fmt: skip
    code, out, err = run_cli(capsys, "export", "--run", "nosuchrun", "--store", store)
    assert code == 2 and out == "" and "--run: no run 'nosuchrun'" in err


def test_a_reader_that_stops_early_ends_the_export_quietly(tmp_path: Path) -> None:
    store = str(tmp_path / "r.sqlite")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *sys.path])}
    base = [sys.executable, "-m", "bench"]
    subprocess.run(
        [*base, "run", "--suite", "ci", "--learners", "global-mean,item-mean", "--store", store,
         "--no-progress"],
        check=True, capture_output=True, env=env, timeout=300,
    )  # fmt: skip
    export = subprocess.Popen(
        [*base, "export", "--format", "json", "--store", store],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert export.stdout is not None and export.stderr is not None
    assert export.stdout.read(10)  # the output is far larger than the pipe's buffer
    export.stdout.close()
    err = export.stderr.read().decode()
    assert export.wait(timeout=120) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_perf_repeats_and_shows_the_spread(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "perf", "--batch-sizes", "4", "--repeats", "3")
    assert code == 0
    rows = [ln for ln in out.splitlines() if ln.startswith("| decision") or ln.startswith("| all")]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "4" and cells[-1] == "3"
        assert re.fullmatch(r"[\d.]+x \([\d.]+x–[\d.]+x\)", cells[4]), cells[4]
    assert "median (min–max) over rounds" in out
    code, _, err = run_cli(capsys, "perf", "--device", "gpu")
    assert code == 2 and "--device" in err


def test_the_resolved_suite_is_printed_only_when_asked_and_after_the_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "r.sqlite")
    base = ("run", "--suite", "ci", "--learners", "item-mean", "--store", store, "--no-progress")
    code, quiet, _ = run_cli(capsys, *base)
    assert code == 0 and "resolved config" not in quiet
    code, verbose, _ = run_cli(capsys, *base, "--verbose")
    assert code == 0
    assert verbose.index("| item-mean") < verbose.index("resolved config:")
    # The resolved learners: the one asked for and the floors that run beside it by default.
    floors = '    "floor-random",\n    "floor-constant"\n'
    assert '"learners": [\n    "item-mean",\n' + floors + "  ]" in verbose
    # An error is one line with nothing printed before it.
    code, out, err = run_cli(capsys, *base, "--learners", "item-meen")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "item-meen" in err
