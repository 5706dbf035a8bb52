"""``bench explain``: which feature fields and which support ratings drive a stored run's
cold-start predictions, and whether those attributions pass their sanity checks.

The learner is refitted from the run's recorded config and seed (on the CPU), so the explained
model is the one the run scored; the refit's RMSE is printed beside the stored one.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any

from bench.commands import Command

METHOD_NAMES = ("ablation", "shapley-sampled", "shapley")  # bench.evaluation.attribution.METHODS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="results store [.bench/results.sqlite, or $BENCH_STORE]",
    )
    parser.add_argument("--run", help="the stored run to explain [the latest]")
    parser.add_argument("--learner", help="the learner to explain (one of the run's)")
    parser.add_argument("--dataset", help="the dataset of the cell [the run's first]")
    parser.add_argument("--seed", help="the seed of the cell [the run's first]")
    parser.add_argument("--scenario", help="the scenario whose tasks are explained [user_cold]")
    parser.add_argument("--k", help="the support size [the protocol's largest]")
    parser.add_argument("--tasks", default="5", help="tasks sampled from the scenario [5]")
    parser.add_argument("--task", help="explain only this task (the raw id of its user or item)")
    parser.add_argument(
        "--method",
        default="ablation",
        help=f"field attribution: {', '.join(METHOD_NAMES)} [ablation]",
    )
    parser.add_argument("--samples", default="25", help="field orders of shapley-sampled [25]")
    parser.add_argument(
        "--out", type=Path, help="folder to write fields.csv, support.csv and explanation.json"
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="list the run's learners and whether they can be explained by fields",
    )
    parser.add_argument(
        "--support-only",
        action="store_true",
        help="only support attributions (for learners without feature fields, such as mf)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="run the sanity checks and store them beside the store, for bench report",
    )
    parser.add_argument(
        "--check-seeds", default="2", help="other seeds refitted for the stability check [2]"
    )
    parser.add_argument(
        "--planted",
        metavar="FIELD",
        help="the field planted in the dataset's ratings (user:age), for the planted-field check "
        "[the one a generated dataset declares]",
    )
    parser.add_argument("--data-dir", help="folder holding the dataset folders [the run's]")


def _store(args: argparse.Namespace) -> Path:
    from bench.results.store import default_store

    store: Path = args.store or default_store()
    if not store.is_file():
        from bench.errors import ConfigError

        raise ConfigError(f"--store: no results store at {store}")
    return store


def _listing(store: Path, run: str | None) -> int:
    from bench.engine.explaining import explainable, latest_run, run_cells
    from bench.results.store import ResultStore

    with ResultStore(store, mode="read") as db:
        run_id = run or latest_run(db)
        names = sorted({c["learner"] for c in run_cells(db, run_id)})
    print(f"run {run_id}")
    for name in names:
        reason = explainable(name)
        print(f"  {name}: {reason or 'feature fields (field and support attributions)'}")
    return 0


def _csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _print_explanation(found: Any) -> None:
    from tabulate import tabulate

    r = found.reproduced
    print(
        f"{found.learner} on {found.dataset} (run {found.run_id}, seed {found.seed}), "
        f"{found.scenario}, k={found.k}: refit RMSE {r['refit_rmse']:.4f}, "
        f"stored {r['stored_rmse']:.4f}"
    )
    if found.not_applicable:
        print(f"field attributions: {found.not_applicable}")
    if found.rows:
        print(f"\nfield attributions ({found.method}; rating units, against each field unknown)")
        table = [
            [row["task"], *(v for k, v in row.items() if k not in ("task",))]
            for row in found.rows[:20]
        ]
        print(tabulate(table, headers=list(found.rows[0]), floatfmt=".3f"))
        if len(found.rows) > 20:
            print(f"... {len(found.rows) - 20} more rows (--out writes them all)")
        if found.shift:
            shown = ", ".join(
                f"{e}: {s:.2f}" for e, s in zip(found.entities, found.shift, strict=True)
            )
            print(f"\nadaptation shift (rank correlation before/after adaptation): {shown}")
    print(f"\nsupport attributions: {len(found.support)} nonzero (query, support rating) pairs")
    strongest = sorted(found.support, key=lambda s: -abs(s["moved"]))[:10]
    if strongest:
        print(tabulate(strongest, headers="keys", floatfmt=".3f"))


def _print_check(result: Any) -> None:
    passed = ", ".join(f"{k} {'passed' if v else 'FAILED'}" for k, v in result.passed.items())
    print(f"{result.learner} on {result.dataset} ({result.scenario}, {result.method}): {passed}")
    print(f"  explanations checked: {'yes' if result.checked else 'no'}")
    print(
        "  randomisation ρ: " + ", ".join(f"{k} {v:.2f}" for k, v in result.randomisation.items())
    )
    d = result.deletion
    print(f"  fields' effect {d['effect']:.3f} (mean |change| with every field unknown)")
    print(f"  deletion gain {d['gain']:.3f} [{d['gain_low']:.3f}, {d['gain_high']:.3f}]")
    if result.stability is not None:
        print(
            f"  stability ρ {result.stability['ranking']:.2f}, top-1 agreement {result.stability['top1']:.2f}"
        )
    if result.planted is not None:
        print(
            f"  planted field: RMSE rise {result.planted['rmse_rise']:.3f}, top-1 rate {result.planted['top1_rate']:.2f}"
        )
    print(
        "  top fields: " + ", ".join(f"{t['field']} {t['mean_abs']:.3f}" for t in result.top_fields)
    )


def _check_one(store: Path, args: argparse.Namespace, learner: str, dataset: str | None) -> None:
    from bench.engine.explaining import check, refit
    from bench.results.explanations import write_checks

    refitted = refit(
        store, learner, run_id=args.run, dataset=dataset, seed=args.seed, data_dir=args.data_dir
    )
    result = check(
        refitted, scenario=args.scenario, k=args.k, tasks=max(args.tasks, 20),
        method=args.method, seeds=tuple(refitted.seed + s for s in range(1, args.check_seeds + 1)),
        planted_field=args.planted,
    )  # fmt: skip
    path = write_checks(store, [{"run_id": refitted.run_id, **result.as_dict()}])
    _print_check(result)
    print(f"stored in {path}")


def _check_all(store: Path, args: argparse.Namespace) -> int:
    """The checks of every learner of the run that exposes feature fields, on each dataset."""
    from bench.engine.explaining import explainable, latest_run, run_cells
    from bench.errors import BenchError
    from bench.results.store import ResultStore

    with ResultStore(store, mode="read") as db:
        run_id = args.run or latest_run(db)
        pairs = sorted({(c["learner"], c["dataset"]) for c in run_cells(db, run_id)})
    args.run = run_id
    for learner, dataset in pairs:
        if args.dataset is not None and dataset != args.dataset:
            continue
        reason = explainable(learner)
        if reason:
            print(f"{learner} on {dataset}: {reason}")
            continue
        try:
            _check_one(store, args, learner, dataset)
        except BenchError as exc:  # e.g. a dataset without features: this learner has no fields
            if "not applicable" not in str(exc):
                raise
            print(f"{learner} on {dataset}: {exc}")
    return 0


def _whole(args: argparse.Namespace, name: str, low: int) -> None:
    """Parse the flag ``--name`` (dashes for underscores) as a whole number of at least ``low``,
    with a one-line error naming it."""
    from bench.errors import ConfigError

    text = getattr(args, name)
    if text is None:
        return
    flag = "--" + name.replace("_", "-")
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{flag} expects a whole number, got {text!r}") from None
    if value < low:
        raise ConfigError(f"{flag} expects a whole number >= {low}, got {value}")
    setattr(args, name, value)


def run(args: argparse.Namespace) -> int:
    from bench.engine.explaining import chosen_tasks, explain, explainable, refit
    from bench.errors import BenchError, ConfigError
    from bench.evaluation.attribution import NO_FIELDS, fields_of
    from bench.results.outputs import output_folder, write_file

    for name, low in (("tasks", 1), ("samples", 1), ("check_seeds", 1), ("seed", 0)):
        _whole(args, name, low)
    if args.method not in METHOD_NAMES:
        raise ConfigError(f"--method must be one of {', '.join(METHOD_NAMES)}, got {args.method!r}")
    store = _store(args)
    if args.list:
        return _listing(store, args.run)
    if args.check and not args.learner:
        return _check_all(store, args)
    if not args.learner:
        raise ConfigError(
            "--learner: name one of the run's learners (bench explain --list shows them), "
            "or give --check alone to check them all"
        )
    try:
        reason = explainable(args.learner)
    except BenchError as exc:
        raise ConfigError(f"--learner: {exc}") from None
    if reason and not args.support_only:
        raise ConfigError(
            f"--learner {args.learner}: {reason} (--support-only gives its support attributions)"
        )
    if args.check and args.support_only:
        raise ConfigError(
            "--check: the sanity checks are of field attributions, not --support-only"
        )
    if args.check:
        _check_one(store, args, args.learner, args.dataset)
        return 0
    refitted = refit(
        store, args.learner, run_id=args.run, dataset=args.dataset, seed=args.seed,
        data_dir=args.data_dir,
    )  # fmt: skip
    # The arguments are checked against the run's split before the learner is fitted again.
    chosen_tasks(
        refitted, scenario=args.scenario, k=args.k, tasks=args.tasks, task=args.task,
        method=args.method,
    )  # fmt: skip
    if not args.support_only and not fields_of(refitted.learner):
        raise ConfigError(
            f"--learner {args.learner}: {NO_FIELDS} on {refitted.dataset.name} "
            "(--support-only gives its support attributions)"
        )
    found = explain(
        refitted, scenario=args.scenario, k=args.k, tasks=args.tasks, task=args.task,
        method=args.method, samples=args.samples, fields=not args.support_only,
    )  # fmt: skip
    _print_explanation(found)
    if args.out is not None:
        folder = output_folder(args.out, "--out")
        write_file(folder / "fields.csv", _csv(found.rows))
        write_file(folder / "support.csv", _csv(found.support))
        meta = {
            k: getattr(found, k)
            for k in ("run_id", "learner", "dataset", "seed", "scenario", "k", "method",
                      "fields", "entities", "shift", "reproduced", "not_applicable")
        }  # fmt: skip
        meta["config"] = refitted.config
        write_file(folder / "explanation.json", json.dumps(meta, indent=1, default=str) + "\n")
        print(f"\nwritten to {folder}")
    return 0


EXPLAIN = Command(
    help="attribute a stored run's cold-start predictions to feature fields and support ratings",
    add_arguments=add_arguments,
    run=run,
)
