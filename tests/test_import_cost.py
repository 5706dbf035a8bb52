"""Commands that need no model do not load torch: ``import bench``, the CLI's parser and
``bench ls`` stay light, and learners are described from their sources exactly as their
docstrings read once imported."""

from __future__ import annotations

from pathlib import Path

from bench.protocol.learner_registry import LEARNERS
from bench.registry import first_doc_line, static_doc_line

from shared import modules_after, run_python


def test_listing_and_the_parser_do_not_import_torch() -> None:
    for code in (
        "import bench",
        "import bench.cli",
        "import contextlib, io\nfrom bench.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()): main(['ls'])",
    ):
        loaded = modules_after(code)
        assert "bench" in loaded and "torch" not in loaded and "pandas" not in loaded, code


def test_learners_are_described_from_source_as_from_the_imported_class() -> None:
    for name in LEARNERS.names():
        target = LEARNERS._entries[name]
        if isinstance(target, str):
            assert static_doc_line(target) == first_doc_line(LEARNERS.get(name)), name
    assert static_doc_line("bench.no_such_module:X") is None
    assert static_doc_line("bench.registry:NOT_DEFINED_HERE") is None


def test_a_run_whose_every_cell_is_stored_loads_no_learner_and_no_torch(tmp_path: Path) -> None:
    suite = tmp_path / "small.toml"
    suite.write_text(
        'name = "small"\nlearners = ["item-mean", "mf"]\nseeds = 1\n'
        '[protocol]\nname = "cold-random"\nsupport_sizes = [1, 3]\nquery_size = 4\n'
        "[dataset.synthetic]\nn_users = 120\nn_items = 80\n[learner.mf]\niterations = 2\n"
    )
    args = ["run", "--suite", str(suite), "--store", str(tmp_path / "s.sqlite"), "--no-progress"]
    code = (
        "import contextlib, io, json\nfrom bench.cli import main\nout = io.StringIO()\n"
        f"with contextlib.redirect_stdout(out): assert main({args!r}) == 0\n"
        "print(json.dumps(out.getvalue()))"
    )
    env = {"BENCH_CACHE_DIR": str(tmp_path / "cache")}
    first = run_python(code, env)
    second = run_python(code, env)
    assert "torch" in first.loaded and "learners.mf" in first.loaded  # it computed
    assert "torch" not in second.loaded, "a run that reuses every cell imported torch"
    assert "scipy" not in second.loaded, "a run that reuses every cell imported scipy"
    assert (
        not {"learners.mf", "learners.baselines", "bench.evaluation.floor_learners"} & second.loaded
    )
    assert "0 cell(s) computed, 4 reused" in second.output  # mf, item-mean, two floors
    assert tables(second.output) == tables(first.output)


def test_learner_fingerprints_and_config_hashes_are_read_without_importing(
    tmp_path: Path,
) -> None:
    code = (
        "from bench.engine.learner_keys import learner_code, learner_config_hash\n"
        "from bench.protocol.learner_registry import LEARNERS\n"
        "prints = {n: learner_code(n) for n in LEARNERS.names()}\n"
        "hashes = {n: learner_config_hash(n, None) for n in ('item-mean', 'maml')}\n"
        "import json\nprint(json.dumps([prints, hashes]))"
    )
    env = {"BENCH_CACHE_DIR": str(tmp_path / "cache")}
    run_python(code, env)  # the first build of each config imports its learner
    again = run_python(code, env)
    assert "torch" not in again.loaded
    assert not {m for m in again.loaded if m == "learners" or m.startswith("learners.")}
    prints, hashes = again.output
    assert len(set(prints.values())) == len(prints)  # every learner its own fingerprint
    from bench.protocol.learner_registry import make_learner

    assert hashes == {n: make_learner(n).config_hash for n in hashes}


def tables(output: str) -> list[str]:
    """The printed result, without the line naming the run (a new id each time)."""
    return [line for line in output.splitlines() if not line.startswith("run ")]
