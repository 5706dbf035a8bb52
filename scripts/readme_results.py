"""Write the README's results tables from the committed leaderboard, so that every published
number comes from one store.

The leaderboard's ``reports/leaderboard.csv`` is written by the same ``bench report`` as
``reports/leaderboard.md``, from the store ``make leaderboard`` fills; this script renders its
``ml-100k`` rows (RMSE and NDCG@3 per learner and scenario, ▲/▼ against ``mf``, bold for the best
of a column) between the README's ``results:begin`` and ``results:end`` markers.

Usage: python scripts/readme_results.py [--check]   (--check: exit 1 if the README differs)
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LEADERBOARD = ROOT / "reports" / "leaderboard.csv"
BEGIN = "<!-- results:begin (made by scripts/readme_results.py from reports/leaderboard.csv) -->"
END = "<!-- results:end -->"
DATASET = "ml-100k"
METRICS = {"rmse": "RMSE", "ndcg@3": "NDCG@3"}
SCENARIOS = ("warm", "user_cold", "item_cold", "user_item_cold")
MARKS = {"better": " ▲", "worse": " ▼"}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["dataset"] == DATASET]


def cell_text(row: dict[str, str]) -> str:
    """``mean ± half-width`` to three decimals, bold when best, then the mark against ``mf``."""
    value = f"{float(row['mean']):.3f}"
    if row["half_width"] not in ("", "nan", "NaN"):
        value += f" ± {float(row['half_width']):.3f}"
    if row["is_best"] == "True":
        value = f"**{value}**"
    return value + MARKS.get(row["vs_reference_verdict"], "")


def render(rows: list[dict[str, str]]) -> str:
    """The block between the markers: one table per metric, learners in the leaderboard's
    order."""
    learners: list[str] = []
    for row in rows:
        if row["learner"] not in learners:
            learners.append(row["learner"])
    by_key = {(r["metric"], r["learner"], r["scenario"]): r for r in rows}
    blocks = []
    for metric, title in METRICS.items():
        lines = [f"| {title} | " + " | ".join(f"`{s}`" for s in SCENARIOS) + " |"]
        lines.append("|---" * (len(SCENARIOS) + 1) + "|")
        for learner in learners:
            cells = []
            for scenario in SCENARIOS:
                row = by_key.get((metric, learner, scenario))
                cells.append(cell_text(row) if row else "–")
            lines.append(f"| `{learner}` | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def rewritten(readme: str, block: str) -> str:
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{README}: the markers {BEGIN!r} and {END!r} are missing")
    return readme[: start + len(BEGIN)] + "\n" + block + "\n" + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README differs")
    args = parser.parse_args(argv)
    readme = README.read_text(encoding="utf-8")
    wanted = rewritten(readme, render(_rows(LEADERBOARD)))
    if args.check:
        if wanted != readme:
            print(f"{README}: its results tables differ from {LEADERBOARD}", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
