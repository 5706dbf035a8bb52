"""Subcommands that packages add to ``bench``, declared as ``bench.commands`` entry points.

An entry point names a :class:`Command`; its module should import only what building the
argument parser needs (the command's ``run`` imports the rest), since every ``bench`` call
builds the parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.errors import RegistryError
from bench.registry import Registry

COMMAND_GROUP = "bench.commands"


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer of at least 1 (argparse names the flag on error)."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


@dataclass(frozen=True)
class Command:
    """A ``bench`` subcommand.

    Stability: stable.
    """

    help: str
    """One line for ``bench --help``."""
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    """Returns the exit status; raises :class:`bench.errors.BenchError` for bad input."""


def _check_command(name: str, obj: Any) -> None:
    if not isinstance(obj, Command):
        raise RegistryError(f"command {name!r} resolves to {obj!r}, which is not a Command")


COMMANDS: Registry[Command] = Registry("command", _check_command, COMMAND_GROUP)
