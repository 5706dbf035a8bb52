"""The baseline file: a :class:`~bench.results.gate.snapshot.Snapshot` as JSON, with a format version.

Layout (version 1)::

    {"format": "coldstart-bench baseline", "version": 1,
     "suite": "ci", "created_at": "...", "command": "bench baseline --suite ci",
     "provenance": {"git": ..., "packages": ..., "runs": [...], ...},
     "check": {...the suite's [check] table...},
     "tasks": {"synthetic/cold-random/warm/k=1/seed=0": ["17", "42", ...], ...},
     "cells": [{"dataset": "synthetic", "protocol": "cold-random", "protocol_version": 2,
                "scenario": "warm", "k": "1", "learner": "mf", "device": "cpu", "metric": "rmse",
                "mean": 0.91, "seeds": {"0": 0.90, "1": 0.92}, "n_tasks": 432,
                "dataset_hash": "...", "protocol_hash": "...", "config_hash": "...",
                "ndcg_gain": "exponential", "per_task": {"0": [0.8, null, ...], ...}}, ...],
     "timings": [{"dataset": ..., "protocol": ..., "protocol_version": ..., "learner": ...,
                  "device": ..., "phase": "fit", "seconds": 0.4, "n_seeds": 2, "host": ...,
                  "torch_threads": "1", "under_load": 0, ...hashes...}, ...]}

Per-task values follow the order of the task list of their (dataset, protocol, scenario, k,
seed); ``null`` marks a task the metric could not score. Each cell and timing sits on one line,
so a refreshed baseline reads well in a diff.

A file of a newer format version is refused; an older one is upgraded by the steps in
``UPGRADES`` where one exists, else refused with what to do.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.limits import MAX_JSON_DEPTH, MAX_TEXT_FILE_BYTES, check_depth
from bench.results.gate.snapshot import (
    CellName,
    CellValues,
    Origin,
    Snapshot,
    TimingName,
    TimingValues,
    task_list_key,
)

FORMAT = "coldstart-bench baseline"
FORMAT_VERSION = 1
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
"""Version N -> a function turning a version-N document into a version N+1 one."""

CELL_NAME_FIELDS = ("dataset", "protocol", "scenario", "k", "learner", "device", "metric")
TIMING_NAME_FIELDS = ("dataset", "protocol", "learner", "device", "phase")
ORIGIN_FIELDS = (
    "protocol_version",
    "dataset_hash",
    "protocol_hash",
    "ndcg_gain",
    "config_hash",
    "tie_policy",
)
REFRESH_HINT = "write a new one with `bench baseline --suite NAME --out FILE`"


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _origin_fields(origin: Origin) -> dict[str, Any]:
    return {name: getattr(origin, name) for name in ORIGIN_FIELDS}


def _cell_document(name: CellName, cell: CellValues) -> dict[str, Any]:
    seeds = sorted(cell.seeds)
    return {
        **dict(zip(CELL_NAME_FIELDS, name, strict=True)),
        "mean": _number(cell.mean(seeds)),
        "seeds": {str(s): _number(cell.seeds[s]) for s in seeds},
        "n_tasks": cell.n_tasks,
        **_origin_fields(cell.origin),
        "per_task": {
            str(s): [_number(v) for v in values] for s, values in sorted(cell.per_task.items())
        },
    }


def _timing_document(name: TimingName, timing: TimingValues) -> dict[str, Any]:
    return {
        **dict(zip(TIMING_NAME_FIELDS, name, strict=True)),
        "seconds": _number(timing.seconds),
        "n_seeds": timing.n_seeds,
        "host": timing.host,
        "torch_threads": timing.torch_threads,
        "under_load": timing.under_load,
        **_origin_fields(timing.origin),
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def render_baseline(snapshot: Snapshot, command: str = "") -> str:
    """The baseline file's text: top-level fields one per line, one line per cell and timing."""
    head = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "suite": snapshot.suite,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "provenance": snapshot.provenance,
        "check": snapshot.check,
    }
    lines = ["{"]
    lines += [f"{_dumps(key)}: {_dumps(value)}," for key, value in head.items()]
    tasks = [f"  {_dumps(key)}: {_dumps(value)}" for key, value in sorted(snapshot.tasks.items())]
    lines += ['"tasks": {', ",\n".join(tasks), "},"]
    cells = [f"  {_dumps(_cell_document(n, c))}" for n, c in sorted(snapshot.cells.items())]
    lines += ['"cells": [', ",\n".join(cells), "],"]
    timings = [f"  {_dumps(_timing_document(n, t))}" for n, t in sorted(snapshot.timings.items())]
    lines += ['"timings": [', ",\n".join(timings), "]", "}"]
    return "\n".join(line for line in lines if line) + "\n"


def write_baseline(snapshot: Snapshot, path: Path, command: str = "") -> None:
    """Write ``snapshot`` to ``path`` (through a temporary file: a failed write leaves the old
    baseline in place)."""
    text = render_baseline(snapshot, command)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.unlink(missing_ok=True)  # a link planted there is removed, never written through
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        raise BenchError(f"cannot write baseline {path}: {exc.strerror or exc}") from exc


class _Reader:
    """Field access with errors that name the file and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, expected: str, value: Any) -> BenchError:
        shown = json.dumps(value)[:60] if value is not None else "nothing"
        return BenchError(
            f"baseline {self.path}: {where} must be {expected}, got {shown}; the file is "
            f"damaged or was edited by hand: {REFRESH_HINT}"
        )

    def get(self, obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
        """``obj[key]`` checked to be of ``kind`` (``float``: any number, or null for NaN)."""
        value = obj.get(key)
        if kind is float:
            if value is None:
                return float("nan")
            if isinstance(value, float) and not math.isfinite(value):  # NaN or Infinity literal
                raise self.fail(f"{where}.{key}", "a finite number", str(value))
            if isinstance(value, float) or (
                isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**1023
            ):
                return float(value)
        elif isinstance(value, kind) and not (isinstance(value, bool) and kind is int):
            return value
        raise self.fail(f"{where}.{key}", _KIND_NAMES[kind], value)

    def name(self, obj: dict[str, Any], fields: tuple[str, ...], where: str) -> tuple[str, ...]:
        """The fields that name an entry: non-empty text, since an empty name matches nothing
        and would read as a cell gone missing instead of a damaged file."""
        name = tuple(self.get(obj, f, str, where) for f in fields)
        for field_name, value in zip(fields, name, strict=True):
            if not value:
                raise self.fail(f"{where}.{field_name}", "a non-empty string", value)
        return name

    def origin(self, obj: dict[str, Any], where: str) -> Origin:
        return Origin(
            protocol_version=self.get(obj, "protocol_version", int, where),
            dataset_hash=self.get(obj, "dataset_hash", str, where),
            protocol_hash=self.get(obj, "protocol_hash", str, where),
            ndcg_gain=self.get(obj, "ndcg_gain", str, where),
            config_hash=self.get(obj, "config_hash", str, where),
            # Baselines written before tie policies ranked ties in query order.
            tie_policy=self.get({"tie_policy": "query-order", **obj}, "tie_policy", str, where),
        )

    def seeds(self, obj: dict[str, Any], key: str, where: str) -> dict[int, Any]:
        table = self.get(obj, key, dict, where)
        out = {}
        for seed, value in table.items():
            if not seed.isdigit():
                raise self.fail(f"{where}.{key}", "keyed by seed numbers", seed)
            out[int(seed)] = value
        return out

    def cell(self, obj: Any, where: str) -> tuple[CellName, CellValues]:
        if not isinstance(obj, dict):
            raise self.fail(where, "an object", obj)
        name = self.name(obj, CELL_NAME_FIELDS, where)
        where = f"{where} ({'/'.join(name)})"
        seeds = {}
        for seed, value in self.seeds(obj, "seeds", where).items():
            seeds[seed] = self.get({str(seed): value}, str(seed), float, f"{where} seeds")
        per_task = {}
        for seed, values in self.seeds(obj, "per_task", where).items():
            at = f"{where} per_task.{seed}"
            if not isinstance(values, list) or not all(
                v is None
                or (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))
                for v in values
            ):
                raise self.fail(at, "a list of finite numbers (null where unscored)", values)
            per_task[seed] = np.array([np.nan if v is None else v for v in values], dtype=float)
        self._complete(where, seeds, per_task)
        cell = CellValues(
            origin=self.origin(obj, where),
            seeds=seeds,
            n_tasks=self.get(obj, "n_tasks", int, where),
            per_task=per_task,
        )
        return name, cell  # type: ignore[return-value]

    def _complete(
        self, where: str, seeds: dict[int, float], per_task: dict[int, np.ndarray]
    ) -> None:
        """A cell has a value on every seed it lists, or on none (a metric no task could score);
        a gap would let the comparison average the seeds left and call the cell the same."""
        for seed in sorted(set(per_task) - set(seeds)):
            raise BenchError(
                f"baseline {self.path}: {where} per_task.{seed} names a seed that seeds lacks; "
                f"the file is damaged or was edited by hand: {REFRESH_HINT}"
            )
        valued = {s for s, v in seeds.items() if math.isfinite(v)}
        if not valued:
            return  # no value anywhere: compared as "no value on either side"
        for seed in sorted(seeds):
            if seed not in valued:
                raise self.fail(f"{where} seeds.{seed}", "a finite number", None)
            values = per_task.get(seed)
            if values is not None and len(values) and not np.isfinite(values).any():
                raise BenchError(
                    f"baseline {self.path}: {where} per_task.{seed} must hold at least one "
                    f"number where seeds.{seed} has one; the file is damaged or was edited by "
                    f"hand: {REFRESH_HINT}"
                )

    def timing(self, obj: Any, where: str) -> tuple[TimingName, TimingValues]:
        if not isinstance(obj, dict):
            raise self.fail(where, "an object", obj)
        name = self.name(obj, TIMING_NAME_FIELDS, where)
        timing = TimingValues(
            origin=self.origin(obj, where),
            seconds=self.get(obj, "seconds", float, where),
            n_seeds=self.get(obj, "n_seeds", int, where),
            host=self.get(obj, "host", str, where),
            torch_threads=self.get(obj, "torch_threads", str, where),
            under_load=self.get(obj, "under_load", int, where),
        )
        return name, timing  # type: ignore[return-value]


_KIND_NAMES: dict[type, str] = {
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "an object",
    list: "a list",
}


def _upgraded(document: dict[str, Any], path: Path) -> dict[str, Any]:
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise BenchError(
            f"baseline {path}: 'version' must be an integer format version, got "
            f"{json.dumps(version)}; {REFRESH_HINT}"
        )
    if version > FORMAT_VERSION:
        raise BenchError(
            f"baseline {path} has format version {version}, newer than this coldstart-bench "
            f"reads (up to {FORMAT_VERSION}): upgrade coldstart-bench, or {REFRESH_HINT}"
        )
    while version < FORMAT_VERSION:
        step = UPGRADES.get(version)
        if step is None:
            raise BenchError(
                f"baseline {path} has format version {version}, which this coldstart-bench "
                f"no longer reads (it reads version {FORMAT_VERSION}): {REFRESH_HINT}"
            )
        document = step(document)
        version += 1
    return document


def read_baseline(path: Path) -> Snapshot:
    """Read and check a baseline file; every problem is one :class:`BenchError` line naming it."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise BenchError(f"baseline {path} {what}; {REFRESH_HINT}")
    try:
        if path.stat().st_size > MAX_TEXT_FILE_BYTES:
            raise BenchError(
                f"baseline {path} is larger than {MAX_TEXT_FILE_BYTES >> 20} MiB; {REFRESH_HINT}"
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise BenchError(f"baseline {path} cannot be read: {reason}") from exc
    try:
        document = json.loads(text)
    except RecursionError:
        raise BenchError(
            f"baseline {path}: values nest deeper than {MAX_JSON_DEPTH} levels; {REFRESH_HINT}"
        ) from None
    except json.JSONDecodeError as exc:
        body = text.strip()
        truncated = body.startswith("{") and not body.endswith("}")
        hint = " (the file ends early: truncated?)" if truncated else ""
        raise BenchError(
            f"baseline {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column "
            f"{exc.colno}{hint}; {REFRESH_HINT}"
        ) from None
    check_depth(document, f"baseline {path}")
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BenchError(
            f'baseline {path} is not a coldstart-bench baseline (no "format": "{FORMAT}" '
            f"field); {REFRESH_HINT}"
        )
    document = _upgraded(document, path)
    reader = _Reader(path)
    tasks = reader.get(document, "tasks", dict, "the file")
    for key, entities in tasks.items():
        if not isinstance(entities, list) or not all(isinstance(e, str) for e in entities):
            raise reader.fail(f"tasks.{key}", "a list of entity ids (strings)", entities)
    cells = dict(
        reader.cell(obj, f"cells[{i}]")
        for i, obj in enumerate(reader.get(document, "cells", list, "the file"))
    )
    timings = dict(
        reader.timing(obj, f"timings[{i}]")
        for i, obj in enumerate(reader.get(document, "timings", list, "the file"))
    )
    for name, cell in cells.items():
        for seed, values in cell.per_task.items():
            listed = tasks.get(task_list_key(name, seed))
            if listed is None or len(listed) != len(values):
                raise BenchError(
                    f"baseline {path}: the per-task values of {'/'.join(name)} seed {seed} do "
                    f"not match its task list; {REFRESH_HINT}"
                )
    tables = {}
    for key in ("provenance", "check"):
        value = document.get(key) or {}
        if not isinstance(value, dict):
            raise reader.fail(key, "an object", value)
        tables[key] = dict(value)
    return Snapshot(
        cells=cells,
        timings=timings,
        tasks=tasks,
        suite=str(document.get("suite", "")),
        provenance=tables["provenance"],
        check=tables["check"],
    )
