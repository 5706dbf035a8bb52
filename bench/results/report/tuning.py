"""The report's tuning section: each learner's search budget, the space searched and the config
chosen on each seed, so a reader can tell a tuned comparison from one of hand-set defaults."""

from __future__ import annotations

from collections.abc import Sequence

from bench.results.analysis import Results
from bench.results.report.document import Cell, Paragraph, Section, Table
from bench.results.report.formatting import fmt_count_range
from bench.results.tuning_text import budget_text, config_text, space_text


def _seeds_text(values: Sequence[str], seeds: Sequence[int]) -> str:
    """One value per seed, or the value once when every seed agrees."""
    if len(set(values)) == 1:
        return values[0]
    return "; ".join(f"seed {seed}: {value}" for seed, value in zip(seeds, values, strict=True))


def tuning_section(results: Results, learners: Sequence[str]) -> Section | None:
    """One row per (dataset, protocol, learner, device): the budget, the objective, the space
    and the chosen config per seed; learners run with their configs as set say so. None when no
    stored cell was tuned."""
    tunings = results.tunings
    if tunings.empty:
        return None
    show_device = results.cells["device"].nunique() > 1
    table = Table(
        [
            "dataset · protocol",
            "learner",
            *(["device"] if show_device else []),
            "budget",
            "objective",
            "search space",
            "chosen config",
            "trials run",
            "best validation value",
        ],
        caption="Tuning: budget, search space and chosen config per learner",
    )
    order = {name: i for i, name in enumerate(learners)}
    searched = set(zip(tunings["dataset"], tunings["protocol"], strict=True))
    untuned_tables: dict[str, None] = {}  # tables where no learner was tuned, in order
    tuned = tunings.set_index("cell_key")
    cells = results.cells.sort_values(["dataset", "protocol", "device", "seed"])
    groups = cells.groupby(["dataset", "protocol", "learner", "device"], sort=False)
    for (dataset, protocol, learner, device), group in sorted(
        groups, key=lambda g: (g[0][0], g[0][1], order.get(g[0][2], len(order)), g[0][2], g[0][3])
    ):
        if (dataset, protocol) not in searched:
            untuned_tables.setdefault(f"{dataset} · {protocol}", None)
            continue
        where = [Cell(f"{dataset} · {protocol}"), Cell(learner)]
        if show_device:
            where.append(Cell(device))
        rows = tuned.loc[[k for k in group["cell_key"] if k in tuned.index]]
        if rows.empty:
            untuned = "untuned (config as set)"
            table.rows.append([*where, Cell(untuned), *[Cell("")] * 5])
            continue
        first = rows.iloc[0]
        seeds = list(rows["seed"])
        table.rows.append(
            [
                *where,
                Cell(budget_text(first["budget_trials"], first["budget_seconds"])),
                Cell(
                    f"{first['objective']} at k={first['k']} on "
                    f"{fmt_count_range(list(rows['validation_tasks']))} validation tasks"
                ),
                Cell(space_text(first["space"])),
                Cell(_seeds_text([config_text(c) for c in rows["chosen"]], seeds)),
                Cell(_seeds_text([str(n) for n in rows["trials"]], seeds)),
                Cell(_seeds_text([f"{v:.4f}" for v in rows["best_value"]], seeds)),
            ]
        )
    intro = Paragraph(
        "Learners with a search space were tuned on each seed's own split: every trial fits on "
        "the training data and is scored on the split's validation tasks (existing task "
        "entities held out of training, built and scored like the test tasks), so test tasks "
        "never influence a choice. The chosen config is then fitted and evaluated as usual."
    )
    blocks: list[Paragraph | Table] = [intro, table]
    if untuned_tables:
        blocks.append(
            Paragraph(f"No learner was tuned on {', '.join(untuned_tables)}: configs as set.")
        )
    return Section("Tuning", list(blocks), anchor="tuning")
