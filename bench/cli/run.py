"""``bench run``: its flags, the run plan they make (through :func:`bench.api.plan_run`, the same
front door as :func:`bench.api.run`), and the run's terminal output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.cli.arguments import csv_list, rating_scale, support_sizes
from bench.commands import positive_int
from bench.errors import BenchError
from bench.results.store import DEFAULT_STORE, default_store

NAME = "run"

RUN_FLAGS = {
    "learners": "--learners",
    "datasets": "--datasets",
    "scenarios": "--scenarios",
    "seeds": "--seeds",
    "devices": "--device",
    "data_dir": "--data-dir",
    "dataset_options": "--dataset-option",
    "rating_scale": "--rating-scale",
    "support_sizes": "--support-sizes",
    "query_size": "--query-size",
    "floors": "--no-floors",
    "no_tune": "--no-tune",
    "claim_wait": "--claim-wait",
}
"""The flag of each override (:class:`bench.engine.plan.Overrides` field), for error messages."""


def add_parser(sub: Any) -> None:
    run = sub.add_parser("run", help="run a suite and print the tables")
    run.add_argument("--suite", default="default", help="a shipped suite name or a TOML path")
    run.add_argument("--learners", type=csv_list, help="comma-separated learner names")
    run.add_argument("--datasets", type=csv_list, help="comma-separated dataset names")
    run.add_argument("--scenarios", type=csv_list, help="comma-separated scenarios")
    run.add_argument("--seeds", type=positive_int, help="number of seeds (0..N-1)")
    run.add_argument("--device", type=csv_list, help="cpu, cuda or cpu,cuda")
    run.add_argument(
        "--support-sizes",
        type=support_sizes,
        metavar="K,K,...",
        help="the support sizes of every task, e.g. 1,3,5 [the suite's [protocol] table]",
    )
    run.add_argument(
        "--query-size",
        type=positive_int,
        metavar="N",
        help="query ratings per task [the suite's [protocol] table]",
    )
    run.add_argument("--store", type=Path, default=None, help=f"results store [{DEFAULT_STORE}]")
    run.add_argument("--fresh", action="store_true", help="recompute cells already in the store")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument(
        "--verbose", action="store_true", help="also print the resolved suite, after the tables"
    )
    run.add_argument(
        "--no-tune",
        action="store_true",
        help="run every learner with its config as set, ignoring the suite's [tune] tables",
    )
    run.add_argument(
        "--no-floors",
        action="store_true",
        help="leave out the floor learners (floor-random, floor-constant) that every suite "
        "with a ranking metric runs by default",
    )
    run.add_argument(
        "--data-dir",
        help="folder holding the dataset folders (ml-100k/, ...) [$BENCH_DATA_DIR, else a cache]",
    )
    run.add_argument(
        "--dataset-option",
        action="append",
        metavar="KEY=VALUE",
        help="a parser option for every dataset of the run, e.g. rating=score (repeatable); "
        "values are read as TOML where they parse, else as text",
    )
    run.add_argument(
        "--executor",
        choices=["local", "process", "ray"],
        default="local",
        help="where cells are computed: in this process, a process pool, or Ray [local]",
    )
    run.add_argument(
        "--workers",
        type=positive_int,
        help="process pool size, or the most cells Ray runs at once [one per core]",
    )
    run.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="a running Ray cluster, e.g. ray://head:10001 or auto [start a local one]",
    )
    run.add_argument(
        "--claim-wait",
        type=float,
        metavar="SECONDS",
        help="how long to wait for cells another run is computing [86400: a day]",
    )
    run.add_argument(
        "--rating-scale",
        type=rating_scale,
        metavar="MIN,MAX",
        help="the rating scale of every dataset of the run (instead of the card's or the "
        "observed min and max), e.g. 1,5",
    )


def plan_from_args(args: argparse.Namespace) -> Any:
    """The run plan of ``bench run``'s arguments, built as :func:`bench.api.plan` builds it."""
    from bench.api import plan_run
    from bench.engine.plan import Overrides, cli_spelling

    overrides = Overrides(
        learners=args.learners,
        datasets=args.datasets,
        scenarios=args.scenarios,
        seeds=args.seeds,
        devices=args.device,
        data_dir=args.data_dir,
        no_tune=args.no_tune,
        floors=False if args.no_floors else None,
        support_sizes=args.support_sizes,
        query_size=args.query_size,
        dataset_options=_dataset_options(args.dataset_option) if args.dataset_option else None,
        rating_scale=args.rating_scale,
    )
    return plan_run(args.suite, overrides, cli_spelling(RUN_FLAGS))


def handle(args: argparse.Namespace) -> int:
    from bench.engine.executors import make_executor
    from bench.engine.plan import check_claim_wait
    from bench.engine.runner import CLAIM_WAIT_S, run_suite
    from bench.evaluation.metrics import GAINS
    from bench.results.store import ResultStore
    from bench.results.terminal import render_terminal
    from bench.results.tuning_text import tuning_lines

    plan = plan_from_args(args)
    suite = plan.suite
    claim_wait = check_claim_wait(args.claim_wait, RUN_FLAGS["claim_wait"])
    executor = make_executor(args.executor, args.workers, args.ray_address)
    with ResultStore(args.store or default_store()) as store:
        outcome = run_suite(
            plan,
            store,
            fresh=args.fresh,
            progress=not args.no_progress,
            executor=executor,
            claim_wait_s=CLAIM_WAIT_S if claim_wait is None else claim_wait,
        )
        metric_rows = store.metric_rows(outcome.cell_keys)
        timing_rows = store.timing_rows(outcome.cell_keys)
        summaries = store.cell_summaries(outcome.cell_keys)
        tunings = store.tuning_rows(outcome.cell_keys)
    marks, thin = _floor_marks(args.store or default_store(), outcome.cell_keys, suite.scenarios)
    print(
        render_terminal(
            metric_rows,
            timing_rows,
            suite.shown_metrics,
            suite.learners,
            marks=marks,
            tie_policy=suite.tie_policy,
        )
    )
    if tunings:
        print()
        tuned = {row["learner"] for row in tunings}
        untuned = [name for name in suite.learners if name not in tuned]
        for line in tuning_lines(tunings, suite.learners, untuned):
            print(line)
    print(f"\nNDCG gain: {suite.ndcg_gain} ({GAINS[suite.ndcg_gain]}; the suite's ndcg_gain)")
    _print_split_summaries(summaries)
    if summaries:
        print(SPLIT_FOOTER)
    _print_load_reports(summaries)
    if args.verbose:
        print("\nresolved config:")
        print(json.dumps(suite.resolved(), indent=2, default=str))
    print(
        f"\nrun {outcome.run_id}: {outcome.computed} cell(s) computed, {outcome.reused} reused "
        f"from {args.store or default_store()}"
    )
    for description, reason in outcome.skipped:
        print(f"skipped {description}: {reason}")
    for note in thin:  # after the tables and again last, where a reader of the run looks
        print(f"warning: {note.where}: {note.text}", file=sys.stderr)
    for description, holder in outcome.waited:
        print(f"waited for {holder} to compute {description}")
    for description, holder in outcome.held:
        print(
            f"not computed: {description} is still being computed by {holder}; "
            "a re-run reuses it once that run stores it",
            file=sys.stderr,
        )
    for description, message in outcome.failed:
        print(f"FAILED {description}: {message}", file=sys.stderr)
    return outcome.exit_code


def _floor_marks(
    store: Any, cell_keys: list[str], scenarios: Sequence[str]
) -> tuple[dict[tuple[str, ...], list[str]], list[Any]]:
    """The at-floor and degenerate marks of a run's cells (none when it has no cells), and the
    thin-data warnings of the suite's scenarios."""
    from bench.results.analysis import load_results
    from bench.results.analysis.floors import marks_by_line
    from bench.results.analysis.thin import thin_data

    if not cell_keys:
        return {}, []
    results = load_results(store, cell_keys=cell_keys, latest_only=False)
    return marks_by_line(results), thin_data(results.coverage, scenarios)


def _dataset_options(pairs: list[str]) -> dict[str, Any]:
    import tomllib

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"--dataset-option expects KEY=VALUE, got {pair!r}")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # plain text such as a column name needs no quotes
        options[key.strip()] = value
    return options


SPLIT_FOOTER = (
    "split lines: one per dataset and seed (with predefined folds, the seed picks the fold); new "
    "entities are those held out of training, validation tasks are existing entities kept out of "
    "training for early stopping and tuning; a task is left out when its rating pool is smaller than the "
    "largest finite k plus the query size. A rating at or above the like threshold is a like; "
    "the like rate is the share of training ratings that are likes."
)


def _split_order(summary: dict[str, Any]) -> tuple[str, int]:
    return (str(summary.get("dataset", "")), int(summary.get("seed", 0)))


def _print_split_summaries(summaries: dict[str, Any]) -> None:
    """One line per distinct split: dataset and seed, entity counts, training size and tasks."""
    # A training-data arm's cell shares its split with the clean cells: one line for both.
    distinct = {
        json.dumps({k: v for k, v in s.items() if k != "training_arm"}, sort_keys=True): s
        for s in summaries.values()
    }
    for summary in sorted(distinct.values(), key=_split_order):
        parts = []
        for scenario, counts in summary.get("scenarios", {}).items():
            part = f"{scenario} {counts['tasks']} tasks"
            if counts.get("ineligible"):
                part += (
                    f" ({counts['ineligible']} left out: fewer than {summary.get('min_pool')} "
                    "ratings in their pool)"
                )
            parts.append(part)
        fold = f" (fold {summary['fold']})" if "fold" in summary else ""
        origin = f"{summary.get('dataset', '?')} seed {summary.get('seed', '?')}{fold}"
        print(
            f"split {origin}: {summary.get('existing_users')} existing / "
            f"{summary.get('new_users')} "
            f"new users, {summary.get('existing_items')} existing / {summary.get('new_items')} "
            f"new items, {summary.get('train_ratings')} training ratings"
            f"{_training_variants(summary)}, "
            f"{summary.get('validation_tasks')} validation tasks{_likes(summary)}"
            f"{_audited(summary)}; "
            f"{', '.join(parts)}"
        )


def _training_variants(summary: dict[str, Any]) -> str:
    """What the other construction of the training set would hold, when an activity filter
    leaves some entities out of the tasks."""
    variants = summary.get("train_ratings_variants")
    if not variants:
        return ""
    kept, dropped = variants["filter chooses tasks only"], variants["filtered entities dropped"]
    if summary.get("train_ratings") == dropped and kept != dropped:
        return f" (entities outside the activity filter dropped; keeping them: {kept})"
    return f" (dropping the entities outside the activity filter, as MeLU's paper does: {dropped})"


def _audited(summary: dict[str, Any]) -> str:
    outcome = summary.get("audit")
    if not isinstance(outcome, dict):
        return ""
    if outcome.get("passed"):
        return f", leakage audit passed ({len(outcome.get('checks', {}))} checks)"
    return f", leakage audit FAILED ({', '.join(outcome.get('failed', {}))})"


def _likes(summary: dict[str, Any]) -> str:
    if "like_threshold" not in summary:
        return ""
    rate = summary.get("like_rate")
    rate_text = f"{rate:.1%}" if isinstance(rate, int | float) else "n/a"
    return (
        f", like threshold {summary['like_threshold']:g} "
        f"({summary.get('like_threshold_source', '?')}; like rate {rate_text})"
    )


def _print_load_reports(summaries: dict[str, Any]) -> None:
    """One line per dataset on what loading did to its rows, its scale and its like threshold."""
    from bench.data.loaders.table import describe_load_report

    reports = {
        json.dumps(s.get("load_report"), sort_keys=True): s.get("load_report")
        for s in summaries.values()
    }
    for _, report in sorted(reports.items()):
        if report:
            print(describe_load_report(report))
