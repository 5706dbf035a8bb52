"""Render the report document as GitHub-flavoured Markdown."""

from __future__ import annotations

import os
from pathlib import Path

from bench.leaderboard.document import Bullets, Cell, Document, Figure, Paragraph, Table


def _cell(cell: Cell) -> str:
    text = cell.text.replace("|", "\\|")
    if "best" in cell.marks:
        return f"**{text}**"
    if "tie" in cell.marks:
        return f"*{text}*"
    return text


def table_lines(table: Table) -> list[str]:
    lines = [f"*{table.caption}*", ""] if table.caption else []
    lines.append("| " + " | ".join(h.replace("|", "\\|") for h in table.headers) + " |")
    lines.append("|" + "|".join("---" for _ in table.headers) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return lines


def _link(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def render_markdown(doc: Document, base: Path, reproducible_only: bool = False) -> str:
    """The document as Markdown; figure links are relative to ``base`` (the file's folder).

    With ``reproducible_only`` the machine- and run-dependent sections are left out.
    """
    lines = [f"# {doc.title}", ""]
    for section in doc.sections:
        if reproducible_only and not section.reproducible:
            continue
        lines += ["#" * section.level + f" {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Paragraph):
                lines.append(block.text)
            elif isinstance(block, Bullets):
                lines += [f"- {item}" for item in block.items]
            elif isinstance(block, Table):
                lines += table_lines(block)
            elif isinstance(block, Figure):
                svg = f" ([SVG]({_link(block.svg_path, base)}))" if block.svg_path else ""
                lines.append(f"![{block.title}]({_link(block.png_path, base)}){svg}")
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
