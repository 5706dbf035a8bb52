"""The named presets of the generic cold-start protocol: ``cold-random``, ``temporal``, ``melu``
and ``melu-paper``.

A preset is a factory that takes a suite's ``[protocol]`` parameters and returns a configured
protocol; each is declared as a ``bench.protocols`` entry point.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from bench.config import build_config
from bench.data.dataset import Dataset
from bench.errors import ConfigError
from bench.protocol.base import Protocol, ProtocolConfig, Split
from bench.protocol.cold_start import ColdStartProtocol

COLD_START_VERSION = 2
"""Version 2: validation entities are drawn among the entities that can form a task."""

MELU_DEFAULTS: dict[str, Any] = {
    "name": "melu",
    "version": COLD_START_VERSION,
    "user_split": "random",
    "new_user_fraction": 0.2,
    "item_split": "attribute:release_year",
    "new_item_fraction": 0.2,
    "min_ratings": 13,
    "max_ratings": 100,
    "drop_filtered": False,
    "support_sizes": ("all",),
    "query_size": 10,
}
MELU_PAPER_DEFAULTS: dict[str, Any] = {
    **MELU_DEFAULTS,
    "name": "melu-paper",
    "version": 1,
    "drop_filtered": True,
}


def preset_config(
    defaults: dict[str, Any], overrides: dict[str, Any] | None, where: str
) -> ProtocolConfig:
    """A protocol config from a preset's defaults and a suite's overrides (which win)."""
    merged = {**defaults, **(overrides or {})}
    if "support_sizes" in merged:
        merged["support_sizes"] = tuple(merged["support_sizes"])
    return build_config(ProtocolConfig, merged, where=where)


def cold_random(overrides: dict[str, Any] | None = None) -> Protocol:
    """Random fractions of users and items are new; random support and query order."""
    defaults = {"name": "cold-random", "version": COLD_START_VERSION}
    return ColdStartProtocol(preset_config(defaults, overrides, "[protocol]"))


def temporal(overrides: dict[str, Any] | None = None) -> Protocol:
    """The users and items whose first rating is latest are new; each query follows its support."""
    defaults = {
        "name": "temporal",
        "version": COLD_START_VERSION,
        "user_split": "temporal",
        "item_split": "temporal",
        "order": "time",
    }
    return ColdStartProtocol(preset_config(defaults, overrides, "[protocol]"))


class DatasetDefaultsProtocol(ColdStartProtocol):
    """A cold-start protocol that takes per-dataset defaults from the dataset card's
    ``[protocol.TABLE]`` table (``TABLE``: the protocol's name unless given) for the parameters
    the suite left unset."""

    def __init__(self, config: ProtocolConfig, explicit: set[str], table: str = "") -> None:
        super().__init__(config)
        self.explicit = explicit
        self.table = table or config.name

    def split(self, dataset: Dataset, seed: int) -> Split:
        defaults = dataset.extras.get("protocol_defaults", {}).get(self.table, {})
        known = {f.name for f in fields(ProtocolConfig)} - {"name", "version"}
        unknown = sorted(set(defaults) - known)
        if unknown:
            raise ConfigError(
                f"dataset {dataset.name!r}: [protocol.{self.table}] has unknown field(s) "
                f"{', '.join(unknown)}"
            )
        chosen = {k: v for k, v in defaults.items() if k not in self.explicit}
        if "support_sizes" in chosen:
            chosen["support_sizes"] = tuple(chosen["support_sizes"])
        config = replace(self.config, **chosen) if chosen else self.config
        split = ColdStartProtocol(config).split(dataset, seed)
        split.summary["dataset_defaults"] = chosen
        return split


def melu(overrides: dict[str, Any] | None = None) -> Protocol:
    """MeLU's split (Lee et al., KDD 2019): new items by release year, all warm data in training.

    Users are new 80/20 at random; task users have 13-100 ratings. The activity filter chooses task users only: training keeps every existing user's ratings of
    existing items, minus validation users and warm queries. The release-year cut-off may come
    from the dataset card's ``[protocol.melu]`` table; a suite's value wins. Each task's query is
    10 ratings and its support the rest; all four scenarios.
    """
    config = preset_config(MELU_DEFAULTS, overrides, "[protocol] (melu)")
    return DatasetDefaultsProtocol(config, set(overrides or {}))


def melu_paper(overrides: dict[str, Any] | None = None) -> Protocol:
    """MeLU's own construction: as melu, but users outside 13-100 ratings leave training too.

    As the paper's code does; it leaves far fewer training ratings. Reads the same
    ``[protocol.melu]`` card table as ``melu``.
    """
    config = preset_config(MELU_PAPER_DEFAULTS, overrides, "[protocol] (melu-paper)")
    return DatasetDefaultsProtocol(config, set(overrides or {}), table="melu")
