"""Reading delimited rating files strictly, and turning raw columns into a :class:`Dataset`.

Every malformed line is reported with its file and line number: a silently skipped line would
change a benchmark's numbers without anyone noticing.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from bench.data.dataset import Dataset, float32_loss
from bench.data.loaders.arrow_table import Kind, read_columns_arrow
from bench.errors import DataError, excerpt
from bench.limits import MAX_ID_CHARS, MAX_LINE_CHARS

DUPLICATE_POLICIES = ("last", "first", "mean", "error")
_CHUNK = 500_000
_INT64_LIMIT = 2.0**63


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


def default_like_threshold(scale: tuple[float, float]) -> float:
    """Three quarters of the way up the scale: 4 on 1-5, 8 on 0-10; the card or options may say
    otherwise."""
    lo, hi = scale
    return lo + 0.75 * (hi - lo)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def declared_scale(
    options: dict[str, Any], card: Any, where: str
) -> tuple[tuple[float, float] | None, float | None]:
    """The rating scale and like threshold that the options (a suite's dataset table,
    ``--rating-scale``) or else the dataset card set; None for what neither sets."""
    scale = options.get("rating_scale", getattr(card, "rating_scale", None))
    like = options.get("like_threshold", getattr(card, "like_threshold", None))
    if scale is not None:
        if not (isinstance(scale, list | tuple) and len(scale) == 2 and all(map(_number, scale))):
            raise DataError(f"{where}: rating_scale must be [min, max], got {excerpt(scale)}")
        lo, hi = float(scale[0]), float(scale[1])
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise DataError(
                f"{where}: rating_scale [{lo:g}, {hi:g}] needs finite bounds with min < max"
            )
        scale = (lo, hi)
    if like is not None and not (_number(like) and np.isfinite(like)):
        raise DataError(f"{where}: like_threshold must be a number, got {excerpt(like)}")
    return scale, None if like is None else float(like)


def contiguous(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct raw ids and each row's contiguous id."""
    if raw.dtype.kind in "iu" and len(raw):
        low, high = int(raw.min()), int(raw.max())
        if high - low < max(4 * len(raw), 1 << 20):
            # Integer ids in a dense range: a lookup table in one pass instead of a sort (at
            # 10^8 ratings the sort takes seconds and several copies of the column).
            offset = raw - raw.dtype.type(low) if low else raw
            present = np.zeros(high - low + 1, dtype=bool)
            present[offset] = True
            ids = (np.flatnonzero(present) + low).astype(raw.dtype)
            code = np.cumsum(present, dtype=np.int64) - 1
            return ids, code[offset]
    ids, index = np.unique(raw, return_inverse=True)
    return ids, index.astype(np.int64).reshape(-1)


def resolve_duplicates(
    user: np.ndarray,
    item: np.ndarray,
    rating: np.ndarray,
    timestamp: np.ndarray,
    lines: np.ndarray,
    policy: str,
    where: str,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows to keep (in file order) and ratings for them under the duplicate ``policy``.

    Returns the kept row indices, their ratings (means under ``mean``) and the number of dropped
    duplicate rows.
    """
    if policy not in DUPLICATE_POLICIES:
        raise DataError(
            f"{where}: duplicates must be one of {DUPLICATE_POLICIES}, got {excerpt(policy)}"
        )
    n_items = int(item.max()) + 1 if len(item) else 1
    key = user * n_items + item
    ordered = np.sort(key)  # most files have no duplicates: found without the stable argsort
    if len(key) < 2 or bool((ordered[1:] != ordered[:-1]).all()):
        return np.arange(len(key)), rating, 0
    del ordered
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    if len(starts) == len(key):
        return np.arange(len(key)), rating, 0
    if policy == "error":
        dup = order[starts[np.flatnonzero(np.diff(np.r_[starts, len(key)]) > 1)[0]]]
        same = lines[np.flatnonzero(key == key[dup])]
        shown = ", ".join(map(str, same[:5])) + (
            f" and {len(same) - 5} more" if len(same) > 5 else ""
        )
        raise DataError(
            f"{where}: duplicate (user, item) pair on lines {shown}; "
            "set duplicates = 'last', 'first' or 'mean' to resolve it"
        )
    ends = np.r_[starts[1:], len(key)]
    if policy == "first":
        keep = order[starts]
        values = rating[keep]
    elif policy == "last":
        keep = order[ends - 1]
        values = rating[keep]
    else:
        keep = order[ends - 1]
        values = np.add.reduceat(rating[order], starts) / (ends - starts)
    by_file = np.argsort(keep, kind="stable")
    return keep[by_file], values[by_file], len(key) - len(keep)


EXTREME_GAP = 4.0
"""How many times the other ratings' span an extreme must lie beyond them to be doubted."""


def lone_extremes(values: np.ndarray) -> list[tuple[float, int, float, float]]:
    """Extreme ratings that alone stretch an inferred scale: (value, how many, low, high of the
    others) for a top or bottom value held by at most 0.1% of the ratings (at least one) and
    further from the next value than ``EXTREME_GAP`` times the others' span. Small files (under
    ten ratings) are not judged."""
    levels, counts = np.unique(values, return_counts=True)
    if len(levels) < 3 or len(values) < 10:
        return []
    rare = max(1, len(values) // 1000)
    found = []
    if counts[-1] <= rare and levels[-1] - levels[-2] > EXTREME_GAP * (levels[-2] - levels[0]):
        found.append((float(levels[-1]), int(counts[-1]), float(levels[0]), float(levels[-2])))
    if counts[0] <= rare and levels[1] - levels[0] > EXTREME_GAP * (levels[-1] - levels[1]):
        found.append((float(levels[0]), int(counts[0]), float(levels[1]), float(levels[-1])))
    return found


def scale_warnings(
    values: np.ndarray,
    lines: np.ndarray,
    scale: tuple[float, float],
    like: float,
    where: str,
    inferred: bool,
) -> list[str]:
    """What is doubtful about the rating scale and the like threshold, one message each."""
    out = []
    for value, count, lo, hi in lone_extremes(values) if inferred else []:
        line = int(lines[np.flatnonzero(values == value)[0]])
        whom = "a single rating" if count == 1 else f"{count} ratings"
        out.append(
            f"{where}, line {line}: the inferred rating scale {scale[0]:g}-{scale[1]:g} rests on "
            f"{whom} of {value:g}; every other rating lies in {lo:g}-{hi:g}. If that is a "
            f"mistake, fix the file; else set the scale: --rating-scale {lo:g},{hi:g} or "
            f"rating_scale = [{lo:g}, {hi:g}] in the dataset's options or card"
        )
    if scale[0] == scale[1]:
        out.append(
            f"{where}: every rating is {scale[0]:g}, so the inferred scale has no span; "
            "set rating_scale = [min, max] in the dataset's options or card"
        )
    elif np.isfinite(like) and not scale[0] <= like <= scale[1]:  # NaN: unset
        out.append(
            f"{where}: the like threshold {like:g} lies outside the rating scale "
            f"{scale[0]:g}-{scale[1]:g}, so {'no' if like > scale[1] else 'every'} rating is a like"
        )
    return out


@dataclass(frozen=True, eq=False)
class RatingsTable:
    """Ratings with contiguous ids, before side features are attached.

    ``rows`` are the source rows kept after resolving duplicates (indices into the columns read).
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    rating_scale: tuple[float, float]
    like_threshold: float
    rows: np.ndarray
    duplicates_dropped: int
    duplicate_policy: str
    source: str = ""
    scale_declared: bool = False
    threshold_declared: bool = False
    warnings: tuple[str, ...] = ()

    def load_report(self, dropped: dict[str, int] | None = None) -> dict[str, Any]:
        """What loading did to the source rows, kept with the dataset and every split of it.

        ``dropped`` counts rows the parser left out before this table, by reason (a name without
        slashes, such as ``implicit_ratings``).
        """
        return {
            "source": self.source,
            "rows_read": len(self.user) + self.duplicates_dropped,
            "ratings": len(self.user),
            "duplicates_dropped": self.duplicates_dropped,
            "duplicate_policy": self.duplicate_policy,
            "rows_dropped": {k: int(v) for k, v in (dropped or {}).items()},
            "rating_scale": list(self.rating_scale),
            "rating_scale_from": "declared" if self.scale_declared else "inferred",
            "like_threshold": self.like_threshold,
            "like_threshold_from": "declared" if self.threshold_declared else "default",
            # NaN: left unset, so each split likes its median training rating and above.
            "warnings": list(self.warnings),
        }

    def to_dataset(
        self, name: str, *, dropped: dict[str, int] | None = None, **fields: Any
    ) -> Dataset:
        """The Dataset, with side features, attributes and extras given as keyword fields."""
        extras = {
            "duplicates_dropped": self.duplicates_dropped,
            "duplicate_policy": self.duplicate_policy,
            "load_report": self.load_report(dropped),
            **fields.pop("extras", {}),
        }
        return Dataset(
            name=name,
            user=self.user,
            item=self.item,
            rating=self.rating,
            timestamp=self.timestamp,
            n_users=len(self.user_ids),
            n_items=len(self.item_ids),
            rating_scale=self.rating_scale,
            like_threshold=self.like_threshold,
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            extras=extras,
            **fields,
        )


def describe_load_report(report: dict[str, Any]) -> str:
    """One line on what loading did: ratings kept, rows left out and why, the scale and the like
    threshold with where they came from."""
    changes = [f"{report.get('duplicates_dropped', 0)} duplicate (user, item) rows dropped"]
    if report.get("duplicates_dropped"):
        changes[0] += f" (kept: {report.get('duplicate_policy')})"
    for why, count in report.get("rows_dropped", {}).items():
        changes.append(f"{count} {why.replace('_', ' ')} left out")
    lo, hi = report.get("rating_scale", (float("nan"), float("nan")))
    notes = len(report.get("warnings", []))
    like = report.get("like_threshold")
    set_ = isinstance(like, int | float) and bool(np.isfinite(like))
    like_text = f"{like:g}" if set_ else "each split's median training rating"
    return (
        f"data {report.get('source')}: {report.get('ratings')} ratings; {', '.join(changes)}; "
        f"rating scale {lo:g}-{hi:g} ({report.get('rating_scale_from')}), like threshold "
        f"{like_text} ({report.get('like_threshold_from')})"
        + (f"; {notes} warning(s), shown when it was loaded" if notes else "")
    )


def ratings_table(
    raw_user: np.ndarray,
    raw_item: np.ndarray,
    rating: np.ndarray,
    timestamp: np.ndarray | None,
    lines: np.ndarray,
    *,
    duplicates: str = "last",
    rating_scale: tuple[float, float] | list[float] | None = None,
    like_threshold: float | None = None,
    where: str = "",
) -> RatingsTable:
    """Map raw ids to contiguous ones (sorted by raw id), resolve duplicate pairs and infer the
    scale where it is not given (the observed min and max)."""
    if len(rating) == 0:
        raise DataError(f"{where}: no ratings")
    user_ids, user = contiguous(raw_user)
    item_ids, item = contiguous(raw_item)
    ts = np.zeros(len(rating), dtype=np.int64) if timestamp is None else timestamp
    rows, values, dropped = resolve_duplicates(user, item, rating, ts, lines, duplicates, where)
    too_big = np.flatnonzero(np.abs(values) > np.finfo(np.float32).max)
    if len(too_big):
        raise DataError(
            f"{where}, line {lines[rows[too_big[0]]]}: rating {values[too_big[0]]:g} is too large "
            "to store (ratings are 32-bit floats)"
        )
    lost = float32_loss(values)
    if lost is not None:
        line = lines[rows[np.flatnonzero(values == lost[0])[0]]]
        raise DataError(
            f"{where}, line {line}: rating {lost[0]!r} would be stored as {lost[1]!r} (ratings "
            "are 32-bit floats), which blurs the ratings' range and can merge distinct ratings; "
            "rescale them (e.g. subtract their offset or multiply them up) before loading"
        )
    if rating_scale is None:
        scale = (float(values.min()), float(values.max()))
    else:
        scale = (float(rating_scale[0]), float(rating_scale[1]))
        outside = np.flatnonzero((values < scale[0]) | (values > scale[1]))
        if len(outside):
            raise DataError(
                f"{where}, line {lines[rows[outside[0]]]}: rating {values[outside[0]]:g} "
                f"lies outside the declared scale {scale[0]:g}-{scale[1]:g}"
            )
    threshold = default_like_threshold(scale) if like_threshold is None else float(like_threshold)
    def kept(column: np.ndarray) -> np.ndarray:  # no copy of a column when every row is kept
        return column if dropped == 0 else column[rows]

    notes = scale_warnings(values, kept(lines), scale, threshold, where, rating_scale is None)
    return RatingsTable(
        user=kept(user),
        item=kept(item),
        rating=values.astype(np.float32),
        timestamp=kept(ts).astype(np.int64, copy=False),
        user_ids=user_ids,
        item_ids=item_ids,
        rating_scale=scale,
        like_threshold=threshold,
        rows=rows,
        duplicates_dropped=dropped,
        duplicate_policy=duplicates,
        source=where,
        scale_declared=rating_scale is not None,
        threshold_declared=like_threshold is not None and bool(np.isfinite(like_threshold)),
        warnings=tuple(notes),
    )


def lookup(ids: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each of ``ids`` the position of the same value in ``keys``, or -1 where absent."""
    if len(keys) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    pos = np.searchsorted(keys[order], ids)
    pos = np.minimum(pos, len(keys) - 1)
    found = keys[order][pos] == ids
    return np.where(found, order[pos], -1).astype(np.int64)


def one_hot(codes: np.ndarray, width: int) -> np.ndarray:
    """Rows of ``width`` zeros with a one at each code (no one where the code is -1)."""
    out = np.zeros((len(codes), width), dtype=np.float32)
    valid = codes >= 0
    out[np.flatnonzero(valid), codes[valid]] = 1.0
    return out
