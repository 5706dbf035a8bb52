"""Dataset cards: TOML files in the project's ``datasets/`` folder, one per dataset.

A card names a parser and the options passed to it, and records where the data comes from (official
URL, the folder its archive unpacks to, the sha256 of each file the parser reads or "unverified"),
its rating scale and like threshold, its terms (licence, citation) and protocol defaults
(``[protocol.NAME]`` tables, e.g. the release-year cut-off of the ``melu`` protocol). Parsers are
registered by name; the cards are discovered lazily, on the first look-up.

Besides card names, ``csv:PATH`` and ``parquet:PATH`` load a user's own long-format file; its
column options come from the suite's ``[dataset."csv:PATH"]`` table.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.data.card import Card
from bench.data.dataset import Dataset
from bench.errors import ConfigError, DataError, DataWarning
from bench.limits import load_toml, read_text
from bench.provenance import PROJECT_ROOT
from bench.registry import Registry

# An installed wheel carries the cards inside the package; a source tree keeps them in datasets/.
_PACKAGED = Path(__file__).resolve().parent / "card_files"
CARD_DIR = _PACKAGED if _PACKAGED.is_dir() else PROJECT_ROOT / "datasets"


# A parser gets the card, the merged options and the data directory (None: the default one).
Parser = Callable[..., Dataset]
PARSERS: Registry[Parser] = Registry("dataset parser")
CARDS: Registry[Card] = Registry("dataset")
_discovered = False


FILE_OPTIONS = ("path", "ratings", "movies", "users")
"""Options that name a file in the dataset's folder (or, for ``path``, the card's folder)."""


def read_card(path: Path) -> Card:
    from bench.limits import relative_inside

    raw = load_toml(
        read_text(path, "dataset card", ConfigError), f"dataset card {path}", ConfigError
    )
    for key in ("folder", "archive_root"):
        if raw.get(key):
            relative_inside(raw[key], f"dataset card {path}: {key!r}")
    options = raw.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"dataset card {path}: [options] must be a table")
    for key in FILE_OPTIONS:
        if key in options:
            relative_inside(options[key], f"dataset card {path}: option {key!r}")
    for key in ("name", "parser"):
        if not isinstance(raw.get(key), str):
            raise ConfigError(
                f"dataset card {path}: field {key!r} is required and must be a string"
            )
    scale = raw.get("rating_scale")
    if scale is not None and (
        not isinstance(scale, list)
        or len(scale) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in scale)
    ):
        raise ConfigError(f"dataset card {path}: rating_scale must be [min, max]")
    files = raw.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ConfigError(f"dataset card {path}: [files] must map file names to sha256 strings")
    for name in files:
        relative_inside(name, f"dataset card {path}: [files] entry")
    return Card(
        name=raw["name"],
        parser=raw["parser"],
        path=path,
        description=raw.get("description", ""),
        options=dict(raw.get("options", {})),
        raw=raw,
        url=raw.get("url", ""),
        folder=raw.get("folder", ""),
        archive_root=raw.get("archive_root", ""),
        archive_sha256=raw.get("archive_sha256", "unverified"),
        files=dict(files),
        rating_scale=(float(scale[0]), float(scale[1])) if scale else None,
        like_threshold=raw.get("like_threshold"),
        licence=raw.get("licence", ""),
        citation=raw.get("citation", ""),
        protocol_defaults=dict(raw.get("protocol", {})),
    )


def discover(card_dir: Path = CARD_DIR) -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for path in sorted(card_dir.glob("*.toml")):
        card = read_card(path)
        CARDS.register(card.name, card)


def dataset_names() -> list[str]:
    discover()
    return CARDS.names()


USER_FILE_PREFIXES = ("csv:", "parquet:")


def get_card(name: str) -> Card:
    discover()
    if name.startswith(USER_FILE_PREFIXES):
        kind, _, file = name.partition(":")
        return Card(name=name, parser=kind, path=None, options={"path": file})
    path = Path(name)
    if name.endswith(".toml") and path.is_file():
        return read_card(path)
    return CARDS.get(name)


def load_dataset(
    name: str, options: dict[str, Any] | None = None, *, data_dir: str | Path | None = None
) -> Dataset:
    """Load the dataset a card describes; ``options`` override the card's options. Files are
    looked for in ``data_dir``, else ``$BENCH_DATA_DIR``, else the per-user cache.

    What loading changed or doubts (``extras["load_report"]``'s warnings) is raised as a
    :class:`DataWarning` on every load, cached or not."""
    card = get_card(name)
    parser = PARSERS.get(card.parser)
    merged = {**card.options, **(options or {})}
    try:
        dataset = parser(card, merged, data_dir=data_dir)
    except DataError:
        raise
    except (ValueError, KeyError, OSError) as exc:
        raise DataError(f"dataset {card.name!r} ({card.path}): {exc}") from exc
    for message in dataset.extras.get("load_report", {}).get("warnings", []):
        warnings.warn(message, DataWarning, stacklevel=2)
    return dataset


def check_dataset_options(name: str, options: dict[str, Any] | None = None) -> None:
    """Check the names, types and ranges of a dataset's options as loading it would, without
    reading or generating any data (what ``bench validate`` runs)."""
    card = get_card(name)
    merged = {**card.options, **(options or {})}
    if card.parser == "synthetic":
        _synthetic_config(card, merged)
    elif card.parser == "planted":
        from bench.config import build_config
        from bench.data.planted import PlantedConfig

        build_config(PlantedConfig, merged, where=f"dataset {card.name!r}")
    elif card.parser in ("csv", "parquet"):
        from bench.data.loaders.custom import check_options

        check_options(merged, f"dataset {card.name!r}")


def _synthetic_config(card: Card, options: dict[str, Any]) -> Any:
    from bench.config import build_config
    from bench.data.synthetic import SyntheticConfig

    declared = sorted({"rating_scale", "like_threshold"} & set(options))
    if declared:
        raise ConfigError(
            f"dataset {card.name!r} is generated on its own rating scale; {', '.join(declared)} "
            "(and --rating-scale) apply to datasets read from files"
        )
    return build_config(SyntheticConfig, options, where=f"dataset card {card.path} [options]")


def _synthetic(card: Card, options: dict[str, Any], data_dir: str | Path | None = None) -> Dataset:
    from bench.data.synthetic import generate

    config = _synthetic_config(card, options)
    dataset = generate(config, name=card.name)
    dataset.extras["load_report"] = {
        "source": f"generated from seed {config.seed}",
        "ratings": dataset.n_ratings,
        "duplicates_dropped": 0,
        "rating_scale": list(dataset.rating_scale),
        "rating_scale_from": "declared",
        "like_threshold": dataset.like_threshold,
        "like_threshold_from": "declared",
    }
    return dataset


PARSERS.register("synthetic", _synthetic)


def _planted(card: Card, options: dict[str, Any], data_dir: str | Path | None = None) -> Dataset:
    from bench.config import build_config
    from bench.data.planted import PlantedConfig, generate_planted

    config = build_config(PlantedConfig, options, where=f"dataset card {card.path} [options]")
    dataset = generate_planted(config, name=card.name)
    dataset.extras["load_report"] = {
        "source": f"generated from seed {config.seed}",
        "ratings": dataset.n_ratings,
        "duplicates_dropped": 0,
        "rating_scale": list(dataset.rating_scale),
        "rating_scale_from": "declared",
        "like_threshold": dataset.like_threshold,
        "like_threshold_from": "declared",
    }
    return dataset


PARSERS.register("planted", _planted)
# File parsers load lazily: their modules import only when a card uses them.
PARSERS.register("movielens-100k", "bench.data.loaders.movielens:parse_100k")
PARSERS.register("movielens", "bench.data.loaders.movielens:parse_movielens")
PARSERS.register("filmtrust", "bench.data.loaders.filmtrust:parse_filmtrust")
PARSERS.register("book-crossing", "bench.data.loaders.book_crossing:parse_book_crossing")
PARSERS.register("csv", "bench.data.loaders.custom:parse_csv")
PARSERS.register("parquet", "bench.data.loaders.custom:parse_parquet")
