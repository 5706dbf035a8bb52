"""The command line's structure: one module per built-in command, listed once, in the order
``bench --help`` shows them; each adds its own parser and runs its own handler."""

from __future__ import annotations

import argparse

import pytest

from bench.cli import COMMAND_MODULES, build_parser, built_in


def subcommands(parser: argparse.ArgumentParser) -> list[str]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(action.choices)


def test_every_command_module_names_adds_and_handles_its_command() -> None:
    modules = built_in()
    assert len(modules) == len(COMMAND_MODULES)  # no two modules claim one command
    names = subcommands(build_parser())
    assert names[: len(modules)] == list(modules)  # built-ins first, in the listed order
    for name, module in modules.items():
        assert callable(module.add_parser) and callable(module.handle), name
        assert module.__name__.rsplit(".", 1)[-1] in COMMAND_MODULES


def test_a_command_is_dispatched_to_its_own_module(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import main

    assert main(["validate", "ci"]) == 0
    out = capsys.readouterr().out
    assert "ci.toml: ok (1 dataset(s)" in out
