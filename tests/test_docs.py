"""The documentation stays true to the code: the command-line reference lists every subcommand and
flag the parser knows, the README's and ARCHITECTURE.md's links lead to files that exist, and every
``bench`` command and ``make`` target the pages name exists. (``make docs`` builds the site itself
with warnings as errors, which checks the links between pages.)"""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from bench.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
FRONT_PAGES = ["README.md", "ARCHITECTURE.md"]


def cli_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "cli_reference", ROOT / "scripts" / "cli_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def section(page: str, command: str) -> str:
    """The part of the generated page that documents ``bench COMMAND``."""
    parts = re.split(r"^## ", page, flags=re.M)
    found = [part for part in parts if part.startswith(f"`bench {command}`")]
    assert len(found) == 1, f"the reference has {len(found)} sections for bench {command}"
    return found[0]


def test_the_cli_reference_lists_every_subcommand_and_flag() -> None:
    reference = cli_reference()
    parser = build_parser()
    page = reference.render(parser)
    commands = reference.subcommands(parser)
    assert {"run", "ls", "validate", "export", "report", "baseline", "check"} <= set(commands)
    for name, (_, sub) in commands.items():
        text = section(page, name)
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings or [action.dest]:
                assert f"`{flag}`" in text, f"bench {name}: {flag} missing from the reference"
            if action.help:
                first_words = " ".join(action.help.split()[:3]).replace("%%", "%")
                assert first_words in text.replace("\\", ""), (name, action.help)


def test_the_cli_page_holds_the_marker_the_hook_replaces() -> None:
    reference = cli_reference()
    page = (ROOT / "docs" / reference.CLI_PAGE).read_text(encoding="utf-8")
    assert page.count(reference.MARKER) == 1


@pytest.mark.parametrize("name", FRONT_PAGES)
def test_relative_links_of_the_front_pages_lead_to_files(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:", t)]
    assert local, f"{name} links to no file"
    missing = [target for target in local if target and not (ROOT / target).exists()]
    assert not missing, f"{name} links to files that do not exist: {missing}"


def documentation() -> dict[str, str]:
    pages = [ROOT / name for name in FRONT_PAGES] + sorted((ROOT / "docs").rglob("*.md"))
    return {str(page.relative_to(ROOT)): page.read_text(encoding="utf-8") for page in pages}


def test_every_bench_command_the_docs_name_exists() -> None:
    commands = set(cli_reference().subcommands(build_parser()))
    named = {
        (page, name)
        for page, text in documentation().items()
        for name in re.findall(r"`bench ([a-z][a-z-]*)", text)
    }
    assert {name for _, name in named} >= {"run", "check", "report"}
    unknown = sorted((page, name) for page, name in named if name not in commands)
    assert not unknown, f"the docs name bench commands that do not exist: {unknown}"


def test_every_make_target_the_docs_name_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*)(?:-%)?:", makefile, re.M))
    patterns = set(re.findall(r"^([a-z][a-z-]*)-%:", makefile, re.M))
    # `make X` in prose, or a line of a shell block that starts with make X
    mention = re.compile(r"`make ([a-z][a-z-]*)|^make ([a-z][a-z-]*)", re.M)
    named = {
        (page, inline or block)
        for page, text in documentation().items()
        for inline, block in mention.findall(text)
    }
    assert {name for _, name in named} >= {"run", "test", "docs"}
    unknown = sorted(
        (page, name)
        for page, name in named
        if name not in targets and not any(name.startswith(f"{p}-") for p in patterns)
    )
    assert not unknown, f"the docs name make targets that do not exist: {unknown}"
