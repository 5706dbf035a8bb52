"""Claims on cells: a run never computes a cell that another live run holds, takes over a claim
whose owner died or whose lease ran out, renews its own leases while it works, and releases them."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

import bench.engine.runner
from bench.engine.cells import iter_cells
from bench.engine.runner import run_suite
from bench.processes import start_time
from bench.protocol.learner_registry import LEARNERS
from bench.results.store import SCHEMA_VERSION, ResultStore
from learners.baselines import GlobalMean

from executor_grid import grid
from shared import InAThread, NeverApplicable, held_lock

OTHER = "other-run"


def plant_claim(
    path: Path, cell_key: str, *, pid: int, started: str | None, expires_in: float
) -> None:
    """A claim of run ``OTHER``, written as another process would."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?,?,?)",
            (cell_key, OTHER, socket.gethostname(), pid, started, "then", time.time() + expires_in),
        )


def dead_pid() -> tuple[int, str | None]:
    """The pid and start time of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    started = start_time(child.pid)
    child.wait()
    return child.pid, started


def alive() -> tuple[int, str | None]:
    return os.getpid(), start_time(os.getpid())


def hold_as_other_run(path: Path, cell_key: str) -> None:
    """A live claim of run ``OTHER`` on the cell for ten minutes (this process stands for it)."""
    pid, started = alive()
    plant_claim(path, cell_key, pid=pid, started=started, expires_in=600)


def one_learner() -> Any:
    return grid(learners=["global-mean"], seeds=1)


def cell_keys(suite: Any) -> dict[tuple[str, int], str]:
    """The key of each of the suite's cells, by learner and seed."""
    from bench.data.cards import load_dataset
    from bench.protocol import make_protocol
    from bench.provenance import code_fingerprint

    protocol = make_protocol(suite.protocol["name"], suite.protocol)
    datasets = [load_dataset(n, suite.dataset.get(n)) for n in suite.datasets]
    cells = iter_cells(datasets, protocol, suite, code_fingerprint())
    return {(cell.learner, cell.seed): cell.key for cell in cells}


def the_cell_key(suite: Any) -> str:
    (key,) = cell_keys(suite).values()
    return key


def store_as_another_run(path: Path, source: Path, cell_key: str) -> None:
    """Copy a finished cell from the store at ``source`` into the store at ``path``, as the run
    that computed it would write it there."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("ATTACH DATABASE ? AS src", (str(source),))
        with conn:
            conn.execute("INSERT OR IGNORE INTO runs SELECT * FROM src.runs")
            for table in ("cells", "evaluations", "metrics", "timings"):
                conn.execute(
                    f"INSERT INTO {table} SELECT * FROM src.{table} WHERE cell_key=?", (cell_key,)
                )
    finally:
        conn.close()


def other_run_lets_go(path: Path) -> None:
    """Run ``OTHER`` drops its claims, unfinished."""
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM claims WHERE owner=?", (OTHER,))


if "test-never" not in LEARNERS:
    LEARNERS.register("test-never", NeverApplicable)


# The store's claim operations -----------------------------------------------------------------


def test_a_claim_is_granted_once_and_refused_to_others_while_live(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        assert store.claim("cell", "run-a", lease_s=60) is None
        assert store.claim("cell", "run-a", lease_s=60) is None  # its own claim, renewed
        holder = store.claim("cell", "run-b", lease_s=60)
        assert holder is not None and holder.owner == "run-a" and holder.pid == os.getpid()
        assert "run run-a" in holder.holder and f"pid {os.getpid()}" in holder.holder
        store.release_claims("run-a", ["cell"])
        assert store.claim("cell", "run-b", lease_s=60) is None
        (claim,) = store.claims()
        assert claim.owner == "run-b" and claim.expires_at > time.time() + 50


@pytest.mark.parametrize(
    ("owner", "expires_in"),
    [("dead", 60.0), ("alive", -1.0)],
    ids=["its process died", "its lease expired"],
)
def test_a_dead_claim_is_taken_over(tmp_path: Path, owner: str, expires_in: float) -> None:
    path = tmp_path / "s.sqlite"
    pid, started = dead_pid() if owner == "dead" else alive()
    with ResultStore(path) as store:
        plant_claim(path, "cell", pid=pid, started=started, expires_in=expires_in)
        assert store.claim("cell", "run-b", lease_s=60) is None
        assert [c.owner for c in store.claims()] == ["run-b"]


def test_renewal_moves_only_the_owners_claims(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.claim("a", "run-a", lease_s=1)
        store.claim("b", "run-b", lease_s=1)
        store.renew_claims("run-a", ["a", "b"], lease_s=100)
        expiry = {c.cell_key: c.expires_at for c in store.claims()}
        assert expiry["a"] > time.time() + 90 and expiry["b"] < time.time() + 2
        store.release_claims("run-a")
        assert [c.cell_key for c in store.claims()] == ["b"]


# The runner and claims ----------------------------------------------------------------------


def test_a_cell_another_live_run_holds_is_not_computed(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    suite = grid(learners=["global-mean", "item-mean"], seeds=1)
    held_key = the_cell_key(grid(learners=["item-mean"], seeds=1))
    messages: list[str] = []
    with ResultStore(path) as store:
        hold_as_other_run(path, held_key)
        outcome = run_suite(suite, store, progress=False, claim_wait_s=0, log=messages.append)
        learners = {r["learner"] for r in store.metric_rows()}
        claims = store.claims()
    assert (outcome.computed, outcome.exit_code) == (1, 0)
    assert learners == {"global-mean"}
    ((description, holder),) = outcome.held
    assert "item-mean" in description and f"run {OTHER}" in holder
    assert outcome.waited == outcome.held
    assert any("waiting for run other-run" in m for m in messages)
    assert [(c.cell_key, c.owner) for c in claims] == [(held_key, OTHER)]  # ours released


@pytest.mark.parametrize("claim_wait_s", [None, 60.0], ids=["no limit", "a limit not reached"])
def test_a_run_waits_for_a_held_cell_and_computes_it_when_released(
    tmp_path: Path, claim_wait_s: float | None
) -> None:
    path = tmp_path / "s.sqlite"
    suite = grid(learners=["global-mean", "item-mean", "mf"], seeds=1)
    keys = cell_keys(suite)
    with ResultStore(path) as store:
        held = keys["global-mean", 0]  # the first cell, so that others are queued behind it
        hold_as_other_run(path, held)

        seen = threading.Event()

        def release_once_waited_for() -> None:
            # Released a second after this run says it waits: never before it reaches the cell,
            # however long its start takes on a busy machine.
            if seen.wait(timeout=300):
                time.sleep(1.0)
            other_run_lets_go(path)

        def log(message: str) -> None:
            if message.startswith("waiting for"):
                seen.set()

        releaser = threading.Thread(target=release_once_waited_for)
        releaser.start()
        outcome = run_suite(suite, store, progress=False, log=log, claim_wait_s=claim_wait_s)
        releaser.join()
        assert store.claims() == []
    assert (outcome.computed, outcome.reused, len(outcome.waited), outcome.held) == (3, 0, 1, [])
    assert outcome.cell_keys == list(keys.values())  # each once, however often looked at


class LetGoOnCue(ResultStore):
    """A store where run ``OTHER`` drops its claims when this run claims the cell ``cue``."""

    def __init__(self, path: Path, cue: str) -> None:
        super().__init__(path)
        self.cue = cue

    def claim(self, cell_key: str, owner: str, lease_s: float) -> Any:
        if cell_key == self.cue:
            other_run_lets_go(self.path)
        return super().claim(cell_key, owner, lease_s)


def test_a_cell_let_go_while_others_are_queued_is_computed_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    suite = grid(learners=["global-mean", "item-mean", "mf"], seeds=1)
    keys = cell_keys(suite)
    with LetGoOnCue(path, cue=keys["item-mean", 0]) as store:
        held = keys["global-mean", 0]
        hold_as_other_run(path, held)
        outcome = run_suite(suite, store, progress=False, log=lambda _: None)
        computed = sorted(r["cell_key"] for r in store.cell_rows())
    assert (outcome.computed, outcome.reused, len(outcome.waited)) == (3, 0, 1)
    assert computed == sorted(keys.values())


def test_a_capped_wait_ends_at_its_cap_not_at_the_next_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        bench.engine.runner, "CLAIM_POLL_S", 60.0
    )  # held cells looked at each minute
    path = tmp_path / "s.sqlite"
    key = the_cell_key(one_learner())
    with ResultStore(path) as store:
        hold_as_other_run(path, key)
        started = time.monotonic()
        outcome = run_suite(
            one_learner(), store, progress=False, claim_wait_s=0.2, log=lambda _: None
        )
        elapsed = time.monotonic() - started
    assert len(outcome.held) == 1
    assert elapsed < 30  # it gave up after its 0.2 s, not after the minute's pause


def test_a_held_cell_does_not_hold_up_the_cells_after_it(tmp_path: Path) -> None:
    """Without waiting, the cells queued after a held one are still skipped, reused or computed."""
    path = tmp_path / "s.sqlite"
    suite = grid(learners=["item-mean", "test-never", "global-mean", "mf"], seeds=1)
    held_key = cell_keys(suite)["item-mean", 0]
    with ResultStore(path) as store:
        run_suite(one_learner(), store, progress=False)  # global-mean's cell, to be reused
        hold_as_other_run(path, held_key)
        outcome = run_suite(suite, store, progress=False, claim_wait_s=0, log=lambda _: None)
        learners = {r["learner"] for r in store.metric_rows(outcome.cell_keys)}
    assert (outcome.computed, outcome.reused, len(outcome.skipped)) == (1, 1, 1)
    assert [d.split(" / ")[2] for d, _ in outcome.held] == ["item-mean"]
    assert learners == {"global-mean", "mf"}


class FinishedMeanwhile(ResultStore):
    """A store where another run writes some cells (copied from ``source``) after this run found
    them missing and just before its claim on them; it notes this run's claims at each claim.
    With ``locked_releases`` another process holds the store's lock whenever a cell is released."""

    def __init__(
        self, path: Path, source: Path, keys: set[str], locked_releases: bool = False, **kw: Any
    ) -> None:
        super().__init__(path, **kw)
        self.source, self.keys, self.locked_releases = source, keys, locked_releases
        self.claimed: dict[str, list[str]] = {}

    def release_claims(self, owner: str, cell_keys: Any = None) -> None:
        if self.locked_releases and cell_keys is not None:
            with held_lock(self.path):
                return super().release_claims(owner, cell_keys)
        return super().release_claims(owner, cell_keys)

    def claim(self, cell_key: str, owner: str, lease_s: float) -> Any:
        self.claimed[cell_key] = [c.cell_key for c in self.claims() if c.owner == owner]
        if cell_key in self.keys:
            store_as_another_run(self.path, self.source, cell_key)
        return super().claim(cell_key, owner, lease_s)


def test_a_cell_finished_by_another_run_just_before_the_claim_is_reused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    suite = grid(learners=["item-mean", "global-mean", "mf"], seeds=2)
    keys = cell_keys(suite)
    with ResultStore(tmp_path / "elsewhere.sqlite") as other:
        raced = set(run_suite(grid(learners=["global-mean"]), other, progress=False).cell_keys)
    store = FinishedMeanwhile(path, tmp_path / "elsewhere.sqlite", raced)
    with store:
        held = keys["item-mean", 0]
        hold_as_other_run(path, held)
        outcome = run_suite(
            suite, store, progress=False, claim_wait_s=0, log=lambda _: None, executor=InAThread()
        )
        claims = [(c.cell_key, c.owner) for c in store.claims()]
    assert (outcome.computed, outcome.reused, len(outcome.held)) == (3, 2, 1)
    assert raced == {keys["global-mean", 0], keys["global-mean", 1]}
    # The cell reused is released at once; the one still computed meanwhile keeps its claim.
    assert store.claimed[keys["mf", 1]] == [keys["item-mean", 1]]
    assert claims == [(held, OTHER)]


@pytest.mark.usefixtures("short_attempts")
def test_a_claim_that_cannot_be_released_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "elsewhere.sqlite") as other:
        raced = set(run_suite(one_learner(), other, progress=False).cell_keys)
    messages: list[str] = []
    suite = grid(learners=["global-mean", "item-mean"], seeds=1)
    store = FinishedMeanwhile(
        tmp_path / "s.sqlite",
        tmp_path / "elsewhere.sqlite",
        raced,
        locked_releases=True,
        busy_wait_s=0.1,
    )
    with store:
        outcome = run_suite(suite, store, progress=False, log=messages.append)
        claims = store.claims()
    assert (outcome.computed, outcome.reused, outcome.exit_code) == (1, 1, 0)
    locked = f"results store {store.path} stayed locked by another process for 0.1 s"
    note = f"could not release the run's claims (they expire with their lease): {locked}"
    assert messages == [f"{note}; try again when that process has finished"] * 2
    assert claims == []  # released with the rest when the run ends


def test_a_run_reuses_what_the_run_it_waited_for_stored(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    suite = one_learner()
    with ResultStore(tmp_path / "elsewhere.sqlite") as other:
        run_suite(suite, other, progress=False)
    key = the_cell_key(suite)
    with ResultStore(path) as store:
        hold_as_other_run(path, key)

        def finish_later() -> None:  # the other run stores the cell, then drops its claim
            time.sleep(1.0)
            store_as_another_run(path, tmp_path / "elsewhere.sqlite", key)
            with ResultStore(path) as target:
                target.release_claims(OTHER)

        finisher = threading.Thread(target=finish_later)
        finisher.start()
        outcome = run_suite(suite, store, progress=False, log=lambda _: None, fresh=True)
        finisher.join()
    assert (outcome.computed, outcome.reused, len(outcome.waited)) == (0, 1, 1)


def test_a_claim_whose_owner_died_is_taken_over_by_a_run(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    key = the_cell_key(one_learner())
    pid, started = dead_pid()
    with ResultStore(path) as store:
        plant_claim(path, key, pid=pid, started=started, expires_in=600)
        outcome = run_suite(one_learner(), store, progress=False)
        assert store.claims() == []
    assert (outcome.computed, outcome.waited) == (1, [])


class LeaseProbe(GlobalMean):
    """global-mean whose fit outlasts several leases, then reads its own claim's expiry."""

    seen: ClassVar[list[float]] = []
    store: ClassVar[Path | None] = None

    def fit(self, train: Any, **kwargs: Any) -> None:
        time.sleep(1.2)
        assert self.store is not None
        with sqlite3.connect(self.store) as conn:
            LeaseProbe.seen.extend(
                r[0] - time.time() for r in conn.execute("SELECT expires_at FROM claims")
            )
        super().fit(train, **kwargs)


if "test-lease-probe" not in LEARNERS:
    LEARNERS.register("test-lease-probe", LeaseProbe)


def test_a_run_renews_its_lease_while_a_cell_is_computed(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    LeaseProbe.store, LeaseProbe.seen = path, []
    with ResultStore(path) as store:
        outcome = run_suite(
            grid(learners=["test-lease-probe"], seeds=1), store, progress=False, lease_s=0.4
        )
        assert store.claims() == []
    assert outcome.computed == 1
    (left,) = LeaseProbe.seen  # three leases later, the claim is still live
    assert 0 < left <= 0.4


class LeaseBlocker(GlobalMean):
    """global-mean whose fit lets another connection hold the store's write lock for longer than
    one renewal may wait, so a renewal of the run's claim fails meanwhile."""

    store: ClassVar[Path | None] = None

    def fit(self, train: Any, **kwargs: Any) -> None:
        assert self.store is not None
        with held_lock(self.store):
            time.sleep(2.0)  # a renewal waits one SQLite attempt (1 s), then gives up
        super().fit(train, **kwargs)


if "test-lease-blocker" not in LEARNERS:
    LEARNERS.register("test-lease-blocker", LeaseBlocker)


def test_a_renewal_that_fails_is_reported_once_and_the_cell_still_finishes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite"
    LeaseBlocker.store = path
    notes: list[str] = []
    with ResultStore(path) as store:
        outcome = run_suite(
            grid(learners=["test-lease-blocker"], seeds=1),
            store,
            progress=False,
            lease_s=0.4,
            log=notes.append,
        )
        assert store.claims() == []
    assert outcome.computed == 1 and outcome.exit_code == 0
    assert notes == [
        f"could not renew the run's claims on its cells: results store {path} stayed locked by "
        "another process for 0.1 s; try again when that process has finished"
    ]


def test_two_runs_at_once_compute_each_cell_once(tmp_path: Path) -> None:
    suite_file = tmp_path / "two.toml"
    suite_file.write_text(
        textwrap.dedent(
            """
            name = "two"
            learners = ["global-mean", "item-mean", "mf"]
            seeds = 3
            floors = false
            [protocol]
            name = "cold-random"
            support_sizes = [1, 3]
            query_size = 4
            [dataset.synthetic]
            n_users = 80
            n_items = 50
            min_ratings_per_user = 10
            """
        )
    )
    store = tmp_path / "shared.sqlite"
    command = [
        sys.executable, "-m", "bench", "run", "--suite", str(suite_file), "--store", str(store),
        "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in "ab"]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    computed = 0
    for output in outputs:
        (line,) = [x for x in output.splitlines() if x.startswith("run ")]
        computed += int(line.split(": ")[1].split(" cell")[0])
    assert computed == 9, outputs
    with ResultStore(store) as s:
        assert len(s.cell_rows()) == 9 and s.claims() == []


# The schema ----------------------------------------------------------------------------------


def as_version_2(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE claims")
        conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")


def test_a_version_2_store_is_read_as_it_is_and_migrated_when_written(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    run_suite(one_learner(), ResultStore(path), progress=False)
    as_version_2(path)
    with ResultStore(path, mode="read") as old:
        assert len(old.metric_rows()) > 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            "2",
        )
    with ResultStore(path) as store:
        outcome = run_suite(one_learner(), store, progress=False)
        assert outcome.reused == 1 and store.claims() == []
    with sqlite3.connect(path) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    assert version == (str(SCHEMA_VERSION),) and SCHEMA_VERSION == 3
