"""Finished cells kept beside the store as data: JSON files, checked field by field on reading.

A cell the store could not take is written to ``<store>.unsaved/<cell key>.json`` and the next run
writes it to the store. Those files may come from elsewhere (a copied folder, a shared drive), so
they are data only: nothing in them is executed, every field is checked for its type, and the
store inserts a kept cell only when it is one the current run would compute (same key, dataset,
protocol, learner, config, seed, device and code fingerprint, see :func:`mismatch`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.limits import MAX_JSON_DEPTH, check_depth

if TYPE_CHECKING:
    from bench.results.records import CellRecord

FORMAT = "bench-kept-cell"
VERSION = 1
SUFFIX = ".json"
MAX_KEPT_BYTES = 2 << 30
"""A kept file larger than this is no cell this harness wrote (predictions included)."""

IDENTITY = (
    "cell_key",
    "dataset",
    "dataset_hash",
    "protocol",
    "protocol_hash",
    "learner",
    "config_hash",
    "seed",
    "device",
    "code_fingerprint",
)
"""The fields that say which cell a record is: all must match a cell of the run."""


class KeptCellError(ValueError):
    """A kept file that is not a valid cell record; the message names the field."""


def _floats(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in np.asarray(values, dtype=float)]


def encode(record: CellRecord) -> str:
    """The record as JSON text (NaN written as null)."""
    body = {
        "format": FORMAT,
        "version": VERSION,
        **{name: getattr(record, name) for name in IDENTITY},
        "run_id": record.run_id,
        "config": record.config,
        "split_summary": record.split_summary,
        "dataset_info": record.dataset_info,
        "evaluations": [
            {
                "scenario": e.scenario,
                "k": e.k,
                "entities": e.entities,
                "query_lengths": e.query_lengths,
            }
            for e in record.evaluations
        ],
        "metrics": [
            {
                "scenario": s,
                "k": k,
                "metric": m,
                "value": None if math.isnan(v) else float(v),
                "n_tasks": n,
                "n_unscored": u,
                "per_task": _floats(per_task),
            }
            for s, k, m, v, n, u, per_task in record.metrics
        ],
        "timings": [
            {
                name: (None if isinstance(v, float) and math.isnan(v) else v)
                for name, v in t._asdict().items()
            }
            for t in record.timings
        ],
        "predictions": [
            {
                "scenario": p.scenario,
                "k": p.k,
                "users": p.users,
                "items": p.items,
                "ratings": _floats(p.ratings),
                "predicted": _floats(p.predicted),
            }
            for p in record.predictions
        ],
        "tuning": None if record.tuning is None else vars(record.tuning),
        "trials": [vars(t) for t in record.trials],
    }
    return json.dumps(body, default=str, allow_nan=False)


class _Fields:
    """Typed access to one JSON object, naming the field that is wrong."""

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise KeptCellError(f"{where}: expected an object, got {type(value).__name__}")
        self.value, self.where = value, where

    def _get(self, name: str) -> Any:
        if name not in self.value:
            raise KeptCellError(f"field {self.at(name)} is missing")
        return self.value[name]

    def at(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def _bad(self, name: str, expected: str) -> KeptCellError:
        got = type(self.value.get(name)).__name__
        return KeptCellError(f"field {self.at(name)}: expected {expected}, got {got}")

    def text(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str):
            raise self._bad(name, "a string")
        return value

    def optional_text(self, name: str) -> str | None:
        value = self.value.get(name)
        if value is not None and not isinstance(value, str):
            raise self._bad(name, "a string or null")
        return value

    def integer(self, name: str, low: int = 0) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self._bad(name, f"an integer >= {low}")
        return value

    def number(self, name: str, *, nullable: bool = False) -> float:
        value = self._get(name)
        if value is None and nullable:
            return float("nan")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(name, "a number" + (" or null" if nullable else ""))
        return float(value)

    def table(self, name: str) -> dict[str, Any]:
        value = self._get(name)
        if not isinstance(value, dict):
            raise self._bad(name, "an object")
        return value

    def array(self, name: str) -> list[Any]:
        value = self._get(name)
        if not isinstance(value, list):
            raise self._bad(name, "a list")
        return value

    def texts(self, name: str) -> list[str]:
        values = self.array(name)
        if not all(isinstance(v, str) for v in values):
            raise self._bad(name, "a list of strings")
        return values

    def integers(self, name: str) -> list[int]:
        values = self.array(name)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise self._bad(name, "a list of integers >= 0")
        return values

    def numbers(self, name: str) -> np.ndarray:
        values = self.array(name)
        if not all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values
        ):
            raise self._bad(name, "a list of numbers or nulls")
        return np.array([np.nan if v is None else v for v in values], dtype="<f8")

    def objects(self, name: str) -> list[_Fields]:
        return [_Fields(v, f"{self.at(name)}[{i}]") for i, v in enumerate(self.array(name))]


def decode(text: str) -> CellRecord:
    """The record in ``text``, every field checked; a :class:`KeptCellError` names what is wrong."""
    from bench.evaluation.timing import TimingRow
    from bench.results.records import CellRecord, Evaluation, Predictions, TrialRecord, TuningRecord

    try:
        raw = json.loads(text)
    except RecursionError:
        raise KeptCellError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise KeptCellError(f"not JSON ({exc})") from None
    check_depth(raw, "", KeptCellError)
    top = _Fields(raw, "")
    if raw.get("format") != FORMAT or raw.get("version") != VERSION:
        raise KeptCellError(f"not a kept cell of format {FORMAT!r} version {VERSION}")
    record = CellRecord(
        cell_key=top.text("cell_key"),
        run_id=top.text("run_id"),
        dataset=top.text("dataset"),
        dataset_hash=top.text("dataset_hash"),
        protocol=top.text("protocol"),
        protocol_hash=top.text("protocol_hash"),
        learner=top.text("learner"),
        config_hash=top.text("config_hash"),
        config=top.table("config"),
        seed=top.integer("seed"),
        device=top.text("device"),
        code_fingerprint=top.text("code_fingerprint"),
        split_summary=top.table("split_summary"),
        dataset_info=top.table("dataset_info"),
    )
    tasks: dict[tuple[str, str], int] = {}
    for e in top.objects("evaluations"):
        evaluation = Evaluation(
            e.text("scenario"), e.text("k"), e.texts("entities"), e.integers("query_lengths")
        )
        if len(evaluation.query_lengths) != evaluation.n_tasks:
            raise KeptCellError(f"field {e.at('query_lengths')}: one length per entity expected")
        tasks[(evaluation.scenario, evaluation.k)] = evaluation.n_tasks
        record.evaluations.append(evaluation)
    for m in top.objects("metrics"):
        where = (m.text("scenario"), m.text("k"))
        per_task = m.numbers("per_task")
        if tasks.get(where) != len(per_task) or m.integer("n_tasks") + m.integer(
            "n_unscored"
        ) != len(per_task):
            raise KeptCellError(
                f"field {m.at('per_task')}: one value per task of evaluation {where} expected"
            )
        record.metrics.append(
            (
                *where,
                m.text("metric"),
                m.number("value", nullable=True),
                m.integer("n_tasks"),
                m.integer("n_unscored"),
                per_task,
            )
        )
    for t in top.objects("timings"):
        record.timings.append(
            TimingRow(
                t.text("scenario"),
                t.text("k"),
                t.text("phase"),
                t.number("seconds"),
                t.number("cpu_seconds"),
                t.integer("tasks"),
                t.number("tasks_per_s", nullable=True),
                t.integer("peak_memory_bytes"),
                t.text("memory_kind"),
                t.integer("torch_threads"),
                t.number("load_1m", nullable=True),
                t.integer("cpus"),
                t.text("host"),
            )
        )
    for p in top.objects("predictions"):
        users, items = p.texts("users"), p.texts("items")
        ratings, predicted = p.numbers("ratings"), p.numbers("predicted")
        if not len(users) == len(items) == len(ratings) == len(predicted):
            raise KeptCellError(
                f"field {p.at('users')}: users, items, ratings and predictions differ in length"
            )
        record.predictions.append(
            Predictions(p.text("scenario"), p.text("k"), users, items, ratings, predicted)
        )
    for t in top.objects("trials"):
        state = t.text("state")
        if state not in ("complete", "failed"):
            raise KeptCellError(f"field {t.at('state')}: expected 'complete' or 'failed'")
        value = t.number("value", nullable=True)
        record.trials.append(
            TrialRecord(
                t.integer("number"),
                t.table("params"),
                None if math.isnan(value) else value,
                t.number("seconds"),
                state,  # type: ignore[arg-type]
                t.optional_text("error"),
            )
        )
    if raw.get("tuning") is not None:
        u = _Fields(raw["tuning"], "tuning")
        record.tuning = TuningRecord(
            u.table("spec"),
            u.table("chosen"),
            u.integer("trials"),
            u.integer("best_trial"),
            u.number("best_value"),
            u.number("seconds"),
            u.integer("validation_tasks"),
        )
    return record


def identity(record: CellRecord) -> dict[str, Any]:
    """The identity fields of ``record``, as :func:`mismatch` compares them."""
    return {name: getattr(record, name) for name in IDENTITY}


def read(path: Path) -> CellRecord:
    """The record in the kept file ``path``, checked; never more than :data:`MAX_KEPT_BYTES` read."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_KEPT_BYTES + 1)
    if len(data) > MAX_KEPT_BYTES:
        raise KeptCellError(f"larger than {MAX_KEPT_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KeptCellError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return decode(text)
    except OverflowError:  # a number too large for a float64
        raise KeptCellError("a number is out of the float64 range") from None


def mismatch(record: CellRecord, expected: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why ``record`` is not one of the run's cells (``expected``: identity fields by cell key),
    or None when its key and every identity field match."""
    cell = expected.get(record.cell_key)
    if cell is None:
        return "it is no cell of this run"
    for name in IDENTITY:
        if getattr(record, name) != cell.get(name):
            return f"its {name} differs from the run's cell of that key"
    return None
