"""Bring your own data: a long-format CSV (``csv:PATH``) or Parquet (``parquet:PATH``) file with
one rating per row.

Options (from a suite's ``[dataset."csv:PATH"]`` table or a card's ``[options]``):
- ``user``, ``item``, ``rating``, ``timestamp``: column names (with a header) or 0-based indices.
  Defaults: the first column whose name is a usual alias (user, user_id, userId, ...), else
  columns 0, 1, 2 and, when present, 3. ``timestamp = ""`` means none.
- ``delimiter``: default tab for ``.tsv``, else guessed from the first line among , ; | and tab,
  else whitespace. ``header``: default guessed (a non-numeric rating field in line 1 is a header).
- ``duplicates``: what to do with repeated (user, item) pairs: ``last`` (default; file order),
  ``first``, ``mean`` or ``error``.
- ``rating_scale`` ([min, max]; default: the observed min and max) and ``like_threshold``
  (default: the card's, else unset: each split likes the median training rating and above).
- ``encoding`` (utf-8), ``cache`` (true).

Ids may be any strings; they map to contiguous ids, and ``user_ids`` / ``item_ids`` keep them
(as integers when every id is one). Without a timestamp column every timestamp is 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.data import Dataset
from bench.errors import DataError
from bench.loaders.cache import cached
from bench.loaders.sources import sha256_file
from bench.loaders.table import Kind, ratings_table, read_columns

ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userid", "uid", "users", "reviewer_id", "customer_id"),
    "item": ("item", "item_id", "itemid", "iid", "movieid", "movie_id", "product_id", "isbn"),
    "rating": ("rating", "ratings", "score", "value", "stars", "book-rating", "book_rating"),
    "timestamp": ("timestamp", "time", "ts", "unix_time", "unixtime", "datetime"),
}
_OPTIONS = {
    "path", "user", "item", "rating", "timestamp", "delimiter", "header", "duplicates",
    "rating_scale", "like_threshold", "encoding", "cache", "name",
}  # fmt: skip


def _check_options(options: dict[str, Any], where: str) -> None:
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise DataError(
            f"{where}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(_OPTIONS))}"
        )


def _path(card: Any, options: dict[str, Any]) -> Path:
    if not options.get("path"):
        raise DataError(f"dataset {card.name!r}: option 'path' (the file to read) is required")
    path = Path(str(options["path"])).expanduser()
    if not path.is_absolute() and card.path is not None:
        path = Path(card.path).parent / path  # a card's paths are relative to the card
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
    """The field index of a role from an explicit name/index, the aliases, or the position."""
    if spec == "":
        return None
    if isinstance(spec, bool):
        raise DataError(f"{where}: option {role!r} must be a column name or index")
    if isinstance(spec, int):
        if not 0 <= spec < n_fields:
            raise DataError(
                f"{where}: column index {spec} for {role!r} is outside 0..{n_fields - 1}"
            )
        return spec
    if isinstance(spec, str):
        if header is None:
            raise DataError(f"{where}: column {spec!r} for {role!r} needs a header row")
        if spec not in header:
            raise DataError(f"{where}: no column {spec!r} for {role!r}; columns: {header}")
        return header.index(spec)
    if header is not None:
        lowered = [h.lower() for h in header]
        for alias in ALIASES[role]:
            if alias in lowered:
                return lowered.index(alias)
    position = {"user": 0, "item": 1, "rating": 2, "timestamp": 3}[role]
    if role == "timestamp" and n_fields < 4:
        return None
    if header is not None and role != "timestamp" and n_fields != 3:
        raise DataError(
            f"{where}: cannot tell which column holds the {role}s (columns: {header}); "
            f"set the option {role!r}"
        )
    return position if position < n_fields else None


def _ids(raw: np.ndarray) -> np.ndarray:
    """Integer ids when every id is an integer (so they sort numerically), else the strings."""
    try:
        return np.asarray(raw, dtype=np.int64)
    except (ValueError, OverflowError):
        return raw


def _unset_is_nan(value: float | None) -> float:
    """NaN marks a like threshold left unset: each split then uses its training median."""
    return float("nan") if value is None else float(value)


def _finish(
    card: Any,
    options: dict[str, Any],
    cols: dict[str, np.ndarray],
    lines: np.ndarray,
    where: str,
) -> Dataset:
    timestamp = cols.get("timestamp")
    table = ratings_table(
        _ids(cols["user"]),
        _ids(cols["item"]),
        cols["rating"],
        None if timestamp is None else np.asarray(timestamp, dtype=np.float64).astype(np.int64),
        lines,
        duplicates=options.get("duplicates", "last"),
        rating_scale=options.get("rating_scale"),
        like_threshold=options.get("like_threshold", _unset_is_nan(card.like_threshold)),
        where=where,
    )
    return table.to_dataset(options.get("name", card.name), extras={"source_file": where})


def parse_csv(card: Any, options: dict[str, Any], data_dir: str | Path | None = None) -> Dataset:
    _check_options(options, f"dataset {card.name!r}")
    path = _path(card, options)
    encoding = options.get("encoding", "utf-8")

    def build() -> Dataset:
        with open(path, encoding=encoding, errors="replace") as handle:
            first = handle.readline().rstrip("\r\n")
        sep = options.get("delimiter", _guess_delimiter(first, path))
        sep = None if sep in ("", " ", "whitespace") else sep
        fields = [f.strip().strip('"') for f in (first.split(sep) if sep else first.split())]
        header = options.get("header")
        if header is None:
            rating_spec = options.get("rating")
            probe = rating_spec if isinstance(rating_spec, int) else min(2, len(fields) - 1)
            header = not _is_number(fields[probe]) if fields else False
        names = fields if header else None
        where = str(path)
        roles: dict[str, tuple[int, Kind]] = {}
        wanted: tuple[tuple[str, Kind], ...] = (
            ("user", "str"),
            ("item", "str"),
            ("rating", "float"),
            ("timestamp", "float"),
        )
        for role, kind in wanted:
            index = _column(role, options.get(role), names, len(fields), where)
            if index is not None:
                roles[role] = (index, kind)
        for role in ("user", "item", "rating"):
            if role not in roles:
                raise DataError(f"{where}: no {role} column (the file has {len(fields)} fields)")
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
        return _finish(card, options, cols, lines, where)

    key = {"card": card.name, "parser": "csv", "file": sha256_file(path), "options": options}
    return cached(key, build, use_cache=bool(options.get("cache", True)))


def parse_parquet(
    card: Any, options: dict[str, Any], data_dir: str | Path | None = None
) -> Dataset:
    _check_options(options, f"dataset {card.name!r}")
    path = _path(card, options)
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(
            f"reading {path} needs pyarrow, which is not installed: "
            "pip install 'coldstart-bench[parquet]' (or pip install pyarrow)"
        ) from exc

    def build() -> Dataset:
        where = str(path)
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises its own error types for damaged files
            raise DataError(f"{where}: not a readable Parquet file ({exc})") from exc
        names = list(table.column_names)
        cols: dict[str, np.ndarray] = {}
        for role in ("user", "item", "rating", "timestamp"):
            index = _column(role, options.get(role), names, len(names), where)
            if index is None:
                continue
            column = table.column(index)
            if column.null_count:
                row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
                raise DataError(f"{where}, row {row + 1}: column {names[index]!r} is empty (null)")
            values = column.to_numpy(zero_copy_only=False)
            if role in ("rating", "timestamp"):
                try:
                    values = np.asarray(values, dtype=np.float64)
                except (TypeError, ValueError) as exc:
                    raise DataError(f"{where}: column {names[index]!r} is not numeric") from exc
                bad = np.flatnonzero(~np.isfinite(values))
                if len(bad):
                    raise DataError(
                        f"{where}, row {bad[0] + 1}: column {names[index]!r} is not a finite number"
                    )
            else:
                values = np.asarray(values).astype(str)
            cols[role] = values
        for role in ("user", "item", "rating"):
            if role not in cols:
                raise DataError(f"{where}: no {role} column (columns: {names})")
        lines = np.arange(1, len(cols["rating"]) + 1)
        return _finish(card, options, cols, lines, where)

    key = {"card": card.name, "parser": "parquet", "file": sha256_file(path), "options": options}
    return cached(key, build, use_cache=bool(options.get("cache", True)))
