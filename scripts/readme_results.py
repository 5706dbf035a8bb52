"""Write the README's results block from the committed leaderboard, so that every published
number and every sentence about them comes from one store.

``reports/leaderboard.json`` is written by the same ``bench report`` as ``reports/leaderboard.md``,
from the store ``make leaderboard`` fills. This script renders, between the README's
``results:begin`` and ``results:end`` markers:

- the runs the numbers come from (suite, run, commit, wall time);
- ``ml100k-cold`` at k = all: RMSE, in-query NDCG@3, full-ranking Recall@20 and NDCG@20 per
  learner and scenario (▲/▼ against ``mf``, bold for the best of a column), and one generated
  sentence per metric and scenario saying which learner is best and how it compares with ``mf``;
- ``ml100k-recbole-metarec``: P@5 / nDCG@5 / MRR@5 per learner with its floor marks, and which
  learners clear the floors;
- ``ml100k-robust``: the verdicts of the suite's robustness rule;
- the configs each search chose.

Usage: python scripts/readme_results.py [--check]   (--check: exit 1 if the README differs)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LEADERBOARD = ROOT / "reports" / "leaderboard.json"
PUBLISHED = ROOT / "bench" / "published" / "recbole-metarec-ml100k.toml"
BEGIN = "<!-- results:begin (made by scripts/readme_results.py from reports/leaderboard.json) -->"
END = "<!-- results:end -->"
DATASET = "ml-100k"
COLD_METRICS = {
    "rmse": "RMSE",
    "ndcg@3": "NDCG@3 (query)",
    "recall@20": "Recall@20 (full)",
    "ndcg@20/full": "NDCG@20 (full)",
}
SCENARIOS = ("warm", "user_cold", "item_cold", "user_item_cold")
RECBOLE_METRICS = {"precision@5/query": "P@5", "ndcg@5": "nDCG@5", "mrr@5/query": "MRR@5"}
MARKS = {"better": " ▲", "worse": " ▼"}
FLOORS = ("floor-random", "floor-constant")

Row = dict[str, Any]


def _true(value: Any) -> bool:
    return value is True or value == "True"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def cell_text(row: Row) -> str:
    """``mean ± half-width`` to three decimals, bold when best, then the mark against ``mf``."""
    value = f"{float(row['mean']):.3f}"
    if _finite(row.get("half_width")):
        value += f" ± {float(row['half_width']):.3f}"
    if _true(row.get("is_best")):
        value = f"**{value}**"
    return value + MARKS.get(str(row.get("vs_reference_verdict")), "")


def _order(rows: Iterable[Row]) -> list[str]:
    """Learners in the page's order, the floors last (every other row is read against them)."""
    names: list[str] = []
    for row in rows:
        if row["learner"] not in names:
            names.append(row["learner"])
    return [n for n in names if n not in FLOORS] + [n for n in names if n in FLOORS]


def cold_rows(summary: list[Row]) -> list[Row]:
    """The ``ml100k-cold`` rows: ML-100K under MeLU's protocol at k = all."""
    return [
        r
        for r in summary
        if r["dataset"] == DATASET and str(r["protocol"]).startswith("melu") and r["k"] == "all"
    ]


def cold_tables(rows: list[Row]) -> list[str]:
    by_key = {(r["metric"], r["learner"], r["scenario"]): r for r in rows}
    learners = _order(rows)
    blocks = []
    for metric, title in COLD_METRICS.items():
        if not any(r["metric"] == metric for r in rows):
            continue
        lines = [f"| {title} | " + " | ".join(f"`{s}`" for s in SCENARIOS) + " |"]
        lines.append("|---" * (len(SCENARIOS) + 1) + "|")
        for learner in learners:
            cells = [by_key.get((metric, learner, s)) for s in SCENARIOS]
            if not any(cells):
                continue
            text = [cell_text(c) if c else "–" for c in cells]
            lines.append(f"| `{learner}` | " + " | ".join(text) + " |")
        blocks.append("\n".join(lines))
    return blocks


def cold_sentences(rows: list[Row]) -> list[str]:
    """Per metric and scenario: the best learner and how it stands against ``mf``."""
    out = []
    for metric, title in COLD_METRICS.items():
        parts = []
        for scenario in SCENARIOS:
            here = [r for r in rows if r["metric"] == metric and r["scenario"] == scenario]
            best = [r for r in here if _true(r.get("is_best"))]
            if not best:
                continue
            row = best[0]
            verdict = str(row.get("vs_reference_verdict"))
            if row["learner"] == "mf":
                against = "the reference"
            elif verdict == "better":
                against = "significantly better than `mf`"
            elif verdict == "worse":
                against = "yet significantly worse than `mf` task by task"
            else:
                against = "not significantly different from `mf`"
            ties = [
                f"`{r['learner']}`"
                for r in here
                if _true(r.get("not_worse")) and r["learner"] != row["learner"]
            ]
            tie_text = f" (not significantly worse: {', '.join(ties)})" if ties else ""
            parts.append(
                f"`{scenario}`: `{row['learner']}` ({float(row['mean']):.3f}), {against}{tie_text}"
            )
        if parts:
            out.append(f"- **{title}** — " + "; ".join(parts) + ".")
    return out


def recbole_block(summary: list[Row]) -> list[str]:
    rows = [
        r
        for r in summary
        if r["dataset"] == DATASET and str(r["protocol"]).startswith("recbole-metarec")
    ]
    if not rows:
        return []
    by_key = {(r["metric"], r["learner"]): r for r in rows}
    published = tomllib.loads(PUBLISHED.read_text(encoding="utf-8"))
    printed = published.get("rows", {})
    learners = _order(rows)
    titles = list(RECBOLE_METRICS.values())
    lines = [
        "| learner | "
        + " | ".join(titles)
        + " | at floor on | "
        + " | ".join(f"{t} published" for t in titles)
        + " |"
    ]
    lines.append("|---" * (2 * len(titles) + 2) + "|")
    clear, at_floor = [], []
    for learner in learners:
        cells, floored = [], []
        for metric, title in RECBOLE_METRICS.items():
            row = by_key.get((metric, learner))
            cells.append(cell_text(row) if row else "–")
            if row and _true(row.get("at_floor")):
                floored.append(title)
        theirs = printed.get(learner, {})
        shown = [f"{theirs[m]:.4f}" if m in theirs else "–" for m in RECBOLE_METRICS]
        lines.append(
            f"| `{learner}` | "
            + " | ".join(cells)
            + f" | {', '.join(floored) or '–'} | "
            + " | ".join(shown)
            + " |"
        )
        if learner not in FLOORS:
            (at_floor if floored else clear).append(f"`{learner}`")
    notes = [
        f"- published `{name}`: {row['note']}" for name, row in printed.items() if row.get("note")
    ]
    seeds = max(int(r.get("n_seeds") or 0) for r in rows)
    text = (
        f"Over {seeds} seeds, above both floors on every one of these metrics: "
        f"{', '.join(clear) or 'none'}; at floor on at least one: {', '.join(at_floor) or 'none'}."
    )
    source = f"Published: {published.get('source', '')}; as printed, with what rerunning it showed:"
    return ["\n".join(lines), text, source, "\n".join(notes)]


def robust_block(payload: dict[str, Any]) -> list[str]:
    """The suite's robustness verdicts: which learner was *more robust* than which, per
    scenario, support size and kind, and how often a meta-learner beat a baseline or the
    reverse."""
    verdicts = [
        v
        for v in payload.get("robustness_verdicts") or []
        if v.get("learner") not in FLOORS and v.get("other") not in FLOORS
    ]
    if not verdicts:
        return []
    robust = [v for v in verdicts if v.get("verdict") == "more robust"]
    by_line: dict[tuple[str, str], list[str]] = {}
    for v in robust:
        key = (str(v["scenario"]), str(v["k"]))
        by_line.setdefault(key, []).append(f"{v['kind']}: `{v['learner']}` over `{v['other']}`")
    meta_won = sum(1 for v in robust if _is_meta(v["learner"]) and not _is_meta(v["other"]))
    base_won = sum(1 for v in robust if not _is_meta(v["learner"]) and _is_meta(v["other"]))
    lead = (
        f"The suite's rule (fixed before the run) finds a learner *more robust* than another in "
        f"{len(robust)} of {len(verdicts)} ordered pairs per scenario, support size and kind of "
        f"corruption: a meta-learner over a baseline in {meta_won}, a baseline over a "
        f"meta-learner in {base_won}."
    )
    lines = [
        f"- `{scenario}`, k={k}: " + "; ".join(pairs)
        for (scenario, k), pairs in sorted(by_line.items())
    ]
    return [lead, *(["\n".join(lines)] if lines else [])]


BASELINES = (
    "oracle", "global-mean", "item-mean", "popularity", "mf", "mf-huber", "fine-tune",
    "content-map", "dropoutnet",
)  # fmt: skip
"""The learners that are not meta-learners (as in the leaderboard's verdicts)."""


def _is_meta(learner: str) -> bool:
    name = learner.split("~", 1)[0]
    return name not in BASELINES and name not in FLOORS


def explanations_block(payload: dict[str, Any]) -> list[str]:
    """The sanity checks of field attributions, and the page's verdict on the claim."""
    entries = payload.get("explanations") or []
    if not entries:
        return []
    lines = [
        "| learner | checked | randomisation ρ (max) | deletion gain | stability ρ | top field |",
        "|---|---|---|---|---|---|",
    ]
    for e in sorted(entries, key=lambda e: (_is_meta(e["learner"]), e["learner"])):
        randomised = [v for v in (e.get("randomisation") or {}).values() if _finite(v)]
        gain = (e.get("deletion") or {}).get("gain")
        stable = (e.get("stability") or {}).get("ranking")
        top = (e.get("top_fields") or [{}])[0].get("field", "–")
        lines.append(
            f"| `{e['learner']}` | {'yes' if e.get('checked') else 'no'} | "
            f"{_num(max(randomised) if randomised else None)} | {_num(gain, 3)} | "
            f"{_num(stable)} | {top} |"
        )
    return ["\n".join(lines), str(payload.get("explanations_verdict") or "")]


def _num(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if _finite(value) else "–"


def runs_line(payload: dict[str, Any]) -> str:
    parts = []
    for run in payload.get("runs", []):
        provenance = run.get("provenance") or {}
        git = provenance.get("git") if isinstance(provenance.get("git"), dict) else {}
        commit = str(git.get("commit") or "?")[:7] + (
            " (with local changes)" if git.get("dirty") else ""
        )
        started, finished = run.get("started_at"), run.get("finished_at")
        took = ""
        if started and finished:
            seconds = (
                datetime.fromisoformat(str(finished)) - datetime.fromisoformat(str(started))
            ).total_seconds()
            took = f", {seconds / 60:.0f} min" if seconds >= 60 else f", {seconds:.0f} s"
        parts.append(f"`{run['suite']}` (run `{run['run_id']}`, commit `{commit}`{took})")
    return "From the finished runs " + ", ".join(parts) + "."


def configs_block(payload: dict[str, Any], rows: list[Row]) -> list[str]:
    cold = {r["learner"] for r in rows}
    chosen: dict[str, dict[int, str]] = {}
    for tuning in payload.get("tunings", []):
        if tuning.get("dataset") != DATASET or tuning.get("learner") not in cold:
            continue
        config = tuning.get("chosen") or {}
        text = ", ".join(f"{k}={_short(v)}" for k, v in sorted(config.items()))
        chosen.setdefault(tuning["learner"], {})[int(tuning["seed"])] = text
    if not chosen:
        return []
    seeds = sorted({s for by_seed in chosen.values() for s in by_seed})
    lines = ["| learner | " + " | ".join(f"seed {s}" for s in seeds) + " |"]
    lines.append("|---" * (len(seeds) + 1) + "|")
    for learner in [n for n in _order(rows) if n in chosen]:
        lines.append(
            f"| `{learner}` | " + " | ".join(chosen[learner].get(s, "–") for s in seeds) + " |"
        )
    return ["The configs each search chose (`ml100k-cold`):", "\n".join(lines)]


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def render(payload: dict[str, Any]) -> str:
    """The block between the markers."""
    summary = payload["summary"]
    rows = cold_rows(summary)
    parts = [runs_line(payload)]
    if payload.get("partial"):
        parts.append("⚠ Partial: built from runs that did not finish.")
    parts.append("### MovieLens 100K under MeLU's protocol (`ml100k-cold`, k = all)")
    parts += cold_tables(rows)
    parts.append("What the tables show, per metric and scenario (best mean first):")
    parts.append("\n".join(cold_sentences(rows)))
    recbole = recbole_block(summary)
    if recbole:
        parts.append("### RecBole-MetaRec's protocol (`ml100k-recbole-metarec`)")
        parts += recbole
    robust = robust_block(payload)
    if robust:
        parts.append("### Corrupted support sets (`ml100k-robust`, RMSE)")
        parts += robust
    explained = explanations_block(payload)
    if explained:
        parts.append("### Explanations (`ml100k-cold`, user_cold, field attributions)")
        parts += explained
    parts += configs_block(payload, rows)
    return "\n\n".join(parts)


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
    payload = json.loads(LEADERBOARD.read_text(encoding="utf-8"))
    wanted = rewritten(readme, render(payload))
    if args.check:
        if wanted != readme:
            print(f"{README}: its results block differs from {LEADERBOARD}", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
