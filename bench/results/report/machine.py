"""The report's machine- and run-dependent sections: timings and provenance. They change from run
to run, so the Markdown and HTML keep them apart from the reproducible tables."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import pandas as pd

from bench.results.analysis import Results, timing_summary
from bench.results.analysis.summary import SPREAD_FLAG
from bench.results.report.document import Cell, Paragraph, Section, Table
from bench.results.report.formatting import fmt_rate, fmt_seconds, rows_where

REPORT_PACKAGES = ("pandas", "scipy", "matplotlib", "numpy")
"""Packages the report itself uses; their versions are listed next to the runs'."""


def timing_section(results: Results, learners: Sequence[str]) -> Section:
    """Fit and adapt+predict costs per learner, CPU and GPU side by side, with their flags."""
    section = Section("Timing", reproducible=False, anchor="timing")
    section.blocks.append(
        Paragraph(
            "Machine-dependent: these figures change from run to run and are not part of "
            "the reproducible tables above. Fit seconds are the median over seeds with the "
            "range; adapt+predict throughput is all evaluated tasks over all their seconds; "
            "peak memory is the process's resident memory on CPU and allocated memory on GPU."
        )
    )
    summary = timing_summary(results)
    if summary.empty:
        section.blocks.append(Paragraph("No timings stored."))
        return section
    devices = sorted(set(summary["device"]), key=lambda d: (d != "cpu", d))
    gpu = next((d for d in devices if d.startswith("cuda")), None)
    both = "cpu" in devices and gpu is not None
    multi_host = summary["host"].nunique() > 1
    ranked = bool((summary["rank_s"].fillna(0) > 0).any())
    width = 5 if ranked else 4
    headers = ["dataset · protocol", "learner", *(["host"] if multi_host else [])]
    for device in devices:
        suffix = f" [{device}]" if len(devices) > 1 else ""
        headers += [
            f"fit s{suffix}",
            f"fit CPU time{suffix}",
            f"tasks/s{suffix}",
            *([f"rank s per seed{suffix}"] if ranked else []),
            f"peak memory{suffix}",
        ]
    if both:
        headers += ["fit GPU/CPU", "tasks/s GPU/CPU"]
    headers += ["torch threads", "flags"]
    table = Table(headers, caption="Fit and adapt+predict cost per learner")
    order = {name: i for i, name in enumerate(learners)}
    lines = summary[["dataset", "protocol", "learner", "host"]].drop_duplicates()
    lines_sorted = sorted(
        lines.itertuples(index=False, name=None),
        key=lambda t: (t[0], t[1], order.get(t[2], 99), t[3]),
    )
    for dataset, protocol, learner, host in lines_sorted:
        part = rows_where(summary, dataset=dataset, protocol=protocol, learner=learner, host=host)
        by_device = {row["device"]: row for _, row in part.iterrows()}
        row = [Cell(f"{dataset} · {protocol}"), Cell(learner)]
        if multi_host:
            row.append(Cell(host))
        for device in devices:
            if device not in by_device:
                row += [Cell("—")] * width
                continue
            d = by_device[device]
            fit = fmt_seconds(d["fit_s_median"])
            if d["n_fits"] > 1 and d["fit_s_max"] > d["fit_s_min"]:
                fit += f" ({fmt_seconds(d['fit_s_min'])}–{fmt_seconds(d['fit_s_max'])})"
            row += [
                Cell(fit, float(d["fit_s_median"])),
                Cell(fmt_seconds(d["fit_cpu_s_median"]), float(d["fit_cpu_s_median"])),
                Cell(fmt_rate(d["tasks_per_s"]), float(d["tasks_per_s"])),
                *([_rank_cell(d)] if ranked else []),
                Cell(
                    f"{d['peak_memory_bytes'] / 2**20:,.0f} MiB ({d['memory_kind']})",
                    float(d["peak_memory_bytes"]),
                ),
            ]
        if both:
            cpu, cuda = by_device.get("cpu"), by_device.get(gpu or "")
            for column in ("fit_s_median", "tasks_per_s"):
                if cpu is None or cuda is None or not cpu[column]:
                    row.append(Cell("—"))
                else:
                    ratio = float(cuda[column] / cpu[column])
                    row.append(Cell(f"{ratio:.3g}×", ratio))
        threads = ", ".join(sorted({str(r["torch_threads"]) for r in by_device.values()}))
        row += [Cell(threads), Cell(timing_flags(list(by_device.values())))]
        table.rows.append(row)
    section.blocks.append(table)
    if ranked:
        section.blocks.append(Paragraph(ranking_share(results)))
    section.blocks.append(Paragraph(machines(results)))
    return section


def _rank_cell(d: pd.Series) -> Cell:
    per_seed = float(d["rank_s"]) / d["n_fits"] if d["n_fits"] else float("nan")
    return Cell(fmt_seconds(per_seed), per_seed)


def ranking_share(results: Results) -> str:
    """What ranking the catalogue added to the timed work of each (dataset, protocol)."""
    t = results.timings
    parts = []
    for (dataset, protocol), group in t.groupby(["dataset", "protocol"], sort=True):
        rank = float(group[group["phase"] == "rank"]["seconds"].sum())
        if rank <= 0:
            continue
        total = float(group["seconds"].sum())
        parts.append(
            f"{dataset} · {protocol}: {fmt_seconds(rank)} of {fmt_seconds(total)} "
            f"({rank / total:.1%}), so the timed work without it would take "
            f"{fmt_seconds(total - rank)} (× {total / (total - rank):.2f} with it)"
        )
    return (
        "Ranking the catalogue (full and sampled top-N) against the timed work of the cells "
        "(fit, adapt+predict and ranking; hyperparameter searches not counted, which makes the "
        "share an upper bound of its share of the wall time): " + "; ".join(parts) + "."
    )


def timing_flags(rows: list[pd.Series]) -> str:
    """The warnings of one timing row: load, several hosts, spread, thread counts."""
    flags = []
    loaded = sum(int(r["n_under_load"]) for r in rows)
    phases = sum(int(r["n_phases"]) for r in rows)
    if loaded:
        load = max(float(r["load_max"]) for r in rows)
        cpus = max(int(r["cpus"]) for r in rows)
        flags.append(f"⚠ under load: {loaded}/{phases} phases (load ≤{load:.1f}, {cpus} CPUs)")
    if any(r["mixed_hosts"] for r in rows):
        flags.append("⚠ timed on several hosts (one row each)")
    spread = max((float(r["spread"]) for r in rows if math.isfinite(r["spread"])), default=1.0)
    if spread >= SPREAD_FLAG:
        flags.append(f"⚠ fit times vary {spread:.1f}×")
    if any("," in str(r["torch_threads"]) for r in rows):
        flags.append("⚠ mixed torch thread counts")
    return "; ".join(flags)


def machines(results: Results) -> str:
    """Which host and devices each run used."""
    parts = []
    for run in results.runs.itertuples(index=False):
        prov = run.provenance
        devices = "; ".join(f"{k}: {v}" for k, v in sorted(prov.get("devices", {}).items()))
        parts.append(f"run `{run.run_id}` ({run.suite}) on host `{prov.get('host')}` — {devices}")
    return "Machines: " + ". ".join(parts) + "." if parts else "Machines: unknown."


def _finished(value: object) -> str:
    """A run's finish time, or "not finished" (never a missing value printed as nan)."""
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return "not finished"
    return str(value)


def provenance_section(results: Results, invocation: str = "") -> Section:
    """Runs, package versions, learner configs, the store and the report's own command."""
    section = Section("Provenance", reproducible=False, anchor="provenance")
    runs = Table(
        ["run", "suite", "started", "finished", "status", "commit", "host", "command"],
        caption="Runs",
    )
    for run in results.runs.itertuples(index=False):
        prov = run.provenance
        git = prov.get("git", {})
        commit = (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
        argv = " ".join(prov.get("argv", [])[1:])
        runs.rows.append(
            [
                Cell(f"`{run.run_id}`"),
                Cell(run.suite),
                Cell(str(run.started_at)),
                Cell(_finished(run.finished_at)),
                Cell(run.status if run.status == "finished" else f"⚠ {run.status}"),
                Cell(f"`{commit}`"),
                Cell(str(prov.get("host"))),
                Cell(f"`bench {argv}`" if argv else ""),
            ]
        )
    packages = Table(["package", "version", "runs"], caption="Package versions")
    seen: dict[tuple[str, str], list[str]] = {}
    for run in results.runs.itertuples(index=False):
        for name, ver in run.provenance.get("packages", {}).items():
            seen.setdefault((name, ver), []).append(run.run_id)
    for name in REPORT_PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            seen.setdefault((name, version(name)), []).append("report")
    for (name, ver), ids in sorted(seen.items()):
        packages.rows.append([Cell(name), Cell(ver), Cell(", ".join(ids))])
    configs = Table(
        ["dataset · protocol", "learner", "config hash", "config"], caption="Learner configs"
    )
    cells = results.cells
    for (dataset, protocol, learner), group in cells.groupby(
        ["dataset", "protocol", "learner"], sort=True
    ):
        first = group.iloc[0]
        configs.rows.append(
            [
                Cell(f"{dataset} · {protocol}"),
                Cell(learner),
                Cell(f"`{first['config_hash']}`"),
                Cell(f"`{json.dumps(first['config'], sort_keys=True)}`"),
            ]
        )
    notes = [f"Store: `{results.path}`; {len(cells)} cells."]
    if invocation:
        notes.append(f"Report command: `{invocation}`.")
    fingerprints = sorted(set(cells["code_fingerprint"]))
    notes.append(f"Code fingerprints: {', '.join(f'`{f}`' for f in fingerprints)}.")
    if results.superseded:
        notes.append(
            f"{results.superseded} older cells were superseded by later runs of the "
            "same split, learner config, seed and device, and left out."
        )
    failures = results.failures
    if not failures.empty:
        notes.append(
            f"{len(failures)} cell(s) failed: "
            + "; ".join(f"{f.description}: {f.error}" for f in failures.itertuples())
            + "."
        )
    section.blocks += [runs, packages, configs, Paragraph(" ".join(notes))]
    return section
