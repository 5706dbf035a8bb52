"""Reading delimited rating files strictly: the wanted columns of every line, each with its line
number.

A clean file is parsed by Arrow in native code (:mod:`bench.data.loaders.arrow_table`); anything
else is read line by line here, and every malformed line is reported with its file and line
number: a silently skipped line would change a benchmark's numbers without anyone noticing.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from bench.data.loaders.arrow_table import Kind, read_columns_arrow
from bench.errors import DataError, excerpt
from bench.limits import MAX_ID_CHARS, MAX_LINE_CHARS

_CHUNK = 500_000


def text_encoding(encoding: str) -> str:
    """The codec to read a file with: UTF-8 files may start with a byte-order mark, which is not
    part of the first field."""
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def bounded_lines(handle: IO[str], path: Path) -> Iterator[str]:
    """The lines of ``handle``, each read with a bound: a line longer than
    :data:`~bench.limits.MAX_LINE_CHARS` is an error naming it, never read whole into memory."""
    number = 0
    while True:
        line = handle.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise DataError(
                f"{path}, line {number}: longer than {MAX_LINE_CHARS} characters; "
                "this is no delimited rating file (or its line breaks are lost)"
            )
        yield line


def _split_lines(
    path: Path, sep: str | None, encoding: str, quotechar: str | None
) -> Iterator[tuple[int, list[str]]]:
    encoding = text_encoding(encoding)
    with open(path, encoding=encoding, newline="" if quotechar else None) as handle:
        if quotechar:
            assert sep is not None and len(sep) == 1, "quoted files need a one-character separator"
            reader = csv.reader(
                bounded_lines(handle, path), delimiter=sep, quotechar=quotechar, escapechar="\\"
            )
            try:
                for fields in reader:
                    yield reader.line_num, fields
            except csv.Error as exc:
                raise DataError(f"{path}, line {reader.line_num}: {exc}") from exc
            return
        for number, line in enumerate(bounded_lines(handle, path), start=1):
            line = line.rstrip("\r\n")
            yield number, line.split(sep) if sep is not None else line.split()


def ids_from_text(raw: np.ndarray) -> np.ndarray:
    """Integer ids when every id is written as a plain integer (so they sort numerically), else the
    strings: "007" and "7" stay two ids."""
    if raw.dtype.kind in "iu":
        return raw
    try:
        ints = np.asarray(raw, dtype=np.int64)
    except (ValueError, OverflowError):
        return raw
    return ints if np.array_equal(ints.astype(str), raw) else raw


def _convert(
    values: list[str], kind: Kind, path: Path, lines: list[int], column: str
) -> np.ndarray:
    if kind in ("str", "id"):
        stripped = [v.strip() for v in values]
        longest = max(range(len(stripped)), key=lambda i: len(stripped[i]), default=None)
        if longest is not None and len(stripped[longest]) > MAX_ID_CHARS:
            raise DataError(
                f"{path}, line {lines[longest]}: column {column!r} holds a value of "
                f"{len(stripped[longest])} characters; at most {MAX_ID_CHARS}"
            )
        strings = np.asarray(stripped, dtype=str)
        return ids_from_text(strings) if kind == "id" else strings
    dtype = np.int64 if kind == "int" else np.float64
    try:
        out = np.asarray(values, dtype=dtype)
    except (ValueError, OverflowError):
        out = None
    if out is not None and (kind == "int" or np.isfinite(out).all()):
        return out
    for value, line in zip(values, lines, strict=True):  # find the first bad value for the message
        try:
            number = dtype(value)
        except (ValueError, OverflowError):
            number = None
        if number is None or not np.isfinite(number):
            raise DataError(
                f"{path}, line {line}: column {column!r} must be a finite "
                f"{'integer' if kind == 'int' else 'number'}, got {excerpt(value)}"
            )
    raise DataError(f"{path}: column {column!r} could not be read as {kind}")


def read_columns(
    path: Path,
    *,
    sep: str | None,
    n_fields: int | None,
    columns: dict[str, tuple[int, Kind]],
    encoding: str = "utf-8",
    header: bool = False,
    quotechar: str | None = None,
    skip_blank: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray, list[str] | None]:
    """Read the wanted ``columns`` (name -> (field index, kind)) of a delimited file.

    Returns the columns, the line number of every row and the header fields (if ``header``).
    ``n_fields`` (when given) is the exact number of fields every line must have.

    A clean file is parsed by Arrow in native code; anything else (a malformed line, a value that
    does not convert, no pyarrow) is read line by line here, which names what is wrong.
    """
    fast = read_columns_arrow(
        path,
        sep=sep,
        n_fields=n_fields,
        columns=columns,
        encoding=text_encoding(encoding),
        header=header,
        quotechar=quotechar,
        skip_blank=skip_blank,
        first_record=_first_record(path, sep, encoding, quotechar)
        if sep is not None and len(sep) == 1
        else None,
    )
    if fast is not None:
        return fast
    return read_columns_by_line(
        path,
        sep=sep,
        n_fields=n_fields,
        columns=columns,
        encoding=encoding,
        header=header,
        quotechar=quotechar,
        skip_blank=skip_blank,
    )


def _first_record(
    path: Path, sep: str | None, encoding: str, quotechar: str | None
) -> list[str] | None:
    """The first non-blank record of the file, split as the line reader splits it."""
    try:
        for _, fields in _split_lines(path, sep, encoding, quotechar):
            if fields and fields != [""]:
                return fields
    except (DataError, UnicodeDecodeError, LookupError, OSError):
        return None
    return None


def read_columns_by_line(
    path: Path,
    *,
    sep: str | None,
    n_fields: int | None,
    columns: dict[str, tuple[int, Kind]],
    encoding: str = "utf-8",
    header: bool = False,
    quotechar: str | None = None,
    skip_blank: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray, list[str] | None]:
    """:func:`read_columns` one line at a time in Python: the reference reader, and the one whose
    errors name the file, line and field."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in columns}
    buffers: dict[str, list[str]] = {name: [] for name in columns}
    line_parts: list[np.ndarray] = []
    lines: list[int] = []
    header_fields: list[str] | None = None
    need = max((index for index, _ in columns.values()), default=-1) + 1

    def flush() -> None:
        for name, (_, kind) in columns.items():
            parts[name].append(_convert(buffers[name], kind, path, lines, name))
            buffers[name].clear()
        line_parts.append(np.asarray(lines, dtype=np.int64))
        lines.clear()

    try:
        for number, fields in _split_lines(path, sep, encoding, quotechar):
            if skip_blank and (not fields or fields == [""]):
                continue
            if header and header_fields is None:
                header_fields = [f.strip() for f in fields]
                continue
            if (n_fields is not None and len(fields) != n_fields) or len(fields) < need:
                raise DataError(
                    f"{path}, line {number}: expected {n_fields or need} fields separated by "
                    f"{sep or 'whitespace'!r}, found {len(fields)} (truncated or malformed line "
                    f"{excerpt((sep or ' ').join(fields))})"
                )
            for name, (index, _) in columns.items():
                buffers[name].append(fields[index])
            lines.append(number)
            if len(lines) >= _CHUNK:
                flush()
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not valid {encoding} text (byte {exc.start}: {exc.reason}); "
            "set the option 'encoding' if the file uses another one"
        ) from exc
    except LookupError as exc:
        raise DataError(f"{path}: unknown text encoding {encoding!r}") from exc
    except OSError as exc:
        raise DataError(f"{path}: {exc.strerror or exc}") from exc
    flush()
    out = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    return out, np.concatenate(line_parts), header_fields
