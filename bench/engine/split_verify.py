"""``bench split verify``: recompute an exported split from its manifest and list every difference.

A difference (a file edited, missing or added; a rating changed or moved; a count, statistic or
seed that no longer matches) is reported, and the command exits 1. A dataset or protocol that is
unknown here, or whose content or definition changed since the export, makes the comparison
meaningless: that is an error (exit 2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.data.cards import load_dataset
from bench.engine.split_export import (
    MANIFEST,
    SHOWN_ROWS,
    compute,
    evaluated_of,
    files_of,
    normalised,
    parse,
    read_manifest,
    sha256,
    table_ext,
)
from bench.errors import BenchError, DataError
from bench.protocol import make_protocol
from bench.results.outputs import read_inside

COMPARED = (
    "like_threshold",
    "like_threshold_source",
    "rating_scale",
    "rating_scale_from",
    "rating_levels",
    "task_axis",
    "temporal",
    "split_config_hash",
    "counts",
)


@dataclass
class Verification:
    splits: int = 0
    files: int = 0
    differences: list[str] = field(default_factory=list)


def _files_on_disk(directory: Path) -> set[str]:
    found = set()
    for root, dirs, names in os.walk(directory):
        for name in names + [d for d in dirs if (Path(root) / d).is_symlink()]:
            found.add((Path(root) / name).relative_to(directory).as_posix())
    return found


def _check_hashes(
    directory: Path, manifest: dict[str, Any], result: Verification
) -> dict[str, bytes]:
    """The listed files' bytes; a missing, edited or unlisted file is a difference."""
    present: dict[str, bytes] = {}
    on_disk = _files_on_disk(directory)
    for path, digest in manifest["files"].items():
        if path not in on_disk:
            result.differences.append(f"{path}: missing")
            continue
        data = read_inside(directory, path)
        present[path] = data
        if sha256(data) != digest:
            result.differences.append(f"{path}: its SHA-256 is not the manifest's")
    for path in sorted(on_disk - set(manifest["files"]) - {MANIFEST}):
        result.differences.append(f"{path}: not listed in the manifest")
    result.files = len(manifest["files"])
    return present


def _protocol(manifest: dict[str, Any]) -> Any:
    pinned = manifest["protocol"]
    params = dict(pinned.get("params") or {})
    name = params.get("name", pinned.get("name"))
    try:
        protocol = make_protocol(str(name), params)
    except BenchError as exc:
        raise BenchError(
            f"the manifest's protocol {name!r} is unknown or invalid here: {exc}"
        ) from exc
    now = {"version": protocol.config.version, "hash": protocol.config.fingerprint()}
    for key, value in now.items():
        if pinned.get(key) != value:
            raise BenchError(
                f"protocol {protocol.config.name!r} changed since the export: the manifest pins "
                f"{key} {pinned.get(key)!r}, this harness builds {value!r}"
            )
    return protocol


def row_differences(expected: pd.DataFrame, actual: pd.DataFrame, where: str) -> list[str]:
    """The rows only in the file and only in the recomputed table (each row counted as often as
    it occurs)."""
    if list(expected.columns) != list(actual.columns):
        return [f"{where}: columns {list(actual.columns)}, expected {list(expected.columns)}"]
    columns = list(expected.columns)
    left = expected.assign(_n=expected.groupby(columns, dropna=False).cumcount())
    right = actual.assign(_n=actual.groupby(columns, dropna=False).cumcount())
    both = left.merge(right, on=[*columns, "_n"], how="outer", indicator=True)
    out = []
    for side, label in (("right_only", "in the file only"), ("left_only", "recomputed only")):
        rows = both[both["_merge"] == side][columns]
        if len(rows):
            shown = "; ".join(
                ", ".join(f"{c}={v}" for c, v in zip(columns, r, strict=True))
                for r in rows.head(SHOWN_ROWS).itertuples(index=False)
            )
            more = f" … ({len(rows)} rows in all)" if len(rows) > SHOWN_ROWS else ""
            out.append(f"{where}: {len(rows)} row(s) {label}: {shown}{more}")
    if not out and not expected.reset_index(drop=True).equals(actual.reset_index(drop=True)):
        out.append(f"{where}: the same rows in another order")
    return out


def _compare_split(
    directory: Path,
    manifest: dict[str, Any],
    entry: dict[str, Any],
    protocol: Any,
    data_dir: str | None,
    present: dict[str, bytes],
    result: Verification,
) -> None:
    ref = entry["dataset"]
    options = (manifest.get("datasets") or {}).get(ref, {}).get("options") or {}
    try:
        dataset = load_dataset(ref, options, data_dir=data_dir or manifest.get("data_dir"))
    except BenchError as exc:
        raise BenchError(f"the manifest's dataset {ref!r} cannot be loaded here: {exc}") from exc
    if dataset.content_hash != entry.get("dataset_hash"):
        raise BenchError(
            f"dataset {ref!r} changed since the export: content hash {dataset.content_hash}, "
            f"the manifest pins {entry.get('dataset_hash')}"
        )
    seed = int(entry["seed"])
    settings = manifest.get("suite_config")
    split, tables = compute(dataset, protocol, seed, evaluated_of(manifest), settings)
    label = f"{ref} seed {seed}"
    recomputed = {
        "task_axis": tables.task_axis,
        "temporal": tables.temporal,
        "split_config_hash": split.config.fingerprint(),
        **tables.statistics,
        "counts": tables.counts,
    }
    for key in COMPARED:
        if entry.get(key) != recomputed[key]:
            result.differences.append(
                f"{label}: manifest {key} {entry.get(key)!r}, recomputed {recomputed[key]!r}"
            )
    fmt = manifest["format"]
    names, files = files_of(tables, fmt, entry["folder"])
    listed = entry.get("tables") or {}
    for name, frame in tables.tables.items():
        path = listed.get(name)
        if path is None:
            result.differences.append(f"{label}: table {name!r} is not in the manifest")
        elif path in present and present[path] != files[names[name]]:
            try:
                actual = parse(present[path], table_ext(fmt), f"{directory}/{path}")
            except DataError as exc:
                result.differences.append(str(exc))
                continue
            result.differences += row_differences(normalised(frame), actual, path)
    for path, data in files.items():
        if path in names.values() or path not in manifest["files"]:
            if path not in manifest["files"]:
                result.differences.append(f"{path}: recomputed but not in the manifest")
            continue
        if path in present and present[path] != data:
            result.differences.append(f"{path}: differs from the recomputed file")


def verify(directory: Path, data_dir: str | None = None) -> Verification:
    """Recompute every split the manifest in ``directory`` pins and compare it with the files.

    Raises:
        BenchError: no readable manifest, or an unknown or changed dataset or protocol.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory} is not a folder holding an exported split")
    manifest = read_manifest(directory)
    result = Verification()
    present = _check_hashes(directory, manifest, result)
    protocol = _protocol(manifest)
    for entry in manifest["splits"]:
        _compare_split(directory, manifest, entry, protocol, data_dir, present, result)
        result.splits += 1
    return result
