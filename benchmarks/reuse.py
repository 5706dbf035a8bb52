"""What a user waits for when nothing needs computing: ``bench run`` of the default suite and
``bench check`` of the ``ci`` suite (against the committed baseline) with every cell stored, and
``bench report`` of the default suite's store in each format; a format that draws figures is
timed twice: with the figure cache emptied before each repeat (every figure drawn) and with it
kept from the repeat before (every figure copied).

Each command runs in a fresh process, as a user runs it (interpreter start and imports
included), ``--repeats`` times in turn, after one untimed run that computes the cells (and
remembers the learners' config hashes in a fresh ``BENCH_CACHE_DIR``). Printed per command: the
median [fastest-slowest] CPU seconds (user + system of the child), the median wall seconds, and
whether the process loaded torch and matplotlib.

    PYTHONPATH=. .venv/bin/python benchmarks/reuse.py --repeats 5

The load average is printed at the start and end: a figure from a loaded machine is not a
measurement of the code.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "reports" / "baselines" / "ci.json"
WIDTH = 54
LAUNCHER = (
    "import atexit, os, runpy, sys\n"
    "atexit.register(lambda: open(os.environ['REUSE_PROBE'], 'w').write("
    "' '.join(m for m in ('torch', 'matplotlib') if m in sys.modules)))\n"
    "sys.argv = ['bench', *sys.argv[1:]]\n"
    "runpy.run_module('bench', run_name='__main__')\n"
)


def timed(argv: list[str], env: dict[str, str], probe: Path) -> tuple[float, float, set[str]]:
    """CPU and wall seconds of one command in a fresh process, and which of torch and
    matplotlib it loaded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *argv], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, set(probe.read_text().split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each command [5]")
    parser.add_argument(
        "--formats",
        default="csv;json;md;html;md,html,csv,json",
        help="the report formats to time, one report per ';'-separated entry [all, then each]",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores at the start")
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        probe = scratch / "probe"
        env = {
            **os.environ,
            "BENCH_CACHE_DIR": str(scratch / "cache"),
            "REUSE_PROBE": str(probe),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        default, ci = scratch / "default.sqlite", scratch / "ci.sqlite"
        run = ["run", "--store", str(default), "--no-progress"]
        check = [
            "check", "--suite", "ci", "--baseline", str(BASELINE), "--no-timing",
            "--changes-only", "--no-progress", "--store", str(ci),
        ]  # fmt: skip
        figures = scratch / "cache" / "figures"
        # (name, argv, empty the figure cache before each repeat)
        commands = [
            ("bench run (default suite)", run, False),
            ("bench check (ci suite)", check, False),
        ]
        for form in filter(None, args.formats.split(";")):
            out = scratch / f"report-{form.replace(',', '-')}"
            report = ["report", "--store", str(default), "--out", str(out), "--format", form]
            name = f"bench report --format {form}"
            if {"md", "html"} & set(form.split(",")):
                commands += [(f"{name}, figures drawn", report, True)]
                commands += [(f"{name}, figures kept", report, False)]
            else:
                commands += [(name, report, False)]
        for argv in (run, check):
            cpu, wall, _ = timed(argv, env, probe)
            print(f"first run, computing: {argv[0]} {wall:.1f} s wall, {cpu:.1f} s CPU")
        head = f"{'command, every cell stored':<{WIDTH}} {'CPU s [fastest-slowest]':<24}"
        print(f"\n{head} wall s  torch  matplotlib")
        for name, command, redraw in commands:
            cpus, walls, loaded = [], [], set()
            for _ in range(args.repeats):
                if redraw:
                    shutil.rmtree(figures, ignore_errors=True)
                cpu, wall, modules = timed(command, env, probe)
                cpus.append(cpu)
                walls.append(wall)
                loaded |= modules
            spread = f"{statistics.median(cpus):.2f} [{min(cpus):.2f}-{max(cpus):.2f}]"
            torch, plots = ("yes" if m in loaded else "no" for m in ("torch", "matplotlib"))
            line = (
                f"{name:<{WIDTH}} {spread:<24} {statistics.median(walls):6.2f}  {torch:<5}  {plots}"
            )
            print(line, flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
