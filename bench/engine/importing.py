"""``bench import``: an outside model's rating predictions, scored on a suite's own split with the
same metrics and stored as an ordinary learner's cells.

The file (CSV, or Parquet by its ``.parquet`` suffix) has one row per query rating of the suite's
grid: ``dataset, seed, scenario, k, user, item, prediction``, with ids as the exported split spells
them. Every required (dataset, seed, scenario, k, user, item) must be there exactly once, with no
other row and a finite prediction; otherwise nothing is stored and the error counts what is
missing, duplicated, extra and not a number. The cells' config names the file and its SHA-256
(``provenance = "imported"``), and so does the run that stores them.

With ``--scores`` (:mod:`bench.engine.imported_scores`) an outside model's scores of the candidate
items of a ranking suite are checked alike and ranked into the top-N metrics, in the same cells
as its predictions when both are given.
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
from bench.engine.cells import cell_key, ranking_key
from bench.engine.compute import kept_predictions, rating_metrics, topn_rows
from bench.engine.imported_scores import (
    RankedGroup,
    lookup_scorer,
    ranking_groups,
    required_candidates,
)
from bench.engine.plan import RunPlan
from bench.engine.split_export import Selection, select
from bench.engine.suite import Suite
from bench.errors import BenchError, DataError, RegistryError
from bench.evaluation.metrics import RANKING_VERSION, evaluate, recorded_metrics
from bench.evaluation.scoring import scored_queries
from bench.protocol import Protocol, Split
from bench.protocol.base import split_like_threshold
from bench.protocol.episodes import TaskBatch, build_tasks
from bench.protocol.learner_registry import LEARNERS
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
    scores: int = 0

    def describe(self) -> str:
        what = [f"{self.predictions} predictions"] if self.predictions else []
        what += [f"{self.scores} candidate scores"] if self.scores else []
        return (
            f"run {self.run_id}: imported {' and '.join(what)} from {self.path} "
            f"(sha256 {self.sha256[:16]}) as learner {self.learner!r}, {len(self.cells)} cell(s)"
        )


def read_predictions(path: Path, data: bytes, value: str = "prediction") -> pd.DataFrame:
    """The file's rows with key columns as text and its ``value`` column (``prediction`` or
    ``score``) as float64."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(io.BytesIO(data))
        else:
            frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except (ValueError, TypeError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as CSV or Parquet ({exc})") from exc
    columns = (*KEYS, value)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: no column(s) {', '.join(missing)}; expected {', '.join(columns)} "
            f"(found {', '.join(map(str, frame.columns))})"
        )
    out = pd.DataFrame({c: frame[c].astype(str).str.strip() for c in KEYS})
    seeds = pd.to_numeric(out["seed"], errors="coerce")
    bad = seeds.isna() | (seeds != seeds.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: row {row + 1}: seed {out['seed'].iloc[row]!r} is not an integer")
    out["seed"] = seeds.astype(np.int64).astype(str)
    number = pd.to_numeric(frame[value], errors="coerce")
    text = frame[value].astype(str).str.strip().str.lower()
    unreadable = number.isna() & ~text.isin(["nan", "", "none", "null", "na"])
    if unreadable.any():
        row = int(np.flatnonzero(unreadable.to_numpy())[0])
        raise DataError(
            f"{path}: row {row + 1}: {value} {frame[value].iloc[row]!r} is not a number"
        )
    out[value] = number.to_numpy(dtype=np.float64)
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


PAIR_LABELS = ("required pair(s) missing", "row(s) for pairs the split does not score")
SCORE_LABELS = (
    "required candidate score(s) missing",
    "row(s) for items that are not the task's candidates",
)


def matched(
    path: Path,
    frame: pd.DataFrame,
    required: pd.DataFrame,
    value: str = "prediction",
    labels: tuple[str, str] = PAIR_LABELS,
) -> pd.DataFrame:
    """The required rows with their ``value``; any problem is one error with its counts."""
    problems: list[str] = []
    examples: list[str] = []
    duplicated = frame.duplicated(KEYS, keep="first")
    both = required.merge(frame.drop_duplicates(KEYS), on=KEYS, how="outer", indicator=True)
    missing = both[both["_merge"] == "left_only"]
    extra = both[both["_merge"] == "right_only"]
    found = both[both["_merge"] == "both"]
    bad = found[~np.isfinite(found[value].to_numpy(dtype=np.float64))]
    for count, label, short, rows in (
        (len(missing), labels[0], "missing", missing),
        (int(duplicated.sum()), "duplicate row(s)", "duplicate", frame[duplicated]),
        (len(extra), labels[1], "extra", extra),
        (len(bad), f"{value}(s) NaN or infinite", "not finite", bad),
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


@dataclass
class _Inputs:
    """What was imported for one (dataset, seed): the matched rows of each file (None where the
    file was not given), and the split's candidate sets when scores were."""

    predictions: pd.DataFrame | None
    scores: pd.DataFrame | None
    ranked: RankedGroup | None


def _record(
    group: _Group,
    protocol: Protocol,
    suite: Suite,
    learner: str,
    inputs: _Inputs,
    provenance: dict[str, Any],
    run_id: str,
    fingerprint: str,
) -> CellRecord:
    dataset, split = group.dataset, group.split
    threshold = split_like_threshold(dataset, split)
    device = suite.devices[0]
    ranking = ranking_key(suite, dataset, protocol) if inputs.scores is not None else None
    key = cell_key(
        dataset,
        protocol,
        learner,
        provenance["config_hash"],
        group.seed,
        device,
        fingerprint,
        None,
        suite.ndcg_gain,
        tie_policy=suite.tie_policy,
        ranking=ranking,
    )
    record = CellRecord(
        cell_key=key,
        run_id=run_id,
        dataset=dataset.name,
        dataset_hash=dataset.content_hash,
        protocol=protocol.label,
        protocol_hash=protocol.config.fingerprint(),
        learner=learner,
        config_hash=provenance["config_hash"],
        config={k: v for k, v in provenance.items() if k != "config_hash"},
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
            **(ranking or {}),
        },
    )
    views = suite.ranking_for(dataset, protocol)
    in_query = suite.metrics if "query" in views else rating_metrics(suite.metrics)
    for (scenario, k), labelled in group.batches.items():
        entities = dataset.raw_ids(labelled.axis, labelled.entities.numpy())
        lengths = labelled.query_mask.sum(1).tolist()
        record.evaluations.append(Evaluation(scenario, k, entities, lengths))
        if labelled.n_tasks == 0:
            continue
        if inputs.predictions is not None:
            rows = inputs.predictions
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
            for name, value in evaluate(queries, recorded_metrics(in_query)).items():
                record.metrics.append(
                    (
                        scenario,
                        k,
                        name,
                        value.value,
                        value.n_scored,
                        value.n_unscored,
                        value.per_task,
                    )
                )
            if suite.keep_predictions:
                record.predictions.append(kept_predictions(dataset, scenario, k, labelled, queries))
        ranked = inputs.ranked
        if inputs.scores is not None and ranked is not None and (scenario, k) in ranked.sets:
            rows = inputs.scores
            here = rows[(rows["scenario"] == scenario) & (rows["k"] == k)]
            record.metrics.extend(
                topn_rows(
                    lookup_scorer(here, dataset.n_items),
                    labelled.without_labels().without_queries(),
                    ranked.sets[(scenario, k)],
                    suite,
                    group.seed,
                    learner,
                    scenario,
                    k,
                    ranked.views,
                    record,
                )
            )
    return record


def _read(path: Path) -> tuple[bytes, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    return data, hashlib.sha256(data).hexdigest()


def import_predictions(
    suite: Suite | RunPlan,
    learner: str,
    predictions: Path | None,
    scores: Path | None,
    store_path: Path,
) -> ImportOutcome:
    """Validate ``predictions`` against every query of ``suite``'s grid and ``scores`` against
    every candidate set it ranks, score them and store them as ``learner``'s cells in one new
    run (one cell per dataset and seed, holding both). Nothing is written unless every row of
    every file is valid."""
    if predictions is None and scores is None:
        raise BenchError(
            "give the outside model's rating predictions with --predictions FILE, its scores of "
            "candidate items with --scores FILE, or both"
        )
    try:
        LEARNERS.get(learner)
    except (RegistryError, ImportError):
        pass
    else:
        raise BenchError(
            f"--learner {learner!r} is a registered learner; store imported predictions under "
            f"another name (for example {learner}-imported)"
        )
    chosen = select(suite)
    suite = chosen.suite
    if scores is not None:
        ranks = [
            ref
            for ref, d in chosen.datasets
            if {"full", "sampled"} & set(suite.ranking_for(d, chosen.protocol))
        ]
        if not ranks:
            raise BenchError(
                f"--scores {scores}: suite {suite.name!r} ranks no candidate items (its "
                "'ranking' has neither 'full' nor 'sampled'), so there is nothing to score them "
                "against; import rating predictions with --predictions"
            )
    by_ref = {ref: d.name for ref, d in chosen.datasets}
    groups, required = _required(chosen)
    provenance: dict[str, Any] = {"provenance": "imported"}
    digests = []
    found_predictions = found_scores = None
    ranked: list[RankedGroup | None] = [None] * len(groups)
    if predictions is not None:
        data, digest = _read(predictions)
        frame = read_predictions(predictions, data)
        frame["dataset"] = frame["dataset"].map(lambda name: by_ref.get(name, name))
        found_predictions = matched(predictions, frame, required)
        provenance.update(file=predictions.name, sha256=digest, rows=len(frame))
        digests.append(digest)
    if scores is not None:
        data, digest = _read(scores)
        frame = read_predictions(scores, data, "score")
        frame["dataset"] = frame["dataset"].map(lambda name: by_ref.get(name, name))
        plain = [(g.dataset, g.seed, g.split) for g in groups]
        ranked_groups = ranking_groups(suite, chosen.protocol, plain, chosen.evaluated)
        ranked = list(ranked_groups)
        wanted = required_candidates(
            [g.dataset for g in groups],
            [g.seed for g in groups],
            ranked_groups,
            [g.batches for g in groups],
        )
        found_scores = matched(scores, frame, wanted, "score", SCORE_LABELS)
        provenance.update(scores_file=scores.name, scores_sha256=digest, score_rows=len(frame))
        digests.append(digest)
    # One file: its SHA-256, as before scores could be imported; both: a hash of the two.
    provenance["config_hash"] = (
        digests[0][:16]
        if len(digests) == 1
        else hashlib.sha256("+".join(digests).encode()).hexdigest()[:16]
    )
    run_id = uuid.uuid4().hex[:12]
    fingerprint = code_fingerprint()
    records = [
        _record(
            group,
            chosen.protocol,
            suite,
            learner,
            _Inputs(
                _of(found_predictions, index),
                _of(found_scores, index),
                ranked[index],
            ),
            provenance,
            run_id,
            fingerprint,
        )
        for index, group in enumerate(groups)
    ]
    outcome = ImportOutcome(
        run_id,
        learner,
        predictions if predictions is not None else scores,  # type: ignore[arg-type]
        digests[0],
        0 if found_predictions is None else len(found_predictions),
        scores=0 if found_scores is None else len(found_scores),
    )
    imported = {k: v for k, v in provenance.items() if k != "config_hash"}
    paths = {"path": str(predictions)} if predictions is not None else {}
    if scores is not None:
        paths["scores_path"] = str(scores)
    with ResultStore(store_path) as store:
        run_provenance = {
            **collect(list(suite.devices[:1])),
            "imported": {**imported, **paths},
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


def _of(rows: pd.DataFrame | None, index: int) -> pd.DataFrame | None:
    return None if rows is None else rows[rows["group"] == index]
