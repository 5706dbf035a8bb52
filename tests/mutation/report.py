"""Kill rates of the mutation run in ``mutants/``, per core module, against the targets.

Run after ``mutmut run`` (``make mutate`` does both). Counts only the functions in scope below;
a mutant listed in ``equivalent.md`` (same behaviour as the original, so no test can kill it) is
reported apart. Exits 1 when a target is missed or a surviving mutant is neither killed nor
listed as equivalent.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MUTANTS = ROOT / "mutants"
EQUIVALENT = Path(__file__).with_name("equivalent.md")

# name: (files, function patterns in mutmut's mangled names, target kill rate); the Makefile's
# mutate-NAME targets use the same names.
PROTOCOL_FILES = ("__init__", "base", "cold_start", "presets", "predefined")
STORE_FILES = ("__init__", "schema", "opening", "writing", "claiming", "reading")
# The cell key, and resume: the run's set-up and the driver that reuses, claims, recomputes and
# stores each cell.
RUNNER_FUNCTIONS = (
    "x_cell_key",
    "x_run_suite",
    "x__drive",
    "x__needed",
    "x__store_result",
    "x__release",
)
SCOPE: dict[str, tuple[tuple[str, ...], tuple[str, ...], float]] = {
    "metrics": (("bench/evaluation/metrics.py",), ("*",), 0.90),
    "protocol": (tuple(f"bench/protocol/{f}.py" for f in PROTOCOL_FILES), ("*",), 0.90),
    "episodes": (("bench/protocol/episodes.py",), ("*",), 0.0),
    "runner": (("bench/engine/runner.py",), RUNNER_FUNCTIONS, 0.0),
    "store": (tuple(f"bench/results/store/{f}.py" for f in STORE_FILES), ("*",), 0.0),
    "mf": (("learners/mf.py", "learners/als.py"), ("*",), 0.0),
    "maml": (("learners/network/adaptation.py", "learners/network/losses.py"), ("*",), 0.0),
}
LABELS = {"runner": "runner (cell key, resume)", "maml": "maml (inner loop)"}
OVERALL_TARGET = 0.80
KILLED = {1, 3, -11, -9}  # a test failed, pytest broke, or the tests crashed
TIMEOUT = {24, -24, 152, 255, 36}  # the tests ran far past their usual time: caught as well


@dataclass
class Tally:
    killed: int = 0
    timeouts: int = 0
    equivalent: list[str] = field(default_factory=list)
    survived: list[str] = field(default_factory=list)
    unchecked: int = 0

    @property
    def total(self) -> int:
        return self.killed + len(self.equivalent) + len(self.survived)

    @property
    def rate(self) -> float:
        return self.killed / self.total if self.total else float("nan")


def listed_equivalents() -> set[str]:
    if not EQUIVALENT.is_file():
        return set()
    return set(re.findall(r"`([\w.ǁ]+__mutmut_\d+)`", EQUIVALENT.read_text(encoding="utf-8")))


def function_of(mutant: str) -> str:
    return mutant.rsplit(".", 1)[1].rsplit("__mutmut_", 1)[0]


def tally(paths: tuple[str, ...], patterns: tuple[str, ...], equivalent: set[str]) -> Tally:
    results: dict[str, int | None] = {}
    for path in paths:
        meta = MUTANTS / (path + ".meta")
        if not meta.is_file():
            raise SystemExit(f"{meta} not found: run `make mutate` (mutmut run) first")
        results.update(json.loads(meta.read_text())["exit_code_by_key"])
    out = Tally()
    for mutant, code in sorted(results.items()):
        if not any(fnmatch.fnmatchcase(function_of(mutant), p) for p in patterns):
            continue
        if code is None:
            out.unchecked += 1
        elif code in KILLED:
            out.killed += 1
        elif code in TIMEOUT:
            out.killed += 1
            out.timeouts += 1
        elif mutant in equivalent:
            out.equivalent.append(mutant)
        else:
            out.survived.append(mutant)
    return out


def row(label: str, t: Tally, target: float) -> str:
    miss = t.total == 0 or t.rate < target
    return (
        f"{label:<27} {t.total:>7} {t.killed:>7} {t.timeouts:>8} {len(t.equivalent):>6} "
        f"{len(t.survived):>5} {t.rate:>7.1%} {f'{target:.0%}' if target else '':>6}"
        f"{'  MISSED' if miss else ''}"
    )


def main(names: list[str]) -> int:
    unknown = sorted(set(names) - set(SCOPE))
    if unknown:
        raise SystemExit(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(SCOPE)}")
    equivalent = listed_equivalents()
    failed = False
    total = Tally()
    print(
        f"{'module':<27} {'mutants':>7} {'killed':>7} {'timeouts':>8} {'equiv.':>6} {'left':>5} "
        f"{'rate':>7} target"
    )
    for name in names or list(SCOPE):
        paths, patterns, target = SCOPE[name]
        t = tally(paths, patterns, equivalent)
        if t.unchecked:
            print(f"{name}: {t.unchecked} mutant(s) not checked; run `make mutate` again")
            failed = True
        total.killed += t.killed
        total.timeouts += t.timeouts
        total.equivalent += t.equivalent
        total.survived += t.survived
        failed |= t.total == 0 or t.rate < target
        print(row(LABELS.get(name, name), t, target))
    failed |= total.rate < OVERALL_TARGET
    print(row("overall", total, OVERALL_TARGET))
    print("rate: killed (timeouts included) / mutants; equivalent mutants count as not killed")
    if total.survived:
        failed = True
        print("\nsurviving mutants that no test kills and equivalent.md does not explain:")
        for mutant in total.survived:
            print(f"  {mutant}  (mutmut show {mutant})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
