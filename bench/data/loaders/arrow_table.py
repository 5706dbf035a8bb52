"""Reading delimited rating files in native code with Arrow.

:func:`read_columns_arrow` is the fast path of :func:`bench.data.loaders.text_reader.read_columns`: it parses
and converts the wanted columns with ``pyarrow.csv`` and ``pyarrow.compute``, and gives up (returns
None) whenever the file is anything but clean: a malformed or blank-padded line it cannot place, a
value it cannot convert, a non-finite rating, an encoding it cannot count lines in. The caller then
reads the file with the strict line-by-line reader, which raises the error that names the file,
line and field, so the messages stay those of one reader whichever path ran.

Two routes, chosen by the separator:

- a one-character separator with quoting (CSV, ``;``-separated files with quoted fields): Arrow's
  CSV reader splits the fields; each row's line number is its position when the file has no blank
  lines, else it is found by counting the line breaks of the raw bytes;
- no quoting, any separator (tab, ``::``, whitespace): Arrow reads every physical line as one
  string (so line numbers are positions) and splits it in native code.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from bench.limits import MAX_ID_CHARS

Kind = Literal["int", "float", "str", "id"]
"""``id``: integers where every value is written as a plain integer, else the stripped strings."""
Result = tuple[dict[str, np.ndarray], np.ndarray, list[str] | None]

_BLOCK = 1 << 24  # bytes per block Arrow parses at a time (one per thread)
_COUNT_CHUNK = 1 << 24
_LINE_BREAK_SAFE = {"utf-8", "utf-8-sig", "ascii", "latin-1", "iso8859-1", "cp1252", "iso8859-15"}
_NO_SUCH_CHAR = "\x1f"  # the unit separator: a line holding it makes two columns, and we give up


def _arrow() -> tuple[Any, Any, Any] | None:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv
    except ImportError:  # the line-by-line reader needs nothing beyond NumPy
        return None
    return pa, pc, pacsv


def _codec(encoding: str) -> str | None:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return None


def _convert(pa: Any, pc: Any, strings: Any, kind: Kind) -> np.ndarray | None:
    """One column of strings as NumPy values, or None when a value does not convert cleanly."""
    if kind in ("str", "id"):
        trimmed = pc.utf8_trim_whitespace(strings)
        if len(trimmed) and pc.max(pc.utf8_length(trimmed)).as_py() > MAX_ID_CHARS:
            return None  # the line reader names the line of the over-long value
        if kind == "id":
            try:
                ints = pc.cast(trimmed, pa.int64())
            except pa.ArrowException:
                ints = None
            if ints is not None and pc.all(pc.equal(pc.cast(ints, pa.string()), trimmed)).as_py():
                return np.asarray(ints.to_numpy(), dtype=np.int64)
        return np.asarray(trimmed.to_numpy(zero_copy_only=False), dtype=str)
    target = pa.int64() if kind == "int" else pa.float64()
    if kind == "int" and strings.type == pa.string():
        # digits after at most one sign: what NumPy's integer parsing takes (no regex: 4x faster)
        trimmed = pc.utf8_trim_whitespace(strings)
        signed = pc.or_(pc.starts_with(trimmed, "-"), pc.starts_with(trimmed, "+"))
        digits = pc.if_else(signed, pc.utf8_slice_codeunits(trimmed, 1), trimmed)
        if not pc.all(pc.ascii_is_decimal(digits)).as_py():
            return None
    try:
        values = strings if strings.type == target else pc.cast(strings, target)
    except pa.ArrowException:
        try:  # the line reader accepts padded numbers (" 5"), Arrow's cast does not
            values = pc.cast(pc.utf8_trim_whitespace(strings), target)
        except pa.ArrowException:
            return None
    if values.null_count:
        return None
    if kind == "float" and not pc.all(pc.is_finite(values)).as_py():
        return None
    return np.asarray(values.to_numpy(), dtype=np.int64 if kind == "int" else np.float64)


def _first_line_blank(path: Path) -> bool:
    with open(path, "rb") as handle:
        first = handle.readline()
    return not first.removeprefix(b"\xef\xbb\xbf").strip(b"\r\n")


def _count_lines(path: Path) -> int:
    """Physical lines of a file whose line breaks are single ``\\n`` bytes."""
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(_COUNT_CHUNK):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def _non_blank_line_numbers(path: Path) -> np.ndarray:
    """1-based numbers of the lines that are neither empty nor a lone carriage return."""
    raw = (
        np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else np.zeros(0, np.uint8)
    )
    breaks = np.flatnonzero(raw == 10)
    starts = np.r_[0, breaks + 1]
    ends = np.r_[breaks, len(raw)]
    if len(raw) and raw[-1] == 10:  # no line after the final break
        starts, ends = starts[:-1], ends[:-1]
    length = ends - starts
    lone_cr = (length == 1) & (raw[np.minimum(starts, max(len(raw) - 1, 0))] == 13)
    return np.flatnonzero((length > 0) & ~lone_cr) + 1


def _delimited(
    modules: tuple[Any, Any, Any],
    path: Path,
    sep: str,
    quotechar: str | None,
    encoding: str,
    columns: dict[str, tuple[int, Kind]],
    header_fields: list[str] | None,
    width: int,
) -> Result | None:
    pa, pc, pacsv = modules
    names = [f"f{i}" for i in range(width)]
    wanted = sorted({index for index, _ in columns.values()})
    kinds = {index: kind for index, kind in columns.values()}
    # Whole numbers are read as text and checked as the line reader reads them (Arrow's own
    # integer parsing takes forms such as "0x10" that the line reader rejects).
    arrow_type = {"int": pa.string(), "float": pa.float64(), "str": pa.string(), "id": pa.string()}

    def read(types: dict[int, Kind]) -> Any:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                column_names=names,
                encoding=encoding,
                block_size=_BLOCK,
                use_threads=True,
                skip_rows=1 if header_fields is not None else 0,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=sep,
                quote_char=quotechar or False,
                escape_char="\\" if quotechar else False,
                double_quote=bool(quotechar),
                newlines_in_values=False,
                ignore_empty_lines=True,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={names[i]: arrow_type[types[i]] for i in wanted},
                include_columns=[names[i] for i in wanted],
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    try:  # numbers converted while parsing, in parallel
        table = read(kinds)
    except pa.ArrowInvalid:  # padded numbers, or a value the line reader must judge
        table = read(dict.fromkeys(kinds, cast(Kind, "str")))
    skip = 1 if header_fields is not None else 0
    rows = table.num_rows + skip
    if _count_lines(path) == rows:
        lines = np.arange(1 + skip, rows + 1, dtype=np.int64)
    else:  # blank lines (or quoted line breaks, for which we give up)
        numbers = _non_blank_line_numbers(path)
        if len(numbers) != rows:
            return None
        lines = numbers[skip:].astype(np.int64)
    out: dict[str, np.ndarray] = {}
    for name, (index, kind) in columns.items():
        values = _convert(pa, pc, table.column(names[index]), kind)
        if values is None:
            return None
        out[name] = values
    return out, lines, header_fields


def _unquoted(
    modules: tuple[Any, Any, Any],
    path: Path,
    sep: str | None,
    encoding: str,
    n_fields: int | None,
    columns: dict[str, tuple[int, Kind]],
    header: bool,
    skip_blank: bool,
) -> Result | None:
    pa, pc, pacsv = modules
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(
            column_names=["line"], encoding=encoding, block_size=_BLOCK, use_threads=True
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=_NO_SUCH_CHAR,
            quote_char=False,
            escape_char=False,
            double_quote=False,
            newlines_in_values=False,
            ignore_empty_lines=False,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={"line": pa.string()}, strings_can_be_null=False
        ),
    )
    text = table.column("line")
    if sep is None:
        text = pc.utf8_trim_whitespace(text)
        blank = pc.equal(text, "")
        fields = pc.utf8_split_whitespace(text)
    else:
        blank = pc.equal(text, "")
        fields = pc.split_pattern(text, pattern=sep)
    keep = pc.invert(blank) if skip_blank else pc.is_valid(text)
    numbers = np.flatnonzero(keep.to_numpy(zero_copy_only=False)) + 1
    fields = pc.filter(fields, keep)
    header_fields: list[str] | None = None
    if header and len(numbers):
        header_fields = [f.strip() for f in fields[0].as_py()]
        fields, numbers = fields[1:], numbers[1:]
    counts = pc.list_value_length(fields)
    need = max((index for index, _ in columns.values()), default=-1) + 1
    if len(numbers):
        low, high = pc.min_max(counts).values()
        if low.as_py() < need or (n_fields is not None and low.as_py() != high.as_py()):
            return None
        if n_fields is not None and low.as_py() != n_fields:
            return None
    out: dict[str, np.ndarray] = {}
    for name, (index, kind) in columns.items():
        strings = pc.list_element(fields, index) if len(numbers) else pa.array([], pa.string())
        values = _convert(pa, pc, strings, kind)
        if values is None:
            return None
        out[name] = values
    return out, numbers.astype(np.int64), header_fields


def read_columns_arrow(
    path: Path,
    *,
    sep: str | None,
    n_fields: int | None,
    columns: dict[str, tuple[int, Kind]],
    encoding: str,
    header: bool,
    quotechar: str | None,
    skip_blank: bool,
    first_record: list[str] | None,
) -> Result | None:
    """The columns, line numbers and header of a clean file, read by Arrow; None when the strict
    line reader must decide (and name what is wrong). ``first_record`` is the file's first
    non-blank record as the line reader splits it (quoted files only)."""
    modules = _arrow()
    codec = _codec(encoding)
    if modules is None or codec is None:
        return None
    arrow_encoding = "utf8" if codec in ("utf-8", "utf-8-sig") else encoding  # Arrow skips a BOM
    pa = modules[0]
    try:
        if sep is not None and len(sep) == 1:
            if first_record is None or codec not in _LINE_BREAK_SAFE or not skip_blank:
                return None
            width = len(first_record)
            need = max((index for index, _ in columns.values()), default=-1) + 1
            if width < need or (n_fields is not None and width != n_fields):
                return None
            if header and _first_line_blank(
                path
            ):  # Arrow would skip the blank line, not the header
                return None
            header_fields = [f.strip() for f in first_record] if header else None
            return _delimited(
                modules,
                path,
                sep,
                quotechar,
                arrow_encoding,
                columns,
                header_fields,
                width,
            )
        return _unquoted(modules, path, sep, arrow_encoding, n_fields, columns, header, skip_blank)
    except (pa.ArrowException, OSError, UnicodeError, ValueError):
        return None
