"""Bounds on what the harness reads from files it did not write: nesting depth, sizes, lengths.

Every reader of an untrusted file (suites, cards, baselines, kept cells, JSON in a results store,
delimited data files) checks its input against these bounds, so a hostile or damaged file ends in
one error line naming it instead of exhausting memory or the interpreter's stack.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from bench.errors import BenchError, DataError

MAX_JSON_DEPTH = 64
"""How deeply JSON or TOML values may nest (the harness writes at most a few levels)."""
MAX_TEXT_FILE_BYTES = 64 << 20
"""The largest suite, card or baseline file read (they are a few kilobytes)."""
MAX_LINE_CHARS = 1 << 20
"""The longest line of a delimited data file (real ones have lines of at most a few hundred)."""
MAX_ID_CHARS = 1024
"""The longest user or item id in a data file."""


def check_depth(value: Any, where: str, error: type[Exception] = BenchError) -> None:
    """Raise ``error`` when ``value`` (parsed JSON or TOML) nests deeper than MAX_JSON_DEPTH.
    Walks without recursion, so the check itself cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            prefix = f"{where}: " if where else ""
            raise error(f"{prefix}values nest deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def load_json(text: str | bytes, where: str, error: type[Exception] = BenchError) -> Any:
    """Parse JSON from an untrusted source: bad syntax or deep nesting is ``error``, naming
    ``where``."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise error(f"{where}: values nest deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, TypeError) as exc:
        raise error(f"{where}: not valid JSON ({exc})") from None
    if _opening_brackets(text) > MAX_JSON_DEPTH:  # else it cannot nest that deep: no walk
        check_depth(value, where, error)
    return value


def _opening_brackets(text: str | bytes) -> int:
    """How many ``[`` and ``{`` the text holds (those in strings included): each level of
    nesting opens with one, so this bounds the depth from above."""
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


def load_toml(text: str, where: str, error: type[Exception] = BenchError) -> dict[str, Any]:
    """Parse TOML from an untrusted source: bad syntax or deep nesting is ``error``, naming
    ``where``."""
    try:
        value = tomllib.loads(text)
    except RecursionError:
        raise error(f"{where}: values nest deeper than {MAX_JSON_DEPTH} levels") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where}: {exc}") from None
    check_depth(value, where, error)
    return value


def read_text(path: Any, what: str, error: type[Exception] = BenchError) -> str:
    """A small text file (suite, card, baseline) read as UTF-8, at most MAX_TEXT_FILE_BYTES."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_TEXT_FILE_BYTES + 1)
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_TEXT_FILE_BYTES:
        raise error(f"{what} {path} is larger than {MAX_TEXT_FILE_BYTES >> 20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def relative_inside(value: object, what: str) -> str:
    """``value`` as a path relative to a folder it cannot leave: no absolute path, no ``..``,
    nothing but plain names. Card and suite options name files this way, so that a card from
    elsewhere can neither read nor unpack files outside its dataset's folder."""
    text = value if isinstance(value, str) else ""
    parts = Path(text).parts
    if (
        not text
        or "\0" in text
        or "\\" in text
        or Path(text).is_absolute()
        or text.startswith("~")
        or any(part in ("..", ".") or ":" in part for part in parts)
    ):
        raise DataError(
            f"{what} must be a relative path inside the dataset's folder (no '..', no absolute "
            f"path), got {value!r:.80}"
        )
    return text
