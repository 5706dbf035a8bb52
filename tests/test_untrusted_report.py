"""Names from a store written elsewhere are text in the Markdown report: HTML in them is escaped
and `|` or line breaks cannot break its tables."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from untrusted import FAST_RUN, bench

from bench.results.report.document import Bullets, Cell, Document, Paragraph, Section, Table
from bench.results.report.markdown import render_markdown

HOSTILE = (
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "a|b",
    "two\nlines",
    "cr\r| --- |",
    "&#60;script&#62;",
    "</table><iframe src=//x>",
)
RAW_HTML = re.compile(r"<(script|img|iframe|/table)|&#60;", re.IGNORECASE)


def separators(line: str) -> int:
    """Column separators of a Markdown table row: pipes not escaped with a backslash."""
    return len(re.findall(r"(?<!\\)\|", line))


def test_every_name_in_every_block_is_text() -> None:
    doc = Document(
        title=HOSTILE[0],
        sections=[
            Section(
                title=HOSTILE[1],
                blocks=[
                    Paragraph(f"learner `{HOSTILE[2]}` beat {HOSTILE[1]}"),
                    Bullets(HOSTILE),
                    Table(
                        headers=["learner", *HOSTILE[:2]],
                        rows=[
                            [Cell(name), Cell(name, marks=("best",)), Cell("0.5")]
                            for name in HOSTILE
                        ],
                        caption=HOSTILE[3],
                    ),
                ],
            )
        ],
    )
    text = render_markdown(doc, Path("."))
    assert not RAW_HTML.search(text), text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(HOSTILE)  # header, rule and one line per row: none broken
    assert {separators(line) for line in table if not line.startswith("|---")} == {4}
    assert "two lines" in text and "&lt;script>alert(1)&lt;/script>" in text


def test_ordinary_text_is_left_as_it_was() -> None:
    doc = Document("t", [Section("s", [Paragraph("p<0.001, a > b, R&D, `x<y`, **bold**")])])
    assert "p<0.001, a > b, R&D, `x<y`, **bold**" in render_markdown(doc, Path("."))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "s.sqlite"
    assert bench(*FAST_RUN, "--store", path).code == 0
    return path


def test_a_report_of_a_store_with_hostile_names_escapes_them(store: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    shutil.copy(store, path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE cells SET dataset = ?", ('<img src=x onerror="alert(1)">|x\ny',))
        conn.execute("UPDATE runs SET suite = ?", ("<script>alert(1)</script>",))
    outcome = bench(
        "report", "--store", path, "--out", tmp_path / "rep", "--reference", "global-mean"
    )
    assert outcome.code == 0, outcome.err
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "onerror" in text  # the name is shown ...
    assert not RAW_HTML.search(text)  # ... as text
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "onerror" in page and '<img src=x onerror="alert(1)">' not in page
    assert "<script>alert(1)</script>" not in page
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            assert line.endswith("|"), line  # no row was cut by a line break
