"""Every suite shipped in ``bench/suites`` validates, from Python and from the command line, and
says what it promises: its own name, a protocol that builds, scenarios that protocol offers."""

from __future__ import annotations

import pytest

from bench.cli import main
from bench.engine.suite import SUITE_DIR, SUITES, load_suite
from bench.protocol import make_protocol

SHIPPED = sorted(path.stem for path in SUITE_DIR.glob("*.toml"))


def test_every_suite_file_is_registered() -> None:
    assert SHIPPED and set(SHIPPED) == set(SUITES.names())
    assert {"default", "ci", "meta", "ml100k-warm", "ml100k-cold"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_suite_validates(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    suite = load_suite(name)
    assert suite.name == name and suite.description
    assert suite.learners and suite.datasets and suite.seeds and suite.scenarios
    protocol = make_protocol(suite.protocol["name"], suite.protocol)
    assert set(suite.scenarios) & set(protocol.scenarios)
    assert main(["validate", name]) == 0
    out = capsys.readouterr().out
    assert f"{SUITE_DIR / name}.toml: ok" in out
    assert f"{len(suite.learners)} learner(s)" in out and f"{len(suite.seeds)} seed(s)" in out
