"""Bring your own data: a long-format CSV (``csv:PATH``) or Parquet (``parquet:PATH``) file with
one rating per row.

Options (from a suite's ``[dataset."csv:PATH"]`` table or a card's ``[options]``):
- ``user``, ``item``, ``rating``, ``timestamp``: column names (with a header) or 0-based indices.
  Defaults: with a header, the first column whose name is a usual alias (user, user_id, userId,
  ...); a header that names no user, item or rating column is an error. Without a header,
  columns 0, 1, 2 and, when present, 3. ``timestamp = ""`` means none.
- ``delimiter``: default tab for ``.tsv``, else guessed from the first line among , ; | and tab,
  else whitespace. ``header``: default guessed (a non-numeric rating field in line 1 is a header).
- ``duplicates``: what to do with repeated (user, item) pairs: ``last`` (default; file order),
  ``first``, ``mean`` or ``error``.
- ``rating_scale`` ([min, max]; default: the card's, else the observed min and max, with a
  warning when one extreme value alone stretches it) and ``like_threshold`` (default: the card's,
  else unset: each split likes its median training rating and above).
- ``encoding`` (utf-8; a byte-order mark is skipped), ``cache`` (true).

Ids may be any strings; they map to contiguous ids, and ``user_ids`` / ``item_ids`` keep them
(as integers when every id is one). Without a timestamp column every timestamp is 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.data.dataset import Dataset
from bench.data.loaders.cache import cached
from bench.data.loaders.sources import relative_inside, sha256_file
from bench.data.loaders.table import declared_scale, ratings_table
from bench.data.loaders.text_reader import (
    Kind,
    bounded_lines,
    ids_from_text,
    read_columns,
    text_encoding,
)
from bench.errors import DataError, excerpt, excerpt_list

ALIASES: dict[str, tuple[str, ...]] = {
    "user": (
        "user", "user_id", "userid", "uid", "users", "reviewer_id", "reviewerid", "customer_id",
        "customer", "member_id", "u",
    ),
    "item": (
        "item", "item_id", "itemid", "iid", "movieid", "movie_id", "product_id", "productid",
        "isbn", "asin", "book_id", "track_id", "business_id", "i",
    ),
    "rating": (
        "rating", "ratings", "score", "value", "stars", "book-rating", "book_rating", "rate",
        "preference", "r",
    ),
    "timestamp": ("timestamp", "time", "ts", "unix_time", "unixtime", "datetime", "t"),
}  # fmt: skip
_OPTIONS: dict[str, tuple[type, ...]] = {
    "path": (str,), "user": (str, int), "item": (str, int), "rating": (str, int),
    "timestamp": (str, int), "delimiter": (str,), "header": (bool,), "duplicates": (str,),
    "rating_scale": (list, tuple), "like_threshold": (int, float), "encoding": (str,),
    "cache": (bool,), "name": (str,),
}  # fmt: skip


def check_options(options: dict[str, Any], where: str) -> None:
    """Refuse an option this reader does not know, or a value of a type it cannot take."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise DataError(
            f"{where}: unknown option(s) {', '.join(map(excerpt, unknown))}; "
            f"valid: {', '.join(sorted(_OPTIONS))}"
        )
    for name, value in options.items():
        kinds = _OPTIONS[name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            wanted = " or ".join(k.__name__ for k in kinds)
            raise DataError(f"{where}: option {name!r} must be a {wanted}, got {excerpt(value)}")


def _path(card: Any, options: dict[str, Any]) -> Path:
    if not options.get("path"):
        raise DataError(f"dataset {card.name!r}: option 'path' (the file to read) is required")
    if card.path is not None:  # a card's file stays in the card's folder, whoever wrote it
        inside = relative_inside(options["path"], f"dataset card {card.path}: option 'path'")
        path = Path(card.path).parent / inside
    else:
        path = Path(str(options["path"])).expanduser()
    if not path.is_file():
        raise DataError(f"dataset {card.name!r}: file {path} does not exist")
    return path


def _guess_delimiter(first_line: str, path: Path) -> str | None:
    if path.suffix.lower() == ".tsv":
        return "\t"
    counts = {sep: first_line.count(sep) for sep in (",", "\t", ";", "|")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else None


def _is_number(text: str) -> bool:
    try:
        float(text.strip().strip('"'))
    except ValueError:
        return False
    return True


def _column(
    role: str, spec: Any, header: list[str] | None, n_fields: int, where: str
) -> int | None:
    """The field index of a role: an explicit name or index, else (with a header) a usual name,
    else (without one) the position user, item, rating, timestamp. A header that names no
    user, item or rating column is an error: guessing by position would read, say, timestamps
    as ratings."""
    if spec == "":
        return None
    if isinstance(spec, int):
        if not 0 <= spec < n_fields:
            raise DataError(
                f"{where}: column index {spec} for {role!r} is outside 0..{n_fields - 1}"
            )
        return spec
    if isinstance(spec, str):
        if header is None:
            raise DataError(f"{where}: column {excerpt(spec)} for {role!r} needs a header row")
        if spec not in header:
            raise DataError(
                f"{where}: no column {excerpt(spec)} for {role!r}; the header has columns "
                f"{excerpt_list(header)}"
            )
        return header.index(spec)
    if header is not None:
        lowered = [h.strip().lower() for h in header]
        for alias in ALIASES[role]:
            if alias in lowered:
                return lowered.index(alias)
        if role == "timestamp":
            return None
        raise DataError(
            f"{where}: the header names no {role} column (columns found: {excerpt_list(header)}); "
            f"name it {' or '.join(repr(a) for a in ALIASES[role][:3])}, or set the option "
            f"{role!r} to a column name or 0-based index"
        )
    position = {"user": 0, "item": 1, "rating": 2, "timestamp": 3}[role]
    return position if position < n_fields else None


def _finish(
    card: Any,
    options: dict[str, Any],
    cols: dict[str, np.ndarray],
    lines: np.ndarray,
    where: str,
    columns: dict[str, str | None],
) -> Dataset:
    timestamp = cols.get("timestamp")
    if timestamp is not None:
        timestamp = np.asarray(timestamp, dtype=np.float64)
        outside = np.flatnonzero(np.abs(timestamp) >= 2.0**63)
        if len(outside):
            raise DataError(
                f"{where}, line {lines[outside[0]]}: timestamp {timestamp[outside[0]]:g} does not "
                "fit a 64-bit integer"
            )
        timestamp = timestamp.astype(np.int64)
    scale, like = declared_scale(options, card, where)
    table = ratings_table(
        ids_from_text(cols["user"]),
        ids_from_text(cols["item"]),
        cols["rating"],
        timestamp,
        lines,
        duplicates=options.get("duplicates", "last"),
        rating_scale=scale,
        like_threshold=float("nan") if like is None else like,  # NaN: each split's median
        where=where,
    )
    dataset = table.to_dataset(options.get("name", card.name), extras={"source_file": where})
    dataset.extras["load_report"]["columns"] = columns
    return dataset


def parse_csv(card: Any, options: dict[str, Any], data_dir: str | Path | None = None) -> Dataset:
    check_options(options, f"dataset {card.name!r}")
    path = _path(card, options)
    encoding = text_encoding(options.get("encoding", "utf-8"))
    where = str(path)

    def build() -> Dataset:
        try:
            with open(path, encoding=encoding, errors="replace") as handle:
                first = next(bounded_lines(handle, path), "").rstrip("\r\n")
        except LookupError as exc:
            raise DataError(f"{where}: unknown text encoding {excerpt(encoding)}") from exc
        if not first.strip():
            raise DataError(f"{where}: the first line is empty (expected a header or a rating)")
        sep = options.get("delimiter", _guess_delimiter(first, path))
        sep = None if sep in ("", " ", "whitespace") else sep
        fields = [f.strip().strip('"') for f in (first.split(sep) if sep else first.split())]
        header = options.get("header")
        if header is None:
            rating_spec = options.get("rating")
            probe = rating_spec if isinstance(rating_spec, int) else 2
            header = not _is_number(fields[min(max(probe, 0), len(fields) - 1)])
        names = fields if header else None
        roles: dict[str, tuple[int, Kind]] = {}
        wanted: tuple[tuple[str, Kind], ...] = (
            ("user", "id"),
            ("item", "id"),
            ("rating", "float"),
            ("timestamp", "float"),
        )
        for role, kind in wanted:
            index = _column(role, options.get(role), names, len(fields), where)
            if index is not None:
                roles[role] = (index, kind)
        for role in ("user", "item", "rating"):
            if role not in roles:
                raise DataError(
                    f"{where}: no {role} column: line 1 has {len(fields)} field(s) "
                    f"({excerpt(first)}) and no header names one"
                )
        quote = '"' if sep is not None and len(sep) == 1 else None
        cols, lines, _ = read_columns(
            path,
            sep=sep,
            n_fields=len(fields),
            columns=roles,
            encoding=encoding,
            header=bool(header),
            quotechar=quote,
        )
        used = {
            role: (names[roles[role][0]] if names else f"field {roles[role][0] + 1}")
            if role in roles
            else None
            for role in ("user", "item", "rating", "timestamp")
        }
        return _finish(card, options, cols, lines, where, used)

    key = {"card": card.name, "parser": "csv", "file": sha256_file(path), "options": options}
    return cached(key, build, use_cache=bool(options.get("cache", True)), source=where)


def parse_parquet(
    card: Any, options: dict[str, Any], data_dir: str | Path | None = None
) -> Dataset:
    check_options(options, f"dataset {card.name!r}")
    path = _path(card, options)
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(
            f"reading {path} needs pyarrow, which is not installed: "
            "pip install 'coldstart-bench[parquet]' (or pip install pyarrow)"
        ) from exc

    where = str(path)

    def build() -> Dataset:
        try:
            opened = pq.ParquetFile(path)
            names = [str(n) for n in opened.schema_arrow.names]
        except Exception as exc:  # pyarrow raises its own error types for damaged files
            raise DataError(
                f"{where}: not a readable Parquet file ({excerpt(str(exc), 120)})"
            ) from exc
        cols: dict[str, np.ndarray] = {}
        used: dict[str, str | None] = {"timestamp": None}
        for role in ("user", "item", "rating", "timestamp"):
            index = _column(role, options.get(role), names, len(names), where)
            if index is None:
                continue
            used[role] = names[index]
            try:  # one column at a time: at 10^8 ratings the whole table is gigabytes
                column = opened.read(columns=[names[index]]).column(0)
            except Exception as exc:
                raise DataError(
                    f"{where}: column {excerpt(names[index])} is not readable "
                    f"({excerpt(str(exc), 120)})"
                ) from exc
            cols[role] = _parquet_column(column, role, names[index], where)
            del column
        lines = np.arange(1, len(cols["rating"]) + 1)
        return _finish(card, options, cols, lines, where, used)

    key = {"card": card.name, "parser": "parquet", "file": sha256_file(path), "options": options}
    return cached(key, build, use_cache=bool(options.get("cache", True)), source=where)


def _parquet_column(column: Any, role: str, name: str, where: str) -> np.ndarray:
    """One column as numbers (ratings, timestamps: datetimes become seconds) or id strings."""
    import pyarrow as pa

    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{where}, row {row + 1}: column {excerpt(name)} is empty (null)")
    try:
        if role not in ("rating", "timestamp") and pa.types.is_integer(column.type):
            # integer ids stay integers, as from text
            return np.asarray(column.to_numpy(), dtype=np.int64)
        if role in ("rating", "timestamp") and pa.types.is_timestamp(column.type):
            values = column.cast(pa.timestamp("s")).cast(pa.int64()).to_numpy()
        else:
            values = column.to_numpy(zero_copy_only=False)
        if role not in ("rating", "timestamp"):
            return np.char.strip(np.asarray(values).astype(str))
        values = np.asarray(values, dtype=np.float64)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        wanted = "numbers" if role in ("rating", "timestamp") else "ids"
        raise DataError(
            f"{where}: column {excerpt(name)} ({column.type}) cannot be read as {wanted}"
        ) from exc
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise DataError(f"{where}, row {bad[0] + 1}: column {excerpt(name)} is not a finite number")
    return values
