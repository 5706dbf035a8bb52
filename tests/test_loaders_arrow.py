"""The Arrow reader against the line-by-line reader: on every file both can read they give the same
columns, line numbers and header; on a file the Arrow reader gives up on, the line reader decides
(and names the line). Clean files never fall back, so the fast path is the one that runs."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bench.data.loaders.arrow_table import read_columns_arrow
from bench.data.loaders.text_reader import (
    _first_record,
    read_columns,
    read_columns_by_line,
    text_encoding,
)
from bench.errors import DataError

COLUMNS: dict[str, Any] = {"user": (0, "int"), "item": (1, "id"), "rating": (2, "float")}
# (separator, quote character): the routes every loader takes.
ROUTES = [("\t", None), ("::", None), (None, None), (",", '"'), (";", '"'), ("|", None)]


def both(path: Path, sep: str | None, quote: str | None, **kw: Any) -> tuple[Any, Any]:
    options: dict[str, Any] = {"n_fields": 4, "columns": COLUMNS, "header": False, **kw}
    encoding = options.pop("encoding", "utf-8")
    fast = read_columns_arrow(
        path,
        sep=sep,
        quotechar=quote,
        encoding=text_encoding(encoding),
        skip_blank=True,
        first_record=_first_record(path, sep, encoding, quote)
        if sep is not None and len(sep) == 1
        else None,
        **options,
    )
    slow = read_columns_by_line(path, sep=sep, quotechar=quote, encoding=encoding, **options)
    return fast, slow


def same(fast: Any, slow: Any) -> None:
    assert fast is not None, "the Arrow reader gave up on a clean file"
    cols, lines, header = fast
    assert header == slow[2]
    assert lines.dtype == np.int64 and lines.tolist() == slow[1].tolist()
    for name, values in slow[0].items():
        assert cols[name].dtype.kind == values.dtype.kind, name
        assert cols[name].tolist() == values.tolist(), name


def text(rows: list[tuple[int, str, float, int]], sep: str | None, newline: str) -> str:
    joiner = sep or " "
    return newline.join(joiner.join(map(str, row)) for row in rows) + newline


@pytest.mark.parametrize(("sep", "quote"), ROUTES)
def test_clean_files_read_by_arrow_equal_the_line_reader(
    tmp_path: Path, sep: str | None, quote: str | None
) -> None:
    rows = [(1, "a", 4.5, 10), (22, "b b" if sep not in (None,) else "bb", 1.0, 11), (3, "c", 3, 9)]
    path = tmp_path / "r.txt"
    path.write_text(text(rows, sep, "\n"))
    same(*both(path, sep, quote))
    # blank lines, CRLF line ends, a byte-order mark and a header: line numbers still match
    body = text(rows, sep, "\r\n").replace("\r\n", "\r\n\r\n", 1)
    path.write_bytes(b"\xef\xbb\xbf" + (text([("u", "i", "r", "t")], sep, "\r\n") + body).encode())  # type: ignore[list-item]
    fast, slow = both(path, sep, quote, header=True)
    same(fast, slow)
    assert slow[1].tolist() == [2, 4, 5] and slow[2] == ["u", "i", "r", "t"]


def test_a_header_after_blank_lines_is_still_the_header(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("\n\nisbn,year,x,y\nA1,1999,1,2\nB2,2001,3,4\n")
    columns = {"isbn": (0, "str"), "year": (1, "str")}
    slow = read_columns_by_line(path, sep=",", n_fields=4, columns=columns, header=True)
    fast = read_columns(path, sep=",", n_fields=4, columns=columns, header=True, quotechar='"')
    assert slow[2] == fast[2] == ["isbn", "year", "x", "y"]
    assert fast[0]["isbn"].tolist() == slow[0]["isbn"].tolist() == ["A1", "B2"]
    assert fast[1].tolist() == slow[1].tolist() == [4, 5]


def test_quoted_fields_with_separators_escapes_and_latin1(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(
        '"7";"x; y";"5";"1"\n"8";"Caf\u00e9 \\"z\\"";"10";"2"\n\n"9";"plain";"0";"3"\n'.encode(
            "latin-1"
        )
    )
    fast, slow = both(path, ";", '"', encoding="latin-1")
    same(fast, slow)
    assert slow[0]["item"].tolist() == ["x; y", 'Café "z"', "plain"]


@pytest.mark.parametrize(
    "content",
    [
        "1\t2\t3\t4\n1\t2\t3\n",  # a short line
        "1\t2\t3\t4\n1\t2\tgood\t4\n",  # a rating that is not a number
        "1\t2\tnan\t4\n",  # a non-finite rating
        "1\t2\t3\t4\n99999999999999999999\t2\t3\t4\n",  # an id past 64 bits
    ],
    ids=["short-line", "not-a-number", "nan", "overflow"],
)
def test_arrow_gives_up_on_a_malformed_file_and_the_line_reader_names_the_line(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    assert both_fast(path) is None
    with pytest.raises(DataError, match=r"bad.tsv, line 2|bad.tsv, line 1"):
        read_columns(path, sep="\t", n_fields=4, columns=COLUMNS)


def both_fast(path: Path) -> Any:
    return read_columns_arrow(
        path,
        sep="\t",
        n_fields=4,
        columns=COLUMNS,
        encoding="utf-8-sig",
        header=False,
        quotechar=None,
        skip_blank=True,
        first_record=None,
    )


@pytest.mark.parametrize(
    ("ids", "expected"),
    [(["7", " 12", "-3"], [7, 12, -3]), (["7", "007"], ["7", "007"]), (["7", "x"], ["7", "x"])],
)
def test_ids_are_integers_only_where_every_one_is_written_as_one(
    tmp_path: Path, ids: list[str], expected: list[Any]
) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("".join(f"{i},1,2,3\n" for i in ids))
    fast = read_columns_arrow(
        path,
        sep=",",
        n_fields=4,
        columns={"user": (0, "id")},
        encoding="utf-8-sig",
        header=False,
        quotechar='"',
        skip_blank=True,
        first_record=_first_record(path, ",", "utf-8", '"'),
    )
    slow = read_columns_by_line(path, sep=",", n_fields=4, columns={"user": (0, "id")})
    assert fast is not None and fast[0]["user"].tolist() == slow[0]["user"].tolist() == expected
    assert fast[0]["user"].dtype.kind == slow[0]["user"].dtype.kind


def test_padded_numbers_are_read_as_the_line_reader_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "pad.csv"
    path.write_text("1, a, 4.5, 10\n 2,b ,3 ,11\n")
    same(*both(path, ",", '"'))


FIELD = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["x", "ab", "é", " 7", "7 ", "", "1e3", "+5", "5.", "nan", "inf", "0x10"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.lists(FIELD, min_size=3, max_size=5), max_size=12),
    route=st.sampled_from(ROUTES),
    newline=st.sampled_from(["\n", "\r\n"]),
    blanks=st.lists(st.integers(0, 12), max_size=3),
    header=st.booleans(),
)
def test_arrow_never_disagrees_with_the_line_reader(
    rows: list[list[str]],
    route: tuple[str | None, str | None],
    newline: str,
    blanks: list[int],
    header: bool,
) -> None:
    sep, quote = route
    lines = [(sep or " ").join(row) for row in rows]
    for at in sorted(blanks, reverse=True):
        lines.insert(min(at, len(lines)), "")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.txt"
        path.write_bytes((newline.join(lines) + newline).encode())
        options = {"n_fields": None, "columns": COLUMNS, "header": header}
        try:
            slow = read_columns_by_line(path, sep=sep, quotechar=quote, **options)  # type: ignore[arg-type]
        except DataError:
            slow = None
        fast = read_columns_arrow(
            path,
            sep=sep,
            quotechar=quote,
            encoding="utf-8-sig",
            skip_blank=True,
            first_record=_first_record(path, sep, "utf-8", quote)
            if sep is not None and len(sep) == 1
            else None,
            **options,  # type: ignore[arg-type]
        )
        event("the line reader decides" if fast is None else "Arrow read it")
        if fast is None:
            return  # the line reader decides: tested above that it names the line
        assert slow is not None, "Arrow read a file the line reader rejects"
        same(fast, slow)


VALID_ROW = st.tuples(
    st.integers(-(10**9), 10**9).map(str),
    st.sampled_from(["7", "007", "ab", "é", "x y", " 12", "-3", "Café"]),
    st.floats(-1e6, 1e6, allow_nan=False).map(repr) | st.integers(0, 10).map(str),
    st.integers(0, 10**12).map(str),
).map(list)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(VALID_ROW, min_size=1, max_size=12),
    route=st.sampled_from(ROUTES),
    newline=st.sampled_from(["\n", "\r\n"]),
    blanks=st.lists(st.integers(0, 12), max_size=3),
)
def test_arrow_reads_well_formed_files_as_the_line_reader_does(
    rows: list[list[str]],
    route: tuple[str | None, str | None],
    newline: str,
    blanks: list[int],
) -> None:
    sep, quote = route
    if sep is None or quote is None:  # unquoted: a field may not hold the separator
        rows = [[f.replace(" ", "_") if sep is None else f for f in row] for row in rows]
    lines = [(sep or " ").join(row) for row in rows]
    for at in sorted(blanks, reverse=True):
        lines.insert(min(at, len(lines)), "")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.txt"
        path.write_bytes((newline.join(lines) + newline).encode())
        fast, slow = both(path, sep, quote)
        event("the line reader decides" if fast is None else "Arrow read it")
        if fast is not None:
            same(fast, slow)
