"""Parsed datasets cached as Arrow IPC files keyed by the parser, its options and the hashes of the
files it read, so that a second load skips parsing (the arrays are memory-mapped, not copied) and
any change to the inputs reparses.

A cache entry is data, never code: no pickle, only typed columns and JSON metadata. Each entry
carries a sha256 of its arrays and metadata (damage) and an HMAC of that digest and of the cache key
(which holds the source files' content hashes) under a per-user secret key kept beside the entries
with mode 0600. An entry that fails either check (damaged, or rewritten by anyone without the key,
even with a recomputed checksum, or moved under another source's name) is never used: it is
rebuilt from the source files, with a one-line warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import stable_hash
from bench.data.dataset import Dataset
from bench.data.loaders.sources import parsed_cache_dir
from bench.errors import DataWarning

CACHE_FORMAT = 4
"""Bump when a parser's output (or the content hash, or the entry layout) changes for the same
inputs, so old cache entries are ignored."""

SUFFIX = ".arrow"
KEY_FILE = "cache-key"
_KEY_BYTES = 32
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


class UntrustedKey(Exception):
    """The cache's secret key is not private to this user; the cache is not used."""


def checksum(arrays: dict[str, np.ndarray], meta_text: str) -> str:
    """sha256 over the metadata and every array's name, dtype, shape and bytes."""
    digest = hashlib.sha256(meta_text.encode())
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"|{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def signature(secret: bytes, digest: str, source: str) -> str:
    """The keyed checksum: HMAC-SHA256 of the entry's digest bound to the cache key of its
    sources (their content hashes), so an entry is valid only for the files it was parsed from."""
    return hmac.new(secret, f"{source}|{digest}".encode(), hashlib.sha256).hexdigest()


def secret_key(folder: Path) -> bytes:
    """This user's key for the cache in ``folder``, created (mode 0600) on first use.

    :class:`UntrustedKey` when the key file is not a regular file owned by this user and readable
    by no one else: anyone who can read the key can forge entries.
    """
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / KEY_FILE
    if not os.path.lexists(path):
        tmp = folder / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(_KEY_BYTES))
            with contextlib.suppress(FileExistsError):  # another process made it first: use its
                os.link(tmp, path)
        finally:
            tmp.unlink()
    info = os.lstat(path)
    owner = getattr(os, "getuid", lambda: info.st_uid)()
    if not stat.S_ISREG(info.st_mode) or info.st_uid != owner or info.st_mode & 0o077:
        raise UntrustedKey(
            f"the key file {path} must be a regular file of yours with mode 0600 "
            f"(found mode {stat.S_IMODE(info.st_mode):o}); remove it to start a new cache"
        )
    secret = path.read_bytes()
    if len(secret) != _KEY_BYTES:
        raise UntrustedKey(f"the key file {path} is damaged; remove it to start a new cache")
    return secret


def _to_arrow(array: np.ndarray) -> tuple[Any, dict[str, Any]] | None:
    """A one-row list column holding the flattened array, and how to rebuild it; None for arrays
    that have no safe typed form (objects)."""
    import pyarrow as pa

    flat = np.ascontiguousarray(array).reshape(-1)
    layout: dict[str, Any] = {"dtype": array.dtype.str, "shape": list(array.shape)}
    if array.dtype.kind in "biuf" and array.dtype.isnative:
        values = pa.array(flat)
    elif array.dtype.kind == "U":
        values = pa.array(flat.tolist(), pa.large_string())
    elif array.dtype.kind == "S":
        values = pa.array(flat.tolist(), pa.large_binary())
    elif array.dtype.kind in "mMV" or (array.dtype.kind in "iuf" and not array.dtype.isnative):
        values = pa.array(flat.view(np.uint8))
        layout["raw"] = True
    else:
        return None
    offsets = pa.array([0, len(values)], pa.int64())
    return pa.LargeListArray.from_arrays(offsets, values), layout


def _from_arrow(column: Any, layout: dict[str, Any]) -> np.ndarray:
    values = column.chunk(0).values if column.num_chunks == 1 else column.combine_chunks().values
    dtype = np.dtype(layout["dtype"])
    if layout.get("raw"):
        flat = values.to_numpy(zero_copy_only=True).view(dtype)
    elif dtype.kind in "US":
        flat = np.asarray(values.to_numpy(zero_copy_only=False), dtype=dtype)
    else:
        flat = values.to_numpy(zero_copy_only=dtype.kind != "b").astype(dtype, copy=False)
    return flat.reshape(layout["shape"])


def save(dataset: Dataset, path: Path, secret: bytes, source: str) -> bool:
    """Write the entry for ``dataset`` (atomically); False when it holds arrays that cannot be
    stored safely, which then are not cached."""
    import pyarrow as pa

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
    columns, layouts = {}, {}
    for name, array in arrays.items():
        converted = _to_arrow(array)
        if converted is None:
            return False
        columns[name], layouts[name] = converted
    meta_text = json.dumps({"meta": meta, "layout": layouts}, default=float, sort_keys=True)
    digest = checksum(arrays, meta_text)
    table = pa.table(columns).replace_schema_metadata(
        {
            "bench.meta": meta_text,
            "bench.checksum": digest,
            "bench.signature": signature(secret, digest, source),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    os.replace(tmp, path)  # atomic, so a concurrent reader never sees half a file
    return True


def load(path: Path, secret: bytes, source: str) -> Dataset:
    """The cached dataset; :class:`DamagedEntry` when the file is unreadable, fails its checksum
    or does not carry this user's signature for ``source``."""
    import pyarrow as pa

    try:
        with pa.memory_map(str(path), "r") as stream:
            table = pa.ipc.open_file(stream).read_all()
        stored = table.schema.metadata or {}
        meta_text = stored[b"bench.meta"].decode()
        expected = stored[b"bench.checksum"].decode()
        signed = stored[b"bench.signature"].decode()
        described = json.loads(meta_text)
        meta, layouts = described["meta"], described["layout"]
        arrays = {name: _from_arrow(table.column(name), layouts[name]) for name in layouts}
    except (OSError, ValueError, KeyError, TypeError, UnicodeError, pa.ArrowException) as exc:
        raise DamagedEntry(f"it cannot be read ({type(exc).__name__})") from exc
    digest = checksum(arrays, meta_text)
    if digest != expected:
        raise DamagedEntry("its contents no longer match its checksum")
    if not hmac.compare_digest(signature(secret, digest, source), signed):
        raise DamagedEntry(
            "its signature does not match this user's cache key for these source files "
            "(written by someone else, or for other files)"
        )
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
    try:
        import pyarrow  # noqa: F401
    except ImportError:  # the cache is Arrow files: without pyarrow every load parses
        return build()
    key = stable_hash({"format": CACHE_FORMAT, **key_parts}, length=24)
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", str(key_parts.get("card", "dataset")))[-40:]
    folder = parsed_cache_dir()
    path = folder / f"{label}-{key}{SUFFIX}"
    try:
        secret = secret_key(folder)
    except UntrustedKey as exc:
        warnings.warn(f"parse cache not used: {exc}", DataWarning, stacklevel=2)
        return build()
    except OSError:  # a cache folder that cannot be written only costs speed
        return build()
    if path.is_file():
        try:
            return load(path, secret, key)
        except DamagedEntry as exc:
            warnings.warn(
                f"parse cache entry {path} is not used: {exc}; rebuilding it from "
                f"{source or 'the source files'}",
                DataWarning,
                stacklevel=2,
            )
    dataset = build()
    with contextlib.suppress(OSError):  # a read-only cache only costs speed
        save(dataset, path, secret, key)
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
