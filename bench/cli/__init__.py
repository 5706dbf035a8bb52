"""Run, list, validate, export, report and check cold-start benchmark suites (added: perf).

Exit codes: 0 success; 1 a cell failed (the others still finish and are stored) or ``check`` found
a regression; 2 bad input or usage, or results that ``check`` could not compare with its baseline.
A reader that stops early (``bench export | head``) ends the command quietly with status 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.commands import COMMANDS, positive_int
from bench.errors import BenchError, DataWarning
from bench.results.store import DEFAULT_STORE, default_store

DEFAULT_REPORT_DIR = Path(".bench") / "report"


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _support_sizes(text: str) -> tuple[int | str, ...]:
    sizes: list[int | str] = []
    for part in _csv_list(text):
        if part == "all":
            sizes.append(part)
        elif part.isdigit():
            sizes.append(int(part))
        else:
            raise argparse.ArgumentTypeError(
                f"expected sizes such as 1,3,5 (whole numbers, or all), got {text!r}"
            )
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected sizes such as 1,3,5, got {text!r}")
    return tuple(sizes)


def _rating_scale(text: str) -> list[float]:
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX such as 1,5, got {text!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise argparse.ArgumentTypeError(f"expected finite MIN < MAX, got {text!r}")
    return [low, high]


# Where each suite field given on the command line came from, for error messages.
RUN_FLAGS = {
    "learners": "--learners",
    "datasets": "--datasets",
    "scenarios": "--scenarios",
    "seeds": "--seeds",
    "devices": "--device",
    "data_dir": "--data-dir",
    "dataset": "--dataset-option",
    "protocol": "--support-sizes/--query-size",
    "floors": "--no-floors",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite and print the tables")
    run.add_argument("--suite", default="default", help="a shipped suite name or a TOML path")
    run.add_argument("--learners", type=_csv_list, help="comma-separated learner names")
    run.add_argument("--datasets", type=_csv_list, help="comma-separated dataset names")
    run.add_argument("--scenarios", type=_csv_list, help="comma-separated scenarios")
    run.add_argument("--seeds", type=positive_int, help="number of seeds (0..N-1)")
    run.add_argument("--device", type=_csv_list, help="cpu, cuda or cpu,cuda")
    run.add_argument(
        "--support-sizes",
        type=_support_sizes,
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
        type=_rating_scale,
        metavar="MIN,MAX",
        help="the rating scale of every dataset of the run (instead of the card's or the "
        "observed min and max), e.g. 1,5",
    )

    ls = sub.add_parser("ls", help="list learners, datasets, protocols, suites and metrics")
    ls.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=["all", "learners", "datasets", "protocols", "suites", "metrics"],
    )

    validate = sub.add_parser("validate", help="check a suite without running it")
    validate.add_argument("suite", help="a shipped suite name or a TOML path")

    export = sub.add_parser("export", help="write the stored result rows as CSV, JSON or Parquet")
    export.add_argument("--format", choices=["csv", "json", "parquet"], default="csv")
    export.add_argument("--store", type=Path, default=None)
    export.add_argument(
        "--run", type=_csv_list, help="only the cells these run ids computed or reused"
    )
    rows = export.add_mutually_exclusive_group()
    rows.add_argument("--timings", action="store_true", help="timing rows instead of metrics")
    rows.add_argument(
        "--per-task", action="store_true", help="per-task values, keyed by task entity"
    )
    rows.add_argument(
        "--predictions",
        action="store_true",
        help="every query rating with its prediction (suites with keep_predictions = true)",
    )
    rows.add_argument("--summary", action="store_true", help="means over seeds with 95%% intervals")
    rows.add_argument(
        "--slices",
        action="store_true",
        help="each task entity's slice attributes (suites with slices = [...])",
    )
    export.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")

    report = sub.add_parser(
        "report", help="write Markdown, HTML, CSV and JSON reports from the store alone"
    )
    report.add_argument("--store", type=Path, default=None, help=f"results store [{DEFAULT_STORE}]")
    report.add_argument(
        "--run", type=_csv_list, help="only the cells these run ids computed or reused"
    )
    report.add_argument("--out", type=Path, default=DEFAULT_REPORT_DIR, help="output folder")
    report.add_argument("--name", default="report", help="base name of the files [report]")
    report.add_argument(
        "--format", type=_csv_list, default=("md", "html", "csv", "json"), help="md,html,csv,json"
    )
    report.add_argument(
        "--reference", default="mf", help="the learner every other is tested against [mf]"
    )
    report.add_argument(
        "--baselines",
        type=_csv_list,
        help="learners that are not meta-learners [oracle,global-mean,item-mean,mf,fine-tune]",
    )
    report.add_argument("--alpha", type=float, default=0.05, help="significance level [0.05]")
    report.add_argument("--title", default="coldstart-bench results", help="page title")
    report.add_argument(
        "--command",
        dest="made_by",
        help="the command to name at the top as the report's origin",
    )
    report.add_argument(
        "--allow-partial",
        action="store_true",
        help="report runs that did not finish too (every table then says it is partial)",
    )

    _add_check_parsers(sub)
    _add_referee_parsers(sub)
    for name in COMMANDS.names():
        if name in BUILT_IN:
            raise BenchError(
                f"command {name!r} is declared by {COMMANDS.origin(name)} but is a built-in "
                "bench command; rename it"
            )
        command = COMMANDS.get(name)
        command.add_arguments(sub.add_parser(name, help=command.help))
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from bench.engine.executors import make_executor
    from bench.engine.runner import run_suite
    from bench.engine.suite import load_suite, override, sized_protocol
    from bench.evaluation.metrics import GAINS
    from bench.results.store import ResultStore
    from bench.results.terminal import render_terminal
    from bench.results.tuning_text import tuning_lines

    suite = load_suite(args.suite)
    suite = override(
        suite,
        RUN_FLAGS,
        learners=args.learners,
        datasets=args.datasets,
        scenarios=args.scenarios,
        seeds=tuple(range(args.seeds)) if args.seeds is not None else None,
        devices=args.device,
        data_dir=args.data_dir,
        tune={} if args.no_tune else None,
        floors=False if args.no_floors else None,
        protocol=sized_protocol(suite, args.support_sizes, args.query_size),
    )
    options = _dataset_options(args.dataset_option or [])
    if args.rating_scale:
        options["rating_scale"] = args.rating_scale
    if options:
        tables = {name: {**suite.dataset.get(name, {}), **options} for name in suite.datasets}
        suite = override(suite, RUN_FLAGS, dataset=tables)
    if args.claim_wait is not None and not (
        math.isfinite(args.claim_wait) and args.claim_wait >= 0
    ):
        raise BenchError(f"--claim-wait must be a number of seconds >= 0, got {args.claim_wait}")
    executor = make_executor(args.executor, args.workers, args.ray_address)
    with ResultStore(args.store or default_store()) as store:
        outcome = run_suite(
            suite,
            store,
            fresh=args.fresh,
            progress=not args.no_progress,
            executor=executor,
            **({} if args.claim_wait is None else {"claim_wait_s": args.claim_wait}),
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


def cmd_ls(args: argparse.Namespace) -> int:
    from bench.cli.listing import LISTINGS

    shown = [what for what in LISTINGS if args.what in ("all", what)]
    for what in shown:
        entries = LISTINGS[what]()
        if len(shown) > 1:
            print(f"{what}:")
        width = max((len(name) for name, _ in entries), default=0)
        indent = "  " if len(shown) > 1 else ""
        for name, description in entries:
            print(f"{indent}{name:<{width}}  {description}".rstrip())
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from bench.engine.suite import load_suite, tuning_specs
    from bench.protocol import make_protocol

    suite = load_suite(args.suite)
    print(
        f"{suite.source}: ok ({len(suite.datasets)} dataset(s), {len(suite.learners)} "
        f"learner(s), {len(suite.scenarios)} scenario(s), {len(suite.seeds)} seed(s))"
    )
    specs = tuning_specs(suite, make_protocol(suite.protocol["name"], suite.protocol))
    for name, spec in specs.items():
        print(f"tune {name}: {spec.describe()}")
    return 0


def _export_kind(args: argparse.Namespace) -> str:
    for flag, kind in (
        ("timings", "timings"),
        ("per_task", "per-task"),
        ("predictions", "predictions"),
        ("summary", "summary"),
        ("slices", "slices"),
    ):
        if getattr(args, flag):
            return kind
    return "metrics"


def cmd_export(args: argparse.Namespace) -> int:
    from bench.results.analysis import load_results
    from bench.results.export import write_export

    results = load_results(args.store or default_store(), run_ids=args.run)
    write_export(results, _export_kind(args), args.format, args.output)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.results.analysis import load_results
    from bench.results.report import ReportOptions, write_report

    if not 0 < args.alpha < 1:
        raise BenchError(f"--alpha must lie between 0 and 1, got {args.alpha}")
    options = ReportOptions(
        reference=args.reference,
        alpha=args.alpha,
        title=args.title,
        command=args.made_by or "",
        invocation="python -m bench " + " ".join(args.argv),
        allow_partial=args.allow_partial,
        **({"baselines": args.baselines} if args.baselines else {}),
    )
    results = load_results(args.store or default_store(), run_ids=args.run)
    written = write_report(results, args.out, name=args.name, formats=args.format, options=options)
    for path in written:
        print(path)
    return 0


def _add_check_parsers(sub: Any) -> None:
    baseline = sub.add_parser(
        "baseline", help="run a suite and write its results as a baseline for `bench check`"
    )
    baseline.add_argument("--suite", required=True, help="a shipped suite name or a TOML path")
    baseline.add_argument(
        "--store", type=Path, default=None, help=f"results store [{DEFAULT_STORE}]"
    )
    baseline.add_argument("--out", type=Path, help="baseline file [reports/baselines/SUITE.json]")
    baseline.add_argument("--data-dir", help="folder holding the dataset folders")
    baseline.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    check = sub.add_parser(
        "check", help="compare results with a baseline; exit 1 on a regression, 2 if incomparable"
    )
    check.add_argument("--baseline", type=Path, required=True, help="baseline file to compare with")
    source = check.add_mutually_exclusive_group()
    source.add_argument("--suite", help="run this suite (reusing stored cells), then compare")
    source.add_argument(
        "--run", type=_csv_list, help="compare only the cells these stored runs computed or reused"
    )
    check.add_argument("--store", type=Path, default=None, help=f"results store [{DEFAULT_STORE}]")
    check.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="[METRIC=]VALUE[%]",
        help="allowed change: absolute, or relative with %%; for one metric or all (repeatable)",
    )
    check.add_argument("--alpha", type=float, help="significance level of the paired test [0.05]")
    check.add_argument(
        "--timing-tolerance", type=float, metavar="RATIO", help="allowed slow-down ratio [1.5]"
    )
    check.add_argument("--no-timing", action="store_true", help="do not compare timings")
    check.add_argument(
        "--fail-on-degenerate",
        action="store_true",
        help="a cell with at least half its tasks fully tied fails the check (default: a warning)",
    )
    check.add_argument(
        "--allow-missing", action="store_true", help="baseline cells absent now are not an error"
    )
    check.add_argument("--format", choices=["text", "json"], default="text")
    check.add_argument("--changes-only", action="store_true", help="hide the cells marked same")
    check.add_argument("--data-dir", help="folder holding the dataset folders (with --suite)")
    check.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _check_suite(name: str, data_dir: str | None) -> Any:
    from bench.engine.suite import load_suite, override

    return override(load_suite(name), RUN_FLAGS, data_dir=data_dir)


def cmd_baseline(args: argparse.Namespace) -> int:
    from bench.engine.gating import make_baseline

    suite = _check_suite(args.suite, args.data_dir)
    out = args.out or Path("reports") / "baselines" / f"{suite.name}.json"
    command = "python -m bench " + " ".join(args.argv)
    store = args.store or default_store()
    return make_baseline(suite, store, out, progress=not args.no_progress, command=command)


def cmd_check(args: argparse.Namespace) -> int:
    from bench.engine.gating import CheckRequest, check_with_warnings
    from bench.results.gate.render import render_json, render_text

    request = CheckRequest(
        baseline=args.baseline,
        store=args.store or default_store(),
        suite=_check_suite(args.suite, args.data_dir) if args.suite else None,
        run_ids=args.run,
        tolerance_flags=tuple(args.tolerance),
        alpha=args.alpha,
        timing_ratio=args.timing_tolerance,
        timing=not args.no_timing,
        allow_missing=args.allow_missing,
        progress=not args.no_progress,
    )
    comparison, failed, degenerate = check_with_warnings(request)
    if args.format == "json":
        print(render_json(comparison))
    else:
        print(render_text(comparison, changes_only=args.changes_only))
    for line in degenerate:
        print(f"{'error' if args.fail_on_degenerate else 'warning'}: {line}", file=sys.stderr)
    if degenerate and args.fail_on_degenerate and not failed and not comparison.exit_code:
        return 1
    return 1 if failed else comparison.exit_code


def _add_referee_parsers(sub: Any) -> None:
    split = sub.add_parser(
        "split", help="export a suite's splits as files, or verify exported ones"
    )
    verbs = split.add_subparsers(dest="split_command", required=True)
    export = verbs.add_parser("export", help="write training, support, query and validation data")
    export.add_argument("--suite", required=True, help="a shipped suite name or a TOML path")
    export.add_argument("--dataset", help="only this dataset of the suite")
    export.add_argument("--seed", type=int, help="only this seed")
    export.add_argument("--out", type=Path, required=True, help="folder to write into")
    export.add_argument("--format", choices=["csv", "parquet", "recbole"], default="csv")
    export.add_argument("--data-dir", help="folder holding the dataset folders")
    verify = verbs.add_parser("verify", help="recompute an exported split; exit 1 on a difference")
    verify.add_argument("dir", type=Path, help="the folder holding manifest.json")
    verify.add_argument("--data-dir", help="folder holding the dataset folders")

    audit = sub.add_parser("audit", help="check a suite's splits (or an exported one) for leaks")
    target = audit.add_mutually_exclusive_group(required=True)
    target.add_argument("--suite", help="a shipped suite name or a TOML path")
    target.add_argument("--split", type=Path, metavar="DIR", help="an exported split's folder")
    audit.add_argument("--dataset", help="only this dataset of the suite")
    audit.add_argument("--seed", type=int, help="only this seed")
    audit.add_argument("--data-dir", help="folder holding the dataset folders")

    imported = sub.add_parser("import", help="score an outside model's predictions on a suite")
    imported.add_argument("--suite", required=True, help="a shipped suite name or a TOML path")
    imported.add_argument("--learner", required=True, help="the name its cells are stored under")
    imported.add_argument(
        "--predictions",
        type=Path,
        help="CSV or Parquet: dataset, seed, scenario, k, user, item, prediction",
    )
    imported.add_argument(
        "--scores",
        type=Path,
        help="CSV or Parquet: dataset, seed, scenario, k, user, item, score, for every candidate "
        "item of a suite that ranks the catalogue",
    )
    imported.add_argument(
        "--store", type=Path, default=None, help=f"results store [{DEFAULT_STORE}]"
    )
    imported.add_argument("--data-dir", help="folder holding the dataset folders")


def cmd_split(args: argparse.Namespace) -> int:
    from bench.engine.split_export import export_split
    from bench.engine.split_verify import verify

    if args.split_command == "export":
        manifest = export_split(
            _check_suite(args.suite, args.data_dir),
            args.out,
            args.format,
            dataset=args.dataset,
            seed=args.seed,
        )
        print(f"{args.out}: {len(manifest['splits'])} split(s), {len(manifest['files'])} files")
        return 0
    result = verify(args.dir, args.data_dir)
    for line in result.differences:
        print(line)
    verdict = f"{len(result.differences)} difference(s)" if result.differences else "identical"
    print(f"{args.dir}: {result.splits} split(s) recomputed, {result.files} files: {verdict}")
    return 1 if result.differences else 0


def cmd_audit(args: argparse.Namespace) -> int:
    from bench.engine.split_export import audit_splits

    if args.split is not None and (args.dataset or args.seed is not None):
        raise BenchError("--dataset and --seed choose among a suite's splits; not with --split")
    suite = _check_suite(args.suite, args.data_dir) if args.suite else None
    failed = 0
    for label, checks in audit_splits(suite, args.split, args.dataset, args.seed):
        print(label)
        for check in checks:
            print(f"  {check.line()}")
            failed += not check.passed
    print(f"audit: {failed} check(s) failed" if failed else "audit: every check passed")
    return 1 if failed else 0


def cmd_import(args: argparse.Namespace) -> int:
    from bench.engine.importing import import_predictions

    suite = _check_suite(args.suite, args.data_dir)
    outcome = import_predictions(
        suite, args.learner, args.predictions, args.scores, args.store or default_store()
    )
    print(outcome.describe())
    return 0


BUILT_IN = {
    "run": cmd_run,
    "ls": cmd_ls,
    "validate": cmd_validate,
    "export": cmd_export,
    "report": cmd_report,
    "baseline": cmd_baseline,
    "check": cmd_check,
    "split": cmd_split,
    "audit": cmd_audit,
    "import": cmd_import,
}


def _warning_printer(fallback: Any) -> Any:
    """Data warnings as one plain line on stderr, like errors; others as Python shows them."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, DataWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            fallback(message, category, filename, lineno, file, line)

    return show


def _run_command(args: argparse.Namespace) -> int:
    if args.command in BUILT_IN:
        return BUILT_IN[args.command](args)
    return COMMANDS.get(args.command).run(args)


def _quiet_closed_pipe() -> int:
    """The reader went away (``bench export | head``): stop writing without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(warnings.showwarning)
            code = _run_command(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _quiet_closed_pipe()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RecursionError, MemoryError) as exc:  # a last guard: readers bound their input
        what = "nests too deeply" if isinstance(exc, RecursionError) else "is too large"
        print(f"error: an input of this command {what} to be read", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished cells are in the store and a re-run resumes", file=sys.stderr)
        return 130
