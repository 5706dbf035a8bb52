"""FilmTrust (Guo, Zhang and Yorke-Smith, IJCAI 2013): space-separated ratings plus a directed trust
graph between users."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.data.dataset import Dataset
from bench.data.loaders.cache import load_card_files
from bench.data.loaders.table import declared_scale, lookup, ratings_table
from bench.data.loaders.text_reader import read_columns


def parse_filmtrust(
    card: Any, options: dict[str, Any], data_dir: str | Path | None = None
) -> Dataset:
    """``ratings.txt`` (user item rating) and, with ``trust = true``, ``trust.txt`` (trustor
    trustee 1) as ``extras["trust_edges"]``: an ``[E, 2]`` array of contiguous user ids. Trust links
    to users without ratings have no contiguous id and are counted in ``trust_edges_dropped``."""
    with_trust = bool(options.get("trust", True))
    needed = ["ratings.txt"] + (["trust.txt"] if with_trust else [])

    def build(paths: dict[str, Path]) -> Dataset:
        where = str(paths["ratings.txt"])
        scale, like = declared_scale(options, card, where)
        cols, lines, _ = read_columns(
            paths["ratings.txt"],
            sep=None,
            n_fields=3,
            columns={"user": (0, "int"), "item": (1, "int"), "rating": (2, "float")},
        )
        table = ratings_table(
            cols["user"],
            cols["item"],
            cols["rating"],
            None,
            lines,
            duplicates=options.get("duplicates", "last"),
            rating_scale=scale,
            like_threshold=like,
            where=where,
        )
        extras: dict[str, Any] = {}
        dropped: dict[str, int] = {}
        if with_trust:
            trust, _, _ = read_columns(
                paths["trust.txt"],
                sep=None,
                n_fields=3,
                columns={"from": (0, "int"), "to": (1, "int"), "value": (2, "float")},
            )
            source = lookup(trust["from"], table.user_ids)
            target = lookup(trust["to"], table.user_ids)
            keep = (source >= 0) & (target >= 0)
            extras["trust_edges"] = np.stack([source[keep], target[keep]], axis=1)
            extras["trust_values"] = trust["value"][keep].astype(np.float32)
            extras["trust_edges_dropped"] = int((~keep).sum())
            dropped["trust_links_to_users_without_ratings"] = extras["trust_edges_dropped"]
        return table.to_dataset(card.name, dropped=dropped, extras=extras)

    return load_card_files(card, options, needed, data_dir, build)
