"""Dataset cards: TOML files in the project's ``datasets/`` folder, one per dataset.

A card names a parser and the options passed to it. Parsers are registered by name; the cards are
discovered lazily, on the first look-up.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data import Dataset
from bench.errors import ConfigError, DataError
from bench.provenance import PROJECT_ROOT
from bench.registry import Registry

CARD_DIR = PROJECT_ROOT / "datasets"


@dataclass(frozen=True)
class Card:
    name: str
    parser: str
    path: Path | None
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


Parser = Callable[[Card, dict[str, Any]], Dataset]
PARSERS: Registry[Parser] = Registry("dataset parser")
CARDS: Registry[Card] = Registry("dataset")
_discovered = False


def read_card(path: Path) -> Card:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"dataset card {path}: {exc}") from exc
    for key in ("name", "parser"):
        if not isinstance(raw.get(key), str):
            raise ConfigError(
                f"dataset card {path}: field {key!r} is required and must be a string"
            )
    return Card(
        name=raw["name"],
        parser=raw["parser"],
        path=path,
        description=raw.get("description", ""),
        options=dict(raw.get("options", {})),
        raw=raw,
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


def get_card(name: str) -> Card:
    discover()
    path = Path(name)
    if name.endswith(".toml") and path.is_file():
        return read_card(path)
    return CARDS.get(name)


def load_dataset(name: str, options: dict[str, Any] | None = None) -> Dataset:
    """Load the dataset a card describes; ``options`` override the card's options."""
    card = get_card(name)
    parser = PARSERS.get(card.parser)
    merged = {**card.options, **(options or {})}
    try:
        return parser(card, merged)
    except DataError:
        raise
    except (ValueError, KeyError, OSError) as exc:
        raise DataError(f"dataset {card.name!r} ({card.path}): {exc}") from exc


def _synthetic(card: Card, options: dict[str, Any]) -> Dataset:
    from bench.config import build_config
    from bench.synthetic import SyntheticConfig, generate

    config = build_config(SyntheticConfig, options, where=f"dataset card {card.path} [options]")
    return generate(config, name=card.name)


PARSERS.register("synthetic", _synthetic)
