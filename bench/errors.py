"""Error types that the CLI turns into exit codes, and the warning category for changed data."""

from __future__ import annotations


class BenchError(Exception):
    """Bad input or usage: the CLI prints the message and exits with status 2."""


class ConfigError(BenchError):
    """A suite, learner config or protocol parameter is wrong."""


class DataError(BenchError):
    """A dataset file is missing or malformed."""


class StoreError(BenchError):
    """The results store cannot be opened or written (bad path, read-only, damaged, busy)."""


class RegistryError(BenchError, KeyError):
    """An unknown or duplicate registry name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DeviceError(BenchError):
    """The requested device is not available."""


class DataWarning(UserWarning):
    """Data was read but changed or interpreted in a way a user should know about (a rebuilt cache
    entry, a rating scale that rests on one extreme value)."""


EXCERPT_CHARS = 40


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """The ``repr`` of ``value``, cut to about ``limit`` characters: a message quotes bad input
    briefly, whatever the size of the line it came from."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}…({len(str(value))} characters)"


def shorten(text: str, limit: int = 160) -> str:
    """``text`` on one line, cut to about ``limit`` characters (for messages from other tools)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def excerpt_list(values: list[str], limit: int = 8) -> str:
    """A short listing of names, such as a header's columns."""
    shown = ", ".join(excerpt(v, 24) for v in values[:limit])
    return shown + (f", … ({len(values)} in all)" if len(values) > limit else "")
