"""Render the report document as one self-contained HTML page.

Styles and the table-sorting script are inline and figures are embedded as PNG data URIs, so the
page opens without a network or any file beside it. Clicking a column header sorts the table by
that column (numbers by value, text alphabetically; again for the reverse order).
"""

from __future__ import annotations

import base64
import html
import math
import re

from bench.results.report.document import Bullets, Cell, Document, Figure, Paragraph, Section, Table

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 96em; padding: 0 1em;
       color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
nav ol { columns: 3; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.86em; }
caption { caption-side: top; text-align: left; font-style: italic; padding: 0.3em 0; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.5em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
tr.groups th { cursor: default; text-align: center; }
th[aria-sort="ascending"]::after { content: " ▲"; } th[aria-sort="descending"]::after { content: " ▼"; }
td.best { font-weight: bold; background: #e3f4e3; } td.tie { font-style: italic; background: #f1f9f1; }
code { font-size: 0.92em; background: #f5f5f5; padding: 0 0.2em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
section.machine { background: #fafafa; padding: 0 1em; }
div.scroll { overflow-x: auto; }
details > summary { cursor: pointer; color: #35568a; margin: 0.4em 0; }
table.headline td, table.headline th { padding: 0.2em 0.45em; }
"""

SCRIPT = """
(function () {
  function key(cell) {
    var raw = cell.getAttribute('data-sort');
    if (raw === null) raw = cell.textContent.trim();
    if (raw === '' || raw === 'n/a' || raw === '—') return null;
    var number = Number(raw);
    return isNaN(number) ? {text: raw} : {number: number};
  }
  function compare(a, b) {
    if (a === null || b === null) return a === b ? 0 : (a === null ? 1 : -1);
    if ('number' in a && 'number' in b) return a.number - b.number;
    if ('number' in a) return -1;
    if ('number' in b) return 1;
    return a.text.localeCompare(b.text);
  }
  function sortTable(table, header, column) {
    var ascending = header.getAttribute('aria-sort') !== 'ascending';
    table.querySelectorAll('th').forEach(function (th) { th.removeAttribute('aria-sort'); });
    header.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) {
      var a = key(r.cells[column]), b = key(s.cells[column]);
      if (a === null || b === null) return compare(a, b);
      return ascending ? compare(a, b) : compare(b, a);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('thead tr:last-child th').forEach(function (header, column) {
      header.tabIndex = 0;
      header.title = 'sort by this column';
      header.addEventListener('click', function () { sortTable(table, header, column); });
      header.addEventListener('keydown', function (event) {
        if (event.key === 'Enter') sortTable(table, header, column);
      });
    });
  });
})();
"""


def inline(text: str) -> str:
    """Escape ``text`` and translate its ``**bold**``, ``*italic*`` and ```code``` marks."""
    parts = text.split("`")
    out = []
    for index, part in enumerate(parts):
        escaped = html.escape(part)
        if index % 2:
            out.append(f"<code>{escaped}</code>")
            continue
        escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
        escaped = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", escaped)
        out.append(escaped)
    return "".join(out)


def _sort_attr(cell: Cell) -> str:
    if cell.sort is None:
        return ""
    if isinstance(cell.sort, float | int):
        value = float(cell.sort)
        return ' data-sort=""' if not math.isfinite(value) else f' data-sort="{value!r}"'
    return f' data-sort="{html.escape(str(cell.sort))}"'


def _table(table: Table) -> str:
    lines = ['<div class="scroll"><table class="sortable">']
    if table.caption:
        lines.append(f"<caption>{inline(table.caption)}</caption>")
    groups = ""
    if table.groups:
        spans = "".join(
            f'<th colspan="{width}">{inline(label)}</th>' for label, width in table.groups
        )
        groups = f'<tr class="groups">{spans}</tr>'
    lines.append(
        f"<thead>{groups}<tr>"
        + "".join(f"<th>{inline(h)}</th>" for h in table.headers)
        + "</tr></thead>"
    )
    lines.append("<tbody>")
    for row in table.rows:
        cells = []
        for cell in row:
            classes = f' class="{" ".join(cell.marks)}"' if cell.marks else ""
            cells.append(f"<td{classes}{_sort_attr(cell)}>{inline(cell.text)}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def _figure(figure: Figure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    title = html.escape(figure.title)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{title}">'
        f"<figcaption>{title}</figcaption></figure>"
    )


def _section(section: Section) -> str:
    anchor = f' id="{html.escape(section.anchor)}"' if section.anchor else ""
    classes = "" if section.reproducible else ' class="machine"'
    parts = [
        f"<section{anchor}{classes}>",
        f"<h{section.level}>{inline(section.title)}</h{section.level}>",
    ]
    if section.folded:
        parts.append(f"<details><summary>{inline(section.folded)}</summary>")
    for block in section.blocks:
        if isinstance(block, Paragraph):
            parts.append(f"<p>{inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            parts.append(_table(block))
        elif isinstance(block, Figure):
            parts.append(_figure(block))
    if section.folded:
        parts.append("</details>")
    parts.append("</section>")
    return "\n".join(parts)


def render_html(doc: Document) -> str:
    """The document as a self-contained HTML page."""
    nav = "".join(
        f'<li><a href="#{html.escape(s.anchor)}">{inline(s.title)}</a></li>'
        for s in doc.sections
        if s.anchor
    )
    body = "\n".join(_section(s) for s in doc.sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(doc.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(doc.title)}</h1>\n"
        f"<nav><details><summary>Contents</summary><ol>{nav}</ol></details></nav>\n{body}\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
