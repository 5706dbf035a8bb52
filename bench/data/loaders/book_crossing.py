"""Book-Crossing (Ziegler et al., WWW 2005): ``;``-separated, quoted, Latin-1 CSV files of ratings,
users and books."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.data.dataset import Dataset
from bench.data.loaders.cache import load_card_files
from bench.data.loaders.movielens import AGE_BRACKETS
from bench.data.loaders.table import declared_scale, lookup, one_hot, ratings_table
from bench.data.loaders.text_reader import read_columns


def parse_book_crossing(
    card: Any, options: dict[str, Any], data_dir: str | Path | None = None
) -> Dataset:
    """``BX-Book-Ratings.csv``; with ``explicit_only`` (default) the implicit 0 ratings are dropped,
    leaving 1-10. With ``features = true``, user age (bracket one-hot plus "unknown") from
    ``BX-Users.csv`` and the year of publication (item attribute ``release_year``) from
    ``BX-Books.csv``; many rated ISBNs have no row there, so their year is unknown."""
    with_features = bool(options.get("features", True))
    needed = ["BX-Book-Ratings.csv"] + (["BX-Users.csv", "BX-Books.csv"] if with_features else [])
    read = {"sep": ";", "quotechar": '"', "encoding": "latin-1", "header": True}

    def build(paths: dict[str, Path]) -> Dataset:
        where = str(paths["BX-Book-Ratings.csv"])
        scale, like = declared_scale(options, card, where)
        cols, lines, _ = read_columns(
            paths["BX-Book-Ratings.csv"],
            n_fields=3,
            columns={"user": (0, "int"), "item": (1, "str"), "rating": (2, "float")},
            **read,  # type: ignore[arg-type]
        )
        explicit_only = bool(options.get("explicit_only", True))
        keep = cols["rating"] > 0 if explicit_only else np.ones(len(lines), dtype=bool)
        dropped = {"implicit_ratings": int((~keep).sum())} if explicit_only else {}
        table = ratings_table(
            cols["user"][keep],
            np.char.upper(cols["item"][keep]),
            cols["rating"][keep],
            None,
            lines[keep],
            duplicates=options.get("duplicates", "last"),
            rating_scale=scale,
            like_threshold=like,
            where=where,
        )
        if not with_features:
            return table.to_dataset(card.name, dropped=dropped)
        users, _, _ = read_columns(
            paths["BX-Users.csv"],
            n_fields=3,
            columns={"id": (0, "int"), "age": (2, "str")},
            **read,  # type: ignore[arg-type]
        )
        age = np.full(len(table.user_ids), np.nan)
        pos = lookup(table.user_ids, users["id"])
        for n, p in enumerate(pos):
            text = users["age"][p] if p >= 0 else ""
            age[n] = float(text) if text.replace(".", "", 1).isdigit() else np.nan
        bracket = np.where(
            np.isfinite(age),
            np.searchsorted(np.asarray(AGE_BRACKETS), np.nan_to_num(age), "right"),
            -1,
        )
        user_features = np.hstack(
            [one_hot(bracket, len(AGE_BRACKETS) + 1), (~np.isfinite(age))[:, None]]
        ).astype(np.float32)
        books, _, _ = read_columns(
            paths["BX-Books.csv"],
            n_fields=8,
            columns={"isbn": (0, "str"), "year": (3, "str")},
            **read,  # type: ignore[arg-type]
        )
        year = np.full(len(table.item_ids), np.nan)
        pos = lookup(table.item_ids, np.char.upper(books["isbn"]))
        for n, p in enumerate(pos):
            text = books["year"][p] if p >= 0 else ""
            if text.isdigit() and int(text) > 0:
                year[n] = float(text)
        known = np.isfinite(year)
        scaled = (np.where(known, year, np.nanmean(year) if known.any() else 1900.0) - 1900) / 100
        item_features = np.stack([scaled, ~known], axis=1).astype(np.float32)
        return table.to_dataset(
            card.name,
            dropped=dropped,
            user_features=user_features,
            item_features=item_features,
            user_attributes={"age": age},
            item_attributes={"release_year": year},
        )

    return load_card_files(card, options, needed, data_dir, build)
