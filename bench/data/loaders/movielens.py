"""MovieLens (GroupLens): the 100K layout (``u.data``, ``u.user``, ``u.item``, fold files) and the
later layouts (``::``-separated ``.dat`` files of 1M and 10M; CSV with a header for 20M, 25M and
latest-small).

Side features, the same encoding for every release so that learners see one layout:
- users (where the release has them): age bracket one-hot (the seven brackets of ML-1M),
  gender one-hot, occupation one-hot, first zip digit one-hot (plus "other");
- items: genre multi-hot, and release year scaled as (year - 1900) / 100 (missing: the mean).
``release_year`` (NaN when unknown) is also an item attribute, for the ``melu`` protocol's split.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.dataset import Dataset
from bench.data.loaders.cache import load_card_files
from bench.data.loaders.table import (
    RatingsTable,
    contiguous,
    declared_scale,
    lookup,
    one_hot,
    ratings_table,
)
from bench.data.loaders.text_reader import Kind, read_columns
from bench.errors import DataError

AGE_BRACKETS = (18, 25, 35, 45, 50, 56)
"""Lower bounds of ML-1M's age brackets after "under 18"."""
_YEAR = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")
_DATE_YEAR = re.compile(r"(\d{4})\s*$")


def _read_ratings(
    path: Path, sep: str, header: bool, card: Any, options: dict[str, Any]
) -> RatingsTable:
    columns, lines, _ = read_columns(
        path,
        sep=sep,
        n_fields=4,
        header=header,
        columns={
            "user": (0, "int"),
            "item": (1, "int"),
            "rating": (2, "float"),
            "timestamp": (3, "int"),
        },
    )
    scale, like = declared_scale(options, card, str(path))
    return ratings_table(
        columns["user"],
        columns["item"],
        columns["rating"],
        columns["timestamp"],
        lines,
        duplicates=options.get("duplicates", "error"),
        rating_scale=scale,
        like_threshold=like,
        where=str(path),
    )


def _align(entity_ids: np.ndarray, file_ids: np.ndarray, path: Path, side: str) -> np.ndarray:
    position = lookup(entity_ids, file_ids)
    if (position < 0).any():
        missing = entity_ids[np.flatnonzero(position < 0)[0]]
        raise DataError(f"{path}: no row for {side} {missing}, which has ratings")
    return position


def user_side(
    age: np.ndarray, gender: np.ndarray, occupation: np.ndarray, zip_code: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """Features and attributes of users from their raw columns (already aligned to ``ids``)."""
    bracket = np.searchsorted(np.asarray(AGE_BRACKETS), age, side="right")
    gender_vocab, gender_codes = contiguous(np.char.upper(gender.astype(str)))
    occ_vocab, occ_codes = contiguous(occupation.astype(str))
    # Non-numeric codes (Canadian postcodes, blanks) share one "other" column.
    region_codes = np.asarray(
        [int(z[0]) if z[:1].isdigit() else 10 for z in zip_code.astype(str)], dtype=np.int64
    )
    features = np.hstack(
        [
            one_hot(bracket, len(AGE_BRACKETS) + 1),
            one_hot(gender_codes, len(gender_vocab)),
            one_hot(occ_codes, len(occ_vocab)),
            one_hot(region_codes, 11),
        ]
    )
    names = (
        [f"age<{AGE_BRACKETS[0]}"]
        + [f"age>={a}" for a in AGE_BRACKETS]
        + [f"gender={g}" for g in gender_vocab]
        + [f"occupation={o}" for o in occ_vocab]
        + [f"zip={d}" for d in range(10)]
        + ["zip=other"]
    )
    attributes = {
        "age": age.astype(np.float64),
        "gender": gender_codes,
        "occupation": occ_codes,
        "zip_region": region_codes,
    }
    return features, attributes, names


def item_side(
    genres: np.ndarray, genre_names: list[str], year: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    known = np.isfinite(year)
    fill = float(year[known].mean()) if known.any() else 1900.0
    scaled = (np.where(known, year, fill) - 1900.0) / 100.0
    features = np.hstack([genres.astype(np.float32), scaled[:, None].astype(np.float32)])
    names = [f"genre={g}" for g in genre_names] + ["release_year_scaled"]
    return features, {"release_year": year.astype(np.float64)}, names


def _year_from_title(titles: np.ndarray) -> np.ndarray:
    years = np.full(len(titles), np.nan)
    for n, title in enumerate(titles):
        match = _YEAR.search(str(title))
        if match:
            years[n] = float(match.group(1))
    return years


def _folds(
    table: RatingsTable, paths: dict[str, Path], folds: list[str]
) -> dict[str, dict[str, np.ndarray]]:
    """Each fold's base and test files as row indices into the dataset's ratings."""
    n_items = len(table.item_ids)
    key = table.user * n_items + table.item
    order = np.argsort(key)
    out: dict[str, dict[str, np.ndarray]] = {}
    for fold in folds:
        rows: dict[str, np.ndarray] = {}
        for part, suffix in (("train", "base"), ("test", "test")):
            path = paths[f"{fold}.{suffix}"]
            cols, lines, _ = read_columns(
                path,
                sep="\t",
                n_fields=4,
                columns={"user": (0, "int"), "item": (1, "int"), "rating": (2, "float")},
            )
            u = lookup(cols["user"], table.user_ids)
            i = lookup(cols["item"], table.item_ids)
            wanted = np.where((u >= 0) & (i >= 0), u * n_items + i, -1)
            pos = np.minimum(np.searchsorted(key[order], wanted), len(key) - 1)
            found = (wanted >= 0) & (key[order][pos] == wanted)
            if not found.all():
                bad = np.flatnonzero(~found)[0]
                raise DataError(
                    f"{path}, line {lines[bad]}: the pair ({cols['user'][bad]}, "
                    f"{cols['item'][bad]}) is not among the dataset's ratings"
                )
            rows[part] = order[pos].astype(np.int64)
        if len(np.intersect1d(rows["train"], rows["test"])):
            raise DataError(f"fold {fold}: its base and test files share ratings")
        out[fold] = rows
    return out


def parse_100k(card: Any, options: dict[str, Any], data_dir: str | Path | None = None) -> Dataset:
    folds = list(options.get("folds", ["u1", "u2", "u3", "u4", "u5"]))
    needed = ["u.data", "u.user", "u.item"]
    needed += [f"{f}.{part}" for f in folds for part in ("base", "test")]

    def build(paths: dict[str, Path]) -> Dataset:
        table = _read_ratings(paths["u.data"], "\t", False, card, options)
        users, _, _ = read_columns(
            paths["u.user"],
            sep="|",
            n_fields=5,
            columns={
                "id": (0, "int"),
                "age": (1, "int"),
                "gender": (2, "str"),
                "occupation": (3, "str"),
                "zip": (4, "str"),
            },
        )
        pos = _align(table.user_ids, users["id"], paths["u.user"], "user")
        user_feats, user_attrs, user_names = user_side(
            users["age"][pos],
            users["gender"][pos],
            users["occupation"][pos],
            users["zip"][pos],
        )
        genre_names = [
            "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
            "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
            "Romance", "Sci-Fi", "Thriller", "War", "Western",
        ]  # fmt: skip
        item_cols: dict[str, tuple[int, Kind]] = {
            "id": (0, "int"),
            "title": (1, "str"),
            "date": (2, "str"),
        }
        item_cols.update({f"g{n}": (5 + n, "int") for n in range(19)})
        items, _, _ = read_columns(
            paths["u.item"], sep="|", n_fields=24, encoding="latin-1", columns=item_cols
        )
        pos = _align(table.item_ids, items["id"], paths["u.item"], "item")
        genres = np.stack([items[f"g{n}"][pos] for n in range(19)], axis=1)
        year = np.full(len(pos), np.nan)
        for n, date in enumerate(items["date"][pos]):
            match = _DATE_YEAR.search(str(date))
            if match:
                year[n] = float(match.group(1))
        from_title = _year_from_title(items["title"][pos])
        year = np.where(np.isfinite(year), year, from_title)
        item_feats, item_attrs, item_names = item_side(genres, genre_names, year)
        return table.to_dataset(
            card.name,
            user_features=user_feats,
            item_features=item_feats,
            user_attributes=user_attrs,
            item_attributes=item_attrs,
            extras={
                "user_feature_names": user_names,
                "item_feature_names": item_names,
                "fold_names": folds,
                "folds": _folds(table, paths, folds),
            },
        )

    return load_card_files(card, options, needed, data_dir, build)


def parse_movielens(
    card: Any, options: dict[str, Any], data_dir: str | Path | None = None
) -> Dataset:
    """ML-1M, 10M, 20M, 25M and latest(-small): ``format = "dat"`` or ``"csv"``."""
    fmt = options.get("format", "csv")
    if fmt not in ("dat", "csv"):
        raise DataError(f"dataset {card.name!r}: format must be 'dat' or 'csv', got {fmt!r}")
    ext = "dat" if fmt == "dat" else "csv"
    ratings_file = options.get("ratings", f"ratings.{ext}")
    movies_file = options.get("movies", f"movies.{ext}")
    users_file = options.get("users", "")
    needed = [ratings_file, movies_file] + ([users_file] if users_file else [])
    sep, header, quote = ("::", False, None) if fmt == "dat" else (",", True, '"')
    encoding = "latin-1" if fmt == "dat" else "utf-8"

    def build(paths: dict[str, Path]) -> Dataset:
        table = _read_ratings(paths[ratings_file], sep, header, card, options)
        movies, _, _ = read_columns(
            paths[movies_file],
            sep="," if quote else sep,
            n_fields=3,
            header=header,
            quotechar=quote,
            encoding=encoding,
            columns={"id": (0, "int"), "title": (1, "str"), "genres": (2, "str")},
        )
        pos = _align(table.item_ids, movies["id"], paths[movies_file], "item")
        genre_lists = [str(g).split("|") for g in movies["genres"][pos]]
        genre_names = sorted({g for gs in genre_lists for g in gs} - {"(no genres listed)"})
        index = {g: n for n, g in enumerate(genre_names)}
        genres = np.zeros((len(pos), len(genre_names)), dtype=np.float32)
        for row, gs in enumerate(genre_lists):
            for g in gs:
                if g in index:
                    genres[row, index[g]] = 1.0
        year = _year_from_title(movies["title"][pos])
        item_feats, item_attrs, item_names = item_side(genres, genre_names, year)
        fields: dict[str, Any] = {
            "item_features": item_feats,
            "item_attributes": item_attrs,
            "extras": {"item_feature_names": item_names},
        }
        if users_file:
            users, _, _ = read_columns(
                paths[users_file],
                sep=sep,
                n_fields=5,
                encoding=encoding,
                columns={
                    "id": (0, "int"),
                    "gender": (1, "str"),
                    "age": (2, "int"),
                    "occupation": (3, "str"),
                    "zip": (4, "str"),
                },
            )
            upos = _align(table.user_ids, users["id"], paths[users_file], "user")
            user_feats, user_attrs, user_names = user_side(
                users["age"][upos],
                users["gender"][upos],
                users["occupation"][upos],
                users["zip"][upos],
            )
            fields["user_features"] = user_feats
            fields["user_attributes"] = user_attrs
            fields["extras"]["user_feature_names"] = user_names
        return table.to_dataset(card.name, **fields)

    return load_card_files(card, options, needed, data_dir, build)
