"""Run, list, validate, export, report and check cold-start benchmark suites (added: perf).

Exit codes: 0 success; 1 a cell failed (the others still finish and are stored) or ``check`` found
a regression; 2 bad input or usage, or results that ``check`` could not compare with its baseline.
A reader that stops early (``bench export | head``) ends the command quietly with status 0.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from bench.commands import COMMANDS
from bench.errors import BenchError, DataWarning

COMMAND_MODULES = (
    "run",
    "ls",
    "validate",
    "export",
    "report",
    "baseline",
    "check",
    "split",
    "audit",
    "import_predictions",
)
"""The built-in commands' modules under ``bench.cli``, in the order ``bench --help`` lists them.
Each names its command (``NAME``), adds its parser (``add_parser(sub)``) and runs it
(``handle(args)``, returning the exit status); a new command is a module added here."""


def built_in() -> dict[str, ModuleType]:
    """The built-in commands' modules by command name."""
    modules = (importlib.import_module(f"bench.cli.{name}") for name in COMMAND_MODULES)
    return {module.NAME: module for module in modules}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    commands = built_in()
    for module in commands.values():
        module.add_parser(sub)
    for name in COMMANDS.names():
        if name in commands:
            raise BenchError(
                f"command {name!r} is declared by {COMMANDS.origin(name)} but is a built-in "
                "bench command; rename it"
            )
        command = COMMANDS.get(name)
        command.add_arguments(sub.add_parser(name, help=command.help))
    return parser


def _warning_printer(fallback: Any) -> Any:
    """Data warnings as one plain line on stderr, like errors; others as Python shows them."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, DataWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            fallback(message, category, filename, lineno, file, line)

    return show


def _run_command(args: argparse.Namespace) -> int:
    commands = built_in()
    if args.command in commands:
        code: int = commands[args.command].handle(args)
        return code
    return COMMANDS.get(args.command).run(args)


def _quiet_closed_pipe() -> int:
    """The reader went away (``bench export | head``): stop writing without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(warnings.showwarning)
            code = _run_command(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _quiet_closed_pipe()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RecursionError, MemoryError) as exc:  # a last guard: readers bound their input
        what = "nests too deeply" if isinstance(exc, RecursionError) else "is too large"
        print(f"error: an input of this command {what} to be read", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished cells are in the store and a re-run resumes", file=sys.stderr)
        return 130
