"""Stored sanity checks of explanations: a JSON file beside the results store.

The store's own tables are checked on open and hold cells; the checks are computed later, on a
stored run's refitted learners, so they are kept apart in ``<store>.explanations.json``: one entry
per (run, learner, dataset, scenario, method), the newest replacing an older one. The file is
read as untrusted data: its size is bounded and every entry's fields are checked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.results.outputs import write_file

MAX_BYTES = 8 * 1024 * 1024
KEY = ("run_id", "learner", "dataset", "scenario", "method")
_TEXT = (*KEY,)
_TABLES = ("randomisation", "deletion")
VERSION = 1


def checks_path(store: Path) -> Path:
    return store.with_name(store.name + ".explanations.json")


def _number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _check_entry(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise BenchError(f"{where}: an entry is not an object")
    for name in _TEXT:
        if not isinstance(entry.get(name), str) or len(entry[name]) > 200:
            raise BenchError(f"{where}: field {name!r} must be a short string")
    for name in _TABLES:
        table = entry.get(name)
        if not isinstance(table, dict) or not all(_number(v) for v in table.values()):
            raise BenchError(f"{where}: field {name!r} must map names to numbers")
    for name in ("stability", "planted"):
        table = entry.get(name)
        if table is not None and not (
            isinstance(table, dict) and all(_number(v) for v in table.values())
        ):
            raise BenchError(f"{where}: field {name!r} must map names to numbers or be null")
    if not _number(entry.get("adaptation_shift")):
        raise BenchError(f"{where}: field 'adaptation_shift' must be a number or null")
    passed = entry.get("passed")
    if not isinstance(passed, dict) or not all(isinstance(v, bool) for v in passed.values()):
        raise BenchError(f"{where}: field 'passed' must map check names to true or false")
    if not isinstance(entry.get("checked"), bool):
        raise BenchError(f"{where}: field 'checked' must be true or false")
    top = entry.get("top_fields")
    if not isinstance(top, list) or not all(
        isinstance(t, dict) and isinstance(t.get("field"), str) for t in top
    ):
        raise BenchError(f"{where}: field 'top_fields' must list fields")
    return entry


def read_checks(store: Path) -> list[dict[str, Any]]:
    """The stored checks beside ``store`` (none when the file does not exist)."""
    path = checks_path(store)
    if not path.is_file():
        return []
    if path.stat().st_size > MAX_BYTES:
        raise BenchError(f"{path}: larger than {MAX_BYTES} bytes; not an explanations file")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda c: float(c))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("version") != VERSION:
        raise BenchError(f"{path}: expected an object with version {VERSION}")
    entries = raw.get("checks")
    if not isinstance(entries, list):
        raise BenchError(f"{path}: field 'checks' must be a list")
    return [_check_entry(e, f"{path}, entry {n + 1}") for n, e in enumerate(entries)]


def _plain(value: Any) -> Any:
    """JSON without NaN: a missing number is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_checks(store: Path, new: list[dict[str, Any]]) -> Path:
    """Add ``new`` entries beside ``store``, replacing entries with the same key."""
    kept = {tuple(e[k] for k in KEY): e for e in read_checks(store)}
    for entry in new:
        plain = _plain(entry)
        _check_entry(plain, "a new check")
        kept[tuple(plain[k] for k in KEY)] = plain
    path = checks_path(store)
    body = {"version": VERSION, "checks": list(kept.values())}
    write_file(path, json.dumps(body, indent=1, sort_keys=True) + "\n")
    return path
