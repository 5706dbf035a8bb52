"""The report as a small document model that the Markdown and HTML writers both render.

Text uses two inline marks only: ``**bold**`` and ```code```; the HTML writer translates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Cell:
    """A table cell: its text, the value it sorts by in HTML, and its marks.

    ``marks`` may hold ``best`` (rendered bold) and ``tie`` (not significantly worse than the
    best; rendered italic).
    """

    text: str
    sort: float | str | None = None
    marks: tuple[str, ...] = ()


@dataclass
class Table:
    """A table; ``groups`` (label, width) span the headers in a row above them (the HTML page
    draws that row; Markdown, which has none, prefixes each header with its group's label)."""

    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    caption: str = ""
    groups: list[tuple[str, int]] = field(default_factory=list)

    def flat_headers(self) -> list[str]:
        """The headers with their group's label in front, for writers without a group row."""
        labels: list[str] = []
        for label, width in self.groups:
            labels += [label] * width
        labels += [""] * (len(self.headers) - len(labels))
        return [f"{g} {h}".strip() for g, h in zip(labels, self.headers, strict=True)]


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Figure:
    """A figure written as PNG and (for the Markdown report) SVG; ``png`` holds the bytes the HTML
    page embeds."""

    title: str
    png_path: Path
    svg_path: Path | None
    png: bytes


Block = Paragraph | Bullets | Table | Figure


@dataclass
class Section:
    """A titled part of the report.

    ``reproducible`` is False for the parts that depend on the machine or the run (timings,
    provenance): everything else comes out byte for byte the same from the same results.
    ``folded``, when set, keeps the title in view and folds the blocks under a ``<details>``
    element whose summary is this text, so the page opens on its headline.
    """

    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2
    reproducible: bool = True
    anchor: str = ""
    folded: str = ""


@dataclass
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)
