"""Small files written in the real datasets' formats, so that the loaders, the cards' options and
the protocols built on them are tested on every machine, with or without the real data.

``shipped_card`` copies a card from ``datasets/`` without its checksums (generated files cannot
match them): the parser, its options, the scale and the protocol defaults stay the real ones.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from bench.data.cards import CARD_DIR
from bench.data.loaders.sources import resolve_data_dir

REAL_DATA_DIR = resolve_data_dir()
"""$BENCH_DATA_DIR, else the per-user data folder, as the environment was when tests started."""


def real_data_dir(*folders: str) -> Path:
    """The real data directory when it holds every dataset folder in ``folders``; else the test
    is skipped, saying what is missing (a failure in CI, see ``conftest.py``)."""
    missing = [f for f in folders if not (REAL_DATA_DIR / f).is_dir()]
    if missing:
        pytest.skip(
            f"real data not found: no {', '.join(f'{m}/' for m in missing)} in {REAL_DATA_DIR}; "
            "set BENCH_DATA_DIR to the folder that holds them"
        )
    return REAL_DATA_DIR


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def card(tmp: Path, name: str, parser: str, files: dict[str, str], extra: str = "") -> Path:
    """A card for the parser ``parser`` whose files live in the folder ``name``."""
    lines = [
        f'name = "{name}"',
        f'parser = "{parser}"',
        f'folder = "{name}"',
        'licence = "test terms"',
        'citation = "test citation"',
        extra,
        "[files]",
        *(f'"{k}" = "{v}"' for k, v in files.items()),
    ]
    return write(tmp / f"{name}.toml", "\n".join(lines) + "\n")


def shipped_card(name: str, target_dir: Path) -> Path:
    """The shipped card ``name`` with its file checksums left out, written into ``target_dir``."""
    text = (CARD_DIR / f"{name}.toml").read_text(encoding="utf-8")
    kept, in_files = [], False
    for line in text.splitlines():
        if line.startswith("["):
            in_files = line.strip() == "[files]"
        if not in_files:
            kept.append(line)
    return write(target_dir / f"{name}.toml", "\n".join(kept) + "\n")


GENRES = 19
OCCUPATIONS = ("technician", "other", "writer", "student", "educator")


def ml100k_ratings(
    n_users: int = 60, n_items: int = 50, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(rows of user, item, rating, timestamp in file order; each item's release year).

    Every user rates 20-45 distinct items, so MeLU's 13-100 filter keeps them all; two fifths of
    the items are from 1997-98 and popular enough that new-item pools hold ten queries."""
    rng = np.random.default_rng(seed)
    years = np.where(np.arange(n_items) < 2 * n_items // 5, 1997 + np.arange(n_items) % 2, 1990)
    years = years + np.where(years == 1990, np.arange(n_items) % 7, 0)
    weight = np.where(years >= 1997, 3.0, 1.0)
    rows = []
    for user in range(1, n_users + 1):
        count = min(int(rng.integers(20, 46)), n_items)
        items = rng.choice(n_items, size=count, replace=False, p=weight / weight.sum()) + 1
        taste = rng.normal()
        for item in items:
            rating = int(np.clip(round(3.5 + taste + rng.normal()), 1, 5))
            rows.append((user, int(item), rating, 874_700_000 + int(rng.integers(0, 10**7))))
    order = rng.permutation(len(rows))
    return np.asarray(rows, dtype=np.int64)[order], years


def write_ml100k(folder: Path, n_users: int = 60, n_items: int = 50, seed: int = 0) -> np.ndarray:
    """An ML-100K folder: u.data, u.user, u.item (Latin-1), and folds u1-u5 whose test files
    partition u.data. Returns the rating rows as written."""
    rows, years = ml100k_ratings(n_users, n_items, seed)
    lines = ["\t".join(map(str, r)) for r in rows]
    write(folder / "u.data", "\n".join(lines) + "\n")
    users = [
        f"{u}|{15 + 3 * u % 50}|{'MF'[u % 2]}|{OCCUPATIONS[u % 5]}|{'T8H1N' if u % 9 == 0 else f'{u:05d}'}"
        for u in range(1, n_users + 1)
    ]
    write(folder / "u.user", "\n".join(users) + "\n")
    items = []
    for i in range(1, n_items + 1):
        year = int(years[i - 1])
        flags = "|".join("1" if g == i % GENRES else "0" for g in range(GENRES))
        date = "" if i == n_items else f"01-Jan-{year}"  # the last one has no date, like item 267
        title = "unknown" if i == n_items else f"Café {i} ({year})"
        items.append(f"{i}|{title}|{date}||http://example.org/{i}|{flags}")
    write(folder / "u.item", "\n".join(items) + "\n", encoding="latin-1")
    fold_of = np.arange(len(rows)) % 5
    for n in range(5):
        test = [line for line, f in zip(lines, fold_of, strict=True) if f == n]
        base = [line for line, f in zip(lines, fold_of, strict=True) if f != n]
        write(folder / f"u{n + 1}.test", "\n".join(test) + "\n")
        write(folder / f"u{n + 1}.base", "\n".join(base) + "\n")
    return rows


def write_latest_small(folder: Path, n_users: int = 30, n_items: int = 40, seed: int = 1) -> int:
    """A latest-small folder: CRLF CSVs with headers, half-star ratings, quoted titles with commas
    and a film without genres. Returns the number of ratings."""
    rng = np.random.default_rng(seed)
    lines = ["userId,movieId,rating,timestamp"]
    for user in range(1, n_users + 1):
        for item in rng.choice(n_items, size=min(int(rng.integers(5, 15)), n_items), replace=False):
            stars = float(rng.integers(1, 11)) / 2
            lines.append(f"{user},{10 * (item + 1)},{stars:.1f},{964_982_703 + int(item)}")
    write(folder / "ratings.csv", "\r\n".join(lines) + "\r\n")
    movies = ["movieId,title,genres"]
    for item in range(n_items):
        genres = "(no genres listed)" if item == 0 else "Comedy|Drama" if item % 2 else "Action"
        movies.append(f'{10 * (item + 1)},"Film, The ({1950 + item})",{genres}')
    write(folder / "movies.csv", "\r\n".join(movies) + "\r\n")
    return len(lines) - 1


def write_filmtrust(folder: Path) -> None:
    """FilmTrust's layout: ``user item rating`` lines with one pair rated twice (2 then 3.5),
    and ``trustor trustee 1`` links, one to a user without ratings."""
    ratings = ["1 1 2", "1 2 4", "2 1 0.5", "3 2 1.5", "3 3 3", "1 1 3.5", "2 3 2.5"]
    write(folder / "ratings.txt", "\n".join(ratings) + "\n")
    write(folder / "trust.txt", "1 2 1\n2 3 1\n3 99 1\n")
