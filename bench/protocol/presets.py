"""The named presets of the generic cold-start protocol: ``cold-random``, ``temporal`` and ``melu``.

A preset is a factory that takes a suite's ``[protocol]`` parameters and returns a configured
protocol; each is declared as a ``bench.protocols`` entry point.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from bench.config import build_config
from bench.data import Dataset
from bench.errors import ConfigError
from bench.protocol.base import Protocol, ProtocolConfig, Split
from bench.protocol.cold_start import ColdStartProtocol

MELU_DEFAULTS: dict[str, Any] = {
    "name": "melu",
    "user_split": "random",
    "new_user_fraction": 0.2,
    "item_split": "attribute:release_year",
    "new_item_fraction": 0.2,
    "min_ratings": 13,
    "max_ratings": 100,
    "drop_filtered": True,
    "support_sizes": ("all",),
    "query_size": 10,
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
    return ColdStartProtocol(preset_config({"name": "cold-random"}, overrides, "[protocol]"))


def temporal(overrides: dict[str, Any] | None = None) -> Protocol:
    """The users and items whose first rating is latest are new; each query follows its support."""
    defaults = {"name": "temporal", "user_split": "temporal", "item_split": "temporal"}
    return ColdStartProtocol(preset_config({**defaults, "order": "time"}, overrides, "[protocol]"))


class DatasetDefaultsProtocol(ColdStartProtocol):
    """A cold-start protocol that takes per-dataset defaults from the dataset card's
    ``[protocol.NAME]`` table for the parameters the suite left unset."""

    def __init__(self, config: ProtocolConfig, explicit: set[str]) -> None:
        super().__init__(config)
        self.explicit = explicit

    def split(self, dataset: Dataset, seed: int) -> Split:
        defaults = dataset.extras.get("protocol_defaults", {}).get(self.config.name, {})
        known = {f.name for f in fields(ProtocolConfig)} - {"name", "version"}
        unknown = sorted(set(defaults) - known)
        if unknown:
            raise ConfigError(
                f"dataset {dataset.name!r}: [protocol.{self.config.name}] has unknown field(s) "
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
    """MeLU (Lee et al., KDD 2019): items new by release year, users 80/20, 13-100 ratings each.

    The release-year cut-off may come from the dataset card's ``[protocol.melu]`` table; a
    suite's value wins. Users outside the activity filter are dropped from training too; each
    task's query is 10 ratings and its support the rest; all four scenarios.
    """
    config = preset_config(MELU_DEFAULTS, overrides, "[protocol] (melu)")
    return DatasetDefaultsProtocol(config, set(overrides or {}))
