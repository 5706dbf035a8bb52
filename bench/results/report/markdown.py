"""Render the report document as GitHub-flavoured Markdown."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

from bench.results.report.document import Bullets, Cell, Document, Figure, Paragraph, Table

_CODE_SPAN = re.compile(r"(`[^`]*`)")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")  # where GFM would start raw HTML or an autolink
_ENTITY = re.compile(r"&(?=#?\w+;)")


def _inline(text: str) -> str:
    """Text from anywhere (names in a store from elsewhere included) made safe for one line of
    Markdown: line breaks become spaces, and outside code spans whatever could open raw HTML
    (``<tag``, ``</``, ``<!``, an entity) is escaped, so a name shows as text, never as markup."""
    flat = " ".join(text.splitlines())
    parts = _CODE_SPAN.split(flat)
    for i in range(0, len(parts), 2):  # the even parts lie outside code spans
        parts[i] = _TAG_START.sub("&lt;", _ENTITY.sub("&amp;", parts[i]))
    return "".join(parts)


def _table_text(text: str) -> str:
    return _inline(text).replace("|", "\\|")


def _cell(cell: Cell) -> str:
    text = _table_text(cell.text)
    if "best" in cell.marks:
        return f"**{text}**"
    if "tie" in cell.marks:
        return f"*{text}*"
    return text


def table_lines(table: Table) -> list[str]:
    lines = [f"*{_inline(table.caption)}*", ""] if table.caption else []
    lines.append("| " + " | ".join(_table_text(h) for h in table.flat_headers()) + " |")
    lines.append("|" + "|".join("---" for _ in table.headers) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return lines


def _alt(text: str) -> str:
    return _inline(text).replace("[", "\\[").replace("]", "\\]")


def _link(path: Path, base: Path) -> str:
    return quote(Path(os.path.relpath(path, base)).as_posix())


def render_markdown(doc: Document, base: Path, reproducible_only: bool = False) -> str:
    """The document as Markdown; figure links are relative to ``base`` (the file's folder).

    With ``reproducible_only`` the machine- and run-dependent sections are left out.
    """
    lines = [f"# {_inline(doc.title)}", ""]
    for section in doc.sections:
        if reproducible_only and not section.reproducible:
            continue
        lines += ["#" * section.level + f" {_inline(section.title)}", ""]
        if section.folded:
            # GitHub renders Markdown inside <details> when blank lines surround it.
            lines += ["<details>", f"<summary>{_inline(section.folded)}</summary>", ""]
        for block in section.blocks:
            if isinstance(block, Paragraph):
                lines.append(_inline(block.text))
            elif isinstance(block, Bullets):
                lines += [f"- {_inline(item)}" for item in block.items]
            elif isinstance(block, Table):
                lines += table_lines(block)
            elif isinstance(block, Figure):
                svg = f" ([SVG]({_link(block.svg_path, base)}))" if block.svg_path else ""
                lines.append(f"![{_alt(block.title)}]({_link(block.png_path, base)}){svg}")
            lines.append("")
        if section.folded:
            lines += ["</details>", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
