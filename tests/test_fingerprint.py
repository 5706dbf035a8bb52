"""What invalidates stored cells: the harness code on the evaluation path and each learner's own
code and distribution, but not report-only code, nor another learner's code."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import provenance
from bench.protocol.learner import Learner


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A plug-in package on sys.path: its learner module imports a helper module of its own."""
    package = tmp_path / "myplugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("SCALE = 1.0\n")
    (package / "unrelated.py").write_text("X = 1\n")
    (package / "model.py").write_text(
        textwrap.dedent(
            """
            from bench.protocol.learner import Learner
            from .helpers import SCALE

            class Plugged(Learner):
                def fit(self, train, *, rng, device, budget=None): ...
                def predict(self, tasks): ...
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    for name in [m for m in sys.modules if m.startswith("myplugin")]:
        del sys.modules[name]


def plugged() -> type[Learner]:
    importlib.invalidate_caches()
    return importlib.import_module("myplugin.model").Plugged  # type: ignore[no-any-return]


def test_a_learner_fingerprint_follows_its_own_module_and_what_it_imports(plugin: Path) -> None:
    before = provenance.learner_fingerprint(plugged())
    (plugin / "unrelated.py").write_text("X = 2\n")
    assert provenance.learner_fingerprint(plugged()) == before  # not imported by the learner
    (plugin / "helpers.py").write_text("SCALE = 2.0\n")
    after_helper = provenance.learner_fingerprint(plugged())
    assert after_helper != before  # imported relatively by the learner's module
    (plugin / "model.py").write_text((plugin / "model.py").read_text() + "\n# edited\n")
    assert provenance.learner_fingerprint(plugged()) not in (before, after_helper)


def test_built_in_learners_have_their_own_fingerprints() -> None:
    from bench.protocol.learner_registry import learner_class

    prints = {name: provenance.learner_fingerprint(learner_class(name)) for name in ("mf", "maml")}
    assert prints["mf"] != prints["maml"]
    closure = {p.name for p in provenance._module_closure(learner_class("mf").__module__)}
    assert "mf.py" in closure and "melu.py" not in closure


def test_report_code_is_not_on_the_evaluation_path() -> None:
    files = {p.relative_to(provenance.PROJECT_ROOT).as_posix() for p in provenance._source_files()}
    assert "bench/evaluation/metrics.py" in files
    assert "bench/engine/runner.py" in files
    assert "bench/protocol/cold_start.py" in files
    assert not any(f.startswith(("bench/results/", "bench/cli/")) for f in files)
    assert "bench/api.py" not in files and "bench/errors.py" in files


def test_a_learner_read_from_its_declaration_has_its_imported_class_fingerprint(
    plugin: Path,
) -> None:
    declared = provenance.code_of("myplugin.model", "Plugged", [])
    assert not [m for m in sys.modules if m.startswith("myplugin")]  # read, not imported
    assert declared == provenance.learner_fingerprint(plugged())
    (plugin / "helpers.py").write_text("SCALE = 3.0\n")
    assert provenance.code_of("myplugin.model", "Plugged", []) != declared


def test_a_module_is_found_without_running_the_packages_above_it(tmp_path: Path) -> None:
    from bench.registry import module_source

    inner = tmp_path / "explosive" / "inner"
    inner.mkdir(parents=True)
    (tmp_path / "explosive" / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (inner / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (inner / "leaf.py").write_text("X = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        assert module_source("explosive.inner.leaf") == inner / "leaf.py"
        assert module_source("explosive.inner") == inner / "__init__.py"
        assert module_source("explosive.inner.missing") is None
        assert module_source("explosive.inner.leaf.X") is None  # an attribute, not a module
        assert "explosive" not in sys.modules
    finally:
        sys.path.remove(str(tmp_path))
