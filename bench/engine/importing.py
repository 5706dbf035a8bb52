"""``bench import``: an outside model's rating predictions, scored on a suite's own split with the
same metrics and stored as an ordinary learner's cells.

The file (CSV, or Parquet by its ``.parquet`` suffix) has one row per query rating of the suite's
grid: ``dataset, seed, scenario, k, user, item, prediction``, with ids as the exported split spells
them. Every required (dataset, seed, scenario, k, user, item) must be there exactly once, with no
other row and a finite prediction; otherwise nothing is stored and the error counts what is
missing, duplicated, extra and not a number. The cells' config names the file and its SHA-256
(``provenance = "imported"``), and so does the run that stores them.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.data.dataset import Dataset
from bench.engine.cells import cell_key
from bench.engine.compute import kept_predictions
from bench.engine.split_export import Selection, select
from bench.engine.suite import Suite
from bench.errors import BenchError, DataError, RegistryError
from bench.evaluation.metrics import RANKING_VERSION, evaluate, recorded_metrics
from bench.evaluation.scoring import scored_queries
from bench.protocol import Protocol, Split
from bench.protocol.base import split_like_threshold
from bench.protocol.episodes import TaskBatch, build_tasks
from bench.protocol.learner import LEARNERS
from bench.provenance import code_fingerprint, collect
from bench.results.records import CellRecord, Evaluation
from bench.results.store import ResultStore

COLUMNS = ("dataset", "seed", "scenario", "k", "user", "item", "prediction")
KEYS = list(COLUMNS[:-1])
SHOWN = 3
"""How many example rows an error quotes per kind of problem."""


@dataclass
class ImportOutcome:
    run_id: str
    learner: str
    path: Path
    sha256: str
    predictions: int
    cells: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"run {self.run_id}: imported {self.predictions} predictions from {self.path} "
            f"(sha256 {self.sha256[:16]}) as learner {self.learner!r}, {len(self.cells)} cell(s)"
        )


def read_predictions(path: Path, data: bytes) -> pd.DataFrame:
    """The file's rows with key columns as text and predictions as float64."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(io.BytesIO(data))
        else:
            frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except (ValueError, TypeError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as CSV or Parquet ({exc})") from exc
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: no column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)} "
            f"(found {', '.join(map(str, frame.columns))})"
        )
    out = pd.DataFrame({c: frame[c].astype(str).str.strip() for c in KEYS})
    seeds = pd.to_numeric(out["seed"], errors="coerce")
    bad = seeds.isna() | (seeds != seeds.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: row {row + 1}: seed {out['seed'].iloc[row]!r} is not an integer")
    out["seed"] = seeds.astype(np.int64).astype(str)
    prediction = pd.to_numeric(frame["prediction"], errors="coerce")
    text = frame["prediction"].astype(str).str.strip().str.lower()
    unreadable = prediction.isna() & ~text.isin(["nan", "", "none", "null", "na"])
    if unreadable.any():
        row = int(np.flatnonzero(unreadable.to_numpy())[0])
        raise DataError(
            f"{path}: row {row + 1}: prediction {frame['prediction'].iloc[row]!r} is not a number"
        )
    out["prediction"] = prediction.to_numpy(dtype=np.float64)
    return out


@dataclass
class _Group:
    """One (dataset, seed)'s split, and its (scenario, k) task batches."""

    ref: str
    dataset: Dataset
    seed: int
    split: Split
    batches: dict[tuple[str, str], TaskBatch]


def _required(chosen: Selection) -> tuple[list[_Group], pd.DataFrame]:
    """Every query rating the suite scores, keyed like the file, with its place in its batch."""
    groups: list[_Group] = []
    frames: list[pd.DataFrame] = []
    for ref, dataset in chosen.datasets:
        for seed in chosen.seeds:
            split = chosen.protocol.split(dataset, seed)
            group = _Group(ref, dataset, seed, split, {})
            for scenario, k in chosen.evaluated:
                tasks = build_tasks(dataset, split.scenarios[scenario], k)
                group.batches[(scenario, str(k))] = tasks
                mask = tasks.query_mask.numpy()
                task, slot = np.nonzero(mask)
                frames.append(
                    pd.DataFrame(
                        {
                            "dataset": dataset.name,
                            "seed": str(seed),
                            "scenario": scenario,
                            "k": str(k),
                            "user": dataset.raw_ids("user", tasks.query_users.numpy()[mask]),
                            "item": dataset.raw_ids("item", tasks.query_items.numpy()[mask]),
                            "group": len(groups),
                            "task": task,
                            "slot": slot,
                        }
                    )
                )
            groups.append(group)
    return groups, pd.concat(frames, ignore_index=True)


def _rows(frame: pd.DataFrame) -> str:
    shown = [
        ", ".join(f"{c}={v}" for c, v in zip(KEYS, row, strict=True))
        for row in frame[KEYS].head(SHOWN).itertuples(index=False)
    ]
    return "; ".join(shown)


def matched(path: Path, frame: pd.DataFrame, required: pd.DataFrame) -> pd.DataFrame:
    """The required rows with their predictions; any problem is one error with its counts."""
    problems: list[str] = []
    examples: list[str] = []
    duplicated = frame.duplicated(KEYS, keep="first")
    both = required.merge(frame.drop_duplicates(KEYS), on=KEYS, how="outer", indicator=True)
    missing = both[both["_merge"] == "left_only"]
    extra = both[both["_merge"] == "right_only"]
    found = both[both["_merge"] == "both"]
    bad = found[~np.isfinite(found["prediction"].to_numpy(dtype=np.float64))]
    for count, label, short, rows in (
        (len(missing), "required pair(s) missing", "missing", missing),
        (int(duplicated.sum()), "duplicate row(s)", "duplicate", frame[duplicated]),
        (len(extra), "row(s) for pairs the split does not score", "extra", extra),
        (len(bad), "prediction(s) NaN or infinite", "not finite", bad),
    ):
        if count:
            problems.append(f"{count} {label}")
            examples.append(f"{short}: {_rows(rows)}")
    if problems:
        raise DataError(
            f"{path}: {', '.join(problems)} (of {len(required)} required); nothing was "
            f"stored. {' | '.join(examples)}"
        )
    return found


def _record(
    group: _Group,
    protocol: Protocol,
    suite: Suite,
    learner: str,
    rows: pd.DataFrame,
    provenance: dict[str, Any],
    run_id: str,
    fingerprint: str,
) -> CellRecord:
    dataset, split = group.dataset, group.split
    threshold = split_like_threshold(dataset, split)
    device = suite.devices[0]
    config_hash = provenance["sha256"][:16]
    key = cell_key(
        dataset,
        protocol,
        learner,
        config_hash,
        group.seed,
        device,
        fingerprint,
        None,
        suite.ndcg_gain,
        tie_policy=suite.tie_policy,
    )
    record = CellRecord(
        cell_key=key,
        run_id=run_id,
        dataset=dataset.name,
        dataset_hash=dataset.content_hash,
        protocol=protocol.label,
        protocol_hash=protocol.config.fingerprint(),
        learner=learner,
        config_hash=config_hash,
        config=provenance,
        seed=group.seed,
        device=device,
        code_fingerprint=fingerprint,
        split_summary={
            **split.summary,
            "dataset": dataset.name,
            "seed": group.seed,
            "load_report": dataset.extras.get("load_report", {}),
        },
        dataset_info={
            "rating_scale": list(dataset.rating_scale),
            "like_threshold": threshold,
            "ndcg_gain": suite.ndcg_gain,
            "tie_policy": suite.tie_policy,
            "relevance": split.config.relevance_rule.label,
            "ranking_version": RANKING_VERSION,
            "task_axis": split.config.task_axis,
        },
    )
    for (scenario, k), labelled in group.batches.items():
        entities = dataset.raw_ids(labelled.axis, labelled.entities.numpy())
        lengths = labelled.query_mask.sum(1).tolist()
        record.evaluations.append(Evaluation(scenario, k, entities, lengths))
        if labelled.n_tasks == 0:
            continue
        here = rows[(rows["scenario"] == scenario) & (rows["k"] == k)]
        predicted = np.zeros(tuple(labelled.query_items.shape), dtype=np.float64)
        place = here["task"].to_numpy(dtype=np.int64), here["slot"].to_numpy(dtype=np.int64)
        predicted[place] = here["prediction"].to_numpy(dtype=np.float64)
        queries = scored_queries(
            labelled,
            torch.from_numpy(predicted),
            dataset=dataset,
            like_threshold=threshold,
            gain=suite.ndcg_gain,
            learner=learner,
            where=f"{scenario}, k={k}",
            tie_policy=suite.tie_policy,
            relevance=split.config.relevance_rule,
        )
        for name, value in evaluate(queries, recorded_metrics(suite.metrics)).items():
            record.metrics.append(
                (scenario, k, name, value.value, value.n_scored, value.n_unscored, value.per_task)
            )
        if suite.keep_predictions:
            record.predictions.append(kept_predictions(dataset, scenario, k, labelled, queries))
    return record


def import_predictions(
    suite: Suite,
    learner: str,
    predictions: Path | None,
    scores: Path | None,
    store_path: Path,
) -> ImportOutcome:
    """Validate ``predictions`` against every query of ``suite``'s grid, score them and store
    them as ``learner``'s cells in one new run. Nothing is written unless every row is valid."""
    if scores is not None:
        raise BenchError(
            f"--scores {scores}: suite {suite.name!r} ranks no candidate items, so there is "
            "nothing to score them against; import rating predictions with --predictions"
        )
    if predictions is None:
        raise BenchError("give the outside model's rating predictions with --predictions FILE")
    try:
        LEARNERS.get(learner)
    except (RegistryError, ImportError):
        pass
    else:
        raise BenchError(
            f"--learner {learner!r} is a registered learner; store imported predictions under "
            f"another name (for example {learner}-imported)"
        )
    try:
        data = predictions.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {predictions}: {exc.strerror}") from exc
    digest = hashlib.sha256(data).hexdigest()
    frame = read_predictions(predictions, data)
    chosen = select(suite)
    by_ref = {ref: d.name for ref, d in chosen.datasets}
    frame["dataset"] = frame["dataset"].map(lambda name: by_ref.get(name, name))
    groups, required = _required(chosen)
    found = matched(predictions, frame, required)
    provenance = {
        "provenance": "imported",
        "file": predictions.name,
        "sha256": digest,
        "rows": len(frame),
    }
    run_id = uuid.uuid4().hex[:12]
    fingerprint = code_fingerprint()
    records = [
        _record(
            group,
            chosen.protocol,
            suite,
            learner,
            found[found["group"] == index],
            provenance,
            run_id,
            fingerprint,
        )
        for index, group in enumerate(groups)
    ]
    outcome = ImportOutcome(run_id, learner, predictions, digest, len(found))
    with ResultStore(store_path) as store:
        run_provenance = {
            **collect(list(suite.devices[:1])),
            "imported": {**provenance, "path": str(predictions)},
        }
        store.start_run(
            run_id, suite.name, {**suite.resolved(), "imported": learner}, run_provenance
        )
        status = "failed"
        try:
            for record in records:
                store.write_cell(record)
                outcome.cells.append(record.cell_key)
            status = "finished"
        finally:
            store.finish_run(run_id, status, outcome.cells)
    return outcome
