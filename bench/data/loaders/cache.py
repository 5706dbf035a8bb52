"""Parsed datasets cached as ``.npz`` files keyed by the parser, its options and the hashes of the
files it read, so that a second load skips parsing and any change to the inputs reparses.

Each entry carries a checksum of its own arrays and metadata. An entry that fails it (edited or
damaged after it was written) is never used: it is rebuilt from the source files, with a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import stable_hash
from bench.data.dataset import Dataset
from bench.data.loaders.sources import parsed_cache_dir
from bench.errors import DataWarning

CACHE_FORMAT = 3
"""Bump when a parser's output (or the content hash) changes for the same inputs, so old cache
entries are ignored."""

_ARRAY_FIELDS = ("user", "item", "rating", "timestamp", "user_features", "item_features")


def _flatten(prefix: str, value: Any, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    if isinstance(value, np.ndarray):
        arrays[prefix] = value
    elif isinstance(value, dict) and value:
        for key, sub in value.items():
            _flatten(f"{prefix}/{key}", sub, arrays, meta)
    else:
        meta[prefix] = value


def _unflatten(items: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in items.items():
        if not key.startswith(prefix + "/"):
            continue
        node = out
        parts = key[len(prefix) + 1 :].split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


class DamagedEntry(Exception):
    """A cache entry that cannot be trusted; it is rebuilt, never used."""


def checksum(arrays: dict[str, np.ndarray], meta_text: str) -> str:
    """sha256 over the metadata and every array's name, dtype, shape and bytes."""
    digest = hashlib.sha256(meta_text.encode())
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"|{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save(dataset: Dataset, path: Path) -> None:
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {
        "name": dataset.name,
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "rating_scale": list(dataset.rating_scale),
        "like_threshold": dataset.like_threshold,
        "content_hash": dataset.content_hash,
    }
    for name in _ARRAY_FIELDS:
        value = getattr(dataset, name)
        if value is not None:
            arrays[name] = value
    for name in ("user_ids", "item_ids"):
        value = getattr(dataset, name)
        if value is not None:
            arrays[name] = np.asarray(value)
    _flatten("user_attributes", dataset.user_attributes, arrays, meta)
    _flatten("item_attributes", dataset.item_attributes, arrays, meta)
    _flatten("extras", dataset.extras, arrays, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    meta_text = json.dumps(meta, default=float)
    stored = {
        **arrays,
        "__meta__": np.asarray(meta_text),
        "__checksum__": np.asarray(checksum(arrays, meta_text)),
    }
    with open(tmp, "wb") as handle:
        np.savez(handle, **stored)  # type: ignore[arg-type]
    os.replace(tmp, path)  # atomic, so a concurrent reader never sees half a file


def load(path: Path) -> Dataset:
    """The cached dataset; :class:`DamagedEntry` when the file is unreadable or fails its
    checksum."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta_text = str(arrays.pop("__meta__"))
        expected = str(arrays.pop("__checksum__"))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DamagedEntry(f"it cannot be read ({type(exc).__name__})") from exc
    if checksum(arrays, meta_text) != expected:
        raise DamagedEntry("its contents no longer match its checksum")
    meta = json.loads(meta_text)
    everything = {**arrays, **meta}
    return Dataset(
        name=meta["name"],
        n_users=meta["n_users"],
        n_items=meta["n_items"],
        rating_scale=tuple(meta["rating_scale"]),
        like_threshold=meta["like_threshold"],
        content_hash=meta["content_hash"],
        user=arrays["user"],
        item=arrays["item"],
        rating=arrays["rating"],
        timestamp=arrays["timestamp"],
        user_features=arrays.get("user_features"),
        item_features=arrays.get("item_features"),
        user_ids=arrays.get("user_ids"),
        item_ids=arrays.get("item_ids"),
        user_attributes=_unflatten(everything, "user_attributes"),
        item_attributes=_unflatten(everything, "item_attributes"),
        extras=_unflatten(everything, "extras"),
    )


def cached(
    key_parts: dict[str, Any],
    build: Callable[[], Dataset],
    *,
    use_cache: bool = True,
    source: str = "",
) -> Dataset:
    """The cached dataset for ``key_parts`` (which hold the source files' content hashes), else
    ``build()`` saved for next time. ``source`` names the files in messages."""
    if not use_cache:
        return build()
    key = stable_hash({"format": CACHE_FORMAT, **key_parts}, length=24)
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", str(key_parts.get("card", "dataset")))[-40:]
    path = parsed_cache_dir() / f"{label}-{key}.npz"
    if path.is_file():
        try:
            return load(path)
        except DamagedEntry as exc:
            warnings.warn(
                f"parse cache entry {path} is not used: {exc}; rebuilding it from "
                f"{source or 'the source files'}",
                DataWarning,
                stacklevel=2,
            )
    dataset = build()
    with contextlib.suppress(OSError):  # a read-only cache only costs speed
        save(dataset, path)
    return dataset


def load_card_files(
    card: Any,
    options: dict[str, Any],
    needed: list[str],
    data_dir: str | Path | None,
    build: Callable[[dict[str, Path]], Dataset],
) -> Dataset:
    """Locate (and fetch) the card's files ``needed``, check them, and parse them via the cache.

    The card's protocol defaults travel with the dataset in ``extras`` so that protocols can use
    them.
    """
    from bench.data.loaders.sources import locate, sha256_file

    paths = locate(card, needed, data_dir)
    folder = next(iter(paths.values())).parent if paths else card.name
    key = {
        "card": card.name,
        "parser": card.parser,
        "options": {k: v for k, v in options.items() if k != "cache"},
        "files": {name: sha256_file(path) for name, path in paths.items()},
        "scale": card.rating_scale,
        "like": card.like_threshold,
        "protocol": card.protocol_defaults,
    }

    def build_with_defaults() -> Dataset:
        dataset = build(paths)
        if not card.protocol_defaults:
            return dataset
        # The defaults change splits, so they are part of the hash that result cells are keyed by.
        digest = stable_hash({"data": dataset.content_hash, "protocol": card.protocol_defaults})
        extras = {**dataset.extras, "protocol_defaults": card.protocol_defaults}
        return replace(dataset, extras=extras, content_hash=digest)

    return cached(
        key, build_with_defaults, use_cache=bool(options.get("cache", True)), source=str(folder)
    )
