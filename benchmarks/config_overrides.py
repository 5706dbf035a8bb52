"""``KEY=VALUE`` command-line overrides of a learner config, shared by the benchmark scripts."""

from __future__ import annotations

import tomllib
from typing import Any


def parse_overrides(pairs: list[str], flag: str) -> dict[str, Any]:
    """Each value is read as TOML (``rank=32``, ``reg=0.1``); a bare word stays a string."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"{flag} expects KEY=VALUE (a TOML value), got {pair!r}")
        try:
            overrides[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            overrides[key.strip()] = value
    return overrides
