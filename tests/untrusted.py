"""Helpers for the tests of files from elsewhere: run a command in this process and tell a clean
refusal (exit 2, one error line) from a traceback."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

from bench.cli import main

FAST_RUN = ("run", "--suite", "ci", "--learners", "global-mean", "--seeds", "1", "--no-progress")
# One learner, one seed, one scenario and no floors: one cell.
FAST_RUN += ("--scenarios", "warm", "--no-floors")


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def error(self) -> str:
        """The one error line of a refusal (asserting that it is one line and the last)."""
        lines = self.err.rstrip("\n").splitlines()
        errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
        assert self.code == 2, (self.code, self.err[-2000:])
        assert errors == [len(lines) - 1], self.err[-2000:]
        return lines[-1]


def bench(*args: str | Path) -> Outcome:
    """``python -m bench ARGS`` in this process: an exception other than the CLI's own handling
    escapes and fails the test, as a traceback would fail a user."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Outcome(code, out.getvalue(), err.getvalue())


def refused(outcome: Outcome, *fragments: str) -> str:
    """Assert a clean refusal whose line holds every fragment; return the line."""
    line = outcome.error
    for fragment in fragments:
        assert fragment in line, line
    return line
