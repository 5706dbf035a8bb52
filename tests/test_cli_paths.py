"""Command-line paths end to end: ``--fresh``, ``export --run/--output``, ``perf``, Ctrl-C in a
real process, and archives that are not zips or lack an entry."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.data.cards import load_dataset
from bench.errors import DataError
from bench.protocol import make_protocol
from bench.protocol.episodes import make_meta_train
from learners.maml.throughput import PerfRow, Spread, measure, render

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_id_of(output: str) -> str:
    match = re.search(r"^run ([0-9a-f]+): ", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def quick_run(store: Path, *extra: str) -> list[str]:
    # No floors: the runs count the named learners' cells.
    return ["run", "--suite", "ci", "--store", str(store), "--no-progress", "--no-floors", *extra]


def test_fresh_from_the_command_line_recomputes_without_duplicates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "r.sqlite"
    args = quick_run(store, "--learners", "global-mean,item-mean", "--seeds", "1")
    code, first, _ = run_cli(capsys, *args)
    assert code == 0 and "2 cell(s) computed, 0 reused" in first
    _, before, _ = run_cli(capsys, "export", "--store", str(store))
    code, again, _ = run_cli(capsys, *args)
    assert "0 cell(s) computed, 2 reused" in again
    code, fresh, _ = run_cli(capsys, *args, "--fresh")
    assert code == 0 and "2 cell(s) computed, 0 reused" in fresh
    _, after, _ = run_cli(capsys, "export", "--store", str(store))

    def without_run(text: str) -> list[tuple[str, ...]]:
        rows = list(csv.DictReader(io.StringIO(text)))
        return sorted(tuple(v for k, v in r.items() if k != "run_id") for r in rows)

    assert without_run(after) == without_run(before)
    fresh_id = run_id_of(fresh)
    assert {r["run_id"] for r in csv.DictReader(io.StringIO(after))} == {fresh_id}


def test_export_one_run_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "r.sqlite"
    _, first, _ = run_cli(capsys, *quick_run(store, "--learners", "item-mean", "--seeds", "1"))
    _, second, _ = run_cli(capsys, *quick_run(store, "--learners", "global-mean", "--seeds", "1"))
    first_id, second_id = run_id_of(first), run_id_of(second)
    assert first_id != second_id

    target = tmp_path / "out" / "second.csv"
    target.parent.mkdir()
    code, out, _ = run_cli(
        capsys, "export", "--store", str(store), "--run", second_id, "--output", str(target)
    )
    assert code == 0 and out == ""
    rows = list(csv.DictReader(target.open()))
    assert rows and {r["run_id"] for r in rows} == {second_id}
    assert {r["learner"] for r in rows} == {"global-mean"}

    timings = tmp_path / "timings.csv"
    code, _, _ = run_cli(
        capsys, "export", "--store", str(store), "--run", first_id, "--timings", "-o", str(timings)
    )
    timing_rows = list(csv.DictReader(timings.open()))
    assert {r["learner"] for r in timing_rows} == {"item-mean"}
    assert {r["phase"] for r in timing_rows} == {"fit", "adapt+predict"}

    as_json = tmp_path / "first.json"
    code, _, _ = run_cli(
        capsys,
        "export",
        "--format",
        "json",
        "--store",
        str(store),
        "--run",
        first_id,
        "-o",
        str(as_json),
    )
    payload = json.loads(as_json.read_text())
    assert {r["run_id"] for r in payload["metrics"]} == {first_id}
    assert {r["learner"] for r in payload["metrics"]} == {"item-mean"}
    assert {r["run_id"] for r in payload["timings"]} == {first_id}
    assert {r["run_id"] for r in payload["runs"]} == {first_id}
    # NaN values become JSON null, so the file is strict JSON.
    assert "NaN" not in as_json.read_text()

    code, everything, _ = run_cli(capsys, "export", "--store", str(store))
    runs = {r["run_id"] for r in csv.DictReader(io.StringIO(everything))}
    assert runs == {first_id, second_id}


# bench perf ----------------------------------------------------------------------------------


def test_perf_measures_both_learners_for_each_setting(small_dataset: object) -> None:
    protocol = make_protocol("cold-random", {"support_sizes": [1, 3], "query_size": 4})
    train = make_meta_train(small_dataset, protocol.split(small_dataset, 0))  # type: ignore[arg-type]
    rows = measure([2, 3], torch.device("cpu"), rounds=2, train=train)
    assert [(r.adapt, r.tasks) for r in rows] == [
        ("decision", 2),
        ("decision", 3),
        ("all", 2),
        ("all", 3),
    ]
    for r in rows:
        assert len(r.reference_seconds) == len(r.vectorised_seconds) == 2
        assert min(r.reference_seconds) > 0 and min(r.vectorised_seconds) > 0
        ratios = sorted(
            a / b for a, b in zip(r.reference_seconds, r.vectorised_seconds, strict=True)
        )
        assert (r.speedup.low, r.speedup.high) == pytest.approx((ratios[0], ratios[-1]))
        assert r.vectorised_tasks_per_s.median == pytest.approx(
            statistics.median(r.tasks / s for s in r.vectorised_seconds)
        )
    text = render(rows, torch.device("cpu"))
    assert "decision layers" in text and "all parameters" in text
    assert "second order" in text and "on cpu" in text
    assert len([ln for ln in text.splitlines() if ln.startswith("| ")]) == 1 + len(rows)
    # The reference gets fewer rounds when one of its steps would overrun its time budget.
    (short,) = measure(
        [2], torch.device("cpu"), rounds=3, reference_budget_s=0.0, adapts=["all"], train=train
    )
    assert len(short.reference_seconds) == len(short.vectorised_seconds) == 1


def test_perf_rows_and_their_spread() -> None:
    # Two rounds: maml-l2l takes 0.4 s then 0.2 s for 32 tasks, maml 0.1 s both times.
    row = PerfRow("decision", 32, reference_seconds=(0.4, 0.2), vectorised_seconds=(0.1, 0.1))
    assert row.reference_tasks_per_s == Spread(80.0, 120.0, 160.0, 2)
    assert row.vectorised_tasks_per_s == Spread(320.0, 320.0, 320.0, 2)
    assert row.speedup == Spread(2.0, 3.0, 4.0, 2)
    text = render([row], torch.device("cpu"), inner_steps=2, first_order=True)
    line = next(ln for ln in text.splitlines() if "decision layers" in ln)
    assert [c.strip() for c in line.strip("|").split("|")] == [
        "decision layers",
        "32",
        "120 (80–160)",
        "320 (320–320)",
        "3.0x (2.0x–4.0x)",
        "2",
    ]
    assert "2 inner step(s), first order" in text
    single = PerfRow("all", 8, reference_seconds=(0.5,), vectorised_seconds=(0.25,))
    assert single.speedup.format("{:.1f}x") == "2.0x"


def test_perf_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "perf", "--batch-sizes", "2", "--repeats", "1", "--threads", "1")
    assert code == 0
    assert "maml-l2l tasks/s" in out and "speed-up" in out
    assert len([ln for ln in out.splitlines() if re.match(r"\| (decision|all)", ln)]) == 2
    for bad in (["--batch-sizes", "0"], ["--batch-sizes", "two"], ["--repeats", "0"]):
        with pytest.raises(SystemExit) as info:
            main(["perf", *bad])
        assert info.value.code == 2, bad
        assert "error:" in capsys.readouterr().err
    if not torch.cuda.is_available():
        code, _, err = run_cli(capsys, "perf", "--device", "cuda")
        assert code == 2 and "--device" in err and "no CUDA GPU" in err


# Ctrl-C ----------------------------------------------------------------------------------------


def test_ctrl_c_exits_130_and_the_next_run_resumes(tmp_path: Path) -> None:
    suite = tmp_path / "slow.toml"
    suite.write_text(
        'name = "slow"\nlearners = ["item-mean", "maml"]\nseeds = 1\nfloors = false\n'
        '[protocol]\nname = "cold-random"\nsupport_sizes = [1, 3]\nquery_size = 4\n'
        "[dataset.synthetic]\nn_users = 120\nn_items = 80\n"
        "[learner.maml]\nmeta_steps = 1000000\neval_every = 0\nembedding_dim = 4\nhidden = [8]\n"
    )
    store = tmp_path / "s.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_CACHE_DIR": str(tmp_path / "cache")}
    env["PYTHONFAULTHANDLER"] = "1"  # a process that hangs shows where, when it is aborted
    args = ["run", "--suite", str(suite), "--store", str(store), "--no-progress"]
    # A process started in the background inherits an ignored SIGINT; a terminal's foreground
    # process has Python's usual handler, which this launcher restores before running the CLI.
    launcher = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv = ['bench', *sys.argv[1:]]; runpy.run_module('bench', run_name='__main__')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        finished_cells = 0
        while finished_cells == 0:  # wait until item-mean is stored and maml is training
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the first cell never finished"
            time.sleep(0.2)
            if store.exists():
                try:
                    with sqlite3.connect(store) as conn:
                        finished_cells = conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
                except sqlite3.OperationalError:
                    pass  # the schema is still being created
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=30)
            raise AssertionError(f"no exit 60 s after SIGINT; its stacks:\n{err}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err and "Traceback" not in err
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
        assert conn.execute("SELECT learner FROM cells").fetchall() == [("item-mean",)]

    resumed = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--learners", "item-mean"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "0 cell(s) computed, 1 reused" in resumed.stdout


# Archives --------------------------------------------------------------------------------------


def filmtrust_card(tmp_path: Path, name: str, archive: Path, root: str = "") -> Path:
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nparser = "filmtrust"\nfolder = "{name}"\n'
        f'url = "{archive.as_uri()}"\narchive_root = "{root}"\narchive_sha256 = "{digest}"\n'
        "[files]\n"
    )
    return path


@pytest.fixture()
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "parsed"))
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    return tmp_path / "data"


def test_a_download_that_is_not_a_zip_is_a_clear_error(tmp_path: Path, private_dirs: Path) -> None:
    archive = tmp_path / "ft.zip"
    archive.write_text("<html>not found</html>\n")
    card = filmtrust_card(tmp_path, "notzip", archive)
    with pytest.raises(DataError, match=r"'notzip'.*ft\.zip did not give a zip archive"):
        load_dataset(str(card), data_dir=private_dirs)
    assert not (private_dirs / "notzip" / "ratings.txt").exists()


def test_an_archive_without_a_needed_entry_names_it(tmp_path: Path, private_dirs: Path) -> None:
    archive = tmp_path / "ft.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ft/ratings.txt", "1 1 2\n2 1 4\n")
        zf.writestr("elsewhere/trust.txt", "1 2 1\n")
    card = filmtrust_card(tmp_path, "partial", archive, root="ft")
    with pytest.raises(DataError, match=r"'partial'.*has no entry 'ft/trust\.txt'"):
        load_dataset(str(card), data_dir=private_dirs)
    # Without the trust network the same archive is enough.
    data = load_dataset(str(card), {"trust": False}, data_dir=private_dirs)
    assert data.n_ratings == 2 and (private_dirs / "partial" / "ratings.txt").is_file()
