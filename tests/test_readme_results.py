"""The README's results block says what the committed leaderboard says: every number and every
▲/▼ mark of its ``ml100k-cold`` tables is read back from ``reports/leaderboard.md`` (the page) and
must agree, both ways; and the block is what ``scripts/readme_results.py`` writes from
``reports/leaderboard.json``.
"""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType

import pytest

from bench.provenance import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "readme_results.py"
README = PROJECT_ROOT / "README.md"
LEADERBOARD = PROJECT_ROOT / "reports" / "leaderboard.md"
Cells = dict[tuple[str, str, str], tuple[float, float, str]]


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_results", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_cells(text: str) -> Cells:
    """(metric, learner, scenario) -> (mean, half-width, mark) from the README's cold tables."""
    titles = {title: metric for metric, title in script().COLD_METRICS.items()}
    block = text[text.index("<!-- results:begin") : text.index("<!-- results:end -->")]
    cells = {}
    metric, scenarios = "", []
    for line in block.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if line.startswith("| ") and parts[0] in titles:
            metric = titles[parts[0]]
            scenarios = [p.strip("`") for p in parts[1:]]
        elif metric and line.startswith("| `"):
            learner = parts[0].strip("`")
            for scenario, cell in zip(scenarios, parts[1:], strict=True):
                if cell == "–":
                    continue
                found = re.fullmatch(r"\**([\d.]+) ± ([\d.]+)\**( [▲▼])?", cell)
                assert found, cell
                mark = (found.group(3) or "").strip()
                cells[(metric, learner, scenario)] = (float(found[1]), float(found[2]), mark)
        elif not line.startswith("|"):
            metric = ""
    return cells


def leaderboard_cells(metrics: set[str]) -> Cells:
    """The same cells from the page's ml-100k MeLU-protocol tables at k = all (four decimals)."""
    cells = {}
    for section in re.split(r"\n## ", LEADERBOARD.read_text(encoding="utf-8")):
        head = section.splitlines()[0]
        if not head.startswith("ml-100k · melu"):
            continue
        scenario = head.split(" · ")[-1]
        headers: list[str] = []
        for line in section.splitlines():
            if line.startswith("| learner"):
                names = [h.strip().split(" ")[0] for h in line.strip("|").split("|")]
                headers = ["ndcg@3" if h == "ndcg@3/query" else h for h in names]
                headers = headers if "rmse" in headers else []
            elif headers and line.startswith("| ") and not line.startswith("|---"):
                parts = [p.strip() for p in line.strip().strip("|").split("|")]
                row = dict(zip(headers, parts, strict=True))
                if row["k"] != "all":
                    continue
                for metric in metrics & set(headers):
                    found = re.fullmatch(r"[*]*([\d.]+) ±([\d.]+)( [▲▼])?[*]*", row[metric])
                    assert found, row[metric]
                    mark = (found.group(3) or "").strip()
                    cells[(metric, row["learner"], scenario)] = (
                        float(found[1]),
                        float(found[2]),
                        mark,
                    )
            elif not line.startswith("|"):
                headers = []
    return cells


def test_every_readme_number_and_mark_is_the_leaderboards() -> None:
    ours = readme_cells(README.read_text(encoding="utf-8"))
    theirs = leaderboard_cells(set(script().COLD_METRICS))
    assert ours and set(ours) == set(theirs)
    assert {metric for metric, _, _ in ours} == set(script().COLD_METRICS)
    # three decimals here, four on the page: they differ by at most 0.0005 + 0.00005
    for key, (mean, half, mark) in ours.items():
        page_mean, page_half, page_mark = theirs[key]
        assert mean == pytest.approx(page_mean, abs=0.00055), key
        assert half == pytest.approx(page_half, abs=0.00055), key
        assert mark == page_mark, key


def test_the_readme_block_is_what_the_script_writes_from_the_leaderboard() -> None:
    assert script().main(["--check"]) == 0


def test_a_changed_mark_is_caught() -> None:
    """The comparison itself can fail: one unmarked README cell given a ▲."""
    text = README.read_text(encoding="utf-8")
    cells = readme_cells(text)
    block = text[text.index("<!-- results:begin") :].splitlines()
    planted = text
    for (_, learner, _), (mean, half, mark) in cells.items():
        plain = f" {mean:.3f} ± {half:.3f} |"  # neither bold nor marked
        row = next((r for r in block if r.startswith(f"| `{learner}` |") and plain in r), None)
        if not mark and row is not None:
            planted = text.replace(row, row.replace(plain, plain[:-2] + " ▲ |", 1), 1)
            break
    assert planted != text
    changed = {k for k, v in readme_cells(planted).items() if v != cells[k]}
    theirs = leaderboard_cells(set(script().COLD_METRICS))
    assert changed and any(readme_cells(planted)[k][2] != theirs[k][2] for k in changed)
