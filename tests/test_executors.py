"""The process executor against the local one, and the executor options as the CLI takes them."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from bench.cli import main
from bench.engine.executors import LocalExecutor, make_executor
from bench.engine.executors.process import (
    ProcessExecutor,
    _adopt_environment,
    start_method,
    threads_per_worker,
)
from bench.results.store import ResultStore

from executor_grid import assert_same_rows, grid, run_on


@pytest.fixture(scope="module")
def local_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("local") / "s.sqlite"
    outcome = run_on(path, grid())
    assert (outcome.computed, outcome.exit_code) == (6, 0)
    return path


def test_a_process_pool_stores_the_local_executors_rows_cell_for_cell(
    local_store: Path, tmp_path: Path
) -> None:
    path = tmp_path / "pool.sqlite"
    outcome = run_on(path, grid(), ProcessExecutor(workers=2))
    assert (outcome.computed, outcome.reused, outcome.exit_code) == (6, 0, 0)
    assert_same_rows(local_store, path)
    again = run_on(path, grid(), ProcessExecutor(workers=2))  # resumes like the local executor
    assert (again.computed, again.reused) == (0, 6)


def test_threads_are_shared_out_between_workers() -> None:
    assert threads_per_worker(1, cpus=8) == 8
    assert threads_per_worker(3, cpus=8) == 2
    assert threads_per_worker(4, cpus=2) == 1


def test_executor_choices() -> None:
    assert isinstance(make_executor("local"), LocalExecutor)
    pool = make_executor("process", workers=3)
    assert isinstance(pool, ProcessExecutor) and pool.slots == 3


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--executor", "local", "--workers", "2"], "--workers needs --executor process or ray"),
        (["--ray-address", "auto"], "--ray-address needs --executor ray"),
        (["--claim-wait", "-1"], "--claim-wait must be a number of seconds >= 0"),
    ],
)
def test_inconsistent_executor_flags_are_usage_errors(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--suite", "ci", "--store", str(tmp_path / "s.sqlite"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert not (tmp_path / "s.sqlite").exists()  # refused before anything was opened


def test_the_ray_executor_without_ray_is_a_usage_error(tmp_path: Path) -> None:
    # A Python where `import ray` fails, as on an install without the [ray] extra.
    script = (
        "import sys; sys.modules['ray'] = None\n"
        "from bench.cli import main\n"
        f"raise SystemExit(main(['run', '--suite', 'ci', '--executor', 'ray', "
        f"'--store', {str(tmp_path / 's.sqlite')!r}]))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --executor ray needs Ray, which is not installed: "
        "pip install 'coldstart-bench[ray]' (or pip install ray)"
    ]


def test_ctrl_c_stops_the_pool_keeps_finished_cells_and_a_rerun_resumes(tmp_path: Path) -> None:
    suite_file = tmp_path / "slow.toml"
    suite_file.write_text(
        'name = "slow"\nlearners = ["item-mean", "maml"]\nseeds = 2\nfloors = false\n'
        '[protocol]\nname = "cold-random"\nsupport_sizes = [1, 3]\nquery_size = 4\n'
        "[dataset.synthetic]\nn_users = 80\nn_items = 50\nmin_ratings_per_user = 10\n"
        "[learner.maml]\nmeta_steps = 100000\neval_every = 0\n"  # far longer than the test
    )
    store = tmp_path / "s.sqlite"
    command = [
        sys.executable, "-m", "bench", "run", "--suite", str(suite_file), "--store", str(store),
        "--executor", "process", "--workers", "2", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while finished_cells(store) < 2:  # the item-mean cells; the maml ones are still running
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.5)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "interrupted; finished cells are in the store" in err
    with ResultStore(store) as s:
        assert s.runs()[-1]["status"] == "interrupted"
        assert s.claims() == []  # released on the way out
        assert {r["learner"] for r in s.cell_rows()} == {"item-mean"}


def finished_cells(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store) as conn:
            return int(conn.execute("SELECT count(*) FROM cells").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_workers_end_when_their_driver_is_killed(tmp_path: Path) -> None:
    """SIGKILL gives the driver no chance to shut its pool down; the workers notice on their own."""
    suite_file = tmp_path / "slow.toml"
    suite_file.write_text(
        'name = "slow"\nlearners = ["maml"]\nseeds = 2\n'
        '[protocol]\nname = "cold-random"\nsupport_sizes = [1]\nquery_size = 4\n'
        "[dataset.synthetic]\nn_users = 80\nn_items = 50\nmin_ratings_per_user = 10\n"
        "[learner.maml]\nmeta_steps = 100000\neval_every = 0\n"  # far longer than the test
    )
    command = [
        sys.executable, "-m", "bench", "run", "--suite", str(suite_file),
        "--store", str(tmp_path / "s.sqlite"), "--executor", "process", "--workers", "2",
        "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    workers: set[int] = set()
    # two workers and the resource tracker, and the forkserver (the workers' parent) where used
    expected = 3 + (start_method().get_start_method() == "forkserver")
    while len(workers) < expected:
        assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
        assert time.monotonic() < deadline, "the pool did not start"
        time.sleep(0.5)
        children = _children(driver.pid)
        workers = {p for p in children | {g for c in children for g in _children(c)} if _alive(p)}
    time.sleep(2)  # the workers are past their start-up, computing
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [p for p in workers if _alive(p)]
    for pid in left:  # leave nothing behind whatever the outcome
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"processes {left} outlived their driver"


@pytest.mark.parametrize("address", ["bogus.invalid:1", "127.0.0.1:1", "ray://127.0.0.1:1"])
def test_an_unreachable_ray_address_is_one_line_within_bounded_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], address: str
) -> None:
    """Ray itself retries an address that does not answer for many minutes, printing warnings."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    started = time.monotonic()
    code = main(
        ["run", "--suite", "ci", "--learners", "global-mean", "--seeds", "1", "--no-progress",
         "--executor", "ray", "--ray-address", address, "--store", str(tmp_path / "s.sqlite")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert time.monotonic() - started < 60
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: could not reach Ray at {address} within 10 s (")


def _seen() -> tuple[str | None, str]:
    return os.environ.get("BENCH_TEST_MARK"), os.getcwd()


def test_each_pool_sees_the_environment_and_folder_of_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forkserver started by the first pool would otherwise hand later pools its own
    environment from then (the folder multiprocessing carries across itself)."""
    for mark in ("first", "second"):
        folder = tmp_path / mark
        folder.mkdir()
        monkeypatch.setenv("BENCH_TEST_MARK", mark)
        monkeypatch.chdir(folder)
        with ProcessPoolExecutor(
            1,
            mp_context=start_method(),
            initializer=_adopt_environment,
            initargs=(dict(os.environ),),
        ) as pool:
            assert pool.submit(_seen).result() == (mark, str(folder))
