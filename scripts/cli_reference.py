"""The command-line reference, written from ``bench``'s own argument parser.

As an MkDocs hook (``hooks:`` in ``mkdocs.yml``) it fills the marker line of ``docs/cli.md`` at
build time, so the page lists exactly the subcommands and flags ``bench --help`` knows, plug-in
commands included; run as a script it prints the same Markdown:

    python scripts/cli_reference.py > cli.md
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

MARKER = "<!-- bench --help: the reference below is generated -->"
CLI_PAGE = "cli.md"
WIDTH = 96


def _fixed_width(parser: argparse.ArgumentParser) -> None:
    # Usage lines wrap at the terminal's width by default; a fixed one keeps the page stable.
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=WIDTH)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """Each subcommand's name, its one-line help and its parser, in the order of ``bench --help``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return {name: (helps.get(name, ""), sub) for name, sub in action.choices.items()}
    return {}


def _cell(text: str) -> str:
    # A bracketed default such as [cpu] would read as a Markdown link reference.
    for char in "|[]":
        text = text.replace(char, "\\" + char)
    return text.replace("\n", " ")


def _code(text: str) -> str:
    # Inside a code span Markdown keeps backslashes, and the tables extension does not split a
    # cell at a pipe between backticks, so code needs no escapes.
    return f"`{text}`" if text else ""


def _value(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices is not None:
        return "{" + ",".join(str(choice) for choice in action.choices) + "}"
    if action.metavar is not None:
        return str(action.metavar)
    return action.dest.upper() if action.option_strings else action.dest


def _default(action: argparse.Action) -> str:
    default = action.default
    if action.nargs == 0 or default is None or default == argparse.SUPPRESS or default == []:
        return ""
    if isinstance(default, list | tuple):
        return ",".join(str(part) for part in default)
    return str(default)


def options_table(parser: argparse.ArgumentParser) -> list[str]:
    """A Markdown table of a parser's arguments: flags, value, default and help."""
    formatter = parser._get_formatter()
    rows = ["| argument | value | default | what it does |", "|---|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        names = ", ".join(f"`{name}`" for name in action.option_strings) or f"`{action.dest}`"
        if action.required and action.option_strings:
            names += " (required)"
        value = _value(action)
        default = _default(action)
        help_text = formatter._expand_help(action) if action.help else ""
        rows.append(f"| {names} | {_code(value)} | {_code(default)} | {_cell(help_text)} |")
    return rows


def render(parser: argparse.ArgumentParser) -> str:
    """The reference: ``bench``'s usage, a table of subcommands, then one section per subcommand."""
    _fixed_width(parser)
    commands = subcommands(parser)
    lines = ["```text", parser.format_usage().strip(), "```", ""]
    lines += ["| command | what it does |", "|---|---|"]
    lines += [
        f"| [`bench {name}`](#bench-{name}) | {_cell(text)} |"
        for name, (text, _) in commands.items()
    ]
    for name, (text, sub) in commands.items():
        _fixed_width(sub)
        lines += ["", f"## `bench {name}` {{#bench-{name}}}", "", text[:1].upper() + text[1:] + "."]
        lines += ["", "```text", sub.format_usage().strip(), "```", ""]
        lines += options_table(sub)
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """The MkDocs hook: put the generated reference in place of the marker on the CLI page."""
    if page.file.src_uri != CLI_PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{CLI_PAGE} lacks the line {MARKER!r} to put the reference in")
    from bench.cli import build_parser

    return markdown.replace(MARKER, render(build_parser()))


if __name__ == "__main__":
    from bench.cli import build_parser

    print(render(build_parser()), end="")
