"""Commands that need no model do not load torch: ``import bench``, the CLI's parser and
``bench ls`` stay light, and learners are described from their sources exactly as their
docstrings read once imported."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.protocol.learner_registry import LEARNERS
from bench.registry import first_doc_line, static_doc_line


def modules_after(code: str) -> set[str]:
    script = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    return set(done.stdout.split())


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
