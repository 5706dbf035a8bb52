"""Property tests of every parser and of the suite loader: whatever bytes or values they are given,
they return a result or raise the project's own error (a BenchError) with a message; never another
exception. Examples are few, to keep the test suite quick; hypothesis keeps the failing ones."""

from __future__ import annotations

import io
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bench.data.cards import load_dataset
from bench.engine.suite import Suite, load_suite, suite_from_dict
from bench.errors import BenchError
from bench.protocol import ProtocolConfig

from real_formats import card, write, write_filmtrust, write_latest_small, write_ml100k

FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

TOKENS = (
    "1", "2", "5", "0", "-1", "3.5", "1e12", "1e400", "nan", "inf", "", " ", '"', '""', "'",
    "\\", "::", "|", ";", ",", "\t", "\ufeff", "user", "item", "rating", "timestamp", "userId",
    "movieId", "NULL", "01-Jan-1995", "Heat (1995)", "Action|Crime", "99999999999999999999",
)  # fmt: skip
SEPARATORS = ("\t", ",", ";", "|", "::", " ", "  ")


def lines_of(separators: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    """Text made of plausible and implausible fields, in a few encodings, or raw bytes."""
    field = st.one_of(
        st.sampled_from(TOKENS),
        st.text(max_size=6),
        st.integers(-3, 10**6).map(str),
        st.floats().map(repr),
    )
    line = st.tuples(st.lists(field, max_size=7), st.sampled_from(separators)).map(
        lambda parts: parts[1].join(parts[0])
    )
    newline = st.sampled_from(["\n", "\r\n", "\r"])
    text = st.tuples(st.lists(line, max_size=8), newline).map(lambda t: t[1].join(t[0]))
    encoded = st.tuples(text, st.sampled_from(["utf-8", "latin-1", "utf-16"])).map(
        lambda t: t[0].encode(t[1], errors="replace")
    )
    return st.one_of(st.binary(max_size=300), encoded)


def mutants(original: bytes) -> st.SearchStrategy[bytes]:
    """A valid file with a few fields replaced, optionally cut short: inputs that get past the
    first line and into the parsers' later steps."""
    lines = original.decode("latin-1").split("\n")
    edit = st.tuples(
        st.integers(0, len(lines) - 1),
        st.integers(0, 30),
        st.one_of(st.sampled_from(TOKENS), st.text(max_size=4)),
    )

    def apply(edits: list[tuple[int, int, str]], cut: int | None) -> bytes:
        out = list(lines)
        for line, field, token in edits:
            parts = re.split(r"(::|\t|\||;|,| )", out[line])
            parts[2 * (field % ((len(parts) + 1) // 2))] = token
            out[line] = "".join(parts)
        data = "\n".join(out).encode("latin-1", errors="replace")
        return data if cut is None else data[:cut]

    return st.builds(
        apply, st.lists(edit, min_size=1, max_size=3), st.one_of(st.none(), st.integers(0, 400))
    )


def outcome_of(load: Callable[[], Any]) -> None:
    """``load()`` succeeds or raises a BenchError that says something."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # data warnings are allowed; exceptions are the point
        try:
            load()
        except BenchError as exc:
            assert str(exc).strip(), f"{type(exc).__name__} without a message"
            event(f"refused: {type(exc).__name__}")  # --hypothesis-show-statistics shows the mix
        else:
            event("loaded")


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Valid folders in each real format; each example damages one file of a copy."""
    root = tmp_path_factory.mktemp("templates")
    write_ml100k(root / "ml100k", n_users=12, n_items=10)
    write_latest_small(root / "latest", n_users=5, n_items=6)
    write_filmtrust(root / "ft")
    bx = root / "bx"
    write(bx / "BX-Book-Ratings.csv", '"User-ID";"ISBN";"Book-Rating"\n"7";"0155061224";"5"\n')
    write(bx / "BX-Users.csv", '"User-ID";"Location";"Age"\n"7";"nyc";"30"\n')
    write(bx / "BX-Books.csv", '"ISBN";"T";"A";"Year";"P";"S";"M";"L"\n"0155061224";"t";"a";"2001";"p";"s";"m";"l"\n')  # fmt: skip
    write(root / "latest-dat" / "ratings.dat", "1::5::4::978300760\n2::5::3::978300761\n")
    write(root / "latest-dat" / "movies.dat", "5::Heat (1995)::Action|Crime\n")
    write(root / "latest-dat" / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    return root


@contextmanager
def damaged_copy(templates: Path, folder: str, file: str, content: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(templates / folder, data / "fuzz")
        (data / "fuzz" / file).write_bytes(content)
        yield data


CARD_CASES = {
    # name: (template folder, parser, card extra, files that may be damaged)
    "ml-100k": (
        "ml100k",
        "movielens-100k",
        "[options]\nfolds = ['u1']\ncache = false",
        ("u.data", "u.user", "u.item", "u1.base", "u1.test"),
    ),
    "ml-csv": ("latest", "movielens", "[options]\ncache = false", ("ratings.csv", "movies.csv")),
    "ml-dat": (
        "latest-dat",
        "movielens",
        "[options]\nformat = 'dat'\nusers = 'users.dat'\ncache = false",
        ("ratings.dat", "movies.dat", "users.dat"),
    ),
    "filmtrust": ("ft", "filmtrust", "[options]\ncache = false", ("ratings.txt", "trust.txt")),
    "book-crossing": (
        "bx",
        "book-crossing",
        "[options]\ncache = false",
        ("BX-Book-Ratings.csv", "BX-Users.csv", "BX-Books.csv"),
    ),
}


@pytest.mark.parametrize(
    ("case", "file"),
    [(case, file) for case, spec in CARD_CASES.items() for file in spec[3]],
)
@FUZZ
@given(data=st.data())
def test_card_parsers_raise_only_their_own_errors(
    templates: Path, case: str, file: str, data: st.DataObject
) -> None:
    folder, parser, extra, _ = CARD_CASES[case]
    valid = (templates / folder / file).read_bytes()
    content = data.draw(st.one_of(lines_of(SEPARATORS), mutants(valid)), label="content")
    with damaged_copy(templates, folder, file, content) as data:
        path = card(data.parent, "fuzz", parser, {}, extra)
        outcome_of(lambda: load_dataset(str(path), data_dir=data))


VALID_CSV = b"user,item,rating,timestamp\n1,a,4,10\n2,a,3.5,11\n1,b,1,12\n3,c,5,13\n"


@FUZZ
@given(
    content=st.one_of(lines_of(SEPARATORS), mutants(VALID_CSV)),
    options=st.fixed_dictionaries(
        {},
        optional={
            "header": st.booleans(),
            "delimiter": st.sampled_from([",", ";", "\t", " ", "::", ""]),
            "rating": st.one_of(st.integers(-2, 5), st.sampled_from(["rating", "x", ""])),
            "timestamp": st.sampled_from(["", "timestamp", 3]),
            "duplicates": st.sampled_from(["last", "first", "mean", "error", "other"]),
            "rating_scale": st.sampled_from([[1, 5], [5, 1], [0, 1e12], "1,5", [1]]),
            "encoding": st.sampled_from(["utf-8", "latin-1", "utf-16", "no-such-codec"]),
        },
    ),
    suffix=st.sampled_from([".csv", ".tsv", ".txt"]),
)
def test_the_csv_parser_raises_only_its_own_errors(
    content: bytes, options: dict[str, Any], suffix: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"r{suffix}"
        path.write_bytes(content)
        outcome_of(lambda: load_dataset(f"csv:{path}", {**options, "cache": False}))


def parquet_tables() -> st.SearchStrategy[bytes]:
    """Parquet files with arbitrary column names and types, and raw bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    column = st.one_of(
        st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=4),
        st.lists(st.floats(), min_size=1, max_size=4),
        st.lists(st.text(max_size=4), min_size=1, max_size=4),
        st.lists(st.one_of(st.none(), st.integers(0, 9)), min_size=1, max_size=4),
        st.lists(st.lists(st.integers(0, 3), max_size=2), min_size=1, max_size=4),
        st.lists(st.booleans(), min_size=1, max_size=4),
    )
    names = st.sampled_from(["user", "item", "rating", "timestamp", "user_id", "x", "score"])

    def to_bytes(cols: dict[str, list[Any]]) -> bytes:
        size = min(len(v) for v in cols.values())
        buffer = io.BytesIO()
        pq.write_table(pa.table({k: v[:size] for k, v in cols.items()}), buffer)
        return buffer.getvalue()

    tables = st.dictionaries(names, column, min_size=1, max_size=5).map(to_bytes)
    return st.one_of(tables, st.binary(max_size=200))


@FUZZ
@given(content=parquet_tables())
def test_the_parquet_parser_raises_only_its_own_errors(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.parquet"
        path.write_bytes(content)
        outcome_of(lambda: load_dataset(f"parquet:{path}", {"cache": False}))


# The suite loader -----------------------------------------------------------------------------

NAMES = ("synthetic", "csv:x.csv", "mf", "item-mean", "oracle", "warm", "user_cold", "rmse", "cpu")
SCALARS = st.one_of(
    st.booleans(),
    st.integers(-3, 2**64),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(NAMES),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["name", "rank", "x", *NAMES]), inner, max_size=3),
    ),
    max_leaves=8,
)
PROTOCOL_FIELDS = [f.name for f in fields(ProtocolConfig)]
SUITE_KEYS = [f.name for f in fields(Suite) if f.name != "source"]


def suite_tables() -> st.SearchStrategy[dict[str, Any]]:
    protocol = st.fixed_dictionaries(
        {"name": st.sampled_from(["cold-random", "temporal", "melu", "predefined", "x"])},
        optional={name: VALUES for name in PROTOCOL_FIELDS if name != "name"},
    )
    learner = st.dictionaries(
        st.sampled_from(["mf", "item-mean", "maml", "protonet"]),
        st.one_of(st.dictionaries(st.sampled_from(["rank", "reg", "lr", "x"]), VALUES), VALUES),
        max_size=2,
    )
    return st.fixed_dictionaries(
        {},
        optional={
            **{key: VALUES for key in SUITE_KEYS},
            "protocol": st.one_of(protocol, VALUES),
            "learner": learner,
            "learners": st.lists(st.sampled_from(["mf", "item-mean", "maml", "x"]), max_size=3),
        },
    )


@FUZZ
@given(raw=suite_tables())
def test_the_suite_loader_raises_only_its_own_errors(raw: dict[str, Any]) -> None:
    outcome_of(lambda: suite_from_dict(raw, "fuzz.toml"))


@FUZZ
@given(content=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_suite_files_of_any_bytes_raise_only_config_errors(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "suite.toml"
        path.write_bytes(content)
        outcome_of(lambda: load_suite(str(path)))
