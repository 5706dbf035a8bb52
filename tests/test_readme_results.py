"""The README's results tables say what the committed leaderboard says: every number and every
▲/▼ mark of the README is read back from ``reports/leaderboard.md`` (the page) and must agree,
and the README block is what ``scripts/readme_results.py`` writes from ``reports/leaderboard.csv``.
"""

from __future__ import annotations

import importlib.util
import re

import pytest

from bench.provenance import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "readme_results.py"
README = PROJECT_ROOT / "README.md"
LEADERBOARD = PROJECT_ROOT / "reports" / "leaderboard.md"


def readme_cells(text: str) -> dict[tuple[str, str, str], tuple[float, float, str]]:
    """(metric, learner, scenario) -> (mean, half-width, mark) from the README's block."""
    block = text[text.index("<!-- results:begin") : text.index("<!-- results:end -->")]
    cells = {}
    metric, scenarios = "", []
    for line in block.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if line.startswith("| RMSE") or line.startswith("| NDCG@3"):
            metric = parts[0].lower()
            scenarios = [p.strip("`") for p in parts[1:]]
        elif line.startswith("| `"):
            learner = parts[0].strip("`")
            for scenario, cell in zip(scenarios, parts[1:], strict=True):
                found = re.fullmatch(r"\**([\d.]+) ± ([\d.]+)\**( [▲▼])?", cell)
                assert found, cell
                mark = (found.group(3) or "").strip()
                cells[(metric, learner, scenario)] = (float(found[1]), float(found[2]), mark)
    return cells


def leaderboard_cells() -> dict[tuple[str, str, str], tuple[float, float, str]]:
    """The same cells from the page's ml-100k tables (four decimals there)."""
    cells = {}
    sections = re.split(r"\n## ", LEADERBOARD.read_text(encoding="utf-8"))
    for section in sections:
        head = section.splitlines()[0]
        if not head.startswith("ml-100k · "):
            continue
        scenario = head.split(" · ")[-1]
        headers: list[str] = []
        for line in section.splitlines():
            if line.startswith("| learner"):
                headers = [h.strip().split(" ")[0] for h in line.strip("|").split("|")]
                headers = headers if "rmse" in headers and "ndcg@3" in headers else []
            elif headers and line.startswith("| ") and not line.startswith("|---"):
                parts = [p.strip() for p in line.strip().strip("|").split("|")]
                row = dict(zip(headers, parts, strict=True))
                for metric in ("rmse", "ndcg@3"):
                    found = re.fullmatch(r"[*]*([\d.]+) ±([\d.]+)( [▲▼])?[*]*", row[metric])
                    assert found, row[metric]
                    mark = (found.group(3) or "").strip()
                    key = (metric, row["learner"], scenario)
                    cells[key] = (float(found[1]), float(found[2]), mark)
            elif not line.startswith("|"):
                headers = []
    return cells


def test_every_readme_number_and_mark_is_the_leaderboards() -> None:
    ours, theirs = readme_cells(README.read_text(encoding="utf-8")), leaderboard_cells()
    assert len(ours) == 56  # 7 learners x 4 scenarios x 2 metrics
    # three decimals here, four on the page: they differ by at most 0.0005 + 0.00005
    for key, (mean, half, mark) in ours.items():
        assert key in theirs, key
        page_mean, page_half, page_mark = theirs[key]
        assert mean == pytest.approx(page_mean, abs=0.00055), key
        assert half == pytest.approx(page_half, abs=0.00055), key
        assert mark == page_mark, key


def test_the_readme_block_is_what_the_script_writes_from_the_leaderboard() -> None:
    spec = importlib.util.spec_from_file_location("readme_results", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0


def test_a_changed_mark_is_caught() -> None:
    """The comparison itself can fail: the README as it was, with maml marked ▲ on item_cold."""
    text = README.read_text(encoding="utf-8")
    planted = text.replace("| 1.108 ± 0.008 |", "| 1.108 ± 0.008 ▲ |")
    assert planted != text
    key = ("rmse", "maml", "item_cold")
    assert readme_cells(planted)[key][2] == "▲" != leaderboard_cells()[key][2]
