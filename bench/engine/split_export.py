"""``bench split export`` and ``bench split verify``: a suite's splits as files any tool can read,
pinned by a manifest, and recomputed to prove the files are what the harness evaluates.

Layout under the folder the user names (``FOLDER = DATASET/seed-S``)::

    manifest.json                       protocol, datasets, seeds, statistics, counts, SHA-256s
    FOLDER/train.EXT                    training ratings
    FOLDER/validation.EXT               validation tasks (support pool and query)
    FOLDER/SCENARIO/k-K/support.EXT     per scenario and support size
    FOLDER/SCENARIO/k-K/query.EXT
    FOLDER/new_entities.EXT, item_means.EXT, users.EXT, items.EXT
    FOLDER/recbole/SCENARIO-kK/...      with --format recbole: RecBole's atomic files

``EXT`` is ``csv`` (also under ``--format recbole``) or ``parquet``. The tables are described in
:mod:`bench.protocol.manifest`. Where a suite ranks the catalogue, ``FOLDER/SCENARIO/k-K/pool``,
``excluded`` and ``sampled`` hold the candidate sets and sampled negatives
(:mod:`bench.engine.candidate_tables`, the first of :data:`EXTRA_TABLES`).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.data.cards import load_dataset
from bench.data.dataset import Dataset
from bench.engine.candidate_tables import candidate_tables
from bench.engine.plan import RunPlan, as_plan
from bench.engine.suite import Suite
from bench.errors import BenchError, ConfigError, DataError
from bench.protocol import Protocol, Split, SupportSize
from bench.protocol.audit import Check, audit
from bench.protocol.episodes import make_meta_train
from bench.protocol.manifest import (
    MANIFEST_VERSION,
    SplitTables,
    k_folder,
    protocol_record,
    safe_name,
    split_tables,
)
from bench.results.outputs import BoundedFolder, read_inside

FORMATS = ("csv", "parquet", "recbole")
MANIFEST = "manifest.json"
SHOWN_ROWS = 5
"""How many differing rows ``verify`` lists per table."""

ExtraTables = Callable[[Dataset, Split, SplitTables, dict[str, Any]], dict[str, pd.DataFrame]]
EXTRA_TABLES: list[ExtraTables] = [candidate_tables]
"""Providers of further tables of a split (the first: ranking candidates and sampled negatives,
:mod:`bench.engine.candidate_tables`). Each receives
the dataset, the split, its tables and the suite's resolved settings (as the manifest keeps them,
so that ``verify`` calls it alike) and returns ``{name: frame}`` for the suites that ask for such
tables, ``{}`` otherwise. Their tables are written, hashed and verified like the others."""

RECBOLE_NOTES = [
    "Each FOLDER/recbole/SCENARIO-kK is one RecBole dataset: set data_path to FOLDER/recbole, "
    "dataset to SCENARIO-kK and benchmark_filename to [train, valid, test]; RecBole then neither "
    "re-splits nor filters.",
    "train.inter holds the training ratings, the validation tasks' support and this scenario's "
    "support at k; valid.inter the validation queries; test.inter this scenario's queries.",
    "Set load_col: None (or name the .user and .item columns): RecBole's default load_col reads "
    "only the .inter files, and items in no .inter file are then unknown to it.",
    "The ranking candidates (FOLDER/SCENARIO/k-K/pool, excluded, sampled) are not in the atomic "
    "files: RecBole ranks its own candidates. Score ours with the trained model and import them "
    "with bench import --scores.",
]

_TEXT = ("user", "item", "task", "role", "side", "id")
_INTEGER = ("position", "timestamp", "ratings")


@dataclass(frozen=True)
class Selection:
    """What a suite exports: its protocol, datasets (by the suite's name for each), seeds and the
    (scenario, k) pairs its runs evaluate."""

    suite: Suite
    protocol: Protocol
    datasets: list[tuple[str, Dataset]]
    seeds: tuple[int, ...]
    evaluated: list[tuple[str, SupportSize]]


def select(
    suite: Suite | RunPlan, dataset: str | None = None, seed: int | None = None
) -> Selection:
    plan = as_plan(suite)
    suite, protocol = plan.suite, plan.protocol
    refs = list(suite.datasets)
    if dataset is not None:
        if dataset not in refs:
            raise ConfigError(
                f"--dataset {dataset!r} is not a dataset of suite {suite.name!r} "
                f"({', '.join(refs)})"
            )
        refs = [dataset]
    loaded = [(r, load_dataset(r, suite.dataset.get(r), data_dir=suite.data_dir)) for r in refs]
    seeds = suite.seeds if seed is None else (seed,)
    return Selection(suite, protocol, loaded, seeds, plan.evaluations)


def compute(
    dataset: Dataset,
    protocol: Protocol,
    seed: int,
    evaluated: list[tuple[str, SupportSize]],
    settings: dict[str, Any] | None = None,
) -> tuple[Split, SplitTables]:
    """A split and its tables, with the statistics of the training view learners fit on; with
    the suite's ``settings``, the tables of :data:`EXTRA_TABLES` too."""
    split = protocol.split(dataset, seed)
    tables = split_tables(
        dataset, protocol, split, seed, evaluated, make_meta_train(dataset, split)
    )
    if settings is not None:
        for provide in EXTRA_TABLES:
            tables.tables.update(provide(dataset, split, tables, settings))
    return split, tables


# Formats ------------------------------------------------------------------------------------


def render(frame: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise BenchError(
                "--format parquet needs pyarrow: pip install 'coldstart-bench[parquet]'"
            ) from exc
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


def parse(data: bytes, ext: str, where: str) -> pd.DataFrame:
    """A table read back from its bytes, with the column types it was written with."""
    try:
        if ext == "parquet":
            frame = pd.read_parquet(io.BytesIO(data))
        else:
            frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
        return normalised(frame)
    except (ValueError, TypeError, OSError) as exc:
        raise DataError(f"{where}: cannot be read as a table ({exc})") from exc


def normalised(frame: pd.DataFrame) -> pd.DataFrame:
    """Ids as text, counts and times as integers, everything else as float64."""
    out = {}
    for column in frame.columns:
        values = frame[column]
        if column in _TEXT:
            out[column] = values.astype(str).to_numpy(dtype=object)
        elif column in _INTEGER:
            out[column] = pd.to_numeric(values).to_numpy(dtype=np.int64)
        else:
            out[column] = pd.to_numeric(values).to_numpy(dtype=np.float64)
    return pd.DataFrame(out, columns=list(frame.columns))


def _atomic(frame: pd.DataFrame, header: list[str]) -> bytes:
    lines = ["\t".join(header)]
    lines += ["\t".join(str(v) for v in row) for row in frame.itertuples(index=False)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _inter(*frames: pd.DataFrame) -> bytes:
    rows = pd.concat(
        [f[["user", "item", "rating", "timestamp"]] for f in frames], ignore_index=True
    )
    header = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    return _atomic(rows, header)


def _entities(frame: pd.DataFrame, side: str) -> bytes:
    features = [c for c in frame.columns if c.startswith("feature:")]
    header = [f"{side}_id:token"] + (["features:float_seq"] if features else [])
    plain = frame[["id"]].copy()
    if features:
        plain["features"] = [
            " ".join(repr(float(v)) for v in row) for row in frame[features].to_numpy()
        ]
    return _atomic(plain, header)


def recbole_files(tables: SplitTables, folder: str) -> dict[str, bytes]:
    """RecBole's atomic files, one dataset per (scenario, k)."""
    t = tables.tables
    val = t["validation"]
    files = {}
    for scenario, k in tables.evaluated:
        name = f"{scenario}-{k_folder(k).replace('-', '')}"
        base = f"{folder}/recbole/{name}/{name}"
        support = t[f"{scenario}/{k_folder(k)}/support"]
        files[f"{base}.train.inter"] = _inter(t["train"], val[val["role"] == "support"], support)
        files[f"{base}.valid.inter"] = _inter(val[val["role"] == "query"])
        files[f"{base}.test.inter"] = _inter(t[f"{scenario}/{k_folder(k)}/query"])
        files[f"{base}.user"] = _entities(t["users"], "user")
        files[f"{base}.item"] = _entities(t["items"], "item")
    return files


def table_ext(fmt: str) -> str:
    return "parquet" if fmt == "parquet" else "csv"


def split_folder(dataset: Dataset, seed: int) -> str:
    return f"{safe_name(dataset.name)}/seed-{seed}"


def files_of(tables: SplitTables, fmt: str, folder: str) -> tuple[dict[str, str], dict[str, bytes]]:
    """(table name → file, file → bytes) of one split."""
    ext = table_ext(fmt)
    names = {name: f"{folder}/{name}.{ext}" for name in tables.tables}
    files = {names[name]: render(frame, fmt) for name, frame in tables.tables.items()}
    if fmt == "recbole":
        files.update(recbole_files(tables, folder))
    return names, files


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Export -------------------------------------------------------------------------------------


def _split_entry(
    ref: str, dataset: Dataset, split: Split, tables: SplitTables, folder: str
) -> dict[str, Any]:
    return {
        "dataset": ref,
        "dataset_name": dataset.name,
        "dataset_hash": dataset.content_hash,
        "seed": tables.seed,
        "folder": folder,
        "task_axis": tables.task_axis,
        "temporal": tables.temporal,
        "split_config_hash": split.config.fingerprint(),
        **tables.statistics,
        "counts": tables.counts,
    }


def export_split(
    suite: Suite | RunPlan,
    out: Path,
    fmt: str = "csv",
    *,
    dataset: str | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Write the splits of ``suite`` (one dataset or seed when given) under ``out``; returns the
    manifest written as ``out/manifest.json``."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown split format {fmt!r}; choose from {', '.join(FORMATS)}")
    chosen = select(suite, dataset, seed)
    suite = chosen.suite
    settings = json.loads(json.dumps(suite.resolved(), default=str))
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise BenchError(
            f"{out} holds other files; export a split into a new or empty folder (or over an "
            "earlier export)"
        )
    target = BoundedFolder(out)
    entries, hashes = [], {}
    for ref, data in chosen.datasets:
        for s in chosen.seeds:
            split, tables = compute(data, chosen.protocol, s, chosen.evaluated, settings)
            folder = split_folder(data, s)
            names, files = files_of(tables, fmt, folder)
            for path, payload in files.items():
                target.write(path, payload)
                hashes[path] = sha256(payload)
            entry = _split_entry(ref, data, split, tables, folder)
            entry["tables"] = names
            entries.append(entry)
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "format": fmt,
        "suite": suite.name,
        "protocol": protocol_record(chosen.protocol, _params(suite)),
        "scenarios": list(dict.fromkeys(s for s, _ in chosen.evaluated)),
        "support_sizes": list(chosen.protocol.config.support_sizes),
        "datasets": {ref: {"options": suite.dataset.get(ref, {})} for ref, _ in chosen.datasets},
        "data_dir": suite.data_dir,
        "suite_config": settings,
        "splits": entries,
        "files": dict(sorted(hashes.items())),
    }
    if fmt == "recbole":
        manifest["notes"] = RECBOLE_NOTES
    target.write(MANIFEST, (json.dumps(manifest, indent=1, default=str) + "\n").encode("utf-8"))
    return manifest


def _params(suite: Suite) -> dict[str, Any]:
    return json.loads(json.dumps(suite.protocol, default=list))


# Reading an exported split -------------------------------------------------------------------


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(read_inside(Path(directory), MANIFEST).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a split manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("manifest_version") != MANIFEST_VERSION:
        raise DataError(
            f"{path}: not a split manifest of version {MANIFEST_VERSION} "
            f"(manifest_version {excerpt_of(manifest)})"
        )
    for key in ("format", "protocol", "splits", "files", "scenarios", "support_sizes"):
        if key not in manifest:
            raise DataError(f"{path}: the manifest has no {key!r}")
    return manifest


def excerpt_of(manifest: Any) -> str:
    return repr(manifest.get("manifest_version")) if isinstance(manifest, dict) else "missing"


def evaluated_of(manifest: dict[str, Any]) -> list[tuple[str, SupportSize]]:
    return [(s, k) for s in manifest["scenarios"] for k in manifest["support_sizes"]]


def load_tables(directory: Path) -> list[SplitTables]:
    """The splits of an exported folder as tables, as its files hold them now."""
    manifest = read_manifest(directory)
    ext = table_ext(manifest["format"])
    out = []
    for entry in manifest["splits"]:
        tables = {
            name: parse(read_inside(Path(directory), path), ext, f"{directory}/{path}")
            for name, path in entry["tables"].items()
        }
        stats = {
            key: entry.get(key)
            for key in (
                "like_threshold",
                "like_threshold_source",
                "rating_scale",
                "rating_scale_from",
                "rating_levels",
            )
        }
        out.append(
            SplitTables(
                dataset=entry["dataset_name"],
                seed=int(entry["seed"]),
                task_axis=entry["task_axis"],
                tables=tables,
                statistics=stats,
                counts=entry.get("counts", {}),
                temporal=bool(entry.get("temporal")),
                evaluated=tuple(evaluated_of(manifest)),
            )
        )
    return out


def audit_splits(
    suite: Suite | RunPlan | None,
    directory: Path | None = None,
    dataset: str | None = None,
    seed: int | None = None,
) -> list[tuple[str, list[Check]]]:
    """The audit of each split of ``suite`` (as a learner would receive it), or of each split
    exported to ``directory`` (as its files hold it now), labelled by dataset and seed."""
    if directory is not None:
        return [
            (f"{t.dataset} seed {t.seed} ({directory})", audit(t)) for t in load_tables(directory)
        ]
    assert suite is not None, "audit needs a suite or an exported split"
    chosen = select(suite, dataset, seed)
    out = []
    for ref, data in chosen.datasets:
        for s in chosen.seeds:
            _, tables = compute(data, chosen.protocol, s, chosen.evaluated)
            out.append((f"{ref} seed {s} ({chosen.protocol.label})", audit(tables)))
    return out
