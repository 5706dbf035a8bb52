"""A dataset card as read: what a parser needs to find, check and read a dataset's files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Card:
    name: str
    parser: str
    path: Path | None
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    url: str = ""
    folder: str = ""
    """The folder the official archive unpacks to; the dataset's folder in the data directory."""
    archive_root: str = ""
    """The folder inside the archive that holds the files ("" when they sit at its top)."""
    archive_sha256: str = "unverified"
    files: dict[str, str] = field(default_factory=dict)
    """File name -> sha256 (or "unverified") for every file the parser may read."""
    rating_scale: tuple[float, float] | None = None
    like_threshold: float | None = None
    licence: str = ""
    citation: str = ""
    protocol_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
